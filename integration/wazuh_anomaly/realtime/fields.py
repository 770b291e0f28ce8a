"""Reading dotted fields of a Wazuh alert ('data.srcip', 'rule.groups') as strings."""
from __future__ import annotations

from ..core.timeparse import parse_timestamp


def values(alert: dict, path: str) -> list[str]:
    """Every string value at `path`: [] when absent, several for a list field."""
    node: object = alert
    for part in path.split("."):
        if not isinstance(node, dict):
            return []
        node = node.get(part)
        if node is None:
            return []
    if isinstance(node, list):
        return [_text(v) for v in node if v is not None and not isinstance(v, (dict, list))]
    if isinstance(node, dict):
        return []
    return [_text(node)]


def first(alert: dict, path: str) -> str | None:
    found = values(alert, path)
    return found[0] if found else None


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def alert_time(alert: dict) -> float | None:
    """Epoch seconds of the alert ('timestamp' of 4.x, '@timestamp' of the indexer), or None."""
    text = alert.get("timestamp") or alert.get("@timestamp")
    if not isinstance(text, str):
        return None
    return parse_time(text)


def parse_time(text: str) -> float | None:
    """Epoch seconds of '2022-01-24T03:57:12.345+0000', '...Z', '...+01:00', with or
    without a fraction; None for anything else (a zone is required). The one timestamp
    parser (core/timeparse.py), which imports no datetime on the per-alert path."""
    return parse_timestamp(text.strip()) if isinstance(text, str) else None
