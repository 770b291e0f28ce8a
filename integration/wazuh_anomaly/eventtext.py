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
# Limits (characters) that keep every line small and every expanded rule
# description below Wazuh's 1024-byte cap (ParseRuleComment falls back to the raw
# template when the expansion is longer).
MAX_NAME = 128
MAX_VALUE = 256
MAX_SUMMARY = 320
MAX_MESSAGE = 480
MAX_DESCRIPTION = 480
# Hard bound for one line; logcollector truncates at about 65,279 bytes.
MAX_LINE_BYTES = 60_000

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
    """One line of printable text, at most `limit` characters ('...' marks a cut); each
    run of control characters becomes one space."""
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
            if len(out) > limit:  # enough to know it is cut
                break
        s = "".join(out)
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


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
    empty one, ValueError for one that is not a timestamp with a zone."""
    if not text:
        return None
    if len(text) > 5 and text[-5] in "+-" and text[-4:].isdigit():
        text = f"{text[:-2]}:{text[-2:]}"  # +0000 -> +00:00 for Python 3.10's fromisoformat
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no time zone")
    return when.astimezone(timezone.utc)


def stable_id(*parts: object) -> str:
    """A deterministic id: the same inputs always give the same 20 hex characters."""
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    return _sha256(text.encode("utf-8")).hexdigest()[:20]


def _leaf(field: str) -> str:
    return field.rsplit(".", 1)[-1].lower()


def entity_srcip(field: str | None, value: str | None) -> str | None:
    """The entity as a source IP for the static `srcip`, or None when it is not one."""
    if not field or not value:
        return None
    if field.lower() not in IP_FIELD_PATHS and _leaf(field) not in IP_FIELD_NAMES:
        return None
    import ipaddress  # only for fields that name an address

    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def entity_dstuser(field: str | None, value: str | None) -> str | None:
    """The entity as an account name for the static `dstuser`, or None."""
    if not field or not value or _leaf(field) not in USER_FIELD_NAMES:
        return None
    name = value.strip()
    if not name or len(name) > MAX_NAME or has_control(name):
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
