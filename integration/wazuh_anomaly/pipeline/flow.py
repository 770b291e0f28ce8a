"""The one read → aggregate → score pipeline behind `run`, `train`, `detect`, `backtest`
and `report`: source → aggregation → detector → calibration (→ emitter, in ops/).

- `Reader` reads every source the scenarios name once, over the union of their ranges,
  into one `FeatureAggregator` per scenario (the indexer computes what it can itself);
  one odd alert costs that alert for that scenario, never the run, and is counted.
- `scoring_aggregator` sets up a scenario's aggregator with the context rows its model
  needs before the first scored bucket.
- `anomalies` scores the frames of one scenario with its model (detectors, then
  calibration and severity, in `ModelBundle.score`).
- `score_series` keeps, for the report, the frames, the expected values and each
  detector's score in units of its threshold.

Which source a scenario reads is its `source:` key, looked up in the source registry
(core/registry.py); "alerts" is the installation's own alert source.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable

import pandas as pd

from ..core import progress
from ..core.config import Config, Scenario
from ..core.findings import Anomaly
from ..core.registry import ALERTS
from ..features.aggregate import FeatureAggregator, align_down
from ..sources import ReadCursor, SourceStats, source_for
from .models import ModelBundle

log = logging.getLogger("wazuh_anomaly")
SLACK_SECONDS = 600.0     # alerts written slightly out of order: the next read starts this much earlier


class Observer:
    """Counts what a source yields so a run knows when alerts last arrived."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self.count = 0

    def watch(self, alerts: Iterable[tuple[float, dict]]) -> Iterable[tuple[float, dict]]:
        for ts, alert in alerts:
            if self.first is None or ts < self.first:
                self.first = ts
            if self.last is None or ts > self.last:
                self.last = ts
            self.count += 1
            yield ts, alert


@dataclass
class SourceRead:
    """What one read of one source saw."""

    source: object
    stats: SourceStats
    observer: Observer
    main: bool                 # the installation's own alert source (config.yaml source.type)

    def skip_message(self) -> str:
        describe = getattr(self.source, "skip_message", None)
        return describe(self.stats) if describe is not None else self.stats.describe()


@dataclass
class Reading:
    """Every source read by one `Reader.read`, and which scenario read which."""

    reads: list[SourceRead] = field(default_factory=list)
    by_scenario: dict[str, SourceRead] = field(default_factory=dict)

    def first(self, scenario: str) -> float | None:
        """The oldest alert (or event) the scenario's source yielded."""
        read = self.by_scenario.get(scenario)
        return read.observer.first if read is not None else None

    @property
    def main(self) -> SourceRead | None:
        return next((r for r in self.reads if r.main), None)


class Reader:
    """Reads the sources of several scenarios into their aggregators, each source once.

    `resume`: sources keep a read cursor for the next scheduled read (run, train);
    backtests and reports read a range without moving it.
    """

    def __init__(self, config: Config, *, resume: bool = True, label: str = "reading {what}"):
        self.config = config
        self.resume = resume
        self.label = label
        self._sources: dict[tuple, object] = {}

    def source_of(self, scenario: Scenario | None):
        """The scenario's source; scenarios whose sources have equal keys share one."""
        source = source_for(self.config, scenario, resume=self.resume)
        return self._sources.setdefault(source.key, source)

    @staticmethod
    def is_main(scenario: Scenario) -> bool:
        return getattr(scenario, "source", ALERTS) == ALERTS

    def waiting_message(self, scenario: Scenario) -> str | None:
        """Why the scenario cannot read its source yet (e.g. no NetFlow file), or None."""
        waiting = getattr(self.source_of(scenario), "waiting_message", None)
        return waiting(scenario.name) if waiting is not None else None

    def read(self, aggregators: list[FeatureAggregator], start: float, end: float, *,
             cursor: ReadCursor | None = None, resume_at: float | None = None) -> Reading:
        """Feed [start, end) of each scenario's source into its aggregator. The installation's
        alert source gets the run's `cursor`; it marks where the next read can start:
        `resume_at`, less the usual slack for alerts written slightly out of order."""
        groups: dict[tuple, list[FeatureAggregator]] = {}
        for agg in aggregators:
            groups.setdefault(self.source_of(agg.scenario).key, []).append(agg)
        reading = Reading()
        for key, group in groups.items():
            source = self._sources[key]
            main = any(self.is_main(a.scenario) for a in group)
            result = self._read_one(source, group, start, end, main=main, cursor=cursor if main else None,
                                    resume_at=resume_at)
            reading.reads.append(result)
            for agg in group:
                reading.by_scenario[agg.scenario.name] = result
        return reading

    def _read_one(self, source, aggregators: list[FeatureAggregator], start: float, end: float, *, main: bool,
                  cursor: ReadCursor | None, resume_at: float | None) -> SourceRead:
        observer = Observer()
        stats = SourceStats()
        push_down = getattr(source, "push_down", None)
        if push_down is not None:
            # The indexer computes what it can itself; only the rest is read document by document.
            aggregators, (observer.first, observer.last, observer.count) = push_down(aggregators, start, end)
        adders = guarded_adders(aggregators, stats, source)
        options = {}
        if main:
            options = {"cursor": cursor,
                       "slack_seconds": SLACK_SECONDS + max(0.0, end - (resume_at if resume_at is not None else end))}
        with progress.steps(self.label.format(what=getattr(source, "what", "alerts"))) as reading:
            for ts, alert in observer.watch(source.read(start, end, stats=stats, **options) if adders else ()):
                reading.step()
                for add in adders:
                    try:
                        add(ts, alert)
                    except Exception as exc:  # one odd alert costs that alert, never the run
                        skip_bad_alert(stats, source, add.__self__, alert, exc)
        return SourceRead(source, stats, observer, main)


def guarded_adders(aggregators: list[FeatureAggregator], stats: SourceStats, source) -> list[Callable]:
    """Each aggregator's add, after telling it where to count a value it cannot use."""
    for agg in aggregators:
        def unusable(name, value, scenario=agg.scenario.name):
            stats.skip("unusable_value", where(source, None), f"scenario {scenario}: field {name} holds {shape(value)}")
        agg.on_unusable = unusable
    return [a.add for a in aggregators]


def where(source, alert: dict | None) -> str:
    """Where the alert being aggregated was read: 'file:line' when the source knows."""
    position = getattr(source, "position", None)
    at = position() if position is not None else ""
    if at:
        return at
    ident = alert.get("id") if isinstance(alert, dict) else None
    return f"alert {ident}" if isinstance(ident, str) else "an alert"


def shape(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list with an object or a list inside"
    if isinstance(value, str):
        return f"{value[:40]!r}, not a number"
    return f"{value!r}"[:40]


def skip_bad_alert(stats: SourceStats, source, agg: FeatureAggregator, alert: dict, exc: Exception) -> None:
    log.debug("alert skipped for %s", agg.scenario.name, exc_info=True)
    stats.skip("bad_alert", where(source, alert),
               f"scenario {agg.scenario.name} could not use it ({type(exc).__name__}: {str(exc)[:100]})")


# --------------------------------------------------------------------------- scoring

def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def scoring_aggregator(bundle: ModelBundle, start: float, end: float, *, vocabulary: dict | None = None,
                       context_from: float | None = None) -> FeatureAggregator:
    """The aggregator of a scenario scored on [start, end): from `context_from` (default:
    the model's context buckets before `start`), with the rare-value vocabulary."""
    s = bundle.scenario
    if context_from is None:
        context_from = start - bundle.context_buckets * s.bucket_seconds
    return FeatureAggregator(s, context_from, end, vocabulary=bundle.vocabulary if vocabulary is None else vocabulary)


def anomalies(bundle: ModelBundle, frames: dict[str | None, pd.DataFrame], first: float) -> list[Anomaly]:
    """The anomalies of every entity's frame from `first` on (the rows before are context),
    in time order."""
    found = bundle.score_many(frames, first=first)
    found.sort(key=lambda a: (a.window_start, a.entity_value or ""))
    return found


@dataclass
class ScenarioSeries:
    """One scenario over a scored range: what the report plots.

    `frames[entity]` are the feature values per bucket, `expected[entity]` the seasonal
    profile's value for the same buckets, `scores[detector][entity]` the detector's score
    in units of its threshold (1.0 = the threshold, 0 = the training median).
    """

    scenario: Scenario
    start: float
    end: float
    model_version: str
    frames: dict[str | None, pd.DataFrame]
    expected: dict[str | None, pd.DataFrame]
    scores: dict[str, dict[str | None, pd.Series]]
    context_frames: dict[str | None, pd.DataFrame] = field(default_factory=dict, repr=False)  # with the rows before start


def score_series(bundle: ModelBundle, agg: FeatureAggregator, start: float, end: float) -> ScenarioSeries:
    """The frames, expected values and every detector's scores of [start, end)."""
    first = pd.Timestamp(start, unit="s", tz="UTC")
    frames = agg.frames()
    kept, expected, scores = {}, {}, {d: {} for d in bundle.detectors}
    for entity, frame in progress.each(frames.items(), "entities"):
        rows = frame[frame.index >= first]
        kept[entity] = rows
        values, _ = bundle.profile.expected(rows.index, entity)
        expected[entity] = pd.DataFrame(values, index=rows.index, columns=rows.columns)
        for name, detector in bundle.detectors_for(entity).items():
            inputs = bundle.detector_input(name, frame)
            raw = detector.score(inputs, entity)["score"]
            raw = raw[raw.index >= first]
            cal = bundle.calibration(name, entity)
            scores[name][entity] = pd.Series(cal.exceedance(raw.to_numpy()), index=raw.index, name=name)
    return ScenarioSeries(bundle.scenario, start, end, bundle.version, kept, expected, scores, context_frames=frames)


def read_and_score_series(config: Config, bundles: dict[str, ModelBundle], start: float, end: float, *,
                          label: str = "reading {what} to score") -> tuple[dict[str, ScenarioSeries], Reading]:
    """Read [start, end) once (plus each model's context before it) from each scenario's
    own source, and keep per scenario the frames, expected values and detector scores."""
    plans = {}
    for name, bundle in bundles.items():
        s = bundle.scenario
        s_start, s_end = align_down(start, s.bucket_seconds), align_down(end, s.bucket_seconds)
        if s_end <= s_start:
            raise ValueError(f"scenario {name}: {_utc(start)} .. {_utc(end)} holds no complete "
                             f"{s.bucket_minutes}-minute bucket; widen the range.")
        plans[name] = (bundle, scoring_aggregator(bundle, s_start, s_end), s_start, s_end)
    lo = min(p[1].start for p in plans.values())
    hi = max(p[1].end for p in plans.values())
    reading = Reader(config, resume=False, label=label).read([p[1] for p in plans.values()], lo, hi)
    series = {name: score_series(bundle, agg, s_start, s_end)
              for name, (bundle, agg, s_start, s_end) in progress.each(plans.items(), "scoring",
                                                                       detail=lambda item: item[0])}
    return series, reading
