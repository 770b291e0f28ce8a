"""Training, as the scheduled run and `wazuh-anomaly train` do it: one pass over the
history of every scenario due, then per scenario: wait for enough history, leave out the
rare-value warm-up, suppressed periods and false positives, fit and calibrate every
detector (pipeline/models.py), save the model and start the scoring watermark."""
from __future__ import annotations

import logging

import pandas as pd

from ..core import progress, timeparse
from ..core.errors import ConfigError, WazuhAnomalyError
from ..core.config import Scenario
from ..core.state import ScenarioState
from ..core.chunks import CHUNK, materialize
from ..features.aggregate import FeatureAggregator, align_down
from ..pipeline.flow import Reading
from ..pipeline.models import ModelBundle, context_entities
from . import lifecycle
from .runreport import RunReport, ScenarioReport, fmt_hours, fmt_time

log = logging.getLogger("wazuh_anomaly")
RARE_WARMUP_SECONDS = 86400
CHUNK_BUCKETS = 3 * 288     # the buckets of a full training chunk of CHUNK entities


class Training:
    """The training half of the Runner (ops/runner.py), which provides config, now,
    state_dir, _read, _health and _end_of_complete_buckets."""

    # Entities whose frames are built, fitted and scored at once while training (None:
    # chunk_entities(), CHUNK entities of 3 days of 5-minute buckets or as many values).
    training_chunk: int | None = None
    def _train(self, scenarios: list[Scenario], report: RunReport, start: float | None = None,
               end: float | None = None, *, explicit: bool = False) -> dict[str, ModelBundle]:
        """Train the given scenarios from one pass over their history."""
        if not scenarios:
            return {}
        ranges = {s.name: self._training_range(s, start, end) for s in scenarios}
        aggregators = {s.name: FeatureAggregator(s, *ranges[s.name]) for s in scenarios}
        lo = min(r[0] for r in ranges.values())
        hi = max(r[1] for r in ranges.values())
        reading = self._read(list(aggregators.values()), lo, hi, report)
        trained: dict[str, ModelBundle] = {}
        with progress.steps("training", len(scenarios)) as training:
            for s in scenarios:
                training.step(s.name)
                bundle = self._train_one(s, report, ranges[s.name], aggregators[s.name], reading, explicit)
                aggregators[s.name].release()     # its data, before the next scenario's frames
                if bundle is not None:
                    trained[s.name] = bundle
        return trained

    def _training_range(self, s: Scenario, start: float | None, end: float | None) -> tuple[float, float]:
        s_end = align_down(end, s.bucket_seconds) if end is not None else self._end_of_complete_buckets(s)
        s_start = (align_down(start, s.bucket_seconds) if start is not None
                   else align_down(s_end - s.training.lookback_days * 86400, s.bucket_seconds))
        if s_end - s_start < s.bucket_seconds:
            raise ConfigError(f"training range {fmt_time(s_start)} .. {fmt_time(s_end)} holds no complete "
                              f"{s.bucket_minutes}-minute bucket; widen --from/--to.")
        return s_start, s_end

    def _train_one(self, s: Scenario, report: RunReport, span: tuple[float, float], agg: FeatureAggregator,
                   reading: Reading, explicit: bool) -> ModelBundle | None:
        r = report.scenarios.setdefault(s.name, ScenarioReport(s.name))
        attempt = ScenarioState.load(self.state_dir, s.name)
        attempt.last_train_attempt = self.now
        attempt.save(self.state_dir)
        s_start, s_end = span
        first = reading.first(s.name)
        # History starts with the first alert, not with the lookback: leading zeros from
        # before the manager existed would teach the model that silence is normal.
        if first is not None and first > s_start and not explicit:
            s_start = align_down(first, s.bucket_seconds)
        have = 0.0 if first is None else s_end - max(s_start, align_down(first, s.bucket_seconds))
        need = s.training.min_history_hours * 3600
        if have < need:
            r.status = "waiting"
            r.message = (f"needs {fmt_hours(need)} of alert history to train and has {fmt_hours(max(have, 0))}; "
                         f"training starts by itself in about {fmt_hours(need - max(have, 0))}")
            self._health(report, "insufficient_history", f"scenario {s.name}: {r.message}.",
                         scenario=s.name, severity="low")
            return None
        # An entity without an alert for entity.forget_after_days (an agent removed) is
        # forgotten: no profile, no model, no context or vocabulary in the state.
        recent = (agg.recent_entities(s_end - s.entity.forget_after_days * 86400)
                  if s.entity is not None else None)
        series, vocabulary, fit_from = self._training_series(
            s, agg, s_start, s_end, recent, self.training_chunk or chunk_entities(agg.n_buckets))
        try:
            bundle, series = self._fit(s, series, vocabulary, s_start, fit_from, s_end)
        except (ValueError, RuntimeError, WazuhAnomalyError) as exc:
            r.status = "failed"
            r.message = f"training failed: {exc}"
            self._health(report, "training_failed", f"scenario {s.name}: {exc}", scenario=s.name, severity="medium")
            state = ScenarioState.load(self.state_dir, s.name)
            state.last_error = r.message
            state.save(self.state_dir)
            return None
        r.status = "trained"
        r.message = f"model {bundle.version} from {fmt_time(s_start)} to {fmt_time(s_end)}, {len(series)} series"
        log.info("%s: trained %s", s.name, r.message)
        # A first model starts scoring where its training ended, with the training tail
        # as context. A retrain leaves the watermark alone: scoring goes on from the
        # last scored bucket with the new model, so no bucket is skipped.
        state = ScenarioState.load(self.state_dir, s.name)
        state.last_error = None
        if recent is not None:
            forget(state, recent)
        if state.watermark is None:
            state.watermark = s_end
            state.remember(series, bundle.context_buckets, context_entities(s))
            state.vocabulary = vocabulary
        state.save(self.state_dir)
        return bundle

    @staticmethod
    def _training_series(s: Scenario, agg: FeatureAggregator, s_start: float, s_end: float,
                         recent: set | None = None, chunk: int = CHUNK):
        """The frames a scenario learns from (of the `recent` entities only, when given),
        built on demand a chunk of `chunk` entities at a time, and the rare-value
        vocabulary after them. The aggregator's cells become compact arrays (the only
        copy of the data held from here on)."""
        chosen = agg.compact()
        timeparse.clear_caches()     # so the memory of the cells just let go returns to the system
        if recent is not None:
            chosen = [e for e in chosen if e in recent]
        fit_from = s_start
        if s.has_rare_features:
            # Everything is "rare" while the vocabulary is young: the first day only
            # builds it, and the detectors learn from the buckets after that.
            fit_from = s_start + min(RARE_WARMUP_SECONDS, (s_end - s_start) / 3)
            fit_from = align_down(fit_from, s.bucket_seconds)
        if not chosen:
            # Nothing matched in the whole history: learn that zero is normal, so the
            # first activity ever is reported instead of waiting for a model forever.
            frames = {None: agg.frame(None)}
            log.info("%s: no alert matched its features in the training range; training on zeros", s.name)
            cut = pd.Timestamp(fit_from, unit="s", tz="UTC")
            series = {e: f if not len(f) or f.index[0] >= cut else f[f.index >= cut] for e, f in frames.items()}
        else:
            series = agg.series(chosen, start=max(fit_from, agg.start), chunk=chunk)
        return series, agg.vocabulary_after(recent), fit_from

    def _fit(self, s: Scenario, series: dict, vocabulary: dict, s_start: float, fit_from: float,
             s_end: float) -> tuple[ModelBundle, dict]:
        """Fit, calibrate and save; returns the model and the series it learned from."""
        # Suppressed periods and false positives are not normal: left out (lifecycle.py).
        exclusions = lifecycle.training_exclusions(self.config, s, fit_from, s_end)
        if exclusions:
            # Excluded buckets are replaced from a profile of every kept bucket: with
            # suppressions or false positives in the range the frames are held at once.
            series = materialize(series)
        series, excluded = lifecycle.exclude_from_training(s, series, exclusions)
        bundle = ModelBundle.train(s, series, trained_from=s_start, trained_to=s_end,
                                   device=self.config.run.device, threads=self.config.run.threads, now=self.now)
        bundle.vocabulary = vocabulary
        bundle.meta["excluded_buckets"] = excluded
        bundle.meta["exclusions"] = sorted({x.why for x in exclusions})
        bundle.save(self.config.models_dir, keep=self.config.run.keep_models)
        return bundle, series


def chunk_entities(buckets: int) -> int:
    """Entities per training chunk: CHUNK of them over 3 days of 5-minute buckets (what
    scoring holds at once), fewer over a longer lookback so a chunk's arrays stay as
    small (14 days of 5-minute buckets: 107 entities, about 17 MB a copy of 5 features)."""
    return max(1, min(CHUNK, CHUNK * CHUNK_BUCKETS // max(buckets, 1)))


def forget(state: ScenarioState, recent: set) -> None:
    """Drop from a scenario's state every entity not among `recent` (removed agents)."""
    state.context = {k: v for k, v in state.context.items()
                     if ScenarioState.entity_of(k) is None or ScenarioState.entity_of(k) in recent}
    keys = {ScenarioState.entity_key(e) for e in recent} | {""}
    state.vocabulary = {name: {k: v for k, v in entities.items() if k in keys}
                        for name, entities in (state.vocabulary or {}).items()}
