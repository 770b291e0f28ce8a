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

from ..core.config import Scenario, SeasonalSpec
from ..core.registry import DETECTORS
from ..core.trust import read_trusted
from .base import ScoreFrame, Series
from .profile import SeasonalProfile

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
        """Out-of-sample training scores, per entity: the days are split into `folds`
        groups, and each group is scored by a profile fitted on the others. Scores of the
        very buckets a profile was fitted on are tighter than any later day's (its
        medians and scales were chosen to fit them), and a tail calibrated on them would
        alert more often than it promises."""
        days = {e: (f.index.asi8 // (86400 * 10**9)) % folds for e, f in series.items() if len(f)}
        if len({d for arr in days.values() for d in np.unique(arr).tolist()}) < folds:
            return {e: self.score(f, e)["score"].to_numpy() for e, f in series.items() if len(f)}
        out = {e: np.zeros(len(series[e])) for e in days}
        for fold in range(folds):
            rest = {e: series[e][days[e] != fold] for e in days}
            rest = {e: f for e, f in rest.items() if len(f)}
            profile = SeasonalProfile(self.features, weekday=self.spec.weekday, min_scale=self.spec.min_scale).fit(rest)
            for e in days:
                held = days[e] == fold
                if held.any():
                    frame = series[e][held]
                    key = e if e in rest else None   # an entity seen only in this fold: the pooled profile
                    out[e][held] = self._scores(profile.deviation(frame, key))
        return out

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
