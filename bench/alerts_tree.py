"""The AIT-ADS alerts laid out as a Wazuh manager's logs/alerts tree, for the benchmarks.

Older days compressed (ossec-alerts-DD.json.gz), yesterday not yet, today's file plain
with alerts.json hard-linked to it (WAZUH.md section 7); optionally the data replicated
with shifted dates to make a longer history.
"""
from __future__ import annotations

import gzip
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

DAY = 86400
# Wazuh names month folders in the C locale.
MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
TIMESTAMP_PREFIX = b'{"timestamp":"'


def read_ait_lines(path: Path, limit: int | None) -> list[bytes]:
    with gzip.open(path, "rb") as f:
        lines = [line.rstrip(b"\n") for line in f if line.strip()]
    for line in lines:
        # dates are shifted by rewriting bytes 14..24, so every line must start the same way
        if not line.startswith(TIMESTAMP_PREFIX) or line[24:25] != b"T":
            raise SystemExit(f"{path}: a line does not start with {TIMESTAMP_PREFIX!r} and a date; "
                             f"this benchmark expects Wazuh alerts.json lines.")
    return lines[:limit] if limit else lines


def replicate_by_day(lines: list[bytes], scale: int) -> dict[date, list[bytes]]:
    """The lines `scale` times, copy k shifted by k times the data's span in whole days,
    grouped by (shifted) UTC date."""
    first = date.fromisoformat(lines[0][14:24].decode())
    last = max(date.fromisoformat(d) for d in {line[14:24].decode() for line in lines})
    span = (last - first).days + 1
    days: dict[date, list[bytes]] = {}
    for k in range(scale):
        shifted: dict[bytes, tuple[date, bytes]] = {}
        for line in lines:
            key = line[14:24]
            target = shifted.get(key)
            if target is None:
                day = date.fromisoformat(key.decode()) + timedelta(days=k * span)
                target = shifted[key] = (day, day.isoformat().encode())
            days.setdefault(target[0], []).append(line[:14] + target[1] + line[24:])
    return days


def build_alerts_tree(root: Path, days: dict[date, list[bytes]]) -> Path:
    """logs/alerts as a manager leaves it: older days compressed, yesterday not yet,
    today's file with alerts.json hard-linked to it."""
    alerts_dir = root / "logs" / "alerts"
    ordered = sorted(days)
    for i, day in enumerate(ordered):
        folder = alerts_dir / str(day.year) / MONTHS[day.month]
        folder.mkdir(parents=True, exist_ok=True)
        data = b"".join(line + b"\n" for line in days[day])
        name = f"ossec-alerts-{day.day:02d}.json"
        if i < len(ordered) - 2:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (folder / name).write_bytes(data)
    today = ordered[-1]
    os.link(alerts_dir / str(today.year) / MONTHS[today.month] / f"ossec-alerts-{today.day:02d}.json",
            alerts_dir / "alerts.json")
    return alerts_dir


def day_range(days: dict[date, list[bytes]]) -> tuple[float, float]:
    """[first midnight, midnight after the last day) in UTC epoch seconds: aligned to every bucket size."""
    first, last = min(days), max(days)
    start = datetime(first.year, first.month, first.day, tzinfo=timezone.utc).timestamp()
    end = datetime(last.year, last.month, last.day, tzinfo=timezone.utc).timestamp() + DAY
    return start, end
