"""Shipping: anomalies also go to indexer data streams `<prefix>-<scenario>`.

anomalies.json stays the source of truth for Wazuh alerts; the data streams are for
dashboards and long-term search. Delivery is exactly once:

- every anomaly is first written to the on-disk spool (one file per batch, written to a
  temporary name, fsynced, renamed), so a crash or a down indexer loses nothing;
- spool files are delivered oldest first with `_bulk`, `op_type: create` (data streams
  accept nothing else) and the anomaly's deterministic id as `_id`: a replay of a batch
  the indexer already has answers 409 for each document, which counts as delivered.
  A 409 only covers the stream's current write index, so each batch first asks the
  whole stream (every backing index) which of its ids it holds: a replay after a
  rollover is not written twice either;
- a file is removed (or rewritten with what is left) only after the indexer answered;
- documents the indexer refuses for good (a mapping conflict) move to spool/rejected/
  and raise a health event; a down indexer raises one and the next run retries;
- the spool is bounded (shipping.spool_max_mb): past it, the oldest files are dropped
  with a health event (their anomalies are still in anomalies.json).

Setup is idempotent: component templates (common anomaly fields; each scenario's
feature values), one index template with `data_stream` per scenario, and an ISM policy
(rollover by age/size/documents, delete after N days) where the index-management plugin
is installed — skipped with a warning where it is not.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ..core.fileio import atomic_write
from ..core.config import Config, Scenario
from .emitter import event_for
from ..core.findings import Anomaly, HealthEvent
from ..core.indexer import CheckLine, IndexerError, NUMERIC_TYPES, explain, make_client, retrying

log = logging.getLogger("wazuh_anomaly.emit.shipping")

PERMANENT_ERRORS = {"mapper_parsing_exception", "illegal_argument_exception", "document_parsing_exception",
                    "strict_dynamic_mapping_exception"}


def stream_name(prefix: str, scenario: str) -> str:
    return f"{prefix}-{scenario.replace('_', '-')}"


def document_for(anomaly: Anomaly, detected_at: datetime) -> dict:
    """The shipped document: the anomalies.json event, @timestamp = window start, and the
    feature values under anomaly.features.<name> (numbers the dashboards can chart)."""
    event = event_for(anomaly, detected_at=detected_at)
    doc = {"@timestamp": event["anomaly"]["window"]["start"]}
    doc.update(event)
    doc["anomaly"] = dict(event["anomaly"])
    doc["anomaly"]["features"] = {f.name: float(f.actual) for f in anomaly.top_features}
    return doc


# --------------------------------------------------------------------------- templates

COMMON_MAPPINGS = {
    "dynamic_templates": [{"strings": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}],
    "properties": {
        "@timestamp": {"type": "date", "format": "date_optional_time||epoch_millis"},
        "integration": {"type": "keyword"},
        "srcip": {"type": "keyword"},
        "dstuser": {"type": "keyword"},
        "anomaly": {"properties": {
            "id": {"type": "keyword"}, "kind": {"type": "keyword"}, "detector": {"type": "keyword"},
            "scenario": {"type": "keyword"}, "severity": {"type": "keyword"},
            "score": {"type": "double"}, "threshold": {"type": "double"},
            "window": {"properties": {"start": {"type": "date", "format": "date_optional_time"},
                                      "end": {"type": "date", "format": "date_optional_time"}}},
            "bucket_minutes": {"type": "integer"},
            "entity": {"properties": {"field": {"type": "keyword"}, "value": {"type": "keyword"}}},
            "top_feature": {"type": "keyword"}, "direction": {"type": "keyword"},
            "title": {"type": "text"}, "summary": {"type": "text"},
            "top_features": {"properties": {"name": {"type": "keyword"}, "actual": {"type": "double"},
                                            "expected": {"type": "double"}, "contribution": {"type": "double"},
                                            "deviation": {"type": "double"}}},
            "model_version": {"type": "keyword"}, "description": {"type": "text"},
            "detected_at": {"type": "date", "format": "date_optional_time"},
        }},
    },
}


def templates(config: Config, scenario: Scenario) -> dict[str, dict]:
    """Component and index templates of one scenario's data stream, by API path."""
    spec = config.shipping
    common = f"{spec.prefix}-common"
    features = f"{spec.prefix}-features-{scenario.name}"
    return {
        f"/_component_template/{common}": {"template": {"mappings": COMMON_MAPPINGS},
                                           "_meta": {"managed_by": "wazuh-anomaly"}},
        f"/_component_template/{features}": {"template": {"mappings": {"properties": {"anomaly": {"properties": {
            "features": {"properties": {f.name: {"type": "double"} for f in scenario.features}}}}}}},
            "_meta": {"managed_by": "wazuh-anomaly", "scenario": scenario.name}},
        f"/_index_template/{stream_name(spec.prefix, scenario.name)}": {
            "index_patterns": [stream_name(spec.prefix, scenario.name)],
            "data_stream": {},
            "composed_of": [common, features],
            "priority": 200,
            "_meta": {"managed_by": "wazuh-anomaly"}},
    }


def ism_policy(config: Config) -> dict:
    spec = config.shipping
    return {"policy": {
        "description": "wazuh-anomaly data streams: roll over, then delete old anomalies",
        "default_state": "hot",
        "states": [
            {"name": "hot", "actions": [{"rollover": {"min_index_age": spec.rollover_age,
                                                      "min_primary_shard_size": spec.rollover_size,
                                                      "min_doc_count": spec.rollover_docs}}],
             "transitions": [{"state_name": "delete", "conditions": {"min_index_age": f"{spec.delete_after_days}d"}}]},
            {"name": "delete", "actions": [{"delete": {}}], "transitions": []},
        ],
        "ism_template": [{"index_patterns": [f".ds-{spec.prefix}-*"], "priority": 100}],
    }}


# --------------------------------------------------------------------------- spool

class Spool:
    """Batches of shipped documents on disk, oldest first; each file is written atomically."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.rejected = self.directory / "rejected"
        self.max_bytes = max_bytes

    def _ensure(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)

    def files(self) -> list[Path]:
        try:
            names = sorted(n for n in os.listdir(self.directory) if n.endswith(".jsonl"))
        except FileNotFoundError:
            return []
        return [self.directory / n for n in names]

    def add(self, items: list[tuple[str, str, dict]]) -> Path | None:
        """Spool (stream, id, document) triples as one batch file."""
        if not items:
            return None
        self._ensure()
        data = "".join(json.dumps({"stream": s, "id": i, "doc": d}, separators=(",", ":"), allow_nan=False) + "\n"
                       for s, i, d in items).encode("utf-8")
        path = self.directory / f"{time.time_ns():020d}-{os.getpid()}.jsonl"
        atomic_write(path, data, sync_dir=True)
        return path

    @staticmethod
    def read(path: Path) -> list[tuple[str, str, dict]]:
        out = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                item = json.loads(line)
                out.append((item["stream"], item["id"], item["doc"]))
            except (ValueError, KeyError, TypeError):
                log.warning("%s: a damaged spool line was skipped", path)
        return out

    def replace(self, path: Path, items: list[tuple[str, str, dict]]) -> None:
        if not items:
            path.unlink(missing_ok=True)
            return
        data = "".join(json.dumps({"stream": s, "id": i, "doc": d}, separators=(",", ":")) + "\n"
                       for s, i, d in items).encode("utf-8")
        atomic_write(path, data, sync_dir=True)

    def reject(self, items: list[tuple[str, str, dict, str]]) -> Path | None:
        if not items:
            return None
        self.rejected.mkdir(parents=True, exist_ok=True, mode=0o750)
        data = "".join(json.dumps({"stream": s, "id": i, "doc": d, "error": e}, separators=(",", ":")) + "\n"
                       for s, i, d, e in items).encode("utf-8")
        path = self.rejected / f"{time.time_ns():020d}-{os.getpid()}.jsonl"
        atomic_write(path, data, sync_dir=True)
        return path

    @staticmethod
    def items_in(directory: Path) -> list[tuple[str, str, dict]]:
        try:
            names = sorted(n for n in os.listdir(directory) if n.endswith(".jsonl"))
        except FileNotFoundError:
            return []
        return [item for n in names for item in Spool.read(Path(directory) / n)]

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.files() if p.exists())

    def trim(self) -> int:
        """Drop the oldest files beyond max_bytes; returns how many documents were dropped."""
        files = self.files()
        total = sum(p.stat().st_size for p in files)
        dropped = 0
        while files and total > self.max_bytes:
            oldest = files.pop(0)
            total -= oldest.stat().st_size
            dropped += len(self.read(oldest))
            oldest.unlink(missing_ok=True)
        return dropped


# --------------------------------------------------------------------------- shipper

@dataclass
class ShipResult:
    spooled: int = 0
    delivered: int = 0          # created now
    already: int = 0            # the indexer had them (409): a replay
    rejected: int = 0
    dropped: int = 0
    pending: int = 0            # still in the spool after this run
    health: list[HealthEvent] = field(default_factory=list)


class Shipper:
    def __init__(self, config: Config, scenarios: list[Scenario], *, client=None, now: float | None = None):
        self.config = config
        self.spec = config.shipping
        self.scenarios = {s.name: s for s in scenarios}
        spool_dir = Path(self.spec.spool_dir) if self.spec.spool_dir else config.layout.var_dir / "spool"
        self.spool = Spool(spool_dir, self.spec.spool_max_mb * 1024 * 1024)
        self._client = client
        self._set_up: set[str] = set()
        self.now = time.time() if now is None else now

    def wanted(self, scenario: str) -> bool:
        return self.spec.enabled and (not self.spec.scenarios or scenario in self.spec.scenarios)

    @property
    def client(self):
        if self._client is None:
            self._client = make_client(self.config.indexer, self.config.layout.prefix)
        return self._client

    def _health(self, result: ShipResult, check: str, message: str, severity: str = "medium") -> None:
        log.warning("%s: %s", check, message)
        result.health.append(HealthEvent(check=check, message=message, severity=severity,
                                         at=datetime.fromtimestamp(self.now, timezone.utc)))

    def ship(self, anomalies: list[Anomaly], detected_at: datetime | None = None) -> ShipResult:
        """Spool the anomalies of shipped scenarios, then deliver everything spooled."""
        result = ShipResult()
        detected_at = detected_at or datetime.fromtimestamp(self.now, timezone.utc)
        items = [(stream_name(self.spec.prefix, a.scenario), a.id, document_for(a, detected_at))
                 for a in anomalies if self.wanted(a.scenario)]
        self.spool.add(items)
        result.spooled = len(items)
        dropped = self.spool.trim()
        if dropped:
            result.dropped = dropped
            self._health(result, "spool_full",
                         f"the shipping spool {self.spool.directory} passed shipping.spool_max_mb "
                         f"({self.spec.spool_max_mb} MB): the {dropped} oldest anomalies were not shipped (they are "
                         f"still in anomalies.json); bring the indexer back or raise spool_max_mb.", "high")
        self.deliver(result)
        return result

    def deliver(self, result: ShipResult | None = None) -> ShipResult:
        result = result or ShipResult()
        for path in self.spool.files():
            items = self.spool.read(path)
            try:
                for stream in sorted({s for s, _, _ in items}):
                    self.set_up(stream)
                left, rejected, error = self._bulk(items, result)
            except IndexerError as exc:
                result.pending = sum(len(self.spool.read(p)) for p in self.spool.files())
                self._health(result, "shipping_failed",
                             f"{result.pending} anomalies wait in {self.spool.directory} for the indexer: {exc}")
                return result
            if rejected:
                self.spool.reject(rejected)
                result.rejected += len(rejected)
                self._health(result, "shipping_rejected",
                             f"the indexer refused {len(rejected)} anomalies for {rejected[0][0]} ({rejected[0][3]}); "
                             f"they are kept in {self.spool.rejected}; fix the data stream's mapping and move them "
                             f"back into {self.spool.directory}.")
            self.spool.replace(path, left)
            if left:
                result.pending = sum(len(self.spool.read(p)) for p in self.spool.files())
                reason = str(error) if error else "the indexer asked us to slow down (HTTP 429 or 5xx)"
                self._health(result, "shipping_failed",
                             f"{result.pending} anomalies wait in {self.spool.directory} and are retried on the "
                             f"next run: {reason}")
                return result
        return result

    def _bulk(self, items, result: ShipResult):
        """One spool file through _bulk in batches: (what must be retried, what was refused for
        good, the error that stopped it); raises when the first batch fails."""
        left: list = []
        rejected: list = []
        for i in range(0, len(items), self.spec.batch_size):
            batch = items[i:i + self.spec.batch_size]
            try:
                held = self._held(batch)
            except IndexerError as exc:
                if i == 0:
                    raise
                return left + items[i:], rejected, exc
            result.already += sum(1 for stream, doc_id, _ in batch if (stream, doc_id) in held)
            batch = [item for item in batch if (item[0], item[1]) not in held]
            if not batch:
                continue
            body = []
            for stream, doc_id, doc in batch:
                body.append({"create": {"_index": stream, "_id": doc_id}})
                body.append(doc)
            try:
                answer = retrying(self.config.indexer, lambda: self.client.bulk(body=body), "shipping anomalies")
            except IndexerError as exc:
                if i == 0:
                    raise
                return left + items[i:], rejected, exc
            for (stream, doc_id, doc), item in zip(batch, answer["items"]):
                outcome = item.get("create") or {}
                status = outcome.get("status", 0)
                if status in (200, 201):
                    result.delivered += 1
                elif status == 409:
                    result.already += 1
                else:
                    error = outcome.get("error") or {}
                    kind = error.get("type", "") if isinstance(error, dict) else ""
                    reason = (error.get("reason") if isinstance(error, dict) else str(error)) or f"HTTP {status}"
                    if kind in PERMANENT_ERRORS or status == 400:
                        rejected.append((stream, doc_id, doc, f"{kind}: {reason}"[:300]))
                    else:
                        left.append((stream, doc_id, doc))
        return left, rejected, None

    def _held(self, batch) -> set[tuple[str, str]]:
        """The (stream, id) pairs of `batch` the indexer already holds, in any backing index."""
        by_stream: dict[str, list[str]] = {}
        for stream, doc_id, _ in batch:
            by_stream.setdefault(stream, []).append(doc_id)
        held: set[tuple[str, str]] = set()
        for stream, ids in by_stream.items():
            body = {"size": len(ids), "_source": False, "query": {"ids": {"values": ids}}}
            answer = retrying(self.config.indexer, lambda: self.client.search(
                index=stream, body=body, ignore_unavailable=True, allow_no_indices=True), "looking up shipped anomalies")
            held.update((stream, hit["_id"]) for hit in answer["hits"]["hits"])
        return held

    # ------------------------------------------------------------------ setup
    def has_ism(self) -> bool:
        plugins = retrying(self.config.indexer, lambda: self.client.cat.plugins(format="json"), "listing plugins")
        return any("index-management" in (p.get("component") or "") for p in plugins)

    def set_up(self, stream: str) -> None:
        """Templates (and the ISM policy) of one data stream, once per process; idempotent."""
        if stream in self._set_up:
            return
        scenario = next((s for s in self.scenarios.values() if stream_name(self.spec.prefix, s.name) == stream), None)
        if scenario is None:
            self._set_up.add(stream)  # spooled by an older config: the stream's templates exist already
            return
        if not self._set_up:
            self._install_ism()
        for path, body in templates(self.config, scenario).items():
            retrying(self.config.indexer,
                     lambda p=path, b=body: self.client.transport.perform_request("PUT", p, body=b),
                     f"installing {path}")
        self._set_up.add(stream)

    def _install_ism(self) -> None:
        if not self.has_ism():
            log.warning("the indexer has no index-management plugin: the anomaly data streams get no ISM policy "
                        "(rollover and deletion); manage their size by hand")
            return
        path = f"/_plugins/_ism/policies/{self.spec.prefix}-policy"
        policy = ism_policy(self.config)
        from opensearchpy import exceptions as ox
        try:
            current = self.client.transport.perform_request("GET", path)
        except ox.NotFoundError:
            current = None
        except Exception as exc:
            raise explain(exc, self.config.indexer, "reading the ISM policy") from None
        if current is not None:
            if _same_policy(current.get("policy", {}), policy["policy"]):
                return
            params = {"if_seq_no": current["_seq_no"], "if_primary_term": current["_primary_term"]}
        else:
            params = {}
        retrying(self.config.indexer, lambda: self.client.transport.perform_request("PUT", path, body=policy,
                                                                                  params=params), "installing the ISM policy")


def _same_policy(current: dict, wanted: dict) -> bool:
    """Whether the installed policy already says everything ours says. ISM answers a GET
    with what it filled in (each action's `retry`, rollover's `copy_alias`, the template's
    `last_updated_time`, `policy_id`, `schema_version` …), so extra keys do not count."""
    return _contains(current, wanted)


def _contains(current, wanted) -> bool:
    if isinstance(wanted, dict):
        return isinstance(current, dict) and all(k in current and _contains(current[k], v) for k, v in wanted.items())
    if isinstance(wanted, list):
        return isinstance(current, list) and len(current) == len(wanted) and \
            all(_contains(c, w) for c, w in zip(current, wanted))
    return current == wanted


def check_shipping(config: Config, scenarios: list[Scenario]) -> list[CheckLine]:
    """`wazuh-anomaly check` when shipping is on: ISM available, existing streams' feature mappings numeric."""
    shipper = Shipper(config, scenarios)
    lines = []
    try:
        ism = shipper.has_ism()
        lines.append(CheckLine("ism", True, "index-management plugin present: the rollover/delete policy is installed"
                               if ism else "no index-management plugin: data streams get no ISM policy (a warning, not an error)"))
        for s in scenarios:
            if not shipper.wanted(s.name):
                continue
            stream = stream_name(config.shipping.prefix, s.name)
            caps = retrying(config.indexer, lambda st=stream: shipper.client.field_caps(
                index=st, fields="anomaly.features.*", params={"ignore_unavailable": "true", "allow_no_indices": "true"}),
                "reading the data stream mapping")
            bad = [f"{name} is {'/'.join(sorted(types))}" for name, types in (caps.get("fields") or {}).items()
                   if not set(types) - {"unmapped"} <= NUMERIC_TYPES | {"object"}]
            lines.append(CheckLine(f"stream {stream}", not bad, "; ".join(bad) + "; delete the data stream's index "
                                   "template and let wazuh-anomaly install its own" if bad else "mapping ok"))
    except IndexerError as exc:
        lines.append(CheckLine("shipping", False, str(exc)))
    return lines
