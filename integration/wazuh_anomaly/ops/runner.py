"""The jobs the CLI runs: score new buckets (`run`), learn (`train`), backfill (`detect`)
and report (`status`). I/O at the edges — the source in, the emitter out, state on
disk — and the detectors in the middle.

The wodle's `run`, for every enabled scenario: train when no model exists yet (or a
retrain is due) and enough history is there; score every complete bucket after the
watermark (bounded catch-up); append the anomalies; then advance the watermark. One
failing scenario never stops the others; what goes wrong becomes a health event.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable

from pathlib import Path

import pandas as pd

from ..core import progress
from ..core.config import Config, Scenario
from ..emit.emitter import AnomalyWriter
from ..core.timeparse import parse_time_arg
from ..core.errors import ConfigError, ModelError, WazuhAnomalyError
from ..features.aggregate import FeatureAggregator, align_down
from ..core.findings import Anomaly, HealthEvent
from . import lifecycle
from ..pipeline import scores as score_history
from ..pipeline.models import ModelBundle, list_versions
from .suppression import apply_suppressions, load_suppressions
from ..sources import ReadCursor, SourceStats, SourceUnreadable, make_source
from ..netflow.flows_source import FlowsFileSource
from ..core.fileio import take_damaged
from ..core.state import RunLock, ScenarioState, atomic_write_json, read_json

log = logging.getLogger("wazuh_anomaly")
RARE_WARMUP_SECONDS = 86400
TRAIN_RETRY_SECONDS = 3600


def _dt(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=timezone.utc)


def _fmt(epoch: float | None) -> str:
    return "-" if epoch is None else _dt(epoch).strftime("%Y-%m-%d %H:%M UTC")


def _hours(seconds: float) -> str:
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


class _Observer:
    """Counts what the source yields so a run knows when alerts last arrived."""

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


def waiting_for_flows_message(name: str, path: Path) -> str:
    return (f"scenario {name} counts NetFlow events and {path} does not exist yet; start the NetFlow "
            f"normaliser first ('wazuh-anomaly netflow normalize --follow', see docs/netflow.md).")


class Runner:
    def __init__(self, config: Config, scenarios: list[Scenario], *, config_errors: Iterable[ConfigError] = (),
                 now: float | None = None):
        self.config = config
        # Flow-baseline scenarios wait silently until the NetFlow collector writes its file.
        self.waiting_for_flows = {s.name: self._flows_source(s).path for s in scenarios
                                  if s.source == "flows" and not self._flows_source(s).available()}
        scenarios = [s for s in scenarios if s.name not in self.waiting_for_flows]
        self.scenarios = scenarios
        self.flows_first: float | None = None        # oldest flow event the last read saw
        self.config_errors = list(config_errors)
        self.now = time.time() if now is None else now
        self.source = make_source(config)
        self.state_dir = config.state_dir
        self.run_state_file = config.state_dir / "run.json"
        self.latest_alert: float | None = None       # newest alert any read of this run saw
        self.skips: list[SourceStats] = []            # what each read of this run skipped
        take_damaged()                                # reported by the run that found them

    # ------------------------------------------------------------------ helpers
    def _health(self, report: RunReport, check: str, message: str, *, scenario: str | None = None,
                severity: str = "medium") -> None:
        # Part of the report the command prints (and a line of the anomalies file): for the
        # log file, not again on the console (cli/app.py: who reads what).
        log.info("%s: %s", check, message)
        report.health.append(HealthEvent(check=check, message=message, at=_dt(self.now),
                                         scenario=scenario, severity=severity))

    def _writer(self) -> AnomalyWriter:
        return AnomalyWriter(self.config.anomalies_file, self.state_dir)

    def _tried_recently(self, attempted: float | None) -> bool:
        # Training re-reads the whole lookback: once an hour is enough to retry.
        return attempted is not None and 0 <= self.now - attempted < TRAIN_RETRY_SECONDS

    def _end_of_complete_buckets(self, scenario: Scenario) -> float:
        return align_down(self.now - self.config.run.grace_seconds, scenario.bucket_seconds)

    def _read(self, aggregators: list[FeatureAggregator], start: float, end: float, report: RunReport,
              cursor: ReadCursor | None = None, resume_at: float | None = None) -> _Observer:
        flows = [a for a in aggregators if a.scenario.source == "flows"]
        if flows:
            self._read_flows(flows, start, end, report)
            aggregators = [a for a in aggregators if a.scenario.source != "flows"]
            if not aggregators:
                return _Observer()
        observer = _Observer()
        stats = SourceStats()
        push_down = getattr(self.source, "push_down", None)
        if push_down is not None:
            # The indexer computes what it can itself; only the rest is read document by document.
            aggregators, (observer.first, observer.last, observer.count) = push_down(aggregators, start, end)
        adders = self._guarded_adders(aggregators, stats, self.source)
        # The cursor marks where the next read can start: `resume_at`, less the usual slack
        # for alerts written slightly out of order.
        slack = 600.0 + max(0.0, end - (resume_at if resume_at is not None else end))
        with progress.steps("reading alerts") as reading:
            for ts, alert in observer.watch(self.source.read(start, end, cursor=cursor, stats=stats,
                                                             slack_seconds=slack) if adders else ()):
                reading.step()
                for add in adders:
                    try:
                        add(ts, alert)
                    except Exception as exc:  # one odd alert costs that alert, never the run
                        _skip_bad_alert(stats, self.source, add.__self__, alert, exc)
        report.stats = stats
        self.skips.append(stats)
        if observer.last is not None:
            self.latest_alert = max(self.latest_alert or 0.0, observer.last)
        if stats.skipped_total:
            self._health(report, "malformed_input", stats.describe(), severity="low")
        return observer

    def _flows_source(self, scenario: Scenario) -> FlowsFileSource:
        path = Path(scenario.flows_file) if scenario.flows_file else self.config.layout.logs_dir / "netflow.json"
        name = "".join(c if c.isalnum() else "_" for c in str(path.absolute()))[-100:]
        return FlowsFileSource(path, cursor_file=self.config.state_dir / f"flows_cursor_{name}.json")

    def _read_flows(self, aggregators: list[FeatureAggregator], start: float, end: float,
                    report: RunReport) -> None:
        """Flow-baseline scenarios read the normalised NetFlow events, one pass per file."""
        by_file: dict[Path, list[FeatureAggregator]] = {}
        for a in aggregators:
            by_file.setdefault(self._flows_source(a.scenario).path, []).append(a)
        self.flows_first = None
        for group in by_file.values():
            source = self._flows_source(group[0].scenario)
            stats = SourceStats()
            adders = self._guarded_adders(group, stats, source)
            for ts, event in source.read(start, end, stats=stats):
                if self.flows_first is None or ts < self.flows_first:
                    self.flows_first = ts
                for add in adders:
                    try:
                        add(ts, event)
                    except Exception as exc:  # one odd event costs that event, never the run
                        _skip_bad_alert(stats, source, add.__self__, event, exc)
            self.skips.append(stats)
            if stats.skipped_total:
                self._health(report, "malformed_input", f"{source.path}: {stats.describe()}", severity="low")

    @staticmethod
    def _guarded_adders(aggregators: list[FeatureAggregator], stats: SourceStats, source) -> list:
        """Each aggregator's add, after telling it where to count a value it cannot use."""
        for agg in aggregators:
            def unusable(name, value, scenario=agg.scenario.name):
                stats.skip("unusable_value", _where(source, None),
                           f"scenario {scenario}: field {name} holds {_shape(value)}")
            agg.on_unusable = unusable
        return [a.add for a in aggregators]

    def _remember_skips(self, run_state: dict) -> None:
        """The counts and first examples of what this run skipped, for `status`."""
        counts: dict[str, int] = {}
        examples: dict[str, str] = {}
        for stats in self.skips:
            for reason, n in stats.skipped.items():
                counts[reason] = counts.get(reason, 0) + n
            for reason, example in stats.examples.items():
                examples.setdefault(reason, example)
        if counts:
            run_state["skipped"] = {"at": self.now, "counts": counts, "examples": examples}

    def input_status(self) -> str | None:
        """One sentence on the input the last run that skipped any skipped (None if none ever did)."""
        run_state = read_json(self.run_state_file, {}) or {}
        skipped = run_state.get("skipped") if isinstance(run_state, dict) else None
        if not isinstance(skipped, dict) or not isinstance(skipped.get("counts"), dict):
            return None
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped["counts"].items()))
        examples = skipped.get("examples") if isinstance(skipped.get("examples"), dict) else {}
        first = "; ".join(f"first {reason} at {where}" for reason, where in sorted(examples.items()))
        at = skipped.get("at")
        when = _fmt(at) if isinstance(at, (int, float)) else "?"
        return f"the run of {when} skipped {counts}" + (f" ({first})" if first else "")

    def _load_model(self, scenario: Scenario) -> ModelBundle | None:
        return ModelBundle.load(self.config.models_dir, scenario, device=self.config.run.device,
                                threads=self.config.run.threads)

    # ------------------------------------------------------------------ training
    def _train(self, scenarios: list[Scenario], report: RunReport, start: float | None = None,
               end: float | None = None, *, explicit: bool = False) -> dict[str, ModelBundle]:
        """Train the given scenarios from one pass over their history."""
        if not scenarios:
            return {}
        ranges = {}
        for s in scenarios:
            s_end = align_down(end, s.bucket_seconds) if end is not None else self._end_of_complete_buckets(s)
            s_start = (align_down(start, s.bucket_seconds) if start is not None
                       else align_down(s_end - s.training.lookback_days * 86400, s.bucket_seconds))
            if s_end - s_start < s.bucket_seconds:
                raise ConfigError(f"training range {_fmt(s_start)} .. {_fmt(s_end)} holds no complete "
                                  f"{s.bucket_minutes}-minute bucket; widen --from/--to.")
            ranges[s.name] = (s_start, s_end)
        aggregators = {s.name: FeatureAggregator(s, *ranges[s.name]) for s in scenarios}
        lo = min(r[0] for r in ranges.values())
        hi = max(r[1] for r in ranges.values())
        observer = self._read(list(aggregators.values()), lo, hi, report)
        with progress.steps("training", len(scenarios)) as training:
            return self._train_each(scenarios, report, ranges, aggregators, observer, explicit, training)

    def _train_each(self, scenarios: list[Scenario], report: RunReport, ranges: dict, aggregators: dict,
                    observer: _Observer, explicit: bool, training: progress.Steps) -> dict[str, ModelBundle]:
        trained: dict[str, ModelBundle] = {}
        for s in scenarios:
            training.step(s.name)
            r = report.scenarios.setdefault(s.name, ScenarioReport(s.name))
            attempt = ScenarioState.load(self.state_dir, s.name)
            attempt.last_train_attempt = self.now
            attempt.save(self.state_dir)
            s_start, s_end = ranges[s.name]
            first = self.flows_first if s.source == "flows" else observer.first
            # History starts with the first alert, not with the lookback: leading zeros from
            # before the manager existed would teach the model that silence is normal.
            if first is not None and first > s_start and not explicit:
                s_start = align_down(first, s.bucket_seconds)
            have = 0.0 if first is None else s_end - max(s_start, align_down(first, s.bucket_seconds))
            need = s.training.min_history_hours * 3600
            if have < need:
                r.status = "waiting"
                r.message = (f"needs {_hours(need)} of alert history to train and has {_hours(max(have, 0))}; "
                             f"training starts by itself in about {_hours(need - max(have, 0))}")
                self._health(report, "insufficient_history", f"scenario {s.name}: {r.message}.",
                             scenario=s.name, severity="low")
                continue
            agg = aggregators[s.name]
            frames = agg.frames()
            if not frames:
                # Nothing matched in the whole history: learn that zero is normal, so the
                # first activity ever is reported instead of waiting for a model forever.
                frames = {None: agg.frame(None)}
                log.info("%s: no alert matched its features in the training range; training on zeros", s.name)
            fit_from = s_start
            if s.has_rare_features:
                # Everything is "rare" while the vocabulary is young: the first day only
                # builds it, and the detectors learn from the buckets after that.
                fit_from = s_start + min(RARE_WARMUP_SECONDS, (s_end - s_start) / 3)
                fit_from = align_down(fit_from, s.bucket_seconds)
            series = {e: f[f.index >= pd.Timestamp(fit_from, unit="s", tz="UTC")] for e, f in frames.items()}
            vocabulary = agg.vocabulary_after()
            try:
                # Suppressed periods and false positives are not normal: left out (lifecycle.py).
                exclusions = lifecycle.training_exclusions(self.config, s, fit_from, s_end)
                series, excluded = lifecycle.exclude_from_training(s, series, exclusions)
                bundle = ModelBundle.train(s, series, trained_from=s_start, trained_to=s_end,
                                           device=self.config.run.device, threads=self.config.run.threads,
                                           now=self.now)
                bundle.vocabulary = vocabulary
                bundle.meta["excluded_buckets"] = excluded
                bundle.meta["exclusions"] = sorted({x.why for x in exclusions})
                bundle.save(self.config.models_dir, keep=self.config.run.keep_models)
            except (ValueError, RuntimeError, WazuhAnomalyError) as exc:
                r.status = "failed"
                r.message = f"training failed: {exc}"
                self._health(report, "training_failed", f"scenario {s.name}: {exc}", scenario=s.name,
                             severity="medium")
                state = ScenarioState.load(self.state_dir, s.name)
                state.last_error = r.message
                state.save(self.state_dir)
                continue
            trained[s.name] = bundle
            r.status = "trained"
            r.message = (f"model {bundle.version} from {_fmt(s_start)} to {_fmt(s_end)}, "
                         f"{len(series)} series")
            log.info("%s: trained %s", s.name, r.message)
            # A first model starts scoring where its training ended, with the training tail
            # as context. A retrain leaves the watermark alone: scoring goes on from the
            # last scored bucket with the new model, so no bucket is skipped.
            state = ScenarioState.load(self.state_dir, s.name)
            state.last_error = None
            if state.watermark is None:
                state.watermark = s_end
                state.remember(series, bundle.context_buckets, s.entity.top if s.entity else 1)
                state.vocabulary = vocabulary
            state.save(self.state_dir)
        return trained

    def train(self, names: list[str] | None = None, start: float | None = None,
              end: float | None = None) -> RunReport:
        report = RunReport()
        chosen = self._select(names)
        with RunLock(self.config.layout.run_lock):
            try:
                self._train(chosen, report, start, end, explicit=start is not None)
            except SourceUnreadable as exc:
                self._health(report, "source_unreadable", str(exc), severity="high")
            self._flush_health(report)
        return report

    def _select(self, names: list[str] | None, *, enabled_only: bool = True) -> list[Scenario]:
        if not names:
            return [s for s in self.scenarios if s.enabled or not enabled_only]
        known = {s.name: s for s in self.scenarios}
        missing = [n for n in names if n not in known]
        waiting = [n for n in missing if n in self.waiting_for_flows]
        if waiting:
            raise ConfigError(waiting_for_flows_message(waiting[0], self.waiting_for_flows[waiting[0]]))
        if missing:
            raise ConfigError(f"no scenario named '{missing[0]}' in {self.config.layout.scenarios_dir}; "
                              f"known: {', '.join(sorted(known)) or 'none'}.")
        return [known[n] for n in names]

    def _flush_health(self, report: RunReport) -> None:
        for message in take_damaged():      # state files this run found damaged and moved aside
            self._health(report, "malformed_input", message, severity="medium")
        if report.health:
            result = self._writer().write(report.health, _dt(self.now))
            report.written += result.written
            report.duplicates += result.duplicates

    # ------------------------------------------------------------------ scoring
    def run(self, names: list[str] | None = None) -> RunReport:
        """The wodle's job: train when due, score every new complete bucket, emit."""
        report = RunReport()
        with RunLock(self.config.layout.run_lock):
            for error in self.config_errors:
                where = getattr(error, "path", None)
                self._health(report, "config_invalid", str(error), severity="medium",
                             scenario=Path(where).stem if where else None)
            run_state = read_json(self.run_state_file, {}) or {}
            if not isinstance(run_state, dict):
                run_state = {}
            try:
                self._run_locked(self._select(names), report, run_state)
            except SourceUnreadable as exc:
                self._health(report, "source_unreadable", str(exc), severity="high")
            except ConfigError:
                raise
            except Exception as exc:  # the wodle ignores output: an event is the only way to be seen
                log.exception("the run failed")
                self._health(report, "scenario_failed", f"the scoring run failed ({type(exc).__name__}: {exc}); "
                             f"see logs/anomaly/wazuh-anomaly.log.", severity="high")
            self._ship(report)
            self._flush_health(report)
        return report

    def _ship(self, report: RunReport) -> None:
        """Also send the anomalies to the indexer's data streams (shipping.enabled); after
        anomalies.json has them, so a shipping failure never loses one."""
        if not self.config.shipping.enabled:
            return
        from ..emit.shipping import Shipper
        try:
            result = Shipper(self.config, self.scenarios, now=self.now).ship(report.anomalies, _dt(self.now))
        except OSError as exc:
            self._health(report, "shipping_failed", f"the shipping spool cannot be written ({exc.strerror}); "
                         f"anomalies.json still has every anomaly; check the disk.", severity="high")
            return
        report.health.extend(result.health)

    def _run_locked(self, scenarios: list[Scenario], report: RunReport, run_state: dict) -> None:
        models: dict[str, ModelBundle] = {}
        due: list[Scenario] = []
        for s in scenarios:
            r = report.scenarios.setdefault(s.name, ScenarioReport(s.name))
            attempted = ScenarioState.load(self.state_dir, s.name).last_train_attempt
            try:
                bundle = self._load_model(s)
            except ModelError as exc:
                self._health(report, "training_failed", f"scenario {s.name}: {exc}", scenario=s.name)
                bundle = None
            if bundle is not None:
                models[s.name] = bundle
                # After a rollback the clock starts again, or the next run would undo it.
                age = self.now - lifecycle.retrain_reference(self.config, s.name, bundle)
                if age > s.training.retrain_every_days * 86400 and not self._tried_recently(attempted):
                    due.append(s)
            elif not self._tried_recently(attempted):
                due.append(s)
            else:
                r.status, r.message = "waiting", "no model yet; training is retried hourly"
        if due and self.config.run.auto_train:
            trained = self._train(due, report)
            models.update(trained)
        for s in scenarios:
            bundle = models.get(s.name)
            if bundle is not None and self.now - bundle.trained_at > s.training.max_model_age_days * 86400:
                self._health(report, "model_stale",
                             f"scenario {s.name}: model {bundle.version} is {(self.now - bundle.trained_at) / 86400:.0f} "
                             f"days old (limit {s.training.max_model_age_days:g}); check why retraining fails "
                             f"('wazuh-anomaly status') or run 'wazuh-anomaly train --scenario {s.name}'.",
                             scenario=s.name, severity="medium")

        # One pass over the source for every scenario that has buckets to score.
        plans = {}
        for s in scenarios:
            bundle = models.get(s.name)
            r = report.scenarios[s.name]
            if bundle is None:
                if r.status == "idle":
                    r.status = "waiting"
                    r.message = r.message or "no model yet"
                continue
            state = ScenarioState.load(self.state_dir, s.name)
            end = self._end_of_complete_buckets(s)
            if state.watermark is None:
                # Lost or new state with an existing model: resume where training ended.
                start = max(bundle.trained_to, end - self.config.run.max_catchup_buckets * s.bucket_seconds)
            else:
                start = state.watermark
            start = align_down(start, s.bucket_seconds)
            limit = self.config.run.max_catchup_buckets * s.bucket_seconds
            if end - start > limit:
                skipped_to = end - limit
                log.warning("%s: %d buckets behind; scoring the last %d (from %s)", s.name,
                            (end - start) // s.bucket_seconds, self.config.run.max_catchup_buckets, _fmt(skipped_to))
                r.message = f"skipped {_hours(skipped_to - start)} of backlog (run.max_catchup_buckets)"
                start = skipped_to
            if end <= start:
                if r.status == "idle":
                    r.status = "up-to-date"
                continue
            plans[s.name] = (s, bundle, state, start, end)
        if not plans:
            self._check_no_data(report, run_state)
            self._remember_skips(run_state)
            run_state["last_run"] = self.now
            atomic_write_json(self.run_state_file, run_state)
            return
        aggregators = {}
        for name, (s, bundle, state, start, end) in plans.items():
            # Context comes from the state when it ends exactly at the watermark, else from the source.
            context_from = start if state.watermark == start else start - bundle.context_buckets * s.bucket_seconds
            aggregators[name] = (FeatureAggregator(s, context_from, end, vocabulary=state.vocabulary), context_from)
        lo = min(a.start for a, _ in aggregators.values())
        hi = max(a.end for a, _ in aggregators.values())
        cursor = ReadCursor.from_dict(run_state.get("cursor") or {})
        next_starts = [end for (_, _, _, _, end) in plans.values()]
        next_starts += [ScenarioState.load(self.state_dir, s.name).watermark or lo
                        for s in scenarios if s.name in models and s.name not in plans]
        resume_at = min(next_starts)
        self._read([a for a, _ in aggregators.values()], lo, hi, report, cursor=cursor,
                   resume_at=resume_at)

        writer = self._writer()
        suppressions = load_suppressions(self.config)
        for name, (s, bundle, state, start, end) in plans.items():
            r = report.scenarios[name]
            agg, context_from = aggregators[name]
            try:
                frames = self._frames_for_scoring(s, bundle, state, agg, start, context_from)
                anomalies = []
                for entity, frame in frames.items():
                    anomalies.extend(bundle.score(frame, entity, first=start))
                anomalies.sort(key=lambda a: (a.window_start, a.entity_value or ""))
                anomalies = apply_suppressions(anomalies, suppressions)
                result = writer.write(anomalies, _dt(self.now))
                anomalies = with_repeats(anomalies, result.repeats)
                report.written += result.written
                report.duplicates += result.duplicates
            except Exception as exc:  # one scenario's failure must not stop the others
                log.exception("scenario %s failed", name)
                r.status = "failed"
                r.message = f"{type(exc).__name__}: {exc}"
                state.last_error = r.message
                state.last_run = self.now
                state.save(self.state_dir)
                self._health(report, "scenario_failed", f"scenario {name}: scoring failed ({type(exc).__name__}: "
                             f"{exc}); see 'wazuh-anomaly status' and logs/anomaly/wazuh-anomaly.log.",
                             scenario=name)
                continue
            r.status = "scored"
            r.buckets = int((end - start) // s.bucket_seconds)
            r.anomalies = anomalies
            state.watermark = end
            state.remember(frames, bundle.context_buckets, 2 * s.entity.top if s.entity else 1)
            state.vocabulary = agg.vocabulary_after()
            state.last_run = self.now
            state.last_error = None
            state.last_anomalies = len(anomalies)
            state.total_anomalies += len(anomalies)
            state.save(self.state_dir)
            try:
                self._check_drift(s, bundle, report)
            except (OSError, ValueError) as exc:  # a drift check must never cost the scores
                log.warning("%s: drift check skipped (%s)", name, exc)
        self._check_no_data(report, run_state)
        # Next time, reading resumes where the earliest scenario will need it.
        run_state["cursor"] = cursor.to_dict()
        self._remember_skips(run_state)
        run_state["last_run"] = self.now
        atomic_write_json(self.run_state_file, run_state)

    def _check_drift(self, s: Scenario, bundle: ModelBundle, report: RunReport) -> None:
        """Keep the scores just computed; once a day's worth is there, compare with training."""
        kept = score_history.record_scores(self.state_dir, bundle, bundle.recent_scores)
        bundle.recent_scores = {}
        drifted = [d for d in score_history.drift_of(bundle, kept) if d.drifted]
        if drifted:
            self._health(report, "model_drift",
                         f"scenario {s.name}: model {bundle.version} no longer fits recent activity "
                         f"({'; '.join(d.describe() for d in drifted)}); if the change is legitimate retrain with "
                         f"'wazuh-anomaly train --scenario {s.name}', if a retrain made it worse use "
                         f"'wazuh-anomaly models rollback --scenario {s.name}'.", scenario=s.name, severity="medium")

    def _frames_for_scoring(self, s: Scenario, bundle: ModelBundle, state: ScenarioState,
                            agg: FeatureAggregator, start: float, context_from: float) -> dict[str | None, pd.DataFrame]:
        features = s.feature_names
        top = s.entity.top if s.entity else None
        new_frames = agg.frames(top)
        context_rows = bundle.context_buckets
        entities = list(new_frames)
        if context_from == start and s.entity is not None:
            # Entities active in the context but silent now are scored too (a stop is news).
            for key in state.context:
                entity = ScenarioState.entity_of(key)
                if entity not in new_frames and len(entities) < (top or 1) * 2:
                    entities.append(entity)
                    new_frames[entity] = agg.frame(entity)
        frames = {}
        for entity in entities:
            frame = new_frames[entity]
            if context_from == start and context_rows:
                context = state.context_frame(entity, features, context_rows, s.bucket_seconds)
                frame = pd.concat([context, frame])
            frames[entity] = frame
        return frames

    def _check_no_data(self, report: RunReport, run_state: dict) -> None:
        if self.latest_alert is not None:
            run_state["last_alert"] = max(run_state.get("last_alert") or 0.0, self.latest_alert)
        reference = run_state.get("last_alert") or run_state.setdefault("first_run", self.now)
        silent = self.now - reference
        if silent > self.config.run.no_data_hours * 3600:
            since = "since " + _fmt(reference) if run_state.get("last_alert") else "since the first run"
            if self.config.source_type == "indexer":
                spec = self.config.indexer
                message = (f"no alert in the indexer's {spec.index} for {_hours(silent)} ({since}); check that "
                           f"Filebeat ships the manager's alerts there and that {spec.time_field} is their time field.")
            else:
                message = (f"no alert in {self.config.alerts_dir} for {_hours(silent)} ({since}); check that "
                           f"wazuh-analysisd writes alerts.json (<jsonout_output>yes</jsonout_output>).")
            self._health(report, "no_data", message, severity="medium")

    # ------------------------------------------------------------------ backfill
    def detect(self, start: float, end: float, names: list[str] | None = None, *, write: bool = True) -> RunReport:
        """Score a historical range with the current models (no watermark change)."""
        report = RunReport()
        plans = {}
        for s in self._select(names):
            r = report.scenarios.setdefault(s.name, ScenarioReport(s.name))
            bundle = self._load_model(s)
            if bundle is None:
                r.status = "waiting"
                r.message = "no model; run 'wazuh-anomaly train' first"
                continue
            s_start = align_down(start, s.bucket_seconds)
            s_end = min(align_down(end, s.bucket_seconds), self._end_of_complete_buckets(s))
            if s_end <= s_start:
                r.status = "up-to-date"
                r.message = "the range holds no complete bucket"
                continue
            context_from = s_start - bundle.context_buckets * s.bucket_seconds
            plans[s.name] = (s, bundle, FeatureAggregator(s, context_from, s_end, vocabulary=bundle.vocabulary),
                             s_start, s_end)
        if plans:
            lo = min(p[2].start for p in plans.values())
            hi = max(p[2].end for p in plans.values())
            try:
                self._read([p[2] for p in plans.values()], lo, hi, report)
            except SourceUnreadable as exc:
                self._health(report, "source_unreadable", str(exc), severity="high")
                plans = {}
        writer = self._writer() if write else None
        suppressions = load_suppressions(self.config)
        for name, (s, bundle, agg, s_start, s_end) in plans.items():
            r = report.scenarios[name]
            anomalies = []
            for entity, frame in agg.frames().items():
                anomalies.extend(bundle.score(frame, entity, first=s_start))
            anomalies.sort(key=lambda a: (a.window_start, a.entity_value or ""))
            anomalies = apply_suppressions(anomalies, suppressions)
            r.scores, bundle.recent_scores = bundle.recent_scores, {}
            r.status = "scored"
            r.buckets = int((s_end - s_start) // s.bucket_seconds)
            r.anomalies = anomalies
            if writer is not None:
                result = writer.write(anomalies, _dt(self.now))
                r.anomalies = with_repeats(anomalies, result.repeats)
                report.written += result.written
                report.duplicates += result.duplicates
        if write:
            self._ship(report)
            self._flush_health(report)
        return report

    # ------------------------------------------------------------------ status
    def status(self) -> list[dict]:
        rows = []
        for s in self._select(None, enabled_only=False):
            state = ScenarioState.load(self.state_dir, s.name)
            row = {"scenario": s.name, "enabled": s.enabled, "model": None, "model_age_days": None,
                   "versions": len(list_versions(self.config.models_dir, s.name)),
                   "last_scored_bucket_end": _fmt(state.watermark) if state.watermark else None,
                   "lag_minutes": None if state.watermark is None else round((self.now - state.watermark) / 60, 1),
                   "last_run": _fmt(state.last_run) if state.last_run else None,
                   "last_anomalies": state.last_anomalies, "total_anomalies": state.total_anomalies,
                   "last_error": state.last_error}
            try:
                bundle = self._load_model(s)
            except WazuhAnomalyError as exc:
                row["last_error"] = str(exc)
                bundle = None
            if bundle is not None:
                row["model"] = bundle.version
                row["model_age_days"] = round((self.now - bundle.trained_at) / 86400, 2)
                row["trained_range"] = f"{bundle.meta.get('trained_from')} .. {bundle.meta.get('trained_to')}"
                if bundle.meta.get("excluded_buckets"):
                    row["excluded_from_training"] = f"{bundle.meta['excluded_buckets']} buckets"
                problems = []
                if state.last_error and state.last_error.startswith("training failed"):
                    problems.append("last retraining failed (see last error)")
                if self.now - bundle.trained_at > s.training.max_model_age_days * 86400:
                    problems.append(f"stale (older than {s.training.max_model_age_days:g} days)")
                drift = score_history.drift_of(bundle, score_history.recent_scores(self.state_dir, bundle))
                if drift:
                    row["drift"] = "; ".join(d.describe() for d in drift)
                    if any(d.drifted for d in drift):
                        problems.append("drifted")
                if problems:
                    row["model_health"] = ", ".join(problems)
                rolled = lifecycle.lifecycle_state(self.state_dir, s.name)
                if rolled.get("rolled_back_to") == bundle.version:
                    row["rolled_back"] = (f"from {rolled.get('rolled_back_from')} at "
                                          f"{_fmt(rolled.get('rolled_back_at'))}")
            rows.append(row)
        for error in self.config_errors:
            rows.append({"scenario": "(invalid)", "enabled": False, "last_error": str(error)})
        return rows


def with_repeats(anomalies: list[Anomaly], repeats: dict) -> list[Anomaly]:
    """The anomalies with the repeats the anomaly log counted for them (escalation.py)."""
    return [dataclasses.replace(a, repeat=repeats[a.id]) if a.id in repeats else a for a in anomalies]


def _where(source, alert: dict | None) -> str:
    """Where the alert being aggregated was read: 'file:line' when the source knows."""
    position = getattr(source, "position", None)
    where = position() if position is not None else ""
    if where:
        return where
    ident = alert.get("id") if isinstance(alert, dict) else None
    return f"alert {ident}" if isinstance(ident, str) else "an alert"


def _shape(value) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list with an object or a list inside"
    if isinstance(value, str):
        return f"{value[:40]!r}, not a number"
    return f"{value!r}"[:40]


def _skip_bad_alert(stats: SourceStats, source, agg: FeatureAggregator, alert: dict, exc: Exception) -> None:
    log.debug("alert skipped for %s", agg.scenario.name, exc_info=True)
    stats.skip("bad_alert", _where(source, alert),
               f"scenario {agg.scenario.name} could not use it ({type(exc).__name__}: {str(exc)[:100]})")


def parse_time(text: str) -> float:
    """An ISO 8601 time or date from the command line, as epoch seconds (UTC if no zone):
    the one timestamp parser (core/timeparse.py)."""
    return parse_time_arg(text)