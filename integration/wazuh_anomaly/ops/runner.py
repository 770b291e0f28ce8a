"""The jobs the CLI runs: score new buckets (`run`), learn (`train`, ops/training.py),
backfill (`detect`) and report (`status`). I/O at the edges — the sources in, the
emitter out, state on disk — and the one pipeline (pipeline/flow.py) in the middle.

The wodle's `run`, for every enabled scenario: train when no model exists yet (or a
retrain is due) and enough history is there; score every complete bucket after the
watermark (bounded catch-up); append the anomalies; then advance the watermark. One
failing scenario never stops the others; what goes wrong becomes a health event.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..core.config import Config, Scenario
from ..core.timeparse import parse_time_arg
from ..core.errors import ConfigError, ModelError, WazuhAnomalyError
from ..core.fileio import take_damaged
from ..core.findings import HealthEvent
from ..core.state import RunLock, ScenarioState, atomic_write_json, read_json
from ..emit.emitter import AnomalyWriter
from ..features.aggregate import FeatureAggregator, align_down
from ..pipeline import flow
from ..pipeline import scores as score_history
from ..pipeline.models import ModelBundle, context_entities, list_versions
from ..sources import ReadCursor, SourceStats, SourceUnreadable
from . import lifecycle
from .runreport import RunReport, ScenarioReport, as_datetime, fmt_hours, fmt_time, with_repeats
from .suppression import apply_suppressions, load_suppressions
from .training import Training

log = logging.getLogger("wazuh_anomaly")
TRAIN_RETRY_SECONDS = 3600

__all__ = ["Runner", "RunReport", "ScenarioReport", "parse_time", "with_repeats"]


@dataclass
class ScoringPlan:
    """One scenario's share of a scoring run: its model and state, the range to score
    and the aggregator that collects it (with context rows from `context_from`)."""

    scenario: Scenario
    bundle: ModelBundle
    state: ScenarioState | None
    start: float
    end: float
    aggregator: FeatureAggregator
    context_from: float


class Runner(Training):
    def __init__(self, config: Config, scenarios: list[Scenario], *, config_errors: Iterable[ConfigError] = (),
                 now: float | None = None, reader: flow.Reader | None = None):
        self.config = config
        # The sources every job reads through; a backtest passes one that moves no cursor.
        self.reader = reader if reader is not None else flow.Reader(config)
        # Scenarios whose source is not there yet (a NetFlow file before the collector
        # writes it) wait silently.
        self.waiting = {s.name: message for s in scenarios
                        if (message := self.reader.waiting_message(s)) is not None}
        self.scenarios = [s for s in scenarios if s.name not in self.waiting]
        self.config_errors = list(config_errors)
        self.now = time.time() if now is None else now
        self.state_dir = config.state_dir
        self.run_state_file = config.state_dir / "run.json"
        self.latest_alert: float | None = None       # newest alert any read of this run saw
        self.skips: list[SourceStats] = []            # what each read of this run skipped
        take_damaged()                                # reported by the run that found them

    @property
    def source(self):
        """The installation's own alert source (config.yaml source.type)."""
        return self.reader.source_of(None)

    # ------------------------------------------------------------------ helpers
    def _health(self, report: RunReport, check: str, message: str, *, scenario: str | None = None,
                severity: str = "medium") -> None:
        # Part of the report the command prints (and a line of the anomalies file): for the
        # log file, not again on the console (cli/app.py: who reads what).
        log.info("%s: %s", check, message)
        report.health.append(HealthEvent(check=check, message=message, at=as_datetime(self.now),
                                         scenario=scenario, severity=severity))

    def _writer(self) -> AnomalyWriter:
        return AnomalyWriter(self.config.anomalies_file, self.state_dir)

    def _tried_recently(self, attempted: float | None) -> bool:
        # Training re-reads the whole lookback: once an hour is enough to retry.
        return attempted is not None and 0 <= self.now - attempted < TRAIN_RETRY_SECONDS

    def _end_of_complete_buckets(self, scenario: Scenario) -> float:
        return align_down(self.now - self.config.run.grace_seconds, scenario.bucket_seconds)

    def _read(self, aggregators: list[FeatureAggregator], start: float, end: float, report: RunReport,
              cursor: ReadCursor | None = None, resume_at: float | None = None) -> flow.Reading:
        """One pass over each source the aggregators' scenarios read; skips become health."""
        reading = self.reader.read(aggregators, start, end, cursor=cursor, resume_at=resume_at)
        for read in reading.reads:
            self.skips.append(read.stats)
            if read.main:
                report.stats = read.stats
                if read.observer.last is not None:
                    self.latest_alert = max(self.latest_alert or 0.0, read.observer.last)
            if read.stats.skipped_total:
                self._health(report, "malformed_input", read.skip_message(), severity="low")
        return reading

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
        when = fmt_time(at) if isinstance(at, (int, float)) else "?"
        return f"the run of {when} skipped {counts}" + (f" ({first})" if first else "")

    def _load_model(self, scenario: Scenario) -> ModelBundle | None:
        return ModelBundle.load(self.config.models_dir, scenario, device=self.config.run.device,
                                threads=self.config.run.threads)

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
        waiting = [n for n in missing if n in self.waiting]
        if waiting:
            raise ConfigError(self.waiting[waiting[0]])
        if missing:
            raise ConfigError(f"no scenario named '{missing[0]}' in {self.config.layout.scenarios_dir}; "
                              f"known: {', '.join(sorted(known)) or 'none'}.")
        return [known[n] for n in names]

    def _flush_health(self, report: RunReport) -> None:
        for message in take_damaged():      # state files this run found damaged and moved aside
            self._health(report, "malformed_input", message, severity="medium")
        if report.health:
            result = self._writer().write(report.health, as_datetime(self.now))
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
            result = Shipper(self.config, self.scenarios, now=self.now).ship(report.anomalies, as_datetime(self.now))
        except OSError as exc:
            self._health(report, "shipping_failed", f"the shipping spool cannot be written ({exc.strerror}); "
                         f"anomalies.json still has every anomaly; check the disk.", severity="high")
            return
        report.health.extend(result.health)

    def _run_locked(self, scenarios: list[Scenario], report: RunReport, run_state: dict) -> None:
        """Load (and train when due) every model, then score every plan in one pass."""
        models = self._models(scenarios, report)
        plans = self._scoring_plans(scenarios, models, report)
        cursor = ReadCursor.from_dict(run_state.get("cursor") or {})
        if plans:
            self._read_plans(plans, scenarios, models, report, cursor)
            writer = self._writer()
            suppressions = load_suppressions(self.config)
            for plan in plans.values():
                self._score_plan(plan, report, writer, suppressions)
            # Next time, reading resumes where the earliest scenario will need it.
            run_state["cursor"] = cursor.to_dict()
        self._check_no_data(report, run_state)
        self._remember_skips(run_state)
        run_state["last_run"] = self.now
        atomic_write_json(self.run_state_file, run_state)

    def _models(self, scenarios: list[Scenario], report: RunReport) -> dict[str, ModelBundle]:
        """Every scenario's current model, after training the ones that are due."""
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
            models.update(self._train(due, report))
        for s in scenarios:
            self._check_stale(s, models.get(s.name), report)
        return models

    def _check_stale(self, s: Scenario, bundle: ModelBundle | None, report: RunReport) -> None:
        if bundle is not None and self.now - bundle.trained_at > s.training.max_model_age_days * 86400:
            self._health(report, "model_stale",
                         f"scenario {s.name}: model {bundle.version} is {(self.now - bundle.trained_at) / 86400:.0f} "
                         f"days old (limit {s.training.max_model_age_days:g}); check why retraining fails "
                         f"('wazuh-anomaly status') or run 'wazuh-anomaly train --scenario {s.name}'.",
                         scenario=s.name, severity="medium")

    def _scoring_plans(self, scenarios: list[Scenario], models: dict[str, ModelBundle],
                       report: RunReport) -> dict[str, ScoringPlan]:
        """What each scenario has to score: every complete bucket after its watermark,
        at most run.max_catchup_buckets of them."""
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
                            (end - start) // s.bucket_seconds, self.config.run.max_catchup_buckets,
                            fmt_time(skipped_to))
                r.message = f"skipped {fmt_hours(skipped_to - start)} of backlog (run.max_catchup_buckets)"
                start = skipped_to
            if end <= start:
                if r.status == "idle":
                    r.status = "up-to-date"
                continue
            # Context comes from the state when it ends exactly at the watermark, else from the source.
            context_from = start if state.watermark == start else start - bundle.context_buckets * s.bucket_seconds
            agg = flow.scoring_aggregator(bundle, start, end, vocabulary=state.vocabulary or {},
                                          context_from=context_from)
            plans[s.name] = ScoringPlan(s, bundle, state, start, end, agg, context_from)
        return plans

    def _read_plans(self, plans: dict[str, ScoringPlan], scenarios: list[Scenario], models: dict[str, ModelBundle],
                    report: RunReport, cursor: ReadCursor) -> None:
        """One pass over the sources for every plan; the cursor is left where the
        earliest scenario will need the next read to start."""
        lo = min(p.aggregator.start for p in plans.values())
        hi = max(p.aggregator.end for p in plans.values())
        next_starts = [p.end for p in plans.values()]
        next_starts += [ScenarioState.load(self.state_dir, s.name).watermark or lo
                        for s in scenarios if s.name in models and s.name not in plans]
        self._read([p.aggregator for p in plans.values()], lo, hi, report, cursor=cursor,
                   resume_at=min(next_starts))

    def _score_plan(self, plan: ScoringPlan, report: RunReport, writer: AnomalyWriter, suppressions) -> None:
        """Score one plan, write its anomalies, advance its watermark; a failure costs
        only this scenario and becomes a health event."""
        s, bundle, state = plan.scenario, plan.bundle, plan.state
        r = report.scenarios[s.name]
        try:
            frames = self._frames_for_scoring(s, bundle, state, plan.aggregator, plan.start, plan.context_from)
            anomalies = apply_suppressions(flow.anomalies(bundle, frames, plan.start), suppressions)
            result = writer.write(anomalies, as_datetime(self.now))
            anomalies = with_repeats(anomalies, result.repeats)
            report.written += result.written
            report.duplicates += result.duplicates
        except Exception as exc:  # one scenario's failure must not stop the others
            log.exception("scenario %s failed", s.name)
            r.status = "failed"
            r.message = f"{type(exc).__name__}: {exc}"
            state.last_error = r.message
            state.last_run = self.now
            state.save(self.state_dir)
            self._health(report, "scenario_failed", f"scenario {s.name}: scoring failed ({type(exc).__name__}: "
                         f"{exc}); see 'wazuh-anomaly status' and logs/anomaly/wazuh-anomaly.log.", scenario=s.name)
            return
        r.status = "scored"
        r.buckets = int((plan.end - plan.start) // s.bucket_seconds)
        r.anomalies = anomalies
        state.watermark = plan.end
        state.remember(frames, bundle.context_buckets, context_entities(s))
        state.vocabulary = plan.aggregator.vocabulary_after()
        state.last_run = self.now
        state.last_error = None
        state.last_anomalies = len(anomalies)
        state.total_anomalies += len(anomalies)
        state.save(self.state_dir)
        try:
            self._check_drift(s, bundle, report)
        except (OSError, ValueError) as exc:  # a drift check must never cost the scores
            log.warning("%s: drift check skipped (%s)", s.name, exc)

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
                if entity not in new_frames and (top is None or len(entities) < top * 2):
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
            since = "since " + fmt_time(reference) if run_state.get("last_alert") else "since the first run"
            if self.config.source_type == "indexer":
                spec = self.config.indexer
                message = (f"no alert in the indexer's {spec.index} for {fmt_hours(silent)} ({since}); check that "
                           f"Filebeat ships the manager's alerts there and that {spec.time_field} is their time field.")
            else:
                message = (f"no alert in {self.config.alerts_dir} for {fmt_hours(silent)} ({since}); check that "
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
            agg = flow.scoring_aggregator(bundle, s_start, s_end)
            plans[s.name] = ScoringPlan(s, bundle, None, s_start, s_end, agg, agg.start)
        if plans:
            lo = min(p.aggregator.start for p in plans.values())
            hi = max(p.aggregator.end for p in plans.values())
            try:
                self._read([p.aggregator for p in plans.values()], lo, hi, report)
            except SourceUnreadable as exc:
                self._health(report, "source_unreadable", str(exc), severity="high")
                plans = {}
        writer = self._writer() if write else None
        suppressions = load_suppressions(self.config)
        for name, plan in plans.items():
            r = report.scenarios[name]
            bundle = plan.bundle
            anomalies = apply_suppressions(flow.anomalies(bundle, plan.aggregator.frames(), plan.start), suppressions)
            r.scores, bundle.recent_scores = bundle.recent_scores, {}
            r.status = "scored"
            r.buckets = int((plan.end - plan.start) // plan.scenario.bucket_seconds)
            r.anomalies = anomalies
            if writer is not None:
                result = writer.write(anomalies, as_datetime(self.now))
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
                   "last_scored_bucket_end": fmt_time(state.watermark) if state.watermark else None,
                   "lag_minutes": None if state.watermark is None else round((self.now - state.watermark) / 60, 1),
                   "last_run": fmt_time(state.last_run) if state.last_run else None,
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
                                          f"{fmt_time(rolled.get('rolled_back_at'))}")
            rows.append(row)
        for error in self.config_errors:
            rows.append({"scenario": "(invalid)", "enabled": False, "last_error": str(error)})
        return rows



def parse_time(text: str) -> float:
    """An ISO 8601 time or date from the command line, as epoch seconds (UTC if no zone):
    the one timestamp parser (core/timeparse.py)."""
    return parse_time_arg(text)