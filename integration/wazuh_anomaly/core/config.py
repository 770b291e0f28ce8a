"""Configuration: one global file and one YAML file per scenario, with typed defaults.

`etc/anomaly/config.yaml` holds what applies to every scenario (source, output, run
limits, device); `etc/anomaly/scenarios/*.yaml` each declare one scenario: what to count
per time bucket, how to split by entity, which detectors score it and how severities
are tiered. Every value has a default here and nowhere else; every error names the file
and the key.
"""
from __future__ import annotations

import difflib
import fnmatch
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import Layout

AGGREGATIONS = ("count", "distinct", "max", "mean", "sum", "rare")
DETECTORS = ("mvad", "seasonal")
SCENARIO_SOURCES = ("alerts", "flows")   # what a scenario counts: Wazuh alerts or NetFlow flow events
SOURCE_TYPES = ("alerts_file", "indexer")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MITRE_RE = re.compile(r"^T\d{4}(\.\d{3})?$")
# Shorthand filter keys of the scenario format and the alert field each one reads.
FILTER_SHORTHANDS = {
    "groups": "rule.groups",
    "rule_id": "rule.id",
    "level": "rule.level",
    "decoder": "decoder.name",
    "agent": "agent.name",
}
CONDITION_KEYS = {"min", "max", "prefix", "regex", "exists", "not"}


# --------------------------------------------------------------------------- values

@dataclass(frozen=True)
class Condition:
    """One test on one alert field; every part that is set must hold."""

    field: str
    equals: tuple[str, ...] = ()      # any of these (for list fields: any element)
    not_in: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    prefix: str | None = None
    regex: str | None = None
    exists: bool | None = None


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    aggregation: str                  # one of AGGREGATIONS
    field: str | None = None          # required except for count
    filter: tuple[Condition, ...] = ()
    max_seen: int = 2                 # rare: a value seen in at most this many earlier buckets (per entity) is rare
    # Suppression (as OpenSearch AD's rules): a bucket is raised only when some feature
    # moved in the direction that matters by at least min_deviation (absolute) and
    # min_relative_deviation (a share of the expected value) from what its hour expects.
    direction: str = "up"             # up | down | both
    min_deviation: float = 0.0
    min_relative_deviation: float = 0.0
    text_up: str = ""                 # what an anomaly led by this feature going up means (alert text)
    text_down: str = ""               # ... going down


@dataclass(frozen=True)
class EntitySpec:
    field: str                        # e.g. agent.name, data.srcip, data.dstuser
    top: int = 20                     # keep the N busiest entities


@dataclass(frozen=True)
class TrainingSpec:
    lookback_days: float = 14.0       # history used to train
    min_history_hours: float = 48.0   # below this, wait and say how much is missing
    retrain_every_days: float = 7.0
    max_model_age_days: float = 21.0  # older than this: model_stale health event
    drift_buckets: int = 288          # recent scored buckets compared with the training scores
    drift_threshold: float = 0.3      # Kolmogorov-Smirnov D above this: model_drift health event
    drift_tail_ratio: float = 5.0     # or: this many times more recent scores above the training 99th percentile than 1%


@dataclass(frozen=True)
class CalendarSpec:
    hour_of_day: bool = False         # time of day (sin/cos) as MVAD input
    weekday: bool = False             # day of the week (sin/cos) as MVAD input


@dataclass(frozen=True)
class MvadSpec:
    sliding_window: int = 48          # input_size = sliding_window // 2 buckets of context
    epochs: int = 20
    batch_size: int = 64
    interval: int = 1                 # stride of training windows (the library's 10 trains nothing on days of data)
    windows_per_epoch: int = 640      # each epoch trains on a fresh random sample of this many windows
    lr: float = 1e-3
    seed: int = 42
    min_steps: int = 100              # a fit with fewer optimiser steps is a failure, not a model


@dataclass(frozen=True)
class SeasonalSpec:
    weekday: bool = False             # per weekday and hour instead of per hour of day
    direction: str = "up"             # up: only increases are anomalous; both: drops too
    min_scale: float = 1.0            # floor of the robust scale, so a quiet hour of zeros is not infinitely tight


@dataclass(frozen=True)
class SeveritySpec:
    quantile: float = 0.999           # no longer used: the alert budget sets the threshold (kept so old files load)
    medium: float = 2.0               # exceedance for each tier: 1 at the budget's tail probability, +1 per
    high: float = 3.0                 # ten times rarer (2: 10x, 3: 100x, 4: 1000x rarer than the threshold)
    critical: float = 4.0


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    features: tuple[FeatureSpec, ...]
    source_file: Path | None = None
    enabled: bool = True
    bucket_minutes: int = 5
    entity: EntitySpec | None = None
    detectors: tuple[str, ...] = ("mvad", "seasonal")
    combine: str = "any"              # any: one detector suffices; all: every detector must agree
    training: TrainingSpec = TrainingSpec()
    mvad: MvadSpec = MvadSpec()
    seasonal: SeasonalSpec = SeasonalSpec()
    severity: SeveritySpec = SeveritySpec()
    mitre: tuple[str, ...] = ()
    source: str = "alerts"            # alerts | flows (normalised NetFlow events, see netflow/)
    flows_file: str = ""              # source flows: default <prefix>/logs/anomaly/netflow.json
    calendar: CalendarSpec = CalendarSpec()
    budget_share: float = 1.0         # weight of this scenario in the installation's alert budget
    alerts_per_day: float = 1.0       # its share of the budget in false alarms a day (share_budget)

    @property
    def bucket_seconds(self) -> int:
        return self.bucket_minutes * 60

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def has_rare_features(self) -> bool:
        return any(f.aggregation == "rare" for f in self.features)


@dataclass(frozen=True)
class RunSpec:
    grace_seconds: int = 120          # a bucket is scored this long after it ends (analysisd lag)
    max_catchup_buckets: int = 288    # after downtime, score at most this many buckets per scenario per run
    auto_train: bool = True           # the first run trains when enough history exists
    no_data_hours: float = 6.0        # no alert at all for this long: no_data health event
    threads: int = 1                  # torch CPU threads; 2 is only ~10% faster alone and 10x slower on a busy manager
    device: str = "cpu"               # cpu | cuda
    keep_models: int = 5              # model versions kept per scenario (models list | show | rollback)


@dataclass(frozen=True)
class IndexerSpec:
    """The Wazuh indexer (OpenSearch 2.x): where alerts are read from and anomalies shipped to."""

    hosts: tuple[str, ...] = ("https://127.0.0.1:9200",)
    index: str = "wazuh-alerts-*"                  # the alert indices (wazuh-alerts-4.x-YYYY.MM.DD)
    time_field: str = "timestamp"
    ca: str = "/etc/filebeat/certs/root-ca.pem"    # the CA Filebeat already trusts on a manager
    verify: bool = True                            # false only for a lab: the password would go to anyone
    client_cert: str = ""
    client_key: str = ""
    username: str = ""                             # empty: from username_env, then the manager's keystore
    password: str = field(default="", repr=False)  # empty: from password_env, then the manager's keystore; never shown
    username_env: str = "WAZUH_ANOMALY_INDEXER_USERNAME"
    password_env: str = "WAZUH_ANOMALY_INDEXER_PASSWORD"
    keystore: bool = True                          # read missing credentials with bin/wazuh-keystore -f indexer
    timeout_seconds: float = 30.0
    retries: int = 3                               # per request, with exponential backoff
    page_size: int = 5000                          # documents per page of the raw-document path
    buckets_per_request: int = 2000                # time buckets per aggregation request (max_buckets is 65535)
    precision_threshold: int = 3000                # distinct counts are exact up to this many values per bucket (costs 8 bytes each per bucket on the indexer)


@dataclass(frozen=True)
class ShippingSpec:
    """Anomalies also written to indexer data streams wazuh-anomaly-<scenario>."""

    enabled: bool = False
    scenarios: tuple[str, ...] = ()                # empty: every scenario
    prefix: str = "wazuh-anomaly"
    spool_dir: str = ""                            # default: <prefix>/var/anomaly/spool
    spool_max_mb: int = 100                        # beyond this the oldest spooled anomalies are dropped (anomalies.json keeps them)
    batch_size: int = 500
    rollover_age: str = "1d"                       # ISM policy (where the index-management plugin exists)
    rollover_size: str = "5gb"
    rollover_docs: int = 10_000_000
    delete_after_days: int = 90


@dataclass(frozen=True)
class Config:
    layout: Layout
    alerts_dir: Path
    anomalies_file: Path
    models_dir: Path
    state_dir: Path
    source_type: str = "alerts_file"
    run: RunSpec = RunSpec()
    config_file: Path | None = None
    indexer: IndexerSpec = IndexerSpec()
    shipping: ShippingSpec = ShippingSpec()
    alerts_per_day: float = 1.0                    # false alarms a day for the whole installation (share_budget)
    realtime_budget_share: float = 1.0             # the real-time path's weight in it, beside each scenario's budget_share


# --------------------------------------------------------------------------- parsing

class YamlReader:
    """Reads one mapping of a YAML file, naming the file and key in every error."""

    def __init__(self, data: Any, file: Path | str, where: str = ""):
        self.file = file
        self.where = where
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: {where or 'the top level'} must be a mapping of keys to values.")
        self.data = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def fail(self, name: str, what: str) -> ConfigError:
        return ConfigError(f"{self.file}: key '{self.key(name)}' {what}.")

    def get(self, name: str, kind: type | tuple, default: Any = None, *, required: bool = False) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.fail(name, "is required")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is bool and not isinstance(value, bool) or (kind is not bool and isinstance(value, bool)):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {value!r}")
        if not isinstance(value, kind):
            raise self.fail(name, f"must be {_kind_name(kind)}, not {value!r}")
        return value

    def sub(self, name: str) -> "YamlReader":
        self.used.add(name)
        return YamlReader(self.data.get(name), self.file, self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used, key=str)
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), sorted(self.used), n=1)
            hint = f"did you mean '{self.key(close[0])}'?" if close else "check its spelling against docs/configuration.md"
            raise self.fail(unknown[0], f"is not a known setting ({hint})")


def _kind_name(kind: type | tuple) -> str:
    names = {int: "a whole number", float: "a number", str: "text", bool: "true or false",
             list: "a list", dict: "a mapping"}
    if isinstance(kind, tuple) and set(kind) == {int, float}:
        return names[float]
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return names.get(kind, kind.__name__)


def _positive(r: YamlReader, name: str, value: float, *, allow_zero: bool = False) -> float:
    if value < 0 or (value == 0 and not allow_zero):
        raise r.fail(name, f"must be {'zero or more' if allow_zero else 'more than zero'}, not {value}")
    return value


ABSENT = object()


def read_yaml_file(path: Path, *, missing_ok: bool = False) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if missing_ok:
            return ABSENT
        raise ConfigError(f"{path}: file not found; run install.sh or pass --config.") from None
    except OSError as exc:  # permissions, a directory, a symlink loop
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); run as root or fix its permissions.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text.") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{path}: {problem}{where}; fix the YAML syntax.") from None


def _parse_condition(r: YamlReader, key: str, spec: Any) -> Condition:
    field_name = FILTER_SHORTHANDS.get(key, key) if isinstance(key, str) else ""
    if not re.fullmatch(r"[A-Za-z0-9_@\-]+(\.[A-Za-z0-9_@\-]+)*", field_name):
        raise r.fail(key, "is not a dotted field name such as rule.groups or data.srcip")
    if isinstance(spec, (str, int, float)) and not isinstance(spec, bool):
        return Condition(field_name, equals=(str(spec),))
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in spec):
            raise r.fail(key, "must be a non-empty list of values")
        return Condition(field_name, equals=tuple(str(v) for v in spec))
    if isinstance(spec, dict):
        c = YamlReader(spec, r.file, r.key(key))
        minimum = c.get("min", (int, float))
        maximum = c.get("max", (int, float))
        prefix = c.get("prefix", str)
        regex = c.get("regex", str)
        exists = c.get("exists", bool)
        negated = c.get("not", (list, str, int), None)
        c.done()
        if regex is not None:
            try:
                re.compile(regex)
            except re.error as exc:
                raise c.fail("regex", f"is not a valid regular expression ({exc})") from None
        if isinstance(negated, (str, int)):
            negated = [negated]
        if all(v is None for v in (minimum, maximum, prefix, regex, exists, negated)):
            raise r.fail(key, f"needs at least one of {', '.join(sorted(CONDITION_KEYS))}")
        if minimum is not None and maximum is not None and minimum > maximum:
            raise c.fail("min", f"is {minimum}, above max {maximum}; no value could match")
        return Condition(field_name, not_in=tuple(str(v) for v in negated or ()),
                         min=None if minimum is None else float(minimum),
                         max=None if maximum is None else float(maximum),
                         prefix=prefix, regex=regex, exists=exists)
    raise r.fail(key, "must be a value, a list of values or a mapping such as {min: 7}")


def _parse_features(r: YamlReader) -> tuple[FeatureSpec, ...]:
    items = r.get("features", list, required=True)
    if not items:
        raise r.fail("features", "must list at least one feature")
    features: list[FeatureSpec] = []
    for i, item in enumerate(items):
        f = YamlReader(item, r.file, f"features[{i}]")
        name = f.get("name", str, required=True)
        if not NAME_RE.match(name):
            raise f.fail("name", "must be lower-case letters, digits and underscores, starting with a letter")
        if name in {x.name for x in features}:
            raise f.fail("name", f"repeats the feature name '{name}'")
        aggregation = f.get("aggregation", str, "count")
        if aggregation not in AGGREGATIONS:
            raise f.fail("aggregation", f"must be one of {', '.join(AGGREGATIONS)}, not '{aggregation}'")
        field_name = f.get("field", str)
        if aggregation != "count" and not field_name:
            raise f.fail("field", f"is required for aggregation '{aggregation}'")
        max_seen = f.get("max_seen", int, FeatureSpec.max_seen)
        if max_seen < 0:
            raise f.fail("max_seen", "must be zero (never seen before) or more")
        if aggregation != "rare" and "max_seen" in f.data:
            raise f.fail("max_seen", "only applies to aggregation 'rare'")
        flt = f.sub("filter")
        conditions = tuple(_parse_condition(flt, k, v) for k, v in flt.data.items())
        flt.used.update(flt.data)
        direction = f.get("direction", str, "")
        if direction not in ("", "up", "down", "both"):
            raise f.fail("direction", f"must be 'up', 'down' or 'both', not '{direction}'")
        min_deviation = _positive(f, "min_deviation", f.get("min_deviation", float, 0.0), allow_zero=True)
        min_relative = _positive(f, "min_relative_deviation", f.get("min_relative_deviation", float, 0.0),
                                 allow_zero=True)
        t = f.sub("text")
        text_up, text_down = t.get("up", str, "").strip(), t.get("down", str, "").strip()
        t.done()
        f.done()
        features.append(FeatureSpec(name, aggregation, field_name, conditions, max_seen, direction or "",
                                    min_deviation, min_relative, text_up, text_down))
    return tuple(features)


def parse_scenario(data: Any, file: Path | str) -> Scenario:
    """Validate one scenario mapping; raises ConfigError naming file and key."""
    r = YamlReader(data, file)
    name = r.get("name", str, required=True)
    if not NAME_RE.match(name):
        raise r.fail("name", "must be lower-case letters, digits and underscores, starting with a letter")
    description = r.get("description", str, required=True).strip()
    enabled = r.get("enabled", bool, Scenario.enabled)
    bucket_minutes = r.get("bucket_minutes", int, Scenario.bucket_minutes)
    if bucket_minutes < 1 or 1440 % bucket_minutes:
        raise r.fail("bucket_minutes", "must divide a day evenly (1, 5, 10, 15, 30, 60 …)")
    features = _parse_features(r)

    entity = None
    if r.data.get("entity") is not None:
        e = r.sub("entity")
        entity = EntitySpec(e.get("field", str, required=True), e.get("top", int, EntitySpec.top))
        _positive(e, "top", entity.top)
        e.done()
    else:
        r.used.add("entity")

    detectors = r.get("detectors", list, list(Scenario.detectors))
    bad = [d for d in detectors if d not in DETECTORS]
    if bad or not detectors:
        raise r.fail("detectors", f"must list one or more of {', '.join(DETECTORS)}")
    combine = r.get("combine", str, Scenario.combine)
    if combine not in ("any", "all"):
        raise r.fail("combine", "must be 'any' or 'all'")

    t = r.sub("training")
    training = TrainingSpec(
        lookback_days=_positive(t, "lookback_days", t.get("lookback_days", float, TrainingSpec.lookback_days)),
        min_history_hours=_positive(t, "min_history_hours", t.get("min_history_hours", float, TrainingSpec.min_history_hours)),
        retrain_every_days=_positive(t, "retrain_every_days", t.get("retrain_every_days", float, TrainingSpec.retrain_every_days)),
        max_model_age_days=_positive(t, "max_model_age_days", t.get("max_model_age_days", float, TrainingSpec.max_model_age_days)),
        drift_buckets=int(_positive(t, "drift_buckets", t.get("drift_buckets", int, TrainingSpec.drift_buckets))),
        drift_threshold=t.get("drift_threshold", float, TrainingSpec.drift_threshold),
        drift_tail_ratio=_positive(t, "drift_tail_ratio", t.get("drift_tail_ratio", float, TrainingSpec.drift_tail_ratio)),
    )
    if not 0 < training.drift_threshold <= 1:
        raise t.fail("drift_threshold", "must be above 0 and at most 1 (a Kolmogorov-Smirnov distance)")
    t.done()

    c = r.sub("calendar")
    calendar = CalendarSpec(hour_of_day=c.get("hour_of_day", bool, CalendarSpec.hour_of_day),
                            weekday=c.get("weekday", bool, CalendarSpec.weekday))
    c.done()
    if (calendar.hour_of_day or calendar.weekday) and "mvad" not in detectors:
        raise c.fail("hour_of_day" if calendar.hour_of_day else "weekday",
                     "only applies to the mvad detector; add mvad to detectors, or use seasonal.weekday")
    clash = [f.name for f in features if f.name.startswith("calendar_")]
    if clash and (calendar.hour_of_day or calendar.weekday):
        raise r.fail("features", f"has '{clash[0]}'; names starting with calendar_ are kept for calendar features")

    m = r.sub("mvad")
    mvad = MvadSpec(
        sliding_window=m.get("sliding_window", int, MvadSpec.sliding_window),
        epochs=m.get("epochs", int, MvadSpec.epochs),
        batch_size=m.get("batch_size", int, MvadSpec.batch_size),
        interval=m.get("interval", int, MvadSpec.interval),
        windows_per_epoch=m.get("windows_per_epoch", int, MvadSpec.windows_per_epoch),
        lr=m.get("lr", float, MvadSpec.lr),
        seed=m.get("seed", int, MvadSpec.seed),
        min_steps=m.get("min_steps", int, MvadSpec.min_steps),
    )
    m.done()
    if mvad.sliding_window < 8:
        raise m.fail("sliding_window", "must be at least 8 buckets")
    for key in ("epochs", "batch_size", "interval", "windows_per_epoch"):
        _positive(m, key, getattr(mvad, key))

    s = r.sub("seasonal")
    seasonal = SeasonalSpec(
        weekday=s.get("weekday", bool, SeasonalSpec.weekday),
        direction=s.get("direction", str, SeasonalSpec.direction),
        min_scale=_positive(s, "min_scale", s.get("min_scale", float, SeasonalSpec.min_scale)),
    )
    if seasonal.direction not in ("up", "both"):
        raise s.fail("direction", "must be 'up' or 'both'")
    s.done()
    # A feature without a direction of its own follows the seasonal detector's.
    features = tuple(f if f.direction else replace(f, direction=seasonal.direction) for f in features)

    v = r.sub("severity")
    severity = SeveritySpec(
        quantile=v.get("quantile", float, SeveritySpec.quantile),
        medium=v.get("medium", float, SeveritySpec.medium),
        high=v.get("high", float, SeveritySpec.high),
        critical=v.get("critical", float, SeveritySpec.critical),
    )
    v.done()
    if not 0.5 <= severity.quantile < 1:
        raise v.fail("quantile", "must be at least 0.5 and below 1 (e.g. 0.999 flags about 1 in 1000 training buckets)")
    if not 1 <= severity.medium <= severity.high <= severity.critical:
        raise v.fail("medium", f"({severity.medium:g}), '{v.key('high')}' ({severity.high:g}) and '{v.key('critical')}' "
                               f"({severity.critical:g}) must be increasing multiples of the threshold, all at least 1")

    source = r.get("source", str, Scenario.source)
    if source not in SCENARIO_SOURCES:
        raise r.fail("source", f"must be one of {', '.join(SCENARIO_SOURCES)}, not '{source}'")
    flows_file = r.get("flows_file", str, Scenario.flows_file)
    if flows_file and source != "flows":
        raise r.fail("flows_file", "only applies to 'source: flows'")

    budget_share = _positive(r, "budget_share", r.get("budget_share", float, Scenario.budget_share))
    mitre = r.get("mitre", list, [])
    for technique in mitre:
        if not isinstance(technique, str) or not MITRE_RE.match(technique):
            raise r.fail("mitre", f"has '{technique}', which is not a MITRE ATT&CK id such as T1110 or T1059.004")
    r.done()
    return Scenario(name=name, description=description, features=features,
                    source_file=Path(file) if file else None, enabled=enabled,
                    bucket_minutes=bucket_minutes, entity=entity, detectors=tuple(detectors),
                    combine=combine, training=training, mvad=mvad, seasonal=seasonal,
                    severity=severity, mitre=tuple(mitre), source=source, flows_file=flows_file,
                    calendar=calendar, budget_share=budget_share)


def load_scenario(path: Path) -> Scenario:
    return parse_scenario(read_yaml_file(path), path)


def load_scenarios(directory: Path) -> tuple[list[Scenario], list[ConfigError]]:
    """Every scenario file of a directory; a broken file is reported, never fatal to the others."""
    scenarios: list[Scenario] = []
    errors: list[ConfigError] = []
    # listed by hand: glob() and is_dir() would turn an unreadable directory into no scenarios or a traceback
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return scenarios, [ConfigError(f"{directory}: scenario directory not found; run install.sh or create it.")]
    except OSError as exc:
        return scenarios, [ConfigError(f"{directory}: cannot be read ({exc.strerror}); run as root or fix its permissions.")]
    seen: dict[str, Path] = {}
    for path in (directory / n for n in names if fnmatch.fnmatchcase(n, "*.y*ml")):
        try:
            scenario = load_scenario(path)
        except ConfigError as exc:
            exc.path = path
            errors.append(exc)
            continue
        if scenario.name in seen:
            errors.append(ConfigError(f"{path}: scenario name '{scenario.name}' is already used by {seen[scenario.name]}; rename one."))
            continue
        seen[scenario.name] = path
        scenarios.append(scenario)
    return share_budget(scenarios, Config.alerts_per_day, Config.realtime_budget_share), errors


def share_budget(scenarios: list[Scenario], alerts_per_day: float, realtime_share: float) -> list[Scenario]:
    """The scenarios with their share of the installation's false-alarm budget: the
    enabled scenarios and the real-time path split `alerts_per_day` by weight
    (budget_share, realtime_budget_share)."""
    total = sum(s.budget_share for s in scenarios if s.enabled) + realtime_share
    return [replace(s, alerts_per_day=alerts_per_day * s.budget_share / total) if total > 0 else s
            for s in scenarios]


def realtime_alerts_per_day(config: "Config", scenarios: list[Scenario]) -> float:
    """The real-time path's share of the budget, in false alarms a day."""
    total = sum(s.budget_share for s in scenarios if s.enabled) + config.realtime_budget_share
    return config.alerts_per_day * config.realtime_budget_share / total if total > 0 else 0.0


def load_config(layout: Layout, config_file: Path | None = None) -> Config:
    """The global configuration; a missing default file means all defaults."""
    path = config_file or layout.config_file
    # read, not exists(): exists() raises on an etc/anomaly the user cannot enter
    data = read_yaml_file(path, missing_ok=config_file is None)
    found = data is not ABSENT
    r = YamlReader(data if found else {}, path)
    src = r.sub("source")
    source_type = src.get("type", str, "alerts_file")
    if source_type not in SOURCE_TYPES:
        raise src.fail("type", "must be 'alerts_file' (the manager's own alerts.json) or 'indexer' (the Wazuh indexer)")
    alerts_dir = src.get("alerts_dir", str, "") or str(layout.alerts_dir)
    src.done()
    out = r.sub("output")
    anomalies_file = out.get("anomalies_file", str, "") or str(layout.anomalies_file)
    out.done()
    models_dir = r.get("models_dir", str, "") or str(layout.models_dir)
    state_dir = r.get("state_dir", str, "") or str(layout.state_dir)
    rr = r.sub("run")
    run = RunSpec(
        grace_seconds=int(_positive(rr, "grace_seconds", rr.get("grace_seconds", int, RunSpec.grace_seconds), allow_zero=True)),
        max_catchup_buckets=int(_positive(rr, "max_catchup_buckets", rr.get("max_catchup_buckets", int, RunSpec.max_catchup_buckets))),
        auto_train=rr.get("auto_train", bool, RunSpec.auto_train),
        no_data_hours=_positive(rr, "no_data_hours", rr.get("no_data_hours", float, RunSpec.no_data_hours)),
        threads=int(_positive(rr, "threads", rr.get("threads", int, RunSpec.threads))),
        device=rr.get("device", str, RunSpec.device),
        keep_models=int(_positive(rr, "keep_models", rr.get("keep_models", int, RunSpec.keep_models))),
    )
    if run.device not in ("cpu", "cuda"):
        raise rr.fail("device", "must be 'cpu' or 'cuda'")
    rr.done()
    indexer = _parse_indexer(r.sub("indexer"))
    shipping = _parse_shipping(r.sub("shipping"))
    alerts_per_day = _positive(r, "alerts_per_day", r.get("alerts_per_day", float, Config.alerts_per_day))
    realtime_share = _positive(r, "realtime_budget_share", r.get("realtime_budget_share", float,
                                                                 Config.realtime_budget_share), allow_zero=True)
    r.done()
    return Config(layout=layout, alerts_dir=Path(alerts_dir), anomalies_file=Path(anomalies_file),
                  models_dir=Path(models_dir), state_dir=Path(state_dir), source_type=source_type,
                  run=run, config_file=path if found else None, indexer=indexer, shipping=shipping,
                  alerts_per_day=alerts_per_day, realtime_budget_share=realtime_share)


def _parse_indexer(x: YamlReader) -> IndexerSpec:
    d = IndexerSpec
    hosts = x.get("hosts", (list, str), list(d.hosts))
    hosts = [hosts] if isinstance(hosts, str) else hosts
    if not hosts or not all(isinstance(h, str) and re.match(r"^https?://[^/\s]+/?$", h) for h in hosts):
        raise x.fail("hosts", "must list URLs such as https://indexer-1:9200")
    spec = IndexerSpec(
        hosts=tuple(h.rstrip("/") for h in hosts),
        index=x.get("index", str, d.index), time_field=x.get("time_field", str, d.time_field),
        ca=x.get("ca", str, d.ca), verify=x.get("verify", bool, d.verify),
        client_cert=x.get("client_cert", str, d.client_cert), client_key=x.get("client_key", str, d.client_key),
        username=x.get("username", str, d.username), password=x.get("password", str, d.password),
        username_env=x.get("username_env", str, d.username_env), password_env=x.get("password_env", str, d.password_env),
        keystore=x.get("keystore", bool, d.keystore),
        timeout_seconds=_positive(x, "timeout_seconds", x.get("timeout_seconds", float, d.timeout_seconds)),
        retries=int(_positive(x, "retries", x.get("retries", int, d.retries), allow_zero=True)),
        page_size=int(_positive(x, "page_size", x.get("page_size", int, d.page_size))),
        buckets_per_request=int(_positive(x, "buckets_per_request", x.get("buckets_per_request", int, d.buckets_per_request))),
        precision_threshold=int(_positive(x, "precision_threshold", x.get("precision_threshold", int, d.precision_threshold))),
    )
    if spec.precision_threshold > 40000:
        raise x.fail("precision_threshold", "must be at most 40000 (OpenSearch's limit for exact distinct counts)")
    if bool(spec.client_cert) != bool(spec.client_key):
        raise x.fail("client_cert" if not spec.client_cert else "client_key", "must be set together with its pair (client_cert and client_key)")
    x.done()
    return spec


def _parse_shipping(x: YamlReader) -> ShippingSpec:
    d = ShippingSpec
    scenarios = x.get("scenarios", list, [])
    if not all(isinstance(n, str) and NAME_RE.match(n) for n in scenarios):
        raise x.fail("scenarios", "must list scenario names such as authentication_failures")
    prefix = x.get("prefix", str, d.prefix)
    if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,100}", prefix):
        raise x.fail("prefix", "must be a lower-case index name prefix such as wazuh-anomaly")
    spec = ShippingSpec(
        enabled=x.get("enabled", bool, d.enabled), scenarios=tuple(scenarios), prefix=prefix,
        spool_dir=x.get("spool_dir", str, d.spool_dir),
        spool_max_mb=int(_positive(x, "spool_max_mb", x.get("spool_max_mb", int, d.spool_max_mb))),
        batch_size=int(_positive(x, "batch_size", x.get("batch_size", int, d.batch_size))),
        rollover_age=x.get("rollover_age", str, d.rollover_age), rollover_size=x.get("rollover_size", str, d.rollover_size),
        rollover_docs=int(_positive(x, "rollover_docs", x.get("rollover_docs", int, d.rollover_docs))),
        delete_after_days=int(_positive(x, "delete_after_days", x.get("delete_after_days", int, d.delete_after_days))),
    )
    if not re.fullmatch(r"\d+[smhd]", spec.rollover_age):
        raise x.fail("rollover_age", "must be a duration such as 1d or 12h")
    if not re.fullmatch(r"\d+(b|kb|mb|gb|tb)", spec.rollover_size):
        raise x.fail("rollover_size", "must be a size such as 5gb or 500mb")
    x.done()
    return spec
