"""The bundled sample alerts (AIT-ADS russellmitchell): a source of its own (`sample`,
read straight from the package, for a demo or a backtest without a manager), or laid
out as a manager's logs/alerts tree: YYYY/Mon/ossec-alerts-DD.json per day and alerts.json as a hard link
to the last day's file, exactly as wazuh-analysisd leaves them."""
from __future__ import annotations

import gzip
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson

from ..core.timeparse import wazuh_timestamp
from ..core.errors import WazuhAnomalyError
from ..core.fileio import atomic_write, makedirs
from ..core.registry import SOURCES
from ..core.reading import SourceStats

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "data" / "sample"   # the package's data/
SAMPLE_ALERTS = SAMPLE_DIR / "russellmitchell.alerts.json.gz"
SAMPLE_LABELS = SAMPLE_DIR / "russellmitchell.labels.json"
SAMPLE_MARKER = ".wazuh-anomaly-sample"   # marks a logs/alerts tree that sample-data wrote
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _shift(timestamp: str, delta: timedelta) -> str:
    moved = datetime.fromtimestamp(wazuh_timestamp(timestamp), timezone.utc) + delta
    return moved.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moved.microsecond // 1000:03d}+0000"


def install_sample_alerts(alerts_dir: Path, *, shift_to: str | None = None) -> list[str]:
    """Write the sample into `alerts_dir`; `shift_to` moves it so its last day is that date."""
    link = alerts_dir / "alerts.json"
    marker = alerts_dir / SAMPLE_MARKER
    if link.exists() and not marker.exists():
        raise WazuhAnomalyError(f"{link} already exists and was not written by sample-data: refusing to "
                                f"overwrite a manager's alerts; use an empty sandbox prefix.")
    delta = timedelta(0)
    if shift_to:
        try:
            target = datetime.fromisoformat(shift_to[:10]).replace(tzinfo=timezone.utc)
        except ValueError:
            raise WazuhAnomalyError(f"--shift-to '{shift_to}' is not a date such as 2024-03-15.") from None
        delta = target - datetime(2022, 1, 24, tzinfo=timezone.utc)
    makedirs(alerts_dir, 0o750)
    atomic_write(marker, b"written by wazuh-anomaly sample-data; safe to overwrite\n", 0o640)
    by_day: dict[str, list[bytes]] = {}
    with gzip.open(SAMPLE_ALERTS, "rb") as handle:
        for line in handle:
            alert = orjson.loads(line)
            if delta:
                alert["timestamp"] = _shift(alert["timestamp"], delta)
            by_day.setdefault(alert["timestamp"][:10], []).append(orjson.dumps(alert) + b"\n")
    return lay_out_alerts(alerts_dir, by_day)


def lay_out_alerts(alerts_dir: Path, by_day: dict[str, list[bytes]]) -> list[str]:
    """Write alert lines per UTC day as the manager names its files, and hard-link
    alerts.json to the last day; returns one line per file for the user."""
    written = []
    last_file = None
    for day in sorted(by_day):
        year, month, dd = day.split("-")
        path = alerts_dir / year / MONTHS[int(month) - 1] / f"ossec-alerts-{dd}.json"
        makedirs(path.parent, 0o750)  # logs/alerts: never write through a link planted there
        atomic_write(path, b"".join(by_day[day]), 0o640, durable=False)
        written.append(f"wrote {len(by_day[day])} alerts to {path}")
        last_file = path
    if last_file is not None:
        link = alerts_dir / "alerts.json"
        if link.exists() or link.is_symlink():
            link.unlink()
        os.link(last_file, link)
        written.append(f"linked {link} to {last_file} (as the manager does)")
    return written


@SOURCES.register("sample")
class SampleSource:
    """The bundled sample alerts in [start, end), read from the package's compressed file
    (config.yaml `source.type: sample`, or `source: sample` in a scenario)."""

    def __init__(self, path: Path = SAMPLE_ALERTS):
        self.path = Path(path)
        self._at = ""

    @classmethod
    def from_config(cls, config=None, scenario=None, *, resume: bool = True) -> "SampleSource":
        return cls()

    @property
    def key(self) -> tuple:
        return ("sample", str(self.path))

    def position(self) -> str:
        return self._at

    def read(self, start: float, end: float, *, cursor=None, stats: SourceStats | None = None,
             slack_seconds: float = 0.0):
        stats = stats if stats is not None else SourceStats()
        stats.files += 1
        with gzip.open(self.path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                stats.lines += 1
                stats.bytes += len(line)
                where = f"{self.path}:{number}"
                try:
                    alert = orjson.loads(line)
                    ts = wazuh_timestamp(alert["timestamp"])
                except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                    stats.skip("bad_timestamp", where, "no Wazuh timestamp")
                    continue
                if start <= ts < end:
                    stats.alerts += 1
                    self._at = where
                    yield ts, alert
                else:
                    stats.outside_range += 1
