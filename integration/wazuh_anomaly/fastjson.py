"""JSON for the per-alert path without importing `json`: `json.decoder` and
`json.encoder` import `re` and compile regexes, which is about half of what the
integration costs on top of a bare interpreter start. This uses `_json`, the C
accelerator the `json` module itself uses, with the same settings as `json.loads` and
`json.dumps(..., separators=(",", ":"), ensure_ascii=False)` (`dumps_strict`: and
`allow_nan=False`, the anomalies.json lines); without it (another Python
implementation) it is simply `json`. Tests check both agree on real alerts.
"""
from __future__ import annotations

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None

_WHITESPACE = " \t\n\r"


class _DecoderSettings:
    """What json.JSONDecoder() hands to the C scanner."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}.__getitem__
    memo: dict = {}


def _refuse(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


if _json is not None:
    _scan = _json.make_scanner(_DecoderSettings())
    # make_encoder(markers, default, encoder, indent, key_sep, item_sep, sort_keys, skipkeys, allow_nan)
    _encode = _json.make_encoder(None, _refuse, _json.encode_basestring, None, ":", ",", False, False, True)
    _encode_strict = _json.make_encoder(None, _refuse, _json.encode_basestring, None, ":", ",", False, False, False)

    def loads(text: str | bytes):
        if isinstance(text, (bytes, bytearray)):
            text = text.decode("utf-8")
        start = len(text) - len(text.lstrip(_WHITESPACE))
        try:
            value, end = _scan(text, start)
        except StopIteration:
            raise ValueError("not JSON: a value is missing") from None
        if text[end:].strip(_WHITESPACE):
            raise ValueError(f"not JSON: extra data at character {end}")
        return value

    def dumps(value) -> str:
        return "".join(_encode(value, 0))

    def dumps_strict(value) -> str:
        """dumps, refusing NaN and infinities (ValueError) as JSON itself does."""
        return "".join(_encode_strict(value, 0))
else:  # pragma: no cover
    import json as _std

    def loads(text):
        return _std.loads(text)

    def dumps(value) -> str:
        return _std.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def dumps_strict(value) -> str:
        return _std.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def load_file(path: str):
    """A JSON file's content, never read through a link another user could have planted."""
    from .fileio import read_bytes
    return loads(read_bytes(path))
