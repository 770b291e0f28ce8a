"""`etc/anomaly/realtime.yaml`: the first-seen detectors and rare-event models, as data.

The integration must not import YAML on every alert (it costs more than the whole
rest of the run), so the validated configuration is also kept as JSON in
`var/anomaly/realtime/config.json`, tagged with the YAML file's size and mtime; the
YAML is parsed again only when it changed. Every error is one sentence naming the
file and the key.
"""
from __future__ import annotations

import os

from ..core.errors import ConfigError
from ..core import jsonio as fastjson

DETECTOR_TYPES = ("new_value", "value_range", "frequency")
MODEL_TARGETS = ("fim", "command")
SEVERITIES = ("low", "medium", "high", "critical")
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
FIELD_PATTERN = r"^[A-Za-z0-9_@-]+(?:\.[A-Za-z0-9_@-]+)*$"
CACHE_VERSION = 3

# Bounds of the learned state (documented in docs/realtime.md): per detector at most
# `max_keys` keys are tracked and per key at most `max_values_per_key` values.
DEFAULTS = {
    "learn_days": 7.0,
    "max_keys": 5000,
    "max_values_per_key": 200,
}
DETECTOR_DEFAULTS = {
    "enabled": True,
    "key": [],
    "severity": "medium",
    "description": "",
    "learn_until": None,
    "new_key_learn_hours": 0.0,
    "margin": 0.1,
    "window_minutes": 10,
    "tolerance": 0.5,
    "min_windows": 3,
}
MODEL_DEFAULTS = {
    "enabled": True,
    "severity": "high",
    "description": "",
    "quantile": 0.995,
    "trees": 50,
    "sample_size": 128,
    "dimensions": 64,
    "ignore_users": [],
    "ignore_path_prefixes": [],
    "min_training_events": 10,
    "training_days": 30,
    "retrain_every_days": 7,
}
FILTER_KEYS = ("groups", "not_groups", "rule_ids", "min_level", "ignore", "ignore_prefixes")


def _err(file: str, key: str, what: str) -> ConfigError:
    return ConfigError(f"{file}: key '{key}' {what}.")


def _strings(file: str, key: str, value, *, fields: bool = False) -> list[str]:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise _err(file, key, "must be a string or a list of strings")
    out = [str(v) for v in value]
    if fields:
        import re  # only when the YAML is parsed, never on the cached per-alert path
        for f in out:
            if not re.match(FIELD_PATTERN, f):
                raise _err(file, key, f"names '{f}', which is not a dotted alert field such as data.srcip")
    return out


def _number(file: str, key: str, value, *, minimum: float = 0, integer: bool = False, maximum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(file, key, "must be a number")
    if integer and int(value) != value:
        raise _err(file, key, "must be a whole number")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise _err(file, key, f"must be {bound} (got {value})")
    return int(value) if integer else float(value)


def _time(file: str, key: str, value) -> float | None:
    from .fields import parse_time
    if value in (None, ""):
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if hasattr(value, "tzinfo") and getattr(value, "tzinfo", None) is None and "T" in text:
        text += "+00:00"
    when = parse_time(text if "T" in text else text + "T00:00:00+00:00")
    if when is None:
        raise _err(file, key, f"must be an ISO 8601 time with a zone such as 2026-12-01T00:00:00Z (got {value!r})")
    return when


def _filter(file: str, where: str, raw) -> dict:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(file, where, "must be a mapping (groups, not_groups, rule_ids, min_level, ignore, ignore_prefixes)")
    out: dict = {}
    for k, v in raw.items():
        key = f"{where}.{k}"
        if k in ("groups", "not_groups", "rule_ids"):
            out[k] = _strings(file, key, v)
        elif k == "min_level":
            out[k] = _number(file, key, v, integer=True, maximum=16)
        elif k in ("ignore", "ignore_prefixes"):
            if not isinstance(v, dict):
                raise _err(file, key, "must map alert fields to lists of values")
            out[k] = {str(f): _strings(file, f"{key}.{f}", vals) for f, vals in v.items()}
            for f in out[k]:
                _strings(file, f"{key}", f, fields=True)
        else:
            raise _err(file, key, f"is unknown; use one of {', '.join(FILTER_KEYS)}")
    return out


def _detector(file: str, name, raw, top: dict) -> dict:
    import re
    where = f"detectors.{name}"
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise _err(file, where, "is not a valid name (lower case letters, digits and _, starting with a letter)")
    if not isinstance(raw, dict):
        raise _err(file, where, "must be a mapping")
    kind = raw.get("type")
    if kind not in DETECTOR_TYPES:
        raise _err(file, f"{where}.type", f"must be one of {', '.join(DETECTOR_TYPES)} (got {kind!r})")
    allowed = {"type", "value", "filter", "learn_days", "max_keys", "max_values_per_key", *DETECTOR_DEFAULTS}
    for k in raw:
        if k not in allowed:
            raise _err(file, f"{where}.{k}", f"is unknown; use one of {', '.join(sorted(allowed))}")
    d = {"name": name, "type": kind, **{k: v for k, v in DETECTOR_DEFAULTS.items()}}
    d["enabled"] = bool(raw.get("enabled", True))
    d["key"] = _strings(file, f"{where}.key", raw.get("key", []), fields=True)
    if kind == "frequency":
        d["value"] = _strings(file, f"{where}.value", raw["value"], fields=True) if "value" in raw else []
    else:
        if "value" not in raw:
            raise _err(file, f"{where}.value", "is required: the alert field(s) whose values are learned")
        d["value"] = _strings(file, f"{where}.value", raw["value"], fields=True)
        if kind == "value_range" and len(d["value"]) != 1:
            raise _err(file, f"{where}.value", "must name exactly one numeric field for a value_range detector")
    severity = raw.get("severity", "medium")
    if severity not in SEVERITIES:
        raise _err(file, f"{where}.severity", f"must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    d["severity"] = severity
    d["description"] = str(raw.get("description", ""))
    d["learn_until"] = _time(file, f"{where}.learn_until", raw.get("learn_until"))
    d["learn_days"] = _number(file, f"{where}.learn_days", raw.get("learn_days", top["learn_days"]))
    d["max_keys"] = _number(file, f"{where}.max_keys", raw.get("max_keys", top["max_keys"]), minimum=1, integer=True)
    d["max_values_per_key"] = _number(file, f"{where}.max_values_per_key",
                                      raw.get("max_values_per_key", top["max_values_per_key"]), minimum=1, integer=True)
    d["new_key_learn_hours"] = _number(file, f"{where}.new_key_learn_hours", raw.get("new_key_learn_hours", 0.0))
    d["margin"] = _number(file, f"{where}.margin", raw.get("margin", 0.1))
    d["window_minutes"] = _number(file, f"{where}.window_minutes", raw.get("window_minutes", 10), minimum=1, integer=True)
    d["tolerance"] = _number(file, f"{where}.tolerance", raw.get("tolerance", 0.5))
    d["min_windows"] = _number(file, f"{where}.min_windows", raw.get("min_windows", 3), minimum=1, integer=True)
    d["filter"] = _filter(file, f"{where}.filter", raw.get("filter"))
    return d


def _model(file: str, name, raw) -> dict:
    import re
    where = f"models.{name}"
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        raise _err(file, where, "is not a valid name (lower case letters, digits and _, starting with a letter)")
    if not isinstance(raw, dict):
        raise _err(file, where, "must be a mapping")
    allowed = {"target", "filter", *MODEL_DEFAULTS}
    for k in raw:
        if k not in allowed:
            raise _err(file, f"{where}.{k}", f"is unknown; use one of {', '.join(sorted(allowed))}")
    target = raw.get("target")
    if target not in MODEL_TARGETS:
        raise _err(file, f"{where}.target", f"must be one of {', '.join(MODEL_TARGETS)} (got {target!r})")
    severity = raw.get("severity", "high")
    if severity not in SEVERITIES:
        raise _err(file, f"{where}.severity", f"must be one of {', '.join(SEVERITIES)} (got {severity!r})")
    return {
        "name": name, "target": target, "severity": severity,
        "enabled": bool(raw.get("enabled", True)),
        "description": str(raw.get("description", "")),
        "quantile": _number(file, f"{where}.quantile", raw.get("quantile", 0.995), maximum=1),
        "trees": _number(file, f"{where}.trees", raw.get("trees", 50), minimum=1, integer=True, maximum=500),
        "sample_size": _number(file, f"{where}.sample_size", raw.get("sample_size", 128), minimum=2, integer=True),
        "dimensions": _number(file, f"{where}.dimensions", raw.get("dimensions", 64), minimum=4, integer=True, maximum=4096),
        "ignore_users": _strings(file, f"{where}.ignore_users", raw.get("ignore_users", [])),
        "ignore_path_prefixes": _strings(file, f"{where}.ignore_path_prefixes", raw.get("ignore_path_prefixes", [])),
        "min_training_events": _number(file, f"{where}.min_training_events", raw.get("min_training_events", MODEL_DEFAULTS["min_training_events"]),
                                       minimum=1, integer=True),
        "training_days": _number(file, f"{where}.training_days", raw.get("training_days", 30), minimum=0.01),
        # 0: the wodle never (re)trains it; `wazuh-anomaly train` / `realtime train` still do
        "retrain_every_days": _number(file, f"{where}.retrain_every_days", raw.get("retrain_every_days", 7)),
        "filter": _filter(file, f"{where}.filter", raw.get("filter")),
    }


def parse(data, file: str) -> dict:
    """The validated configuration of a parsed realtime.yaml (plain JSON-able dicts)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping (learn_days, max_keys, max_values_per_key, detectors, models).")
    for k in data:
        if k not in ("learn_days", "max_keys", "max_values_per_key", "detectors", "models"):
            raise _err(file, k, "is unknown; use learn_days, max_keys, max_values_per_key, detectors or models")
    top = {
        "learn_days": _number(file, "learn_days", data.get("learn_days", DEFAULTS["learn_days"])),
        "max_keys": _number(file, "max_keys", data.get("max_keys", DEFAULTS["max_keys"]), minimum=1, integer=True),
        "max_values_per_key": _number(file, "max_values_per_key",
                                      data.get("max_values_per_key", DEFAULTS["max_values_per_key"]), minimum=1, integer=True),
    }
    detectors = data.get("detectors") or {}
    models = data.get("models") or {}
    if not isinstance(detectors, dict):
        raise _err(file, "detectors", "must map detector names to their settings")
    if not isinstance(models, dict):
        raise _err(file, "models", "must map model names to their settings")
    out = dict(top)
    out["detectors"] = [_detector(file, n, r, top) for n, r in detectors.items()]
    out["models"] = [_model(file, n, r) for n, r in models.items()]
    names = [d["name"] for d in out["detectors"]] + [m["name"] for m in out["models"]]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise _err(file, dup[0], "names both a detector and a model; rename one")
    return out


def load_yaml(path: str) -> dict:
    """Parse and validate realtime.yaml (imports YAML: the slow path)."""
    import yaml
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run install.sh or copy wazuh/etc/anomaly/realtime.yaml there.") from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot be read; give the wazuh group read access (chmod 0640, root:wazuh).") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text.") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: invalid YAML{where}; fix the syntax.") from None
    return parse(data, path)


def _signature(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def load(path: str, cache: str | None) -> dict:
    """The configuration, from the JSON cache when it matches the YAML file, else from
    the YAML (and the cache is rewritten for the next run when its directory allows)."""
    try:
        signature = _signature(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found; run install.sh or copy wazuh/etc/anomaly/realtime.yaml there.") from None
    if cache:
        try:
            cached = fastjson.load_file(cache)
            if cached.get("version") == CACHE_VERSION and cached.get("source") == signature:
                return cached["config"]
        except (OSError, ValueError, AttributeError, KeyError, TypeError):  # damaged: rebuilt from the YAML
            pass
    config = load_yaml(path)
    if cache:
        from ..core.fileio import atomic_write
        from .store import FILE_MODE, ensure_shared_dir
        try:
            ensure_shared_dir(os.path.dirname(cache))
            atomic_write(cache, fastjson.dumps({"version": CACHE_VERSION, "source": signature,
                                                "config": config}).encode(), FILE_MODE)
        except OSError:
            pass  # a read-only state directory only costs the YAML parse next time
    return config
