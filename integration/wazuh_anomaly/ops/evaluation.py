"""What a set of anomalies would have caught: labelled phases hit or missed (with the
delay from the phase start to the first flagged bucket), and false alarms outside
every phase. Used by the acceptance tests and the README's table; the backtest command
of a later issue builds on it."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


from ..core.timeparse import parse_time_arg
from ..core.findings import Anomaly


@dataclass(frozen=True)
class Phase:
    label: str
    start: float          # epoch seconds, inclusive
    end: float            # exclusive


@dataclass(frozen=True)
class PhaseResult:
    phase: Phase
    caught: bool
    delay_seconds: float | None       # first flagged bucket end minus phase start
    anomalies: int


@dataclass(frozen=True)
class Evaluation:
    phases: list[PhaseResult]
    false_alarm_buckets: int          # distinct flagged buckets overlapping no phase
    false_alarms: int                 # anomalies (bucket x entity) overlapping no phase
    flagged_buckets: int

    @property
    def caught(self) -> list[str]:
        return [r.phase.label for r in self.phases if r.caught]

    def table(self) -> str:
        rows = [f"{'phase':<22} {'caught':<7} {'delay':>7} {'anomalies':>9}"]
        for r in self.phases:
            delay = "-" if r.delay_seconds is None else f"{r.delay_seconds / 60:.0f} min"
            rows.append(f"{r.phase.label:<22} {'yes' if r.caught else 'no':<7} {delay:>7} {r.anomalies:>9}")
        rows.append(f"false alarms outside every phase: {self.false_alarms} anomalies in "
                    f"{self.false_alarm_buckets} buckets")
        return "\n".join(rows)


def _epoch(text: str) -> float:
    return parse_time_arg(text)   # the one timestamp parser (core/timeparse.py)


def load_ait_phases(path: Path) -> list[Phase]:
    """The attack phases of an AIT-ADS labels file (shared/data/ait-ads/*.labels.json)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [Phase(label, _epoch(p["start"]), _epoch(p["end"])) for label, p in data["attack_phases"].items()]


def evaluate(anomalies: Iterable[Anomaly], phases: list[Phase], *, slack_seconds: float = 0.0) -> Evaluation:
    """A phase is caught when a flagged bucket overlaps it (widened by `slack_seconds`)."""
    anomalies = list(anomalies)
    spans = [(a.window_start.timestamp(), a.window_end.timestamp()) for a in anomalies]
    results = []
    for phase in phases:
        lo, hi = phase.start - slack_seconds, phase.end + slack_seconds
        hits = [end for start, end in spans if start < hi and end > lo]
        results.append(PhaseResult(phase, bool(hits), (min(hits) - phase.start) if hits else None, len(hits)))
    outside = [(s, e) for s, e in spans
               if not any(s < p.end + slack_seconds and e > p.start - slack_seconds for p in phases)]
    return Evaluation(results, len({s for s, _ in outside}), len(outside), len({s for s, _ in spans}))
