"""JSON for state files, anomalies.json lines and the per-alert integration.

The standard `json` module's public API only. An earlier version drove CPython's private
`_json` scanner to save importing `json`: on a truncated document (a state file cut by a
crash or a full disk) it raised SystemError instead of ValueError on Python 3.10 and
3.11, and on every later call. orjson is not used here although the project depends on
it: importing it also imports json, re, dataclasses, inspect, ast, uuid and datetime,
which measured 3.2-4.3x a bare interpreter start for one alert (`json`: 1.8-2.9x, the
private scanner 1.1-2.4x; bench/bench_integration.py, target at most 3x).

Every malformed document is a ValueError, whatever its bytes: cut anywhere, not UTF-8,
nested too deep. `dumps` is `json.dumps(..., separators=(",", ":"), ensure_ascii=False)`;
`dumps_strict` (the anomalies.json lines) also refuses NaN and infinities (ValueError).
"""
from __future__ import annotations

import json as _json

_encoder = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
_strict_encoder = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | bytes):
    """The value of one JSON document; ValueError when it is not one."""
    try:
        return _json.loads(text)
    except RecursionError:
        raise ValueError("not JSON that can be read: nested too deep") from None


def dumps(value) -> str:
    return _encoder.encode(value)


def dumps_strict(value) -> str:
    """dumps, refusing NaN and infinities (ValueError) as JSON itself does."""
    return _strict_encoder.encode(value)


def load_file(path: str):
    """A JSON file's content, never read through a link another user could have planted."""
    from .fileio import read_bytes
    return loads(read_bytes(path))
