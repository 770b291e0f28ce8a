"""The schema of `etc/anomaly/realtime.yaml` (part of the one configuration schema,
core/schema.py), and its compiled form: plain JSON-able dicts that the per-alert process
reads from its cache without importing YAML or pydantic (realtime/config.py).

Imported only when the YAML is parsed (`realtime validate`, `realtime learn`, or the
first alert after the file changed), never on the cached per-alert path.
"""
from __future__ import annotations

from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, model_validator

from ..core.config import FIELD_RE, Filter, Name, choice
from ..core.schema import Bool, Float, Int, Str, doc, problem, section, validate
from ..core.timeparse import parse_timestamp
from ..core.findings import SEVERITIES

DETECTOR_TYPES = ("new_value", "value_range", "frequency")
MODEL_TARGETS = ("fim", "command")


def _alert_fields(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise problem("must be a string or a list of strings")
    for f in value:
        if not FIELD_RE.match(str(f)):
            raise problem(f"names '{f}', which is not a dotted alert field such as data.srcip")
    return tuple(str(v) for v in value)


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise problem("must be a string or a list of strings")
    return tuple(str(v) for v in value)


def _time(value: Any) -> float | None:
    if value in (None, ""):
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if hasattr(value, "isoformat") and getattr(value, "tzinfo", None) is None and "T" in text:
        text += "+00:00"     # YAML reads 2026-12-01T00:00:00 as a naive datetime: UTC
    when = parse_timestamp(text if "T" in text else text + "T00:00:00+00:00")
    if when is None:
        raise problem(f"must be an ISO 8601 time with a zone such as 2026-12-01T00:00:00Z (got {value!r})")
    return when


AlertFields = Annotated[tuple[str, ...], BeforeValidator(_alert_fields)]
Strings = Annotated[tuple[str, ...], BeforeValidator(_strings)]
Time = Annotated[Optional[float], BeforeValidator(_time)]


@section
class DetectorSpec:
    """One first-seen detector."""

    type: choice(DETECTOR_TYPES) = doc("new_value: a value never seen for its key; value_range: a number "
                                       "outside the learned range; frequency: alerts per key and window "
                                       "outside the learned band")
    value: Optional[AlertFields] = doc("the alert field(s) whose values are learned (frequency: none)", None)
    key: AlertFields = doc("the alert field(s) values are learned per (none: one key for all)", ())
    filter: Filter = doc("which alerts the detector sees (the filter language)", ())
    severity: choice(SEVERITIES) = doc("severity of its findings", "medium")
    enabled: Bool = doc("a disabled detector is validated but never run", True)
    description: Str = doc("shown in every finding", "")
    learn_until: Time = doc("time at which learn mode ends (instead of learn_days)", None,
                            json_schema_extra={"allowed": "ISO 8601 with a zone, e.g. 2026-12-01T00:00:00Z"})
    learn_days: Optional[Float] = doc("learn mode lasts this long from the first alert (default: the top-level "
                                      "learn_days)", None, ge=0)
    max_keys: Optional[Int] = doc("keys tracked (default: the top-level max_keys)", None, ge=1)
    max_values_per_key: Optional[Int] = doc("values tracked per key (default: the top-level "
                                            "max_values_per_key)", None, ge=1)
    new_key_learn_hours: Float = doc("> 0: a key first seen after learning learns on its own this long", 0.0, ge=0)
    margin: Float = doc("value_range: the learned span is widened by this share on each side", 0.1, ge=0)
    window_minutes: Int = doc("frequency: the window", 10, ge=1)
    tolerance: Float = doc("frequency: above hi x (1 + tolerance) or below lo x (1 - tolerance) is reported",
                           0.5, ge=0)
    min_windows: Int = doc("frequency: complete windows learned before it reports", 3, ge=1)

    @model_validator(mode="after")
    def _check(self):
        if self.type != "frequency" and not self.value:
            raise problem("is required: the alert field(s) whose values are learned", key="value")
        if self.type == "value_range" and len(self.value) != 1:
            raise problem("must name exactly one numeric field for a value_range detector", key="value")
        return self


@section
class ModelSpec:
    """One rare-event model (IsolationForest on hashed features)."""

    target: choice(MODEL_TARGETS) = doc("fim: syscheck alerts; command: audit and sudo commands")
    severity: choice(SEVERITIES) = doc("severity of its findings (one tier up far above the threshold)", "high")
    enabled: Bool = doc("a disabled model is validated but never run", True)
    description: Str = doc("shown in every finding", "")
    quantile: Float = doc("the threshold: this quantile of the training events' own scores", 0.995, ge=0, le=1)
    trees: Int = doc("trees of the forest", 50, ge=1, le=500)
    sample_size: Int = doc("events per tree", 128, ge=2)
    dimensions: Int = doc("the hashed feature space", 64, ge=4, le=4096)
    ignore_users: Strings = doc("events of these users are left out of training and scoring", ())
    ignore_path_prefixes: Strings = doc("events under these paths are left out of training and scoring", ())
    min_training_events: Int = doc("fewer in the history: not trained (health alert)", 10, ge=1)
    training_days: Float = doc("history the wodle and realtime train learn from", 30.0, ge=0.01)
    retrain_every_days: Float = doc("the wodle retrains a model this old; 0: never from the wodle", 7.0, ge=0)
    filter: Filter = doc("which alerts the model sees (the filter language)", ())


@section
class RealtimeFile:
    """etc/anomaly/realtime.yaml as written."""

    learn_days: Float = doc("learn mode of each detector lasts this long from the first alert it sees", 7.0, ge=0)
    max_keys: Int = doc("keys tracked per detector; further keys are counted, not tracked", 5000, ge=1)
    max_values_per_key: Int = doc("values tracked per key; a key that reaches it is no longer reported on",
                                  200, ge=1)
    detectors: dict[Name, DetectorSpec] = doc("the first-seen detectors, by name", default_factory=dict)
    models: dict[Name, ModelSpec] = doc("the rare-event models, by name", default_factory=dict)

    @model_validator(mode="after")
    def _check(self):
        both = sorted(set(self.detectors) & set(self.models))
        if both:
            raise problem("names both a detector and a model; rename one", key=f"models.{both[0]}")
        return self


def _conditions(flt) -> list[dict]:
    return [c.as_dict() for c in flt]


def compile_config(doc_: RealtimeFile) -> dict:
    """The validated file as the plain dicts the per-alert path reads (and caches as JSON)."""
    top = {"learn_days": doc_.learn_days, "max_keys": doc_.max_keys, "max_values_per_key": doc_.max_values_per_key}
    detectors = []
    for name, d in doc_.detectors.items():
        detectors.append({
            "name": name, "type": d.type, "enabled": d.enabled, "key": list(d.key), "value": list(d.value or ()),
            "severity": d.severity, "description": d.description, "learn_until": d.learn_until,
            "learn_days": top["learn_days"] if d.learn_days is None else d.learn_days,
            "max_keys": top["max_keys"] if d.max_keys is None else d.max_keys,
            "max_values_per_key": top["max_values_per_key"] if d.max_values_per_key is None else d.max_values_per_key,
            "new_key_learn_hours": d.new_key_learn_hours, "margin": d.margin, "window_minutes": d.window_minutes,
            "tolerance": d.tolerance, "min_windows": d.min_windows, "filter": _conditions(d.filter),
        })
    models = []
    for name, m in doc_.models.items():
        models.append({
            "name": name, "target": m.target, "severity": m.severity, "enabled": m.enabled,
            "description": m.description, "quantile": m.quantile, "trees": m.trees, "sample_size": m.sample_size,
            "dimensions": m.dimensions, "ignore_users": list(m.ignore_users),
            "ignore_path_prefixes": list(m.ignore_path_prefixes), "min_training_events": m.min_training_events,
            "training_days": m.training_days, "retrain_every_days": m.retrain_every_days,
            "filter": _conditions(m.filter),
        })
    return {**top, "detectors": detectors, "models": models}


def parse(data: Any, file: str) -> dict:
    """The validated, compiled configuration of a parsed realtime.yaml."""
    return compile_config(validate(RealtimeFile, data, file))


# --------------------------------------------------------------------------- active-response.yaml

def _addresses(value: Any) -> tuple[str, ...]:
    import ipaddress
    if not isinstance(value, (list, tuple)):
        raise problem("must be a list of addresses or CIDR networks")
    for item in value:
        try:
            ipaddress.ip_network(str(item), strict=False)
        except ValueError:
            raise problem(f"holds '{item}', which is not an address or CIDR network") from None
    return tuple(str(v) for v in value)


def _internal(value: Any) -> Any:
    return value if value == "default" else _addresses(value)


@section
class ActiveResponseFile:
    """etc/anomaly/active-response.yaml as written (every key optional; a missing file: the defaults)."""

    min_severity: choice(SEVERITIES) = doc("anomalies below this severity never block", "critical")
    never_block: Annotated[tuple[str, ...], BeforeValidator(_addresses)] = doc(
        "your critical hosts and networks, never blocked, e.g. [203.0.113.10, 198.51.100.0/24]", ())
    internal_networks: Annotated[Any, BeforeValidator(_internal)] = doc(
        "never blocked: default (RFC 1918, 100.64/10, loopback, link-local, fc00::/7, multicast, broadcast) "
        "or your own list", "default")
    firewall: choice(("auto", "nftables", "iptables")) = doc(
        "auto: nftables where nft exists, else iptables", "auto")


def parse_active_response(data: Any, file: str) -> dict:
    """The validated active-response settings as the plain dict response.py uses."""
    doc_ = validate(ActiveResponseFile, data, file)
    return {"min_severity": doc_.min_severity, "never_block": list(doc_.never_block),
            "internal_networks": doc_.internal_networks if doc_.internal_networks == "default"
            else list(doc_.internal_networks), "firewall": doc_.firewall}
