"""The one timestamp parser: ISO 8601 times as UTC epoch seconds.

Everything the product reads a time from goes through here: Wazuh alert timestamps
(`2022-01-24T03:57:12.345+0000`, the indexer's `...Z`, `...+01:00`), pmacct flow times
(`2024-01-31 23:59:00`, no zone: UTC), realtime.yaml's `learn_until`, and the times and
dates given on the command line or in a backtest's labels.

Standard library only, and no datetime, re or calendar import: the per-alert real-time
process parses each alert's timestamp with it. Fast on streams of alerts: the
"YYYY-MM-DDTHH:MM" head and the ".fff+zone" tail are validated once and then looked up
(bounded caches), so most timestamps cost three slices and three dict lookups.
"""
from __future__ import annotations

from .errors import ConfigError

_CACHE_LIMIT = 1 << 16
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# ":SS" -> seconds; a dict lookup both validates and converts (int(" 5") would accept garbage).
_SECONDS = {f":{s:02d}": s for s in range(60)}
SECONDS_BYTES = {k.encode(): v for k, v in _SECONDS.items()}
# Validated once, then a dict hit (a reader of alert lines may look them up itself):
MINUTE_CACHE: dict = {}   # "YYYY-MM-DDTHH:MM" (str or bytes) -> epoch of that minute
TAIL_CACHE: dict = {}     # ".345+0000", "Z", ".224939+01:00" (str or bytes) -> fraction minus UTC offset
_minutes, _tails = MINUTE_CACHE, TAIL_CACHE
_SECONDS_ANY = {**_SECONDS, **SECONDS_BYTES}


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = (year if year >= 0 else year - 399) // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(text: str) -> bool:
    return text.isdigit() and text.isascii()


def minute_epoch(head: str) -> int | None:
    """Epoch seconds of 'YYYY-MM-DDTHH:MM' (or with a space for the T); None if it is not one."""
    if len(head) != 16 or head[4] != "-" or head[7] != "-" or head[10] not in "T " or head[13] != ":":
        return None
    y, m, d, hh, mm = head[0:4], head[5:7], head[8:10], head[11:13], head[14:16]
    if not all(_digits(p) for p in (y, m, d, hh, mm)):
        return None
    year, month, day, hour, minute = int(y), int(m), int(d), int(hh), int(mm)
    if not 1 <= month <= 12 or hour > 23 or minute > 59 or year < 1:
        return None
    leap = month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    if not 1 <= day <= _DAYS_IN_MONTH[month - 1] + leap:
        return None
    return days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60


def _tail(tail: str) -> float | None:
    """The fraction minus the UTC offset of what follows the seconds; None if invalid.
    A tail without a zone gives None too (a bare local time is ambiguous)."""
    value = 0.0
    if tail[:1] == ".":
        n = 1
        while n < len(tail) and n <= 10 and tail[n].isdigit() and tail[n].isascii():
            n += 1
        if n == 1 or n > 10:
            return None
        value = float("0" + tail[:n])
        tail = tail[n:]
    if tail in ("Z", "z"):
        return value
    if len(tail) not in (5, 6) or tail[0] not in "+-":
        return None
    digits = tail[1:3] + tail[-2:]
    if (len(tail) == 6 and tail[3] != ":") or not _digits(digits):
        return None
    hours, minutes = int(digits[:2]), int(digits[2:])
    if hours > 23 or minutes > 59:
        return None
    offset = hours * 3600 + minutes * 60
    return value - offset if tail[0] == "+" else value + offset


def clear_caches() -> None:
    """Forget the cached minutes and tails (they fill again as timestamps come). After a
    long read: entries added all along it are scattered over the interpreter's memory
    and would keep the memory of everything else read there from going back to the system."""
    _minutes.clear()
    _tails.clear()


def _cached_minute(head):
    text = head.decode("ascii", "replace") if isinstance(head, bytes) else head
    base = minute_epoch(text)
    if base is not None and text[10] == "T":   # only the T form is cached: the fast path is Wazuh's shape
        if len(_minutes) >= _CACHE_LIMIT:
            _minutes.clear()
        _minutes[head] = base
    return base


def _cached_tail(tail):
    rest = _tail(tail.decode("ascii", "replace") if isinstance(tail, bytes) else tail)
    if rest is not None:
        if len(_tails) >= _CACHE_LIMIT:
            _tails.clear()
        _tails[tail] = rest
    return rest


def _slow(text, assume_utc: bool) -> float | None:
    """parse_timestamp past the caches: validates, and caches what it validated."""
    if not isinstance(text, (str, bytes)):
        return None
    base = _minutes.get(text[:16])
    if base is None:
        base = _cached_minute(text[:16])
        if base is None:
            return None
    seconds = _SECONDS_ANY.get(text[16:19])
    if seconds is None:
        return None
    tail = text[19:]
    rest = _tails.get(tail)
    if rest is None:
        rest = _cached_tail(tail)
        if rest is None:
            if not assume_utc:
                return None
            # no zone: the fraction alone (".5"), UTC
            rest = _tail((tail.decode("ascii", "replace") if isinstance(tail, bytes) else tail) + "Z")
            if rest is None:
                return None
    return base + seconds + rest


def parse_timestamp(text, assume_utc: bool = False) -> float | None:
    """Epoch seconds of an ISO 8601 time with seconds and a zone ('2022-01-24T03:57:12.345+0000',
    '...Z', '...+01:00', a space for the T), or None for anything else. With `assume_utc`, a
    time without a zone (pmacct's '2024-01-31 23:59:00') is UTC. `text` may be bytes."""
    try:   # the common case: three cache hits
        return _minutes[text[:16]] + _SECONDS_ANY[text[16:19]] + _tails[text[19:]]
    except (KeyError, TypeError):
        return _slow(text, assume_utc)


def wazuh_timestamp(text) -> float:
    """A Wazuh alert's `timestamp` (str or bytes): parse_timestamp with a T between date
    and time, as every manager and the indexer write it; ValueError on anything else."""
    try:   # the cache holds only T-form heads
        return _minutes[text[:16]] + _SECONDS_ANY[text[16:19]] + _tails[text[19:]]
    except (KeyError, TypeError):
        value = _slow(text, False) if isinstance(text, (str, bytes)) and text[10:11] in ("T", b"T") else None
    if value is None:
        raise ValueError(f"not a Wazuh timestamp: {text!r}"[:120])
    return value


def parse_time_arg(text: str) -> float:
    """A time or a date given by a user (command line, backtest labels): ISO 8601 such as
    2022-01-24, 2022-01-24T03:00, 2022-01-24T03:00:00Z or ...+01:00; UTC when no zone is
    given. ConfigError (one sentence) for anything else."""
    t = text.strip() if isinstance(text, str) else ""
    value = None
    if len(t) == 10:                                   # a date: its midnight, UTC
        value = _cached_minute(t + "T00:00")
    elif len(t) >= 16:
        head, rest = t[:16], t[16:]
        if len(rest) < 3 or rest[0] != ":":            # no seconds: 2022-01-24T03:00[zone]
            rest = ":00" + rest
        value = parse_timestamp(head + rest, assume_utc=True)
    if value is None:
        raise ConfigError(f"'{text}' is not a date or time; use ISO 8601 such as 2022-01-24 or "
                          f"2022-01-24T03:00:00Z.")
    return float(value)
