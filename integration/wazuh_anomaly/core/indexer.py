"""The connection to the Wazuh indexer (OpenSearch 2.x): client, credentials, and `check`.

I/O infrastructure like `fileio`, so it lives in the core: the indexer source reads
through it, shipping writes through it, and `wazuh-anomaly indexer check` runs `check`.

Credentials come from the config file, then an environment variable, then the manager's
keystore (`bin/wazuh-keystore -f indexer -k username|password`, the store Filebeat and
the manager's own indexer connector use). They never appear on a command line or in a
log. Every failure a user can cause becomes one IndexerError sentence naming the host
and the fix.
"""
from __future__ import annotations

import logging
import os
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .config import IndexerSpec
from .errors import WazuhAnomalyError

# The channel keeps the name it had when this module was indexer/client.py: users filter on it.
log = logging.getLogger("wazuh_anomaly.indexer.client")

KEYSTORE_TIMEOUT = 10


class IndexerError(WazuhAnomalyError):
    """The indexer is unreachable, refuses us, or holds something we cannot use."""


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    origin: str                       # where they came from, for messages (never the values)

    def __repr__(self) -> str:        # a stray log line must not carry the password
        return f"Credentials(username={self.username!r}, origin={self.origin!r})"


def keystore_value(prefix: Path, key: str) -> str | None:
    """One value of the manager's keystore; None when the tool or the key is absent."""
    tool = prefix / "bin" / "wazuh-keystore"
    if not os.access(tool, os.X_OK):
        return None
    try:
        done = subprocess.run([str(tool), "-f", "indexer", "-k", key], capture_output=True,
                              timeout=KEYSTORE_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("wazuh-keystore could not be run (%s)", type(exc).__name__)
        return None
    value = done.stdout.decode("utf-8", "replace").strip()
    return value if done.returncode == 0 and value else None


def resolve_credentials(spec: IndexerSpec, prefix: Path, environ: dict | None = None) -> Credentials | None:
    """Username and password from config, environment, then keystore; None for no auth."""
    environ = os.environ if environ is None else environ
    found: dict[str, tuple[str, str]] = {}
    for key, configured, env_name in (("username", spec.username, spec.username_env),
                                      ("password", spec.password, spec.password_env)):
        if configured:
            found[key] = (configured, "the config file")
        elif env_name and environ.get(env_name):
            found[key] = (environ[env_name], f"${env_name}")
        elif spec.keystore:
            value = keystore_value(prefix, key)
            if value:
                found[key] = (value, "the wazuh-keystore")
    if not found:
        return None
    if "username" not in found or "password" not in found:
        missing = "password" if "username" in found else "username"
        raise IndexerError(
            f"The indexer {missing} is not set (the {'username' if missing == 'password' else 'password'} came from "
            f"{next(iter(found.values()))[1]}); set indexer.{missing} in config.yaml, "
            f"${spec.password_env if missing == 'password' else spec.username_env}, or run "
            f"'bin/wazuh-keystore -f indexer -k {missing} -v <value>' on the manager.")
    origins = sorted({o for _, o in found.values()})
    return Credentials(found["username"][0], found["password"][0], " and ".join(origins))


def _hosts_text(spec: IndexerSpec) -> str:
    return ", ".join(spec.hosts)


def make_client(spec: IndexerSpec, prefix: Path, *, credentials: Credentials | None | bool = True):
    """An opensearch-py client; TLS verified against spec.ca unless verify is false."""
    try:
        from opensearchpy import OpenSearch
    except ImportError:
        raise IndexerError("The indexer needs the opensearch-py package, which is not installed in wazuh-anomaly's "
                           "virtualenv; re-run install.sh with --indexer (or pip install 'opensearch-py>=2.4' "
                           "in that virtualenv).") from None
    if credentials is True:
        credentials = resolve_credentials(spec, prefix)
    https = any(h.startswith("https://") for h in spec.hosts)
    kwargs: dict[str, Any] = dict(hosts=list(spec.hosts), timeout=spec.timeout_seconds,
                                  max_retries=0, retry_on_timeout=False)
    if credentials:
        kwargs["http_auth"] = (credentials.username, credentials.password)
    if https:
        kwargs["use_ssl"] = True
        if spec.verify:
            if spec.ca:
                if not os.access(spec.ca, os.R_OK):
                    raise IndexerError(f"The indexer CA file {spec.ca} cannot be read; copy the indexer's root-ca.pem "
                                       f"there or set indexer.ca in config.yaml.")
                kwargs["ca_certs"] = spec.ca
            kwargs["verify_certs"] = True
            kwargs["ssl_assert_hostname"] = False if _is_ip_host(spec) else None
        else:
            kwargs["verify_certs"] = False
            kwargs["ssl_show_warn"] = False
            log.warning("indexer TLS verification is off (indexer.verify: false): anyone on the path can read the password")
        if spec.client_cert:
            kwargs["client_cert"] = spec.client_cert
            kwargs["client_key"] = spec.client_key
    return OpenSearch(**kwargs)


def _is_ip_host(spec: IndexerSpec) -> bool:
    import ipaddress
    for host in spec.hosts:
        name = host.split("://", 1)[1].rsplit(":", 1)[0].strip("[]")
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
    return True


def explain(exc: BaseException, spec: IndexerSpec, what: str = "") -> IndexerError:
    """One sentence for a failed request: what happened and what to do."""
    from opensearchpy import exceptions as ox
    hosts = _hosts_text(spec)
    doing = f" ({what})" if what else ""
    text = f"{exc!r} {getattr(exc, 'info', '')}"
    if isinstance(exc, ox.SSLError) or "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc, ssl.SSLError):
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            return IndexerError(f"TLS verification of {hosts} failed{doing}: its certificate is not signed by the CA "
                                f"{spec.ca or '(system CAs)'}; set indexer.ca to the indexer's root-ca.pem.")
        return IndexerError(f"TLS with {hosts} failed{doing}: {str(exc)[:160]}; check that the URL scheme and "
                            f"port are the indexer's HTTPS port and that indexer.ca is its CA.")
    if isinstance(exc, ox.AuthenticationException):
        return IndexerError(f"The indexer {hosts} rejected the username or password{doing}; fix the credentials "
                            f"(indexer.username/password, ${spec.password_env} or 'wazuh-keystore -f indexer').")
    if isinstance(exc, ox.AuthorizationException):
        return IndexerError(f"The indexer user may not do this{doing} on {hosts}; grant it read access to "
                            f"{spec.index} (and write access to the anomaly data streams when shipping).")
    if isinstance(exc, ox.ConnectionTimeout):
        return IndexerError(f"The indexer {hosts} did not answer within {spec.timeout_seconds:g}s{doing}; check that "
                            f"it is running and raise indexer.timeout_seconds if it is busy.")
    if isinstance(exc, ox.ConnectionError):
        if "SSL" in text and "WRONG_VERSION" in text:
            return IndexerError(f"The indexer {hosts} does not speak TLS on that port{doing}; use http:// or the HTTPS port.")
        if "RemoteDisconnected" in text or "BadStatusLine" in text:
            return IndexerError(f"The indexer {hosts} closed the connection{doing}; if it serves HTTPS, use an https:// URL.")
        return IndexerError(f"The indexer {hosts} is unreachable{doing}; check that it is running and that "
                            f"indexer.hosts has the right address and port (9200).")
    if isinstance(exc, ox.NotFoundError):
        return IndexerError(f"Not found on the indexer {hosts}{doing}: {_reason(exc)}.")
    if isinstance(exc, ox.TransportError):
        return IndexerError(f"The indexer {hosts} refused the request{doing}: {_reason(exc)}.")
    return IndexerError(f"The indexer request to {hosts} failed{doing}: {type(exc).__name__}: {str(exc)[:200]}.")


def _reason(exc: Any) -> str:
    info = getattr(exc, "info", None)
    if isinstance(info, dict):
        err = info.get("error")
        if isinstance(err, dict):
            causes = err.get("root_cause") or []
            reason = (causes[0].get("reason") if causes and isinstance(causes[0], dict) else None) or err.get("reason")
            if reason:
                return str(reason)[:300]
        if isinstance(err, str):
            return err[:300]
    return str(getattr(exc, "error", exc))[:300]


def retrying(spec: IndexerSpec, call: Callable[[], Any], what: str = "") -> Any:
    """Run one request, retrying connection failures and 429/502/503/504 with exponential backoff."""
    from opensearchpy import exceptions as ox
    delay = 0.5
    for attempt in range(spec.retries + 1):
        try:
            return call()
        except (ox.ConnectionTimeout, ox.ConnectionError, ox.TransportError) as exc:
            status = getattr(exc, "status_code", None)
            transient = isinstance(exc, (ox.ConnectionTimeout, ox.ConnectionError)) and not isinstance(exc, ox.SSLError) \
                or status in (429, 502, 503, 504)
            if not transient or attempt == spec.retries:
                raise explain(exc, spec, what) from None
            log.info("indexer %s failed (%s); retry %d of %d in %.1fs", what or "request", type(exc).__name__,
                     attempt + 1, spec.retries, delay)
            time.sleep(delay)
            delay = min(delay * 2, 10.0)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------- check

@dataclass
class CheckLine:
    name: str
    ok: bool
    message: str


NUMERIC_TYPES = {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float", "unsigned_long"}


def field_types(client, spec: IndexerSpec, fields: list[str]) -> dict[str, set[str]]:
    """The mapped types of each field across the alert indices ({} for unmapped fields)."""
    if not fields:
        return {}
    caps = retrying(spec, lambda: client.field_caps(index=spec.index, fields=",".join(sorted(set(fields))),
                                                    params={"ignore_unavailable": "true", "allow_no_indices": "true"}),
                    "reading the field mappings")
    out: dict[str, set[str]] = {}
    for name, types in (caps.get("fields") or {}).items():
        out[name] = {t for t in types if t not in ("unmapped",)}
    return out


def check(spec: IndexerSpec, prefix: Path, scenarios=()) -> list[CheckLine]:
    """Reachability, TLS, auth, cluster health, the alert indices and their time field, and
    each scenario's fields: one line per step, stopping at the first step that fails."""
    lines: list[CheckLine] = []
    try:
        credentials = resolve_credentials(spec, prefix)
    except IndexerError as exc:
        return [CheckLine("credentials", False, str(exc))]
    lines.append(CheckLine("credentials", True, f"from {credentials.origin}" if credentials
                           else "none configured (an indexer with the security plugin will refuse us)"))
    try:
        client = make_client(spec, prefix, credentials=credentials)
    except IndexerError as exc:
        return lines + [CheckLine("tls", False, str(exc))]
    try:
        info = retrying(spec, client.info, "connecting")
    except IndexerError as exc:
        step = "auth" if "username or password" in str(exc) else "tls" if "TLS" in str(exc) else "reachable"
        return lines + [CheckLine(step, False, str(exc))]
    version = (info.get("version") or {}).get("number", "?")
    lines.append(CheckLine("reachable", True, f"{_hosts_text(spec)}: {info.get('cluster_name', '?')}, OpenSearch {version}"))
    if any(h.startswith("https://") for h in spec.hosts):
        lines.append(CheckLine("tls", True, f"verified against {spec.ca}" if spec.verify
                               else "NOT verified (indexer.verify: false)"))
    lines.append(CheckLine("auth", True, f"as {credentials.username}" if credentials else "anonymous"))
    try:
        health = retrying(spec, client.cluster.health, "cluster health")
    except IndexerError as exc:
        return lines + [CheckLine("health", False, str(exc))]
    status = health.get("status", "?")
    lines.append(CheckLine("health", status in ("green", "yellow"),
                           f"cluster {status}" + ("" if status in ("green", "yellow") else
                                                  "; some primary shards are unassigned, see GET _cluster/allocation/explain")))
    try:
        indices = retrying(spec, lambda: client.cat.indices(index=spec.index, format="json",
                                                            params={"expand_wildcards": "open"}), "listing the alert indices")
    except IndexerError as exc:
        if "no such index" in str(exc) or "Not found" in str(exc):
            indices = []
        else:
            return lines + [CheckLine("indices", False, str(exc))]
    if not indices:
        return lines + [CheckLine("indices", False, f"No index matches {spec.index} on {_hosts_text(spec)}; check that "
                                                    f"Filebeat ships alerts (alerts.json) or set indexer.index.")]
    docs = sum(int(i.get("docs.count") or 0) for i in indices)
    lines.append(CheckLine("indices", True, f"{len(indices)} indices match {spec.index}, {docs} documents"))
    fields = sorted({spec.time_field} | {f for s in scenarios for f in scenario_fields(s)})
    try:
        types = field_types(client, spec, fields)
    except IndexerError as exc:
        return lines + [CheckLine("mapping", False, str(exc))]
    time_types = types.get(spec.time_field, set())
    if time_types != {"date"}:
        what = "is not mapped" if not time_types else f"is mapped as {'/'.join(sorted(time_types))}"
        return lines + [CheckLine("time field", False,
                                  f"The time field {spec.time_field} {what} in {spec.index}, not as a date; load Wazuh's "
                                  f"index template (wazuh-template.json) or set indexer.time_field.")]
    lines.append(CheckLine("time field", True, f"{spec.time_field} is a date"))
    for s in scenarios:
        problems = mapping_problems(s, types)
        lines.append(CheckLine(f"scenario {s.name}", not problems, "; ".join(problems) or
                               ("fields mapped; features computed by the indexer" if pushdown_reason(s, types) is None
                                else f"fields mapped; {pushdown_reason(s, types)}")))
    return lines


def scenario_fields(scenario) -> list[str]:
    fields = [c.field for f in scenario.features for c in f.filter]
    fields += [f.field for f in scenario.features if f.field and f.aggregation != "count"]
    if scenario.entity:
        fields.append(scenario.entity.field)
    return fields


def mapping_problems(scenario, types: dict[str, set[str]]) -> list[str]:
    """Features whose field the indexer cannot aggregate the way the scenario says."""
    problems = []
    for f in scenario.features:
        if f.aggregation in ("max", "mean", "sum") and f.field:
            mapped = types.get(f.field, set())
            if mapped and not mapped <= NUMERIC_TYPES:
                problems.append(
                    f"feature {f.name} of scenario {scenario.name} takes the {f.aggregation} of {f.field}, which the "
                    f"alert indices map as {'/'.join(sorted(mapped))}, not a number; map it as a number in the index "
                    f"template (then reindex) or use source type alerts_file for this scenario")
    return problems


# The aggregations the indexer computes itself (sources/indexer.py feature_aggs).
PUSHED_DOWN = frozenset({"count", "distinct", "max", "mean", "sum"})


def pushdown_reason(scenario, types: dict[str, set[str]] | None = None) -> str | None:
    """Why a scenario's features cannot be computed by the indexer (None when they can)."""
    if scenario.has_rare_features:
        return "'rare' features need every value in time order: read as raw documents"
    for f in scenario.features:
        if f.aggregation not in PUSHED_DOWN:
            return f"feature {f.name} uses aggregation '{f.aggregation}', which the indexer cannot compute: read as raw documents"
    for f in scenario.features:
        for c in f.filter:
            if c.regex is not None:
                return f"feature {f.name} filters {c.field} with a Python regex: read as raw documents"
            if (c.min is not None or c.max is not None) and types is not None:
                mapped = types.get(c.field, set())
                if mapped and not mapped <= NUMERIC_TYPES:
                    return (f"feature {f.name} compares {c.field} as a number but it is mapped as "
                            f"{'/'.join(sorted(mapped))}: read as raw documents")
    return None
