"""Seasonal robust baseline: how far each feature is from its median for this hour of
day (optionally weekday and hour), in robust standard deviations (median/MAD).

Cheap, explainable, and on real alert streams as good as MVAD at a fixed flag budget
(see MVAD.md); a scenario can use it alone or beside MVAD.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..core import progress
from ..core.chunks import in_chunks, index_of, length_of, ordered
from ..core.config import Scenario, SeasonalSpec
from ..core.registry import DETECTORS
from ..core.trust import read_trusted
from .base import ScoreFrame, Series
from .profile import POOLED, SeasonalProfile

# A seasonal threshold never drops below this many robust deviations, however quiet
# the training data was.
MIN_THRESHOLD = 3.0
# Folds (groups of days) of the out-of-sample training scores the alert threshold is
# calibrated on (calibration_scores).
CALIBRATION_FOLDS = 7


@DETECTORS.register("seasonal")
class SeasonalDetector:
    name = "seasonal"
    threshold_floor = MIN_THRESHOLD
    uses_calendar = False       # the profile is per hour (and weekday) already
    needs_variation = False     # a flat profile still says "anything above zero is new"
    every_entity = True         # bytes per entity: models every entity of a scenario (entity.mvad_top: docs)

    @classmethod
    def from_scenario(cls, scenario: Scenario, features: list[str], *, device: str = "cpu",
                      threads: int | None = None) -> "SeasonalDetector":
        return cls(features, scenario.seasonal)

    def __init__(self, features: list[str], spec: SeasonalSpec = SeasonalSpec()):
        self.features = list(features)
        self.spec = spec
        self.profile_: SeasonalProfile | None = None

    @property
    def context_buckets(self) -> int:
        return 0

    def fit(self, series: Series) -> "SeasonalDetector":
        self.profile_ = SeasonalProfile(self.features, weekday=self.spec.weekday,
                                        min_scale=self.spec.min_scale).fit(series)
        return self

    def calibration_scores(self, series: Series, folds: int = CALIBRATION_FOLDS) -> dict:
        """Out-of-sample training scores, per entity (calibration_chunks, all of them)."""
        out: dict = {}
        for part in self.calibration_chunks(series, folds):
            out.update(part)
        return out

    def calibration_chunks(self, series: Series, folds: int = CALIBRATION_FOLDS, *, chunk: int | None = None):
        """Out-of-sample training scores, per entity, yielded `chunk` entities at a time
        (only one chunk's frames are built at once): the days are split into `folds`
        groups, and each group is scored by a profile fitted on the others. Scores of the
        very buckets a profile was fitted on are tighter than any later day's (its
        medians and scales were chosen to fit them), and a tail calibrated on them would
        alert more often than it promises. What a fold's profile shares across entities
        (the pooled profile, from at most POOLED_SAMPLE of them) is fitted first; each
        entity's own profile depends on its frame alone, so chunks give the same scores."""
        keys = [e for e in series if length_of(series, e)]
        fold_of = {}             # entity -> each bucket's fold, computed once per distinct index
        present = {}             # entity -> the folds its buckets fall in
        by_index: dict[int, tuple[pd.Index, np.ndarray, frozenset]] = {}
        for e in keys:
            index = index_of(series, e)
            known = by_index.get(id(index))
            if known is None or known[0] is not index:
                days = (index.asi8 // (86400 * 10**9)) % folds
                known = by_index[id(index)] = (index, days, frozenset(np.unique(days).tolist()))
            fold_of[e], present[e] = known[1], known[2]
        if len(frozenset().union(*present.values()) if present else ()) < folds:
            with progress.steps("scoring entities", len(keys)) as scoring:
                for part in in_chunks(ordered(series, keys), chunk):
                    scoring.step(by=len(part))
                    yield {e: self.score(f, e)["score"].to_numpy() for e, f in part.items()}
            return
        # Per fold: who has buckets outside it (its "rest"), and the pooled profile of those.
        rests, pooled = [], []
        for fold in range(folds):
            rest = [e for e in keys if present[e] - {fold}]
            rests.append(set(rest))
            profile = SeasonalProfile(self.features, weekday=self.spec.weekday, min_scale=self.spec.min_scale)
            profile.fit_pooled(ordered(series, rest), rows=lambda e, fold=fold: fold_of[e] != fold)
            pooled.append((profile.medians[POOLED], profile.scales[POOLED], len(rest) > 1))
        with progress.steps("scoring entities", len(keys)) as scoring:
            for part in in_chunks(ordered(series, keys), chunk):
                scoring.step(by=len(part))
                out = {e: np.zeros(len(f)) for e, f in part.items()}
                for fold in range(folds):
                    profile = SeasonalProfile(self.features, weekday=self.spec.weekday, min_scale=self.spec.min_scale)
                    profile.medians[POOLED], profile.scales[POOLED], per_entity = pooled[fold]
                    if per_entity:
                        profile.fit_entities({e: f[fold_of[e] != fold] for e, f in part.items() if e in rests[fold]})
                    for e, frame in part.items():
                        held = fold_of[e] == fold
                        if held.any():
                            key = e if e in rests[fold] else None   # seen only in this fold: the pooled profile
                            out[e][held] = self._scores(profile.deviation(frame[held], key))
                yield out

    def _scores(self, z: np.ndarray) -> np.ndarray:
        z = np.maximum(z, 0.0) if self.spec.direction == "up" else np.abs(z)
        return z.max(axis=1) if len(z) else np.zeros(0)

    def score(self, frame: pd.DataFrame, entity: str | None = None) -> ScoreFrame:
        if self.profile_ is None:
            raise RuntimeError("score() before fit()")
        z = self.profile_.deviation(frame, entity)
        if self.spec.direction == "up":
            z = np.maximum(z, 0.0)
        else:
            z = np.abs(z)
        scores = z.max(axis=1) if len(z) else np.zeros(0)
        totals = z.sum(axis=1, keepdims=True)
        shares = np.divide(z, totals, out=np.zeros_like(z), where=totals > 0)
        out = pd.DataFrame(shares, index=frame.index, columns=self.features)
        out.insert(0, "score", scores)
        return out

    def score_many(self, frames: list[pd.DataFrame], entities: list[str | None]) -> np.ndarray:
        """The scores of many entities' frames at once, as an entities x buckets array; every
        frame has the same index. Equal to score(frame, entity)["score"] of each one."""
        if self.profile_ is None:
            raise RuntimeError("score_many() before fit()")
        if not frames:
            return np.zeros((0, 0))
        z = self.profile_.deviation_many(np.stack([f[self.features].to_numpy(dtype=float) for f in frames]),
                                         frames[0].index, entities)
        z = np.maximum(z, 0.0) if self.spec.direction == "up" else np.abs(z)
        return z.max(axis=2) if z.shape[1] else np.zeros(z.shape[:2])

    def save(self, directory: Path) -> None:
        payload = {"spec": {"weekday": self.spec.weekday, "direction": self.spec.direction,
                            "min_scale": self.spec.min_scale},
                   "profile": self.profile_.to_json()}
        (directory / "seasonal.json").write_text(json.dumps(payload), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, features: list[str], *, device: str = "cpu",
             threads: int | None = None) -> "SeasonalDetector":
        data = json.loads(read_trusted(directory / "seasonal.json"))
        detector = cls(features, SeasonalSpec(**data["spec"]))
        detector.profile_ = SeasonalProfile.from_json(data["profile"])
        if detector.profile_.features != list(features):
            raise ValueError(f"seasonal model features {detector.profile_.features} do not match {features}")
        return detector
