"""Reading dotted fields of a Wazuh alert ('data.srcip', 'rule.groups') as strings."""
from __future__ import annotations


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


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm):
    no datetime import on the per-alert path."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_time(text: str) -> float | None:
    """Epoch seconds of '2022-01-24T03:57:12.345+0000', '...Z', '...+01:00', with or
    without a fraction; None for anything else (a zone is required)."""
    t = text.strip()
    try:
        if len(t) < 19 or t[4] != "-" or t[7] != "-" or t[10] not in "T " or t[13] != ":" or t[16] != ":":
            return None
        year, month, day = int(t[0:4]), int(t[5:7]), int(t[8:10])
        hour, minute, second = int(t[11:13]), int(t[14:16]), int(t[17:19])
        rest = t[19:]
        fraction = 0.0
        if rest.startswith("."):
            n = 1
            while n < len(rest) and rest[n].isdigit():
                n += 1
            fraction = float("0" + rest[:n]) if n > 1 else 0.0
            rest = rest[n:]
        if rest in ("Z", "z"):
            offset = 0
        elif len(rest) in (5, 6) and rest[0] in "+-":
            digits = rest[1:].replace(":", "")
            if len(digits) != 4 or not digits.isdigit():
                return None
            offset = (int(digits[:2]) * 60 + int(digits[2:])) * 60 * (1 if rest[0] == "+" else -1)
        else:
            return None
        if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
            return None
    except ValueError:
        return None
    return _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second + fraction - offset
