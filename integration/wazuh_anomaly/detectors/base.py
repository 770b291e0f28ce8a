"""The detector interface and the threshold logic every detector shares.

A detector turns a bucket x feature frame into one raw score per bucket plus each
feature's share of that score. How high a score must be to count, and how bad it is,
is decided here once (PyOD style) from the scores the detector gave its own training
data: the threshold is a quantile of those scores (a flag budget), and a score's
exceedance is how far above the training median it is, in units of the threshold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Protocol

import numpy as np
import pandas as pd

from ..core.config import SeveritySpec

# A frame returned by Detector.score: index = scored buckets; column "score" plus one
# column per feature holding that feature's share of the score (rows sum to 1 or 0).
ScoreFrame = pd.DataFrame

Series = Mapping[str | None, pd.DataFrame]


class Detector(Protocol):
    name: str

    @property
    def context_buckets(self) -> int:
        """Buckets of history needed before the first bucket that can be scored."""

    def fit(self, series: Series) -> "Detector":
        """Learn from one frame per entity (key None without an entity split)."""

    def score(self, frame: pd.DataFrame, entity: str | None = None) -> ScoreFrame:
        """Score every bucket of `frame` after its first `context_buckets` rows."""

    def save(self, directory: Path) -> None:
        """Write weights and JSON metadata into `directory` (never pickles)."""

    @classmethod
    def load(cls, directory: Path, features: list[str]) -> "Detector":
        """Read what save wrote, checking it fits `features` in this order."""


@dataclass(frozen=True)
class Calibration:
    """Where a detector's scores become anomalies, learned from its training scores."""

    threshold: float
    center: float                      # median training score
    quantiles: dict[str, float]        # training score distribution, for drift checks
    flagged_share: float               # share of training buckets at or above the threshold
    n_scores: int

    @classmethod
    def from_scores(cls, scores: np.ndarray, quantile: float, *, floor: float | None = None) -> "Calibration":
        scores = np.asarray(scores, dtype=float)
        scores = scores[np.isfinite(scores)]
        if scores.size == 0:
            raise ValueError("no training scores to calibrate on")
        center = float(np.median(scores))
        threshold = float(np.quantile(scores, quantile))
        if floor is not None:
            threshold = max(threshold, floor)
        # A threshold equal to the median would make every ordinary bucket anomalous.
        spread = float(np.quantile(scores, 0.75) - np.quantile(scores, 0.25))
        minimum_gap = max(spread, abs(center) * 1e-3, 1e-9)
        if threshold - center < minimum_gap:
            threshold = center + minimum_gap
        qs = {f"q{int(q * 1000):03d}": float(np.quantile(scores, q)) for q in (0.5, 0.9, 0.95, 0.99, 0.999)}
        qs["max"] = float(scores.max())
        return cls(threshold=threshold, center=center, quantiles=qs,
                   flagged_share=float(np.mean(scores >= threshold)), n_scores=int(scores.size))

    def exceedance(self, score: float | np.ndarray) -> float | np.ndarray:
        """1.0 at the threshold, 2.0 twice as far above the training median, and so on."""
        return (np.asarray(score, dtype=float) - self.center) / (self.threshold - self.center)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls(threshold=float(data["threshold"]), center=float(data["center"]),
                   quantiles={k: float(v) for k, v in data["quantiles"].items()},
                   flagged_share=float(data["flagged_share"]), n_scores=int(data["n_scores"]))


def severity_for(exceedance: float, spec: SeveritySpec) -> str | None:
    """The severity tier of an exceedance, or None below the threshold."""
    if not exceedance >= 1.0:
        return None
    if exceedance >= spec.critical:
        return "critical"
    if exceedance >= spec.high:
        return "high"
    if exceedance >= spec.medium:
        return "medium"
    return "low"
