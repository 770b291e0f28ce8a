"""Scores of the scheduled detectors over time: the training score percentiles a model
keeps (its yardstick), the recent scores of the current version, and the drift check
that compares the two (lifecycle.py's documentation explains the two statistics).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.state import atomic_write_json, damaged, read_json
from ..detectors.base import ScoreTally

if TYPE_CHECKING:
    from .models import ModelBundle

SCORE_QUANTILES = np.linspace(0.0, 1.0, 101)


def score_quantiles(scores: np.ndarray | ScoreTally) -> list[float]:
    if isinstance(scores, ScoreTally):
        return np.round(scores.quantile(SCORE_QUANTILES), 9).tolist() if scores.n else []
    scores = np.asarray(scores, dtype=float)
    scores = scores[np.isfinite(scores)]
    return np.round(np.quantile(scores, SCORE_QUANTILES), 9).tolist() if scores.size else []


def _significant(values: np.ndarray, digits: int = 3) -> np.ndarray:
    values = values[np.isfinite(values)]
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.where(values == 0, 1.0, np.abs(values)))))
    return np.round(values * scale) / scale


def ks_statistic(recent: np.ndarray, training_quantiles: list[float]) -> float:
    """Two-sample Kolmogorov-Smirnov D between recent scores and the training scores
    (given as their percentiles): the largest gap between the two empirical CDFs."""
    # Scores to 3 significant digits: the same quiet bucket scores 1e-7 apart in a batch of
    # another size, and a mass of such ties split either way would read as a large gap.
    recent = np.sort(_significant(np.asarray(recent, dtype=float)))
    train = np.sort(_significant(np.asarray(training_quantiles, dtype=float)))
    if not len(recent) or not len(train):
        return 0.0
    grid = np.concatenate([recent, train])
    # The training CDF from its percentiles: the share of percentile points at or below x.
    cdf_recent = np.searchsorted(recent, grid, side="right") / len(recent)
    cdf_train = np.searchsorted(train, grid, side="right") / len(train)
    return float(np.max(np.abs(cdf_recent - cdf_train)))


def tail_ratio(recent: np.ndarray, training_quantiles: list[float]) -> float:
    """Share of recent scores above the training 99th percentile, in units of the 1% expected."""
    recent = _significant(np.asarray(recent, dtype=float))
    if not len(recent) or len(training_quantiles) < 100:
        return 0.0
    q99 = _significant(np.asarray([training_quantiles[99]], dtype=float))[0]
    return float(np.mean(recent > q99)) / 0.01


@dataclass(frozen=True)
class DriftResult:
    detector: str
    statistic: float             # KS D, 0..1
    threshold: float
    tail: float                  # recent share above the training 99th percentile / 1%
    tail_threshold: float
    recent_buckets: int
    needed_buckets: int

    @property
    def ready(self) -> bool:
        return self.recent_buckets >= self.needed_buckets

    @property
    def drifted(self) -> bool:
        return self.ready and (self.statistic > self.threshold or self.tail > self.tail_threshold)

    def describe(self) -> str:
        if not self.ready:
            return f"{self.detector}: {self.recent_buckets} of {self.needed_buckets} recent buckets collected"
        verdict = "DRIFT" if self.drifted else "ok"
        return (f"{self.detector}: KS {self.statistic:.2f} (limit {self.threshold:.2f}), {self.tail:.1f}x the "
                f"training share above its 99th percentile (limit {self.tail_threshold:g}x) over the last "
                f"{self.recent_buckets} buckets: {verdict}")


def drift_of(bundle: ModelBundle, recent: dict[str, list]) -> list[DriftResult]:
    """Drift of each detector's recent scores (every entity of the last drift_buckets buckets)
    against its training scores."""
    spec = bundle.scenario.training
    reference = bundle.meta.get("score_quantiles") or {}
    out = []
    for detector, pairs in recent.items():
        quantiles = reference.get(detector)
        if not quantiles:
            continue  # a model trained before drift checks existed: nothing to compare with
        buckets = len({t for t, _ in pairs})
        scores = np.asarray([v for _, v in pairs], dtype=float)
        out.append(DriftResult(detector, ks_statistic(scores, quantiles), spec.drift_threshold,
                               tail_ratio(scores, quantiles), spec.drift_tail_ratio, buckets, spec.drift_buckets))
    return out


def _drift_file(state_dir: Path, scenario: str) -> Path:
    return Path(state_dir) / "drift" / f"{scenario}.json"


def record_scores(state_dir: Path, bundle: ModelBundle, scores: dict[str, list]) -> dict[str, list]:
    """Add the (bucket epoch, score) pairs of newly scored buckets; keeps, per detector, every
    entity's scores of the last drift_buckets buckets of the current version (a new version
    starts over). Returns what is kept."""
    path = _drift_file(state_dir, bundle.scenario.name)
    kept = _saved_scores(path, bundle)
    span = bundle.scenario.training.drift_buckets * bundle.scenario.bucket_seconds
    for detector, pairs in scores.items():
        new = [[int(t), round(float(v), 9)] for t, v in pairs if np.isfinite(v)]
        # Buckets scored again (a run repeated after a crash) replace their earlier scores.
        since = min((t for t, _ in new), default=None)
        merged = [[int(t), v] for t, v in kept.get(detector, []) if since is None or t < since] + new
        newest = max((t for t, _ in merged), default=0)
        kept[detector] = sorted(p for p in merged if p[0] > newest - span)
    atomic_write_json(path, {"version": bundle.version, "scores": kept})
    return kept


def recent_scores(state_dir: Path, bundle: ModelBundle) -> dict[str, list]:
    return _saved_scores(_drift_file(state_dir, bundle.scenario.name), bundle)


def _saved_scores(path: Path, bundle: ModelBundle) -> dict[str, list]:
    """The kept scores of the current version; a file of another shape is a damaged one."""
    data = read_json(path, {}) or {}
    if isinstance(data, dict) and data.get("version") != bundle.version:
        return {}
    scores = data.get("scores", {}) if isinstance(data, dict) else None
    if not isinstance(scores, dict) or not all(
            isinstance(pairs, list) and all(isinstance(p, list) and len(p) == 2 and type(p[0]) is int
                                            and type(p[1]) in (int, float) for p in pairs)
            for pairs in scores.values()):
        damaged(path, "the drift check starts again from the next scores")
        return {}
    return scores
