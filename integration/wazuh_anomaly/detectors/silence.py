"""Silence: an entity (an agent, a source) whose log type stops while it normally sends.

Each feature of a scenario is one log type of one entity (a count per bucket). What is
learned is how often a bucket of that hour has *any* event: per entity, feature and
hour of day (hour of week once two weeks of history are there), a Beta posterior of the
share of active buckets (Jeffreys prior; the hour-of-week slots borrow strength from
their hour of day). Counts do not matter, only whether something came, so a bursty
source is not taken for a busy one.

A silence is the run of empty buckets since the last active one. Its score is
-log10 of the posterior predictive probability of that run (beta-binomial: each empty
bucket makes the next one a little less surprising), summed over the hours it spans.
A source that is normally quiet at that hour has a share near zero and scores nothing.

The run is reported once, at the bucket where it becomes improbable enough: the
threshold of an entity and feature is the larger of
- the budget: `alerts_per_day` findings per day for the whole scenario, spread over
  every series and bucket (Bonferroni), so `-log10(alerts_per_day / (series * buckets
  per day))`; and
- a guard from history: 1.5 times the longest silence seen while learning (the model
  assumes independent buckets; a source that already went quiet like this is not news).
A silence shorter than an hour (MIN_SILENCE_SECONDS) is never reported.
Buckets after the crossing score 0 until events come back, so a removed agent gives one
finding, not one per run. A run longer than a day is not scored (its start is out of
every run's context); a silence that takes more than a day to become improbable is not
one to report.

The score of a bucket is the strongest feature's silence score in units of its
threshold (1.0 = the threshold), so the shared calibration (floor 1.0) keeps it as is.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.registry import DETECTORS
from ..core.trust import read_trusted
from .base import ScoreFrame, Series

# Findings per day the silence scenario may raise by chance, for all its series together,
# when built without a scenario; a scenario gives its share of the installation's
# alerts_per_day (docs/budget.md).
ALERTS_PER_DAY = 0.1
# A threshold is at least this many times the longest silence seen while learning.
HISTORY_GUARD = 1.5
# Two weeks of history before hour-of-week slots are used.
WEEKLY_AFTER_DAYS = 14.0
# How many buckets of evidence an hour-of-day slot lends to each of its hour-of-week slots.
PRIOR_WEIGHT = 2.0
# A silence shorter than this is never reported, however unlikely: the least an admin acts
# on (a mail server's 44 quiet minutes on a Sunday morning is not news, an hour is).
MIN_SILENCE_SECONDS = 3600
# A silence is scored for at most this long after its last event (the context of every run).
LONGEST_RUN_SECONDS = 86400
JEFFREYS = 0.5                    # Beta(1/2, 1/2) prior of the share of active buckets
LOG10 = math.log(10.0)
FORMAT = 1


def _slots(index: pd.DatetimeIndex, weekly: bool) -> np.ndarray:
    hours = np.asarray(index.hour)
    return np.asarray(index.weekday) * 24 + hours if weekly else hours


@DETECTORS.register("silence")
class SilenceDetector:
    name = "silence"
    threshold_floor = 1.0
    uses_calendar = False       # the learned shares are per hour (of the week) already
    needs_variation = False     # a source that is always present still has a rate to lose
    suppressible = False        # judges absence: deviation-based suppression rules do not apply
    direction = "down"          # what it finds is always a drop to nothing

    @classmethod
    def from_scenario(cls, scenario, features: list[str], *, device: str = "cpu",
                      threads: int | None = None) -> "SilenceDetector":
        return cls(features, alerts_per_day=scenario.alerts_per_day)

    def __init__(self, features: list[str], spec: object = None, *, alerts_per_day: float = ALERTS_PER_DAY):
        # `spec` (the scenario's seasonal settings, passed to every non-MVAD detector) is not used.
        self.features = list(features)
        self.alerts_per_day = float(alerts_per_day)
        self.step_seconds = 300
        self.weekly = False
        self.base_threshold = 0.0
        # entity key -> (alpha, beta) arrays of shape (slots, features); threshold (features,)
        self.alpha_: dict[str, np.ndarray] = {}
        self.beta_: dict[str, np.ndarray] = {}
        self.threshold_: dict[str, np.ndarray] = {}
        self.training_: dict = {}

    @property
    def context_buckets(self) -> int:
        return max(1, LONGEST_RUN_SECONDS // self.step_seconds)

    @staticmethod
    def _key(entity: str | None) -> str:
        return "*" if entity is None else str(entity)

    # ------------------------------------------------------------------ learning
    def fit(self, series: Series) -> "SilenceDetector":
        frames = {self._key(e): f[self.features] for e, f in series.items() if len(f)}
        if not frames:
            raise ValueError("no training data")
        steps = [int(np.median(np.diff(f.index.asi8)) // 10**9) for f in frames.values() if len(f) > 1]
        self.step_seconds = max(60, min(steps)) if steps else 300
        first = min(f.index[0] for f in frames.values())
        last = max(f.index[-1] for f in frames.values())
        self.weekly = (last - first).total_seconds() >= WEEKLY_AFTER_DAYS * 86400
        buckets_per_day = 86400 / self.step_seconds
        n_series = len(frames) * len(self.features)
        self.base_threshold = -math.log10(self.alerts_per_day / (n_series * buckets_per_day))
        self.alpha_, self.beta_, self.threshold_ = {}, {}, {}
        longest = {}
        for key, frame in frames.items():
            self.alpha_[key], self.beta_[key] = self._posterior(frame)
            run = self._run_scores(frame, key)
            longest[key] = run.max(axis=0) if len(run) else np.zeros(len(self.features))
            self.threshold_[key] = np.maximum(self.base_threshold, HISTORY_GUARD * longest[key])
        self.training_ = {"weekly_slots": self.weekly, "bucket_seconds": self.step_seconds,
                          "base_threshold": round(self.base_threshold, 3), "series": n_series,
                          "guarded_series": int(sum(int(np.sum(HISTORY_GUARD * v > self.base_threshold))
                                                    for v in longest.values()))}
        return self

    def _posterior(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        active = frame.to_numpy(dtype=float) > 0
        hours = _slots(frame.index, False)
        a_day = np.zeros((24, len(self.features)))
        n_day = np.zeros((24, 1))
        np.add.at(a_day, hours, active)
        np.add.at(n_day, hours, 1.0)
        if not self.weekly:
            return a_day + JEFFREYS, (n_day - a_day) + JEFFREYS
        share = (a_day + JEFFREYS) / (n_day + 2 * JEFFREYS)             # hour-of-day prior mean
        week = _slots(frame.index, True)
        a_week = np.zeros((168, len(self.features)))
        n_week = np.zeros((168, 1))
        np.add.at(a_week, week, active)
        np.add.at(n_week, week, 1.0)
        prior = share[np.arange(168) % 24]
        return a_week + PRIOR_WEIGHT * prior, (n_week - a_week) + PRIOR_WEIGHT * (1 - prior)

    def _run_scores(self, frame: pd.DataFrame, key: str) -> np.ndarray:
        """-log10 P(the run of empty buckets up to and including each bucket), per feature;
        0 where the bucket is active, the run's start is not in the frame, or the run is
        longer than the context."""
        values = frame[self.features].to_numpy(dtype=float)
        out = np.zeros(values.shape)
        if key not in self.alpha_ or not len(values):
            return out
        slots = _slots(frame.index, self.weekly)
        alpha, beta = self.alpha_[key][slots], self.beta_[key][slots]
        limit = self.context_buckets
        for j in range(values.shape[1]):
            active = values[:, j] > 0
            run = np.cumsum(active)                       # run id: active buckets seen so far
            quiet = ~active & (run > 0)                   # the run's start is in the frame
            if not quiet.any():
                continue
            rows = np.flatnonzero(quiet)
            keys = pd.DataFrame({"run": run[rows], "slot": slots[rows]})
            earlier = keys.groupby(["run", "slot"], sort=False).cumcount().to_numpy()
            position = keys.groupby("run", sort=False).cumcount().to_numpy()
            a, b = alpha[rows, j], beta[rows, j]
            # P(this bucket empty | the run's earlier empty buckets of its slot), beta-binomial.
            surprise = -(np.log(b + earlier) - np.log(a + b + earlier)) / LOG10
            score = pd.Series(surprise).groupby(keys["run"].to_numpy(), sort=False).cumsum().to_numpy()
            score[position >= limit] = 0.0
            out[rows, j] = score
        return out

    # ------------------------------------------------------------------ scoring
    def score(self, frame: pd.DataFrame, entity: str | None = None) -> ScoreFrame:
        key = self._key(entity)
        run = self._run_scores(frame, key)
        if key in self.threshold_ and len(run):
            ratio = run / self.threshold_[key]
            ratio[self._quiet_seconds(frame) < MIN_SILENCE_SECONDS] = 0.0
            before = np.vstack([np.zeros((1, ratio.shape[1])), ratio[:-1]])
            crossing = (ratio > 1.0) & (before <= 1.0)
            crossing &= ~self._same_silence(frame, crossing)
            # Past the crossing the run was reported: nothing more until events come back.
            ratio = np.where(ratio > 1.0, np.where(crossing, ratio, 0.0), ratio)
        else:
            ratio = np.zeros((len(frame), len(self.features)))
        scores = ratio.max(axis=1) if len(ratio) else np.zeros(0)
        flagged = np.where(ratio > 1.0, ratio, 0.0)
        totals = flagged.sum(axis=1, keepdims=True)
        shares = np.divide(flagged, totals, out=np.zeros_like(flagged), where=totals > 0)
        out = pd.DataFrame(shares, index=frame.index, columns=self.features)
        out.insert(0, "score", scores)
        return out

    def _quiet_seconds(self, frame: pd.DataFrame) -> np.ndarray:
        """How long each feature has been quiet at the end of each bucket (0 in an active one)."""
        active = frame[self.features].to_numpy(dtype=float) > 0
        index = np.arange(len(frame))[:, None]
        last_active = np.maximum.accumulate(np.where(active, index, -1), axis=0)
        return (index - last_active) * float(self.step_seconds)

    def _same_silence(self, frame: pd.DataFrame, crossing: np.ndarray) -> np.ndarray:
        """Crossings that repeat a silence of the same entity already reported: another
        feature crossed earlier, after this feature's run began, and is still quiet (an
        agent that stops silences every log type; it is one finding)."""
        repeated = np.zeros_like(crossing)
        events = np.argwhere(crossing)
        if len(events) < 2:
            return repeated
        active = frame[self.features].to_numpy(dtype=float) > 0
        n = len(active)
        rows = np.arange(n)[:, None]
        last_active = np.maximum.accumulate(np.where(active, rows, -1), axis=0)
        next_active = np.minimum.accumulate(np.where(active, rows, n)[::-1], axis=0)[::-1]
        reported: list[tuple[int, int]] = []          # (row, feature) of findings kept
        for t, j in sorted(map(tuple, events)):
            start = last_active[t, j] + 1
            if any(g != j and r < t and r >= start and next_active[r, g] > t for r, g in reported):
                repeated[t, j] = True
            else:
                reported.append((t, j))
        return repeated

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path) -> None:
        payload = {"format": FORMAT, "features": self.features, "alerts_per_day": self.alerts_per_day,
                   "bucket_seconds": self.step_seconds, "weekly": self.weekly,
                   "base_threshold": self.base_threshold, "training": self.training_,
                   "entities": {k: {"alpha": np.round(self.alpha_[k], 6).tolist(),
                                    "beta": np.round(self.beta_[k], 6).tolist(),
                                    "threshold": np.round(self.threshold_[k], 6).tolist()}
                                for k in self.alpha_}}
        (directory / "silence.json").write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, features: list[str], *, device: str = "cpu",
             threads: int | None = None) -> "SilenceDetector":
        data = json.loads(read_trusted(directory / "silence.json"))
        if data.get("format") != FORMAT:
            raise ValueError(f"silence model format {data.get('format')} is not {FORMAT}")
        if list(data["features"]) != list(features):
            raise ValueError(f"silence model features {data['features']} do not match {features}")
        detector = cls(features, alerts_per_day=float(data["alerts_per_day"]))
        detector.step_seconds = int(data["bucket_seconds"])
        detector.weekly = bool(data["weekly"])
        detector.base_threshold = float(data["base_threshold"])
        detector.training_ = dict(data.get("training") or {})
        shape = (168 if detector.weekly else 24, len(features))
        for key, entity in data["entities"].items():
            alpha = np.asarray(entity["alpha"], dtype=float)
            beta = np.asarray(entity["beta"], dtype=float)
            threshold = np.asarray(entity["threshold"], dtype=float)
            if alpha.shape != shape or beta.shape != shape or threshold.shape != (len(features),):
                raise ValueError(f"silence model of {key!r} has shapes {alpha.shape}, {beta.shape}, "
                                 f"{threshold.shape}; expected {shape}")
            if not (np.all(alpha > 0) and np.all(beta > 0) and np.all(threshold > 0)):
                raise ValueError(f"silence model of {key!r} holds a share or threshold that is not positive")
            detector.alpha_[key], detector.beta_[key], detector.threshold_[key] = alpha, beta, threshold
        return detector
