"""Configuration: one global file and one YAML file per scenario, validated by one schema.

`etc/anomaly/config.yaml` holds what applies to every scenario (source, output, run
limits, device, indexer, shipping); `etc/anomaly/scenarios/*.yaml` each declare one
scenario: what to count per time bucket, how to split by entity, which detectors score
it and how severities are tiered. Each key is declared once below, with its type,
default, bounds and description (docs/configuration.md is generated from it by
scripts/gen-config-docs.py); core/schema.py turns every mistake into one sentence naming
the file and the key, all of a file's mistakes at once.

Adding a key: one line in its section below (`name: Type = doc("what it does", default)`),
plus a check in the section's `_check` when it depends on other keys; then run
scripts/gen-config-docs.py.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import AfterValidator, BeforeValidator, Field, WrapValidator, model_validator

from .errors import ConfigError
from .filters import CONDITION_KEYS, FILTER_SHORTHANDS, Condition
from .paths import Layout
from .registry import AGGREGATIONS as AGGREGATION_REGISTRY, DETECTORS as DETECTOR_REGISTRY, scenario_source_names
from .schema import ABSENT, Bool, Float, Int, Str, doc, problem, read_yaml_file, section, validate

# The built-in names, for the generated reference; validation asks the registries
# (core/registry.py), so a registered detector, aggregation or source is accepted.
AGGREGATIONS = ("count", "distinct", "max", "mean", "sum", "rare")
DETECTORS = ("mvad", "seasonal", "silence")
SCENARIO_SOURCES = ("alerts", "flows")   # what a scenario counts: Wazuh alerts or NetFlow flow events
SOURCE_TYPES = ("alerts_file", "indexer")
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MITRE_RE = re.compile(r"^T\d{4}(\.\d{3})?$")
FIELD_RE = re.compile(r"^[A-Za-z0-9_@\-]+(\.[A-Za-z0-9_@\-]+)*$")


# --------------------------------------------------------------------------- value types

def choice(values: tuple[str, ...], wording: str | None = None):
    """Text that must be one of `values` (listed in the docs as the allowed values)."""
    def check(value: str) -> str:
        if value not in values:
            if wording:
                raise problem(wording)
            if len(values) == 2:
                raise problem(f"must be '{values[0]}' or '{values[1]}', not {value!r}")
            raise problem(f"must be one of {', '.join(values)}, not '{value}'")
        return value
    return Annotated[str, Field(strict=True, json_schema_extra={"choices": list(values)}), AfterValidator(check)]


def _name(value: str) -> str:
    if not NAME_RE.match(value):
        raise problem("must be lower-case letters, digits and underscores, starting with a letter")
    return value


# The real-time filters' own keys before there was one filter language, and what to write now.
OLD_FILTER_KEYS = {
    "not_groups": "rule.groups: {not: [...]}",
    "rule_ids": "rule_id: [...]",
    "min_level": "level: {min: ...}",
    "ignore": "<field>: {not: [...]} for each field",
    "ignore_prefixes": "<field>: {not_prefix: [...]} for each field",
}


def _field_name(value: Any) -> str:
    if not isinstance(value, str) or not FIELD_RE.match(value):
        raise problem("is not a dotted field name such as rule.groups or data.srcip")
    if value in OLD_FILTER_KEYS:
        raise problem(f"is no longer a filter key; write {OLD_FILTER_KEYS[value]} (docs/configuration.md, "
                      f"the filter language)")
    if "." not in value and value not in FILTER_SHORTHANDS:
        import difflib
        close = difflib.get_close_matches(value, list(FILTER_SHORTHANDS), n=1, cutoff=0.75)
        if close:
            raise problem(f"is not a shorthand (did you mean '{close[0]}'?); write other fields in full, "
                          f"such as {FILTER_SHORTHANDS[close[0]]}")
    return value


Name = Annotated[str, Field(strict=True, json_schema_extra={"allowed": "lower-case letters, digits and _, starting with a letter"}),
               AfterValidator(_name)]
FieldName = Annotated[str, BeforeValidator(_field_name)]


def _values(value: Any) -> tuple[str, ...]:
    """A value or a list of values, as text."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or \
            not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        raise problem("must be a value or a non-empty list of values")
    return tuple(str(v) for v in value)


Values = Annotated[tuple[str, ...], BeforeValidator(_values)]


# --------------------------------------------------------------------------- the filter language

def _condition_input(value: Any) -> Any:
    # `field: value` and `field: [values]` are short for `field: {equals: [values]}`
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return {"equals": [value]}
    if isinstance(value, list):
        if not value or not all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
            raise problem("must be a non-empty list of values")
        return {"equals": value}
    if isinstance(value, dict):
        return value
    raise problem("must be a value, a list of values or a mapping such as {min: 7}")


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise problem(f"is not a valid regular expression ({exc})") from None
    return value


@section
class ConditionSpec:
    """A condition of a filter, as written."""

    equals: Optional[Values] = doc("the field equals one of these values (written as the value or list itself)", None)
    min: Optional[Float] = doc("the field is a number at least this", None)
    max: Optional[Float] = doc("the field is a number at most this", None)
    prefix: Optional[Str] = doc("a value starts with this text", None)
    regex: Optional[Annotated[Str, AfterValidator(_regex)]] = doc("a value matches this regular expression (searched)", None)
    exists: Optional[Bool] = doc("the field is present (true) or absent (false)", None)
    not_in: Optional[Values] = Field(None, validation_alias="not", description="no value is one of these")
    not_prefix: Optional[Values] = doc("no value starts with one of these", None)

    @model_validator(mode="after")
    def _check(self):
        parts = (self.equals, self.min, self.max, self.prefix, self.regex, self.exists, self.not_in, self.not_prefix)
        if all(p is None for p in parts):
            raise problem(f"needs at least one of {', '.join(CONDITION_KEYS)}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise problem(f"is {self.min:g}, above max {self.max:g}; no value could match", key="min")
        return self


def _conditions(value: Any, handler) -> tuple[Condition, ...]:
    if isinstance(value, tuple) and all(isinstance(c, Condition) for c in value):
        return value  # already validated (a copy made in code)
    specs = handler(value)
    return tuple(Condition(FILTER_SHORTHANDS.get(key, key), equals=c.equals or (), not_in=c.not_in or (),
                           min=c.min, max=c.max, prefix=c.prefix, regex=c.regex, exists=c.exists,
                           not_prefix=c.not_prefix or ())
                 for key, c in specs.items())


# Every condition must hold; see core/filters.py (also used by realtime.yaml).
Filter = Annotated[dict[FieldName, Annotated[ConditionSpec, BeforeValidator(_condition_input)]],
                   WrapValidator(_conditions)]


# --------------------------------------------------------------------------- scenarios

@section
class FeatureText:
    up: Annotated[Str, AfterValidator(str.strip)] = doc("what the feature going up means, e.g. 'a burst of successful logins'", "")
    down: Annotated[Str, AfterValidator(str.strip)] = doc("what the feature going down means", "")


@section
class FeatureSpec:
    """One feature: a number per time bucket (and entity) computed from the alerts that pass its filter."""

    name: Name = doc("the feature's name: lower-case letters, digits and underscores")
    aggregation: Str = Field("count", description="what is computed per bucket over the alerts that pass the filter",
                             json_schema_extra={"choices": list(AGGREGATIONS), "registry": "aggregation"})
    field: Optional[Str] = doc("the alert field aggregated (required except for count)", None)
    filter: Filter = doc("conditions an alert must meet to be counted (the filter language)", ())
    max_seen: Int = doc("rare: a value seen in at most this many earlier buckets (per entity) is rare", 2, ge=0)
    # Suppression (as OpenSearch AD's rules): a bucket is raised only when some feature
    # moved in the direction that matters by at least min_deviation (absolute) and
    # min_relative_deviation (a share of the expected value) from what its hour expects.
    direction: choice(("", "up", "down", "both"), "must be 'up', 'down' or 'both'") = doc(
        "the direction that matters: up, down or both (default: the scenario's seasonal.direction)", "")
    min_deviation: Float = doc("a smaller absolute deviation from the expected value is never raised", 0.0, ge=0)
    min_relative_deviation: Float = doc("a deviation smaller than this share of the expected value is never raised",
                                        0.0, ge=0)
    text: FeatureText = doc("what an anomaly led by this feature means, by direction (alert text)",
                            default_factory=lambda: FeatureText())

    @property
    def text_up(self) -> str:
        return self.text.up

    @property
    def text_down(self) -> str:
        return self.text.down

    @model_validator(mode="before")
    @classmethod
    def _max_seen_only_for_rare(cls, data):
        if isinstance(data, dict) and data.get("max_seen") is not None and data.get("aggregation", "count") != "rare":
            raise problem("only applies to aggregation 'rare'", key="max_seen")
        return data

    @model_validator(mode="after")
    def _check(self):
        allowed = AGGREGATION_REGISTRY.names()
        if self.aggregation not in allowed:
            raise problem(f"must be one of {', '.join(allowed)}, not '{self.aggregation}'", key="aggregation")
        if AGGREGATION_REGISTRY.get(self.aggregation).needs_field and not self.field:
            raise problem(f"is required for aggregation '{self.aggregation}'", key="field")
        return self


def _entity_top(value: Any) -> int | None:
    if value == "all" or value is None:    # None: built in code (YAML null reads as the default)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise problem(f"must be a number of entities or 'all', not {value!r}")
    if value <= 0:
        raise problem(f"must be more than zero, not {value}")
    return value


@section
class EntitySpec:
    field: Str = doc("the alert field each series is split by, e.g. agent.name, data.srcip, data.dstuser")
    top: Annotated[Optional[int], BeforeValidator(_entity_top)] = Field(
        None, description="model the N busiest entities; all (the default): every entity",
        json_schema_extra={"allowed": "a whole number above 0, or all"})
    mvad_top: Int = doc("the busiest N of them also get MVAD; the others the seasonal profile alone", 20, ge=0)
    forget_after_days: Float = doc("an entity without an alert for this long is dropped at the next training",
                                   7.0, gt=0, allow_inf_nan=False)


@section
class TrainingSpec:
    lookback_days: Float = doc("history used to train", 14.0, gt=0)
    min_history_hours: Float = doc("below this much history, wait and say how much is missing (gaps count as history)", 24.0, gt=0)
    retrain_every_days: Float = doc("retrain a model this old (when run.auto_train)", 7.0, gt=0)
    max_model_age_days: Float = doc("older than this: model_stale health event", 21.0, gt=0)
    drift_buckets: Int = doc("recent scored buckets compared with the training scores", 288, gt=0)
    drift_threshold: Float = doc("Kolmogorov-Smirnov distance above this: model_drift health event", 0.3,
                                 json_schema_extra={"allowed": "above 0, at most 1"})
    drift_tail_ratio: Float = doc("or: this many times more recent scores above the training 99th percentile "
                                  "than 1%", 5.0, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if not 0 < self.drift_threshold <= 1:
            raise problem("must be above 0 and at most 1 (a Kolmogorov-Smirnov distance)", key="drift_threshold")
        return self


@section
class CalendarSpec:
    hour_of_day: Bool = doc("time of day (sin/cos) as MVAD input", False)
    weekday: Bool = doc("day of the week (sin/cos) as MVAD input", False)


@section
class MvadSpec:
    sliding_window: Int = doc("input_size = sliding_window // 2 buckets of context", 48, ge=8)
    epochs: Int = doc("training epochs", 20, gt=0)
    batch_size: Int = doc("windows per optimiser step", 64, gt=0)
    interval: Int = doc("stride of training windows (the library's 10 trains nothing on days of data)", 1, gt=0)
    windows_per_epoch: Int = doc("each epoch trains on a fresh random sample of this many windows", 640, gt=0)
    lr: Float = doc("learning rate", 1e-3, gt=0)
    seed: Int = doc("random seed (the same data and seed give the same model)", 42)
    min_steps: Int = doc("a fit with fewer optimiser steps is a failure, not a model", 100, ge=0)


@section
class SeasonalSpec:
    weekday: Bool = doc("per weekday and hour instead of per hour of day", False)
    direction: choice(("up", "both")) = doc("up: only increases are anomalous; both: drops too", "up")
    min_scale: Float = doc("floor of the robust scale, so a quiet hour of zeros is not infinitely tight", 1.0, gt=0)


@section
class SeveritySpec:
    quantile: Float = doc("no longer used: the alert budget (alerts_per_day) sets the threshold; kept so older "
                          "files load", 0.999, json_schema_extra={"allowed": "at least 0.5, below 1"})
    medium: Float = doc("exceedance from which an anomaly is medium: 1 at the budget's tail probability, +1 for "
                        "each ten times rarer (2: 10x rarer than the threshold)", 2.0,
                        json_schema_extra={"allowed": "at least 1, at most high"})
    high: Float = doc("exceedance from which an anomaly is high (3: 100x rarer than the threshold)", 3.0,
                      json_schema_extra={"allowed": "at least medium, at most critical"})
    critical: Float = doc("exceedance from which an anomaly is critical (4: 1000x rarer than the threshold)", 4.0,
                          json_schema_extra={"allowed": "at least high"})

    @model_validator(mode="after")
    def _check(self):
        if not 0.5 <= self.quantile < 1:
            raise problem("must be at least 0.5 and below 1 (e.g. 0.999 flags about 1 in 1000 training buckets)",
                          key="quantile")
        if not 1 <= self.medium <= self.high <= self.critical:
            raise problem(f"({self.medium:g}), '{{at}}high' ({self.high:g}) and '{{at}}critical' ({self.critical:g}) "
                          f"must be increasing multiples of the threshold, all at least 1", key="medium")
        return self


def _mitre(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise problem(f"must be a list, not {value!r}")
    for technique in value:
        if not isinstance(technique, str) or not MITRE_RE.match(technique):
            raise problem(f"has '{technique}', which is not a MITRE ATT&CK id such as T1110 or T1059.004")
    return tuple(value)


def _divides_a_day(minutes: int) -> int:
    if minutes < 1 or 1440 % minutes:
        raise problem("must divide a day evenly (1, 5, 10, 15, 30, 60 …)")
    return minutes


def _features(value: tuple) -> tuple:
    if not value:
        raise problem("must list at least one feature")
    return value


def _scenario_source(value: str) -> str:
    allowed = scenario_source_names()
    if value not in allowed:
        raise problem(f"must be one of {', '.join(allowed)}, not '{value}'")
    return value


def _detectors(value: Any) -> tuple[str, ...]:
    allowed = DETECTOR_REGISTRY.names()
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(d, str) and d in allowed for d in value):
        raise problem(f"must list one or more of {', '.join(allowed)}")
    return tuple(value)


@section
class Scenario:
    name: Name = doc("the scenario's name: lower-case letters, digits and underscores (rules and files use it)")
    description: Annotated[Str, AfterValidator(str.strip)] = doc("one line shown in every anomaly of the scenario")
    features: Annotated[tuple[FeatureSpec, ...], AfterValidator(_features)] = doc(
        "what is computed per time bucket (and entity), one series each")
    source_file: Optional[Path] = Field(None, description="the file the scenario was read from",
                                        json_schema_extra={"internal": True})
    enabled: Bool = doc("a disabled scenario is validated but neither trained nor scored", True)
    bucket_minutes: Annotated[Int, AfterValidator(_divides_a_day)] = doc("length of a time bucket in minutes", 5,
                              json_schema_extra={"allowed": "divides a day: 1, 5, 10, 15, 30, 60 …"})
    entity: Optional[EntitySpec] = doc("split every feature per value of an alert field (the busiest N)", None)
    detectors: Annotated[tuple[str, ...], BeforeValidator(_detectors)] = Field(
        ("mvad", "seasonal"), description="the detectors that score the scenario",
        json_schema_extra={"choices": list(DETECTORS), "registry": "detector"})
    combine: choice(("any", "all")) = doc("any: one detector suffices; all: every detector must agree", "any")
    training: TrainingSpec = doc("how much history trains a model, and when it is retrained or stale",
                                 default_factory=TrainingSpec)
    mvad: MvadSpec = doc("the multivariate detector's training settings", default_factory=MvadSpec)
    seasonal: SeasonalSpec = doc("the seasonal baseline detector's settings", default_factory=SeasonalSpec)
    severity: SeveritySpec = doc("the alert budget and the severity tiers", default_factory=SeveritySpec)
    mitre: Annotated[tuple[str, ...], BeforeValidator(_mitre)] = doc(
        "MITRE ATT&CK technique ids carried by the scenario's anomalies", (),
        json_schema_extra={"allowed": "ids such as T1110 or T1059.004"})
    source: Annotated[Str, AfterValidator(_scenario_source)] = Field(
        "alerts", description="alerts: Wazuh alerts (from the installation's source.type); flows: the normalised "
                              "NetFlow events; or a registered source",
        json_schema_extra={"choices": list(SCENARIO_SOURCES), "registry": "source"})
    flows_file: Str = doc("source flows: the flow events file (default <prefix>/logs/anomaly/netflow.json)", "",
                          json_schema_extra={"allowed": "only with source: flows"})
    calendar: CalendarSpec = doc("opt-in calendar inputs of the MVAD detector", default_factory=CalendarSpec)
    budget_share: Float = doc("weight of this scenario in the installation's alert budget (alerts_per_day)", 1.0, gt=0)
    alerts_per_day: Float = Field(1.0, description="its share of the budget in false alarms a day (computed)",
                                  json_schema_extra={"internal": True})

    @model_validator(mode="after")
    def _check(self):
        names = [f.name for f in self.features]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise problem(f"repeats the feature name '{n}'", key=f"features[{i}].name")
        cal = self.calendar
        if (cal.hour_of_day or cal.weekday) and not any(
                getattr(DETECTOR_REGISTRY.get(d), "uses_calendar", False) for d in self.detectors):
            raise problem("only applies to the mvad detector; add mvad to detectors, or use seasonal.weekday",
                          key="calendar.hour_of_day" if cal.hour_of_day else "calendar.weekday")
        clash = [n for n in names if n.startswith("calendar_")]
        if clash and (cal.hour_of_day or cal.weekday):
            raise problem(f"has '{clash[0]}'; names starting with calendar_ are kept for calendar features",
                          key="features")
        if self.flows_file and self.source != "flows":
            raise problem("only applies to 'source: flows'", key="flows_file")
        # A feature without a direction of its own follows the seasonal detector's.
        if any(not f.direction for f in self.features):
            object.__setattr__(self, "features", tuple(
                f if f.direction else dataclasses.replace(f, direction=self.seasonal.direction) for f in self.features))
        return self

    @property
    def bucket_seconds(self) -> int:
        return self.bucket_minutes * 60

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def has_rare_features(self) -> bool:
        return any(f.aggregation == "rare" for f in self.features)


# --------------------------------------------------------------------------- config.yaml

@section
class RunSpec:
    grace_seconds: Int = doc("a bucket is scored this long after it ends, so late alerts are counted", 120, ge=0)
    max_catchup_buckets: Int = doc("after downtime, score at most this many buckets per scenario and run", 288, gt=0)
    auto_train: Bool = doc("the first run trains each scenario once enough history exists, and retrains when due",
                           True)
    no_data_hours: Float = doc("no alert at all for this long: no_data health event", 6.0, gt=0)
    threads: Int = doc("torch CPU threads; 2 is only ~10% faster alone and 10x slower on a busy manager", 1, gt=0)
    device: choice(("cpu", "cuda")) = doc("where MVAD trains and scores", "cpu")
    keep_models: Int = doc("model versions kept per scenario (models list | show | rollback)", 5, gt=0)


HOST_RE = re.compile(r"^https?://[^/\s]+/?$")


def _hosts(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(h, str) and HOST_RE.match(h) for h in value):
        raise problem("must list URLs such as https://indexer-1:9200")
    return tuple(h.rstrip("/") for h in value)


@section
class IndexerSpec:
    """The Wazuh indexer (OpenSearch 2.x): where alerts are read from and anomalies shipped to."""

    hosts: Annotated[tuple[str, ...], BeforeValidator(_hosts)] = doc(
        "indexer URLs (one, or a list)", ("https://127.0.0.1:9200",))
    index: Str = doc("the alert indices (wazuh-alerts-4.x-YYYY.MM.DD)", "wazuh-alerts-*")
    time_field: Str = doc("the alerts' time field", "timestamp")
    ca: Str = doc("the CA that signs the indexer's certificate (the one Filebeat already trusts on a manager)",
                  "/etc/filebeat/certs/root-ca.pem")
    verify: Bool = doc("verify TLS; false only for a lab: the password would go to anyone", True)
    client_cert: Str = doc("client certificate (set together with client_key)", "")
    client_key: Str = doc("client key (set together with client_cert)", "")
    username: Str = doc("empty: from username_env, then the manager's keystore", "")
    password: Str = Field("", repr=False, description="empty: from password_env, then the manager's keystore; "
                                                      "never shown")
    username_env: Str = doc("environment variable holding the user name", "WAZUH_ANOMALY_INDEXER_USERNAME")
    password_env: Str = doc("environment variable holding the password", "WAZUH_ANOMALY_INDEXER_PASSWORD")
    keystore: Bool = doc("read missing credentials with bin/wazuh-keystore -f indexer", True)
    timeout_seconds: Float = doc("per request", 30.0, gt=0)
    retries: Int = doc("per request, with exponential backoff", 3, ge=0)
    page_size: Int = doc("documents per page of the raw-document path", 5000, gt=0)
    buckets_per_request: Int = doc("time buckets per aggregation request (max_buckets is 65535)", 2000, gt=0)
    precision_threshold: Int = doc("distinct counts are exact up to this many values per bucket (costs 8 bytes "
                                   "each per bucket on the indexer)", 3000, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.precision_threshold > 40000:
            raise problem("must be at most 40000 (OpenSearch's limit for exact distinct counts)",
                          key="precision_threshold")
        if bool(self.client_cert) != bool(self.client_key):
            raise problem("must be set together with its pair (client_cert and client_key)",
                          key="client_cert" if not self.client_cert else "client_key")
        return self


def _scenario_names(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(n, str) and NAME_RE.match(n) for n in value):
        raise problem("must list scenario names such as authentication_failures")
    return tuple(value)


def _pattern(regex: str, wording: str):
    def check(value: str) -> str:
        if not re.fullmatch(regex, value):
            raise problem(wording)
        return value
    return AfterValidator(check)


@section
class ShippingSpec:
    """Anomalies also written to indexer data streams <prefix>-<scenario>."""

    enabled: Bool = doc("ship anomalies to the indexer", False)
    scenarios: Annotated[tuple[str, ...], BeforeValidator(_scenario_names)] = doc(
        "the scenarios shipped; empty: every scenario", ())
    prefix: Annotated[Str, _pattern(r"[a-z0-9][a-z0-9_.-]{0,100}", "must be a lower-case index name prefix such "
                                                                   "as wazuh-anomaly")] = doc(
        "data stream name prefix", "wazuh-anomaly")
    spool_dir: Str = doc("where anomalies wait while the indexer is away (default <prefix>/var/anomaly/spool)", "")
    spool_max_mb: Int = doc("beyond this the oldest spooled anomalies are dropped (anomalies.json keeps them)",
                            100, gt=0)
    batch_size: Int = doc("anomalies per bulk request", 500, gt=0)
    rollover_age: Annotated[Str, _pattern(r"\d+[smhd]", "must be a duration such as 1d or 12h")] = doc(
        "ISM policy rollover age (where the index-management plugin exists)", "1d")
    rollover_size: Annotated[Str, _pattern(r"\d+(b|kb|mb|gb|tb)", "must be a size such as 5gb or 500mb")] = doc(
        "ISM policy rollover size", "5gb")
    rollover_docs: Int = doc("ISM policy rollover document count", 10_000_000, gt=0)
    delete_after_days: Int = doc("ISM policy: shipped anomalies are deleted after this many days", 90, gt=0)


@section
class SourceSpec:
    type: choice(SOURCE_TYPES, "must be 'alerts_file' (the manager's own alerts.json) or 'indexer' "
                               "(the Wazuh indexer)") = doc(
        "alerts_file: the manager's own logs/alerts/alerts.json and its rotated files; indexer: the Wazuh indexer",
        "alerts_file")
    alerts_dir: Str = doc("the alerts directory (default <prefix>/logs/alerts)", "")


@section
class OutputSpec:
    anomalies_file: Str = doc("where anomalies are written (default <prefix>/logs/anomaly/anomalies.json, read by "
                              "the <localfile> block)", "")


@section
class ConfigFile:
    """etc/anomaly/config.yaml as written."""

    source: SourceSpec = doc("where alerts are read from", default_factory=SourceSpec)
    output: OutputSpec = doc("where anomalies are written", default_factory=OutputSpec)
    models_dir: Str = doc("trained models (default <prefix>/var/anomaly/models)", "")
    state_dir: Str = doc("run state (default <prefix>/var/anomaly/state)", "")
    run: RunSpec = doc("the scheduled run", default_factory=RunSpec)
    indexer: IndexerSpec = doc("the Wazuh indexer (source.type indexer, and shipping)", default_factory=IndexerSpec)
    shipping: ShippingSpec = doc("anomalies also shipped to indexer data streams", default_factory=ShippingSpec)
    alerts_per_day: Float = doc("false alarms a day for the whole installation, shared by the scenarios "
                                "(budget_share) and the real-time path (realtime_budget_share)", 1.0, gt=0)
    realtime_budget_share: Float = doc("the real-time path's weight in the budget, beside each scenario's "
                                       "budget_share", 1.0, ge=0)


@dataclasses.dataclass(frozen=True)
class Config:
    """The global configuration with every path resolved under the install layout."""

    layout: Layout
    alerts_dir: Path
    anomalies_file: Path
    models_dir: Path
    state_dir: Path
    source_type: str = "alerts_file"
    run: RunSpec = dataclasses.field(default_factory=RunSpec)
    config_file: Path | None = None
    indexer: IndexerSpec = dataclasses.field(default_factory=IndexerSpec)
    shipping: ShippingSpec = dataclasses.field(default_factory=ShippingSpec)
    alerts_per_day: float = 1.0                    # false alarms a day for the whole installation (share_budget)
    realtime_budget_share: float = 1.0             # the real-time path's weight in it, beside each scenario's budget_share


# --------------------------------------------------------------------------- loading

def parse_scenario(data: Any, file: Path | str) -> Scenario:
    """Validate one scenario mapping; raises ConfigError naming file and key (every problem of the file)."""
    return validate(Scenario, data, file, internal={"source_file": Path(file) if file else None})


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
    return [dataclasses.replace(s, alerts_per_day=alerts_per_day * s.budget_share / total) if total > 0 else s
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
    doc_ = validate(ConfigFile, data if found else {}, path)
    return Config(layout=layout, alerts_dir=Path(doc_.source.alerts_dir or layout.alerts_dir),
                  anomalies_file=Path(doc_.output.anomalies_file or layout.anomalies_file),
                  models_dir=Path(doc_.models_dir or layout.models_dir),
                  state_dir=Path(doc_.state_dir or layout.state_dir), source_type=doc_.source.type,
                  run=doc_.run, config_file=path if found else None, indexer=doc_.indexer, shipping=doc_.shipping,
                  alerts_per_day=doc_.alerts_per_day, realtime_budget_share=doc_.realtime_budget_share)
