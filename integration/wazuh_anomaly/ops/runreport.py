"""What a run, a training or a backfill reports: per scenario a status and its anomalies,
the health events, and what was written to the anomalies file."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..core.findings import Anomaly, HealthEvent
from ..sources import SourceStats


def as_datetime(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def fmt_time(epoch: float | None) -> str:
    return "-" if epoch is None else as_datetime(epoch).strftime("%Y-%m-%d %H:%M UTC")


def fmt_hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h"


@dataclass
class ScenarioReport:
    name: str
    status: str = "idle"        # scored | trained | waiting | failed | up-to-date
    buckets: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    message: str = ""
    scores: dict = field(default_factory=dict)   # detect: detector -> (bucket epoch, score), for drift checks


@dataclass
class RunReport:
    scenarios: dict[str, ScenarioReport] = field(default_factory=dict)
    health: list[HealthEvent] = field(default_factory=list)
    written: int = 0
    duplicates: int = 0
    stats: SourceStats | None = None

    @property
    def anomalies(self) -> list[Anomaly]:
        return [a for r in self.scenarios.values() for a in r.anomalies]

    def lines(self) -> list[str]:
        out = []
        for r in self.scenarios.values():
            extra = f", {r.buckets} buckets scored, {len(r.anomalies)} anomalies" if r.buckets else ""
            out.append(f"{r.name}: {r.status}{extra}{' — ' + r.message if r.message else ''}")
        for h in self.health:
            out.append(f"health {h.check} ({h.severity}): {h.message}")
        out.append(f"written to the anomalies file: {self.written} new line(s), {self.duplicates} already there")
        return out


def with_repeats(anomalies: list[Anomaly], repeats: dict) -> list[Anomaly]:
    """The anomalies with the repeats the anomaly log counted for them (escalation.py)."""
    return [dataclasses.replace(a, repeat=repeats[a.id]) if a.id in repeats else a for a in anomalies]
