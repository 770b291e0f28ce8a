"""The small pieces every schema v1 line is made of: limits, clipped text, numbers,
timestamps, ids and the static `srcip`/`dstuser` of an entity.

Shared by the wodle's `emitter` and the real-time findings of `realtime/events.py`, and
light on purpose: the integration imports this in a new process for every alert that
raises a finding, so nothing here imports `re`, `json` or `dataclasses` (see
`bench/bench_integration.py`).
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

from .timeparse import parse_timestamp

# hashlib loads OpenSSL (several ms per process); CPython's built-in module computes the
# same SHA-256.
try:
    from _sha256 import sha256 as _sha256  # CPython <= 3.11
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha2 import sha256 as _sha256  # CPython 3.12+
    except ImportError:
        from hashlib import sha256 as _sha256

INTEGRATION = "anomaly"

# --- Limits of the real engine, in bytes of UTF-8 ------------------------------------
# logcollector reads a JSON line into OS_MAXSTR - OS_LOG_HEADER = 65,280 bytes; a longer
# line is cut, fails to parse and vanishes without a word (read_json.c).
LOGCOLLECTOR_LINE_BYTES = 65_279
# Every line we write stays below this, leaving room for the labels logcollector adds.
MAX_LINE_BYTES = 60_000
# ParseRuleComment (eventinfo.c) gives up when the expanded description reaches
# OS_COMMENT_MAX = 1024 bytes and shows the raw template, $(field) and all.
DESCRIPTION_MAX_BYTES = 1023

# --- Limits of our text fields, in bytes of UTF-8 (clip) ------------------------------
# Chosen so that every rule description, expanded with the longest values we write,
# stays within DESCRIPTION_MAX_BYTES (`wazuh-anomaly ruleset check` adds them up for
# every rule, from FIELD_BYTES).
MAX_SHORT = 32          # kind, severity, detector, health: short words
MAX_NAME = 128          # scenario, field and feature names, model version, agent
MAX_VALUE = 256         # an entity or observed value
MAX_SUMMARY = 320
MAX_TITLE = 160         # what happened, in words (a scenario's text for a feature and direction)
MAX_MESSAGE = 480
MAX_DESCRIPTION = 1024  # the explanation (anomaly.description), in no rule description
MAX_IP = 45             # the longest IPv6 text (with an IPv4 tail)
MAX_NUMBER = 320        # a JSON number as the decoder prints it ("%f" of a double)

# The most bytes each field can hold as the JSON decoder gives it to a rule, for every
# line we write (anomalies.json and netflow.json). fit_line clips string fields of
# anomalies.json to these (DEFAULT_FIELD_BYTES for the others); the netflow normaliser
# refuses longer addresses and protocols. A rule description may use $(field) only of a
# field listed here or bounded by the default.
FIELD_BYTES: dict[str, int] = {
    "integration": MAX_SHORT,
    "anomaly.schema": 11,
    "anomaly.kind": MAX_SHORT,
    "anomaly.detector": MAX_SHORT,
    "anomaly.severity": MAX_SHORT,
    "anomaly.health": MAX_SHORT,
    "anomaly.scenario": MAX_NAME,
    "anomaly.score": MAX_NUMBER,
    "anomaly.threshold": MAX_NUMBER,
    "anomaly.bucket_minutes": MAX_NUMBER,
    "anomaly.entity.field": MAX_NAME,
    "anomaly.entity.value": MAX_VALUE,
    "anomaly.observed.field": MAX_NAME,
    "anomaly.observed.value": MAX_VALUE,
    "anomaly.expected": MAX_NAME,
    "anomaly.top_feature": MAX_NAME,
    "anomaly.summary": MAX_SUMMARY,
    "anomaly.title": MAX_TITLE,
    "anomaly.model_version": MAX_NAME,
    "anomaly.description": MAX_DESCRIPTION,
    "anomaly.message": MAX_MESSAGE,
    "anomaly.suppression.id": MAX_NAME,
    "anomaly.suppression.reason": MAX_MESSAGE,
    "anomaly.alert.id": MAX_NAME,
    "anomaly.alert.rule_id": MAX_NAME,
    "anomaly.alert.agent": MAX_NAME,
    "anomaly.alert.srcip": MAX_IP,
    "anomaly.truncated": MAX_NAME,
    "anomaly.repeat.entity": 20,      # an integer count (the decoder prints it whole)
    "anomaly.repeat.scenario": 20,
    "anomaly.escalated": MAX_SHORT,
    "anomaly.port_scan.repeat": 20,
    "srcip": MAX_IP,
    "dstip": MAX_IP,
    "dstuser": MAX_NAME,
    # netflow.json (netflow/normalize.py)
    "source.ip": MAX_IP,
    "destination.ip": MAX_IP,
    "source.port": 5,
    "destination.port": 5,
    "flow.protocol": MAX_SHORT,
}
DEFAULT_FIELD_BYTES = MAX_VALUE

# Entity fields whose value is a source address: written to the static `srcip`, so
# stock active responses (firewall-drop) can act on it. Agent and destination
# addresses are deliberately not here: blocking them would cut off our own hosts.
IP_FIELD_NAMES = frozenset({
    "srcip", "src_ip", "source_ip", "sourceip", "sourceipaddress", "client_ip",
    "clientip", "remote_ip", "remoteip", "ipaddress", "ip_address",
})
IP_FIELD_PATHS = frozenset({"source.ip", "data.source.ip", "client.ip", "data.client.ip"})
# Entity fields holding an account name: written to the static `dstuser`.
USER_FIELD_NAMES = frozenset({
    "dstuser", "srcuser", "user", "username", "user_name", "dst_user", "src_user",
    "targetusername", "subjectusername", "account", "account_name", "login",
})

# C0 controls and DEL: they would break the one-line summary, and a NUL would cut the
# decoder's C string.
_CONTROL = frozenset(map(chr, range(32))) | {"\x7f"}
_DROP_CONTROL = str.maketrans("", "", "".join(sorted(_CONTROL)))


def has_control(text: str) -> bool:
    return len(text.translate(_DROP_CONTROL)) != len(text)


def clip(text: object, limit: int) -> str:
    """One line of printable text of at most `limit` bytes of UTF-8, never cutting a
    character in two ('...' marks a cut); each run of control characters becomes one
    space."""
    s = str(text)
    # Lone surrogates cannot be written as UTF-8.
    s = s.encode("utf-8", "replace").decode("utf-8")
    if has_control(s):
        out: list[str] = []
        in_run = False
        for ch in s:
            if ch in _CONTROL:
                if not in_run:
                    out.append(" ")
                in_run = True
            else:
                out.append(ch)
                in_run = False
            if len(out) > limit:  # enough to know it is cut: every character is a byte or more
                break
        s = "".join(out)
    if len(s) <= limit // 4:  # short enough in any encoding: skip the encode
        return s
    raw = s.encode("utf-8")
    if len(raw) > limit:
        s = raw[: max(limit - 3, 0)].decode("utf-8", "ignore") + "..."[: limit]
    return s


def fit_line(event: dict, dumps, max_bytes: int = MAX_LINE_BYTES) -> str:
    """The one JSON line of an anomalies.json event (`dumps` renders it), within Wazuh's
    limits: every string field clipped to its FIELD_BYTES (so each rule description
    expands within DESCRIPTION_MAX_BYTES), and the line within `max_bytes`. A line still
    too long loses the explanation's tail, then its contributors from the weakest on
    (`top_feature` still names the strongest). What was cut here is named in
    `anomaly.truncated` (e.g. "entity.value,top_features"); a text cut to its limit ends
    with '...'. The caller's event is not changed. ValueError only if even that cannot
    fit."""
    cut: list[str] = []
    event = _clipped(event, "", cut)
    body = event.get("anomaly")
    body = body if isinstance(body, dict) else None

    def mark() -> None:
        if body is not None and cut:
            body["truncated"] = clip(",".join(dict.fromkeys(cut)), MAX_NAME)

    mark()
    line = dumps(event)
    steps = []
    if body is not None:
        steps = [_shorten_description, _drop_contributor]
    for step in steps:
        while _size(line) > max_bytes and step(body, cut):
            mark()
            line = dumps(event)
    if _size(line) > max_bytes:
        ident = body.get("id") if body is not None else None
        raise ValueError(f"event {ident} renders to more than {max_bytes} bytes even shortened")
    return line


def _size(line: str) -> int:
    return len(line.encode("utf-8"))


def _clipped(value, path: str, cut: list[str]):
    """A copy of the event with every string clipped to its field's limit."""
    if isinstance(value, str):
        limit = FIELD_BYTES.get(path, DEFAULT_FIELD_BYTES)
        text = clip(value, limit)
        if text != value and text.endswith("...") and len(value.encode("utf-8", "replace")) > limit:
            cut.append(path.split(".", 1)[1] if path.startswith("anomaly.") else path)
        return text
    if isinstance(value, dict):
        return {k: _clipped(v, f"{path}.{k}" if path else str(k), cut) for k, v in value.items()}
    if isinstance(value, list):
        return [_clipped(v, f"{path}[]", cut) for v in value]
    return value


def _shorten_description(body: dict, cut: list[str]) -> bool:
    text = body.get("description")
    if not isinstance(text, str) or not text:
        return False
    size = len(text.encode("utf-8"))
    if size <= 64:
        del body["description"]
    else:
        body["description"] = clip(text, size // 2)
    cut.append("description")
    return True


def _drop_contributor(body: dict, cut: list[str]) -> bool:
    features = body.get("top_features")
    if not isinstance(features, list) or not features:
        return False
    features.pop()  # the weakest: they are ordered strongest first
    cut.append("top_features")
    return True


def num(x: float | int | None) -> float | int | None:
    """A JSON-safe number with 6 significant digits (non-finite becomes null)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    x = float(x)
    if not math.isfinite(x):
        return None
    r = float(f"{x:.6g}")
    return 0.0 if r == 0 else r


def plain(x: float | None) -> str:
    """A number as an analyst reads it: 143, 2.5, 0.333."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.3g}"


def iso(ts: datetime) -> str:
    """ISO 8601 in UTC with milliseconds, the shape Wazuh uses ('...T03:55:00.000+0000')."""
    if ts.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    ts = ts.astimezone(timezone.utc)
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000"


def parse_iso(text: str | None) -> datetime | None:
    """The UTC datetime of an `iso()` text ('2022-01-24T03:55:00.000+0000'); None for an
    empty one, ValueError for one that is not a timestamp with a zone (the one
    timestamp parser, core/timeparse.py)."""
    if not text:
        return None
    value = parse_timestamp(text) if isinstance(text, str) else None
    if value is None:
        raise ValueError(f"{text!r} is not a timestamp with a time zone"[:120])
    return datetime.fromtimestamp(value, timezone.utc)


def stable_id(*parts: object) -> str:
    """A deterministic id: the same inputs always give the same 20 hex characters (a lone
    surrogate from a damaged alert is hashed as it is, never an error)."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return _sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:20]


def _leaf(field: str) -> str:
    return field.rsplit(".", 1)[-1].lower()


def entity_srcip(field: str | None, value: str | None) -> str | None:
    """The entity as a source IP for the static `srcip`, or None when it is not one."""
    if not field or not value:
        return None
    if field.lower() not in IP_FIELD_PATHS and _leaf(field) not in IP_FIELD_NAMES:
        return None
    import ipaddress  # only for fields that name an address

    if len(value) > 64 or "%" in value:  # an IPv6 scope ('%eth0', of any length) is no source to block
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def entity_dstuser(field: str | None, value: str | None) -> str | None:
    """The entity as an account name for the static `dstuser`, or None."""
    if not field or not value or _leaf(field) not in USER_FIELD_NAMES:
        return None
    name = value.strip()
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # a lone surrogate: no account name
        return None
    if not name or size > MAX_NAME or has_control(name):
        return None
    return name


def entity_phrase(field: str, value: str) -> str:
    """' on agent web-01', ' from 10.0.0.5', ' for user bob' or ' for field=value'."""
    leaf = _leaf(field)
    if field.lower() in ("agent.name", "agent.id", "agent.ip") or leaf == "hostname":
        return f" on agent {value}"
    if entity_srcip(field, value):
        return f" from {value}"
    if entity_dstuser(field, value):
        return f" for user {value}"
    return f" for {field}={value}"


# Every dotted field a real-time event can carry (the ruleset checker reads it).
RARE_EVENT_FIELDS: frozenset[str] = frozenset({
    "integration",
    "anomaly.schema", "anomaly.id", "anomaly.kind", "anomaly.detector", "anomaly.scenario",
    "anomaly.severity", "anomaly.score", "anomaly.threshold",
    "anomaly.window.start", "anomaly.window.end", "anomaly.bucket_minutes",
    "anomaly.entity.field", "anomaly.entity.value",
    "anomaly.observed.field", "anomaly.observed.value", "anomaly.expected",
    "anomaly.summary", "anomaly.description", "anomaly.model_version",
    "anomaly.alert.id", "anomaly.alert.rule_id", "anomaly.alert.agent", "anomaly.alert.srcip",
    "anomaly.detected_at", "anomaly.truncated",
    "srcip", "dstuser",
})
