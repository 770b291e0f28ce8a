"""What a scenario would have alerted on, before switching it on: train on one range of
the manager's alerts, score a later range, and compare with labelled phases.

The models are trained by the ordinary Runner into a directory of the backtest's own
(a temporary one unless named), so the production models, state and anomalies file are
never touched. The test range is read once; every detector variant (each detector alone,
or the scenario's own combination) scores the same frames, and every anomaly goes
through the rule simulator to show the rule id and level it would raise.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..core.config import Config, Scenario
from ..emit.emitter import event_for
from ..emit.escalation import repeats_of
from ..core.errors import WazuhAnomalyError
from .evaluation import Evaluation, Phase, evaluate, load_ait_phases
from ..features.aggregate import align_down
from ..core.findings import Anomaly
from ..pipeline import flow
from ..pipeline.flow import ScenarioSeries
from ..pipeline.models import ModelBundle
from ..core.paths import Layout
from ..core.registry import DETECTORS
from .runner import Runner, parse_time
from ..sources import SourceStats

BOTH = "both"                      # the two built-in detectors, each alone, side by side
BOTH_DETECTORS = ("seasonal", "mvad")
CONFIGURED = "configured"


def detector_choices() -> tuple[str, ...]:
    """What `backtest --detector` accepts: every registered detector, or both built-ins."""
    return (*DETECTORS.names(), BOTH)


class BacktestError(WazuhAnomalyError):
    """A backtest cannot run as asked (bad range, label file, scenario or training)."""


# --------------------------------------------------------------------------- inputs

@dataclass(frozen=True)
class TimeRange:
    start: float          # epoch seconds, inclusive
    end: float            # exclusive

    @property
    def days(self) -> float:
        return (self.end - self.start) / 86400

    def __str__(self) -> str:
        return f"{_fmt(self.start)} .. {_fmt(self.end)}"


def _fmt(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def parse_range(text: str, option: str) -> TimeRange:
    """`FROM..TO` in ISO 8601 (UTC when no zone), as on the command line."""
    parts = text.split("..")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise BacktestError(f"{option} '{text}' is not a range; write FROM..TO such as "
                            f"2022-01-21..2022-01-24 (ISO 8601, UTC when no zone is given).")
    try:
        start, end = parse_time(parts[0].strip()), parse_time(parts[1].strip())
    except WazuhAnomalyError as exc:
        raise BacktestError(f"{option}: {exc}") from None
    if end <= start:
        raise BacktestError(f"{option} '{text}' ends before it starts; write FROM..TO with FROM earlier.")
    return TimeRange(start, end)


def load_labels(path: Path) -> list[Phase]:
    """Labelled phases from a CSV file of `start,end,label` lines (a header line is
    allowed, `#` starts a comment) or from an AIT-ADS labels JSON (`attack_phases`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BacktestError(f"{path}: label file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BacktestError(f"{path}: cannot be read as UTF-8 text ({exc}).") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise BacktestError(f"{path}: not valid JSON ({exc}).") from None
        if not isinstance(data, dict) or not isinstance(data.get("attack_phases"), dict):
            raise BacktestError(f"{path}: a JSON label file needs an 'attack_phases' mapping of label to "
                                f"{{start, end}} (the AIT-ADS labels format); or use a CSV of start,end,label.")
        try:
            phases = load_ait_phases(path)
        except (KeyError, TypeError, ValueError) as exc:
            raise BacktestError(f"{path}: attack_phases entry without a valid start and end ({exc}).") from None
        return sorted(phases, key=lambda p: (p.start, p.end))
    phases = []
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        cells = [c.strip() for c in row]
        if number == 1 and [c.lower() for c in cells[:3]] == ["start", "end", "label"]:
            continue
        if len(cells) != 3 or not cells[2]:
            raise BacktestError(f"{path}:{number}: expected start,end,label (3 fields, a label that is not "
                                f"empty), found {len(cells)} field(s): {','.join(cells)[:80]!r}.")
        try:
            start, end = parse_time(cells[0]), parse_time(cells[1])
        except WazuhAnomalyError:
            raise BacktestError(f"{path}:{number}: '{cells[0]}' or '{cells[1]}' is not an ISO 8601 time "
                                f"such as 2022-01-24T03:01:00Z.") from None
        if end <= start:
            raise BacktestError(f"{path}:{number}: phase '{cells[2]}' ends ({cells[1]}) before it starts ({cells[0]}).")
        phases.append(Phase(cells[2], start, end))
    if not phases:
        raise BacktestError(f"{path}: no labelled phase in the file; write one start,end,label line per phase.")
    return sorted(phases, key=lambda p: (p.start, p.end))


# --------------------------------------------------------------------------- scoring

def restrict(bundle: ModelBundle, detector: str) -> ModelBundle:
    """The same model with one detector only: each detector is fitted and calibrated on
    its own, so this scores exactly as a model trained with that detector alone."""
    if detector not in bundle.detectors:
        raise BacktestError(f"scenario {bundle.scenario.name}: the model has no {detector} detector "
                            f"(trained: {', '.join(bundle.detectors)}).")
    scenario = dataclasses.replace(bundle.scenario, detectors=(detector,))
    return ModelBundle(scenario, bundle.version, bundle.profile, {detector: bundle.detectors[detector]},
                       {detector: bundle.calibrations[detector]}, bundle.meta, bundle.vocabulary)


def score_range(config: Config, bundles: dict[str, ModelBundle], start: float, end: float,
                *, stats: SourceStats | None = None) -> dict[str, ScenarioSeries]:
    """Read [start, end) once from each scenario's own source (plus each model's context
    before it) and keep, per scenario, the feature frames, the expected values and every
    detector's scores (pipeline/flow.py)."""
    try:
        series, reading = flow.read_and_score_series(config, bundles, start, end)
    except ValueError as exc:
        raise BacktestError(str(exc)) from None
    if stats is not None:
        for read in reading.reads:
            stats.alerts += read.stats.alerts
            for reason, n in read.stats.skipped.items():
                stats.skipped[reason] = stats.skipped.get(reason, 0) + n
            for reason, example in read.stats.examples.items():
                stats.examples.setdefault(reason, example)
    return series


# --------------------------------------------------------------------------- results

@dataclass
class RaisedAlert:
    """An anomaly and the Wazuh alert it would raise (from the rule simulator)."""

    anomaly: Anomaly
    event: dict
    rule_id: int | None
    level: int | None
    rule_description: str | None

    def to_json(self) -> dict:
        return {"event": self.event, "rule_id": self.rule_id, "level": self.level,
                "rule_description": self.rule_description}


@dataclass
class VariantResult:
    """One way of detecting (a detector alone, or the scenarios as configured)."""

    name: str
    alerts: list[RaisedAlert]
    evaluation: Evaluation | None
    precision: float | None = None
    recall: float | None = None
    flagged_buckets: int = 0
    labelled_buckets: int = 0
    hit_buckets: int = 0              # flagged and labelled

    @property
    def anomalies(self) -> list[Anomaly]:
        return [r.anomaly for r in self.alerts]

    def outside_phases(self, phases: Sequence[Phase]) -> list[RaisedAlert]:
        return [r for r in self.alerts if not any(_overlaps(r.anomaly, p) for p in phases)]


def _overlaps(a: Anomaly, phase: Phase) -> bool:
    return a.window_start.timestamp() < phase.end and a.window_end.timestamp() > phase.start


@dataclass
class BacktestResult:
    scenarios: list[str]
    train: TimeRange
    test: TimeRange
    phases: list[Phase]
    variants: dict[str, VariantResult]
    series: dict[str, ScenarioSeries]
    train_messages: list[str] = field(default_factory=list)
    labelled: bool = False            # labels were given (even if no phase falls in the test range)
    alerts_read: int = 0
    skipped_lines: int = 0

    def false_alarms_per_day(self, variant: str) -> float:
        return len(self.variants[variant].outside_phases(self.phases)) / self.test.days

    def phase_rows(self, variant: str) -> list[dict]:
        v = self.variants[variant]
        rows = []
        for result in v.evaluation.phases if v.evaluation else []:
            hits = [r for r in v.alerts if _overlaps(r.anomaly, result.phase)]
            worst = max(hits, key=lambda r: (r.level or 0, r.anomaly.score), default=None)
            rows.append({"phase": result.phase.label, "start": result.phase.start, "end": result.phase.end,
                         "caught": result.caught, "delay_seconds": result.delay_seconds,
                         "anomalies": result.anomalies,
                         "rule_id": worst.rule_id if worst else None, "level": worst.level if worst else None})
        return rows

    def table(self) -> str:
        """The per-phase table and the totals, as printed by `wazuh-anomaly backtest`."""
        lines = [f"backtest of {', '.join(self.scenarios)}: trained on {self.train}, scored {self.test} "
                 f"({self.test.days:g} day{'s' if self.test.days != 1 else ''})"]
        lines += [f"  {m}" for m in self.train_messages]
        names = list(self.variants)
        width = 29
        if self.phases:
            head = f"{'phase':<22} {'UTC':<11} " + " | ".join(f"{n:<{width}}" for n in names)
            sub = f"{'':<34} " + " | ".join(f"{'caught':<6} {'delay':>7}  {'rule (level)':<13}" for _ in names)
            lines += ["", head, sub]
            per_variant = {n: self.phase_rows(n) for n in names}
            for i, phase in enumerate(self.phases):
                cells = []
                for n in names:
                    row = per_variant[n][i]
                    delay = "-" if row["delay_seconds"] is None else f"{row['delay_seconds'] / 60:.0f} min"
                    rule = f"{row['rule_id']} ({row['level']})" if row["rule_id"] is not None else "-"
                    cells.append(f"{'yes' if row['caught'] else 'no':<6} {delay:>7}  {rule:<13}")
                span = f"{_hm(phase.start)}-{_hm(phase.end)}"
                lines.append(f"{phase.label[:22]:<22} {span:<11} " + " | ".join(cells))
        lines.append("")
        for n in names:
            v = self.variants[n]
            levels = sorted({r.level for r in v.alerts if r.level is not None})
            lines.append(f"{n}: {len(v.alerts)} anomalies in {v.flagged_buckets} buckets "
                         f"(rule levels {', '.join(map(str, levels)) or '-'})")
            if self.labelled:
                outside = v.outside_phases(self.phases)
                lines.append(f"  false alarms outside every phase: {len(outside)} anomalies in "
                             f"{len({r.anomaly.window_start for r in outside})} buckets, "
                             f"{self.false_alarms_per_day(n):.1f} per day")
                lines.append(f"  bucket precision {_pct(v.precision)} ({v.hit_buckets} of {v.flagged_buckets} flagged "
                             f"buckets in a phase), recall {_pct(v.recall)} ({v.hit_buckets} of "
                             f"{v.labelled_buckets} labelled buckets flagged)")
        if not self.labelled:
            lines.append("(no --labels given: every anomaly is listed, none can be called caught or false)")
        elif not self.phases:
            lines.append("(no labelled phase falls in the test range: every anomaly is a false alarm)")
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> dict:
        return {
            "scenarios": self.scenarios,
            "train": {"start": _iso(self.train.start), "end": _iso(self.train.end)},
            "test": {"start": _iso(self.test.start), "end": _iso(self.test.end), "days": self.test.days},
            "models": {n: s.model_version for n, s in self.series.items()},
            "phases": [{"label": p.label, "start": _iso(p.start), "end": _iso(p.end)} for p in self.phases],
            "variants": {
                n: {
                    "anomalies": len(v.alerts),
                    "flagged_buckets": v.flagged_buckets,
                    "phases": [{**r, "start": _iso(r["start"]), "end": _iso(r["end"])} for r in self.phase_rows(n)],
                    "false_alarms": len(v.outside_phases(self.phases)) if self.labelled else None,
                    "false_alarm_buckets": v.evaluation.false_alarm_buckets if v.evaluation else None,
                    "false_alarms_per_day": self.false_alarms_per_day(n) if self.labelled else None,
                    "precision": v.precision, "recall": v.recall, "labelled_buckets": v.labelled_buckets,
                    "hit_buckets": v.hit_buckets,
                    "alerts": [r.to_json() for r in v.alerts],
                } for n, v in self.variants.items()
            },
            "alerts_read": self.alerts_read,
            "skipped_lines": self.skipped_lines,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _hm(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%H:%M")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def bucket_precision_recall(anomalies: Iterable[Anomaly], phases: Sequence[Phase], test: TimeRange,
                            step: int) -> tuple[float | None, float | None, int, int, int]:
    """Precision and recall over the test range cut into `step`-second buckets: a bucket
    is flagged when an anomaly overlaps it and labelled when a phase does.
    Returns (precision, recall, flagged buckets, labelled buckets, buckets both)."""
    start = align_down(test.start, step)
    n = int(math.ceil((test.end - start) / step))
    edges = start + step * np.arange(n + 1)
    flagged = np.zeros(n, dtype=bool)
    labelled = np.zeros(n, dtype=bool)

    def mark(mask: np.ndarray, lo: float, hi: float) -> None:
        mask[(edges[:-1] < hi) & (edges[1:] > lo)] = True

    for a in anomalies:
        mark(flagged, a.window_start.timestamp(), a.window_end.timestamp())
    for p in phases:
        mark(labelled, p.start, p.end)
    hits = int(np.sum(flagged & labelled))
    precision = hits / flagged.sum() if flagged.any() else None
    recall = hits / labelled.sum() if labelled.any() else None
    return precision, recall, int(flagged.sum()), int(labelled.sum()), hits


def raised_alerts(anomalies: Sequence[Anomaly], grace_seconds: int) -> list[RaisedAlert]:
    """Each anomaly with the rule it would raise, its repeats counted as the anomaly log
    counts them (escalation.py), so repeated anomalies escalate as on the manager."""
    from ..ruleset import explain_all
    ordered = sorted(anomalies, key=lambda a: (a.window_end, a.scenario, a.entity_value or ""))
    # The wodle scores a bucket grace_seconds after it ends.
    detected = [a.window_end + timedelta(seconds=grace_seconds) for a in ordered]
    repeats = repeats_of([event_for(a, detected_at=d) for a, d in zip(ordered, detected)])
    events = [event_for(a, detected_at=d, repeat=r) for a, d, r in zip(ordered, detected, repeats)]
    simulated = explain_all(events) if events else []
    return [RaisedAlert(a, e, s.rule_id, s.level, s.description) for a, e, s in zip(ordered, events, simulated)]


# --------------------------------------------------------------------------- the job

log = logging.getLogger("wazuh_anomaly")


class _SandboxHealth(logging.Filter):
    """The Runner's health warnings speak of a wodle that retries later; in a backtest
    the one error raised below says it instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (logging.INFO <= record.levelno <= logging.WARNING and record.module == "runner")


def _variants(detector: str | None) -> list[str]:
    if detector in (None, CONFIGURED):
        return [CONFIGURED]
    if detector == BOTH:
        return list(BOTH_DETECTORS)
    if detector in DETECTORS:
        return [detector]
    raise BacktestError(f"--detector '{detector}' is not one of {', '.join(detector_choices())}.")


def _training_scenario(s: Scenario, variants: list[str]) -> Scenario:
    if variants == [CONFIGURED]:
        return s
    return dataclasses.replace(s, detectors=tuple(sorted(variants)))


def backtest(config: Config, scenarios: Sequence[Scenario], names: Sequence[str], train: TimeRange,
             test: TimeRange, *, phases: Sequence[Phase] = (), detector: str | None = None,
             models_dir: Path | None = None, now: float | None = None) -> BacktestResult:
    """Train `names` on `train` into a models directory of the backtest's own, score
    `test`, and compare with `phases`.

    Parameters
    ----------
    config, scenarios : the installation's configuration and scenarios (only the alerts
        directory and run settings are used; models, state and output are not).
    names : the scenarios to backtest.
    train, test : the ranges; the test range must not overlap the training range.
    phases : labelled phases (load_labels); empty when the data has no labels.
    detector : None (as each scenario is configured), a registered detector's name, or
        "both" (seasonal and mvad, each alone, side by side, from one training).
    models_dir : where to keep the trained models (default: a temporary directory that
        is removed); refused when it is the production models directory.
    """
    variants = _variants(detector)
    known = {s.name: s for s in scenarios}
    if not names:
        raise BacktestError("name the scenario(s) to backtest with --scenario NAME (repeatable).")
    missing = [n for n in names if n not in known]
    if missing:
        raise BacktestError(f"no scenario named '{missing[0]}' in {config.layout.scenarios_dir}; "
                            f"known: {', '.join(sorted(known)) or 'none'}.")
    if train.start < test.end and test.start < train.end:
        raise BacktestError(f"the test range {test} overlaps the training range {train}; a backtest must "
                            f"score data the model has not learned from.")
    now = time.time() if now is None else now
    if test.start >= now or train.end > now:
        which, r = ("test", test) if test.start >= now else ("training", train)
        raise BacktestError(f"the {which} range {r} reaches into the future; choose a range of past alerts.")
    if models_dir is not None and Path(models_dir).absolute() == Path(config.models_dir).absolute():
        raise BacktestError(f"--models-dir {models_dir} is the production models directory; a backtest "
                            f"never writes there, choose another directory.")
    chosen = [_training_scenario(known[n], variants) for n in names]
    work = Path(tempfile.mkdtemp(prefix="wazuh-anomaly-backtest-"))
    try:
        # Everything the Runner writes (models, state, health lines, its lock) stays in `work`.
        sandbox = dataclasses.replace(
            config, layout=Layout(work), models_dir=Path(models_dir) if models_dir else work / "models",
            state_dir=work / "state", anomalies_file=work / "anomalies.json")
        # Sources are those of the installation (a NetFlow file under its logs/), read
        # without moving any read cursor.
        runner = Runner(sandbox, chosen, now=now, reader=flow.Reader(config, resume=False))
        quiet = _SandboxHealth()
        log.addFilter(quiet)
        try:
            report = runner.train([s.name for s in chosen], train.start, train.end)
        finally:
            log.removeFilter(quiet)
        problems = [h.message for h in report.health if h.check == "source_unreadable"]
        for r in report.scenarios.values():
            if r.status == "waiting":
                problems.append(f"scenario {r.name} {r.message.split(';')[0]}; widen --train "
                                f"(or lower training.min_history_hours in its YAML)")
            elif r.status != "trained":
                problems.append(f"scenario {r.name}: {r.message or r.status}")
        if problems:
            raise BacktestError(f"training on {train} did not produce a model: {problems[0]}")
        bundles = {s.name: ModelBundle.load(sandbox.models_dir, s, device=config.run.device,
                                            threads=config.run.threads) for s in chosen}
        end = min(test.end, align_down(now - config.run.grace_seconds, 60))
        stats = SourceStats()
        series = score_range(config, bundles, test.start, end, stats=stats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    test = TimeRange(test.start, end)
    labelled = bool(phases)
    # Phases outside the scored range can be neither caught nor missed; with labels and
    # none inside, the range is known to be quiet and every anomaly is a false alarm.
    phases = [p for p in phases if p.start < test.end and p.end > test.start]
    step = min(s.bucket_seconds for s in chosen)
    results = {}
    not_trained = []
    for variant in variants:
        found: list[Anomaly] = []
        for name, bundle in bundles.items():
            why = (bundle.meta.get("skipped_detectors") or {}).get(variant)
            if variant != CONFIGURED and why is not None and variant not in bundle.detectors:
                # Training left this detector out (e.g. MVAD on a flat line): its column
                # has nothing from this scenario, and the table says why.
                not_trained.append(f"{name}: {variant} not trained ({why}); the {variant} column has "
                                   f"no anomaly from this scenario")
                continue
            scorer = bundle if variant == CONFIGURED else restrict(bundle, variant)
            found.extend(_score_series(scorer, series[name]))
        alerts = raised_alerts(found, config.run.grace_seconds)
        v = VariantResult(variant, alerts, evaluate(found, list(phases)) if labelled else None)
        v.precision, v.recall, v.flagged_buckets, v.labelled_buckets, v.hit_buckets = bucket_precision_recall(
            found, phases, test, step)
        results[variant] = v
    return BacktestResult(list(names), train, test, list(phases), results, series, labelled=labelled,
                          train_messages=[line for line in report.lines() if "trained" in line] + not_trained,
                          alerts_read=stats.alerts, skipped_lines=stats.skipped_total)


def _score_series(bundle: ModelBundle, series: ScenarioSeries) -> list[Anomaly]:
    return flow.anomalies(bundle, series.context_frames, series.start)
