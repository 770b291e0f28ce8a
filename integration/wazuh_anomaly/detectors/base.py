"""The detector interface and the threshold logic every detector shares.

A detector turns a bucket x feature frame into one raw score per bucket plus each
feature's share of that score. How rare a score is, and so whether it alerts and how
bad it is, is decided here once for every detector from the scores it gave its own
training data: a fitted tail turns each score into a tail probability comparable
across detectors, entities and scenarios, and one installation-wide false-alarm
budget (alerts_per_day) sets the probability at which a series alerts.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Mapping, Protocol, Sequence

import numpy as np
import pandas as pd

from ..core.config import FeatureSpec, SeveritySpec

# A frame returned by Detector.score: index = scored buckets; column "score" plus one
# column per feature holding that feature's share of the score (rows sum to 1 or 0).
ScoreFrame = pd.DataFrame

Series = Mapping[str | None, pd.DataFrame]

# Peaks over threshold: the top TAIL_SHARE of the training scores, at most MAX_TAIL of
# them, are fitted; with fewer than MIN_TAIL the tail is exponential (mean excess).
TAIL_SHARE = 0.02
MAX_TAIL = 5000
MIN_TAIL = 20
# Tail probabilities of training quantiles kept to answer below u.
BODY_LEVELS = (0.5, 0.25, 0.1, 0.05)
# Shapes fitted outside [XI_MIN, XI_MAX] are not trusted (exponential tail instead). A
# short tail (xi < 0) has an end, and a few days of training would make everything past
# it "impossible": such a tail is continued exponentially, with its local slope, from the
# score SPLICE times rarer than u on.
XI_MIN = -0.5
XI_MAX = 1.0
SPLICE = 1e-4
# No score is rarer than this (a flood far past the fitted tail's end).
MIN_PROBABILITY = 1e-12


class ScoreTally:
    """Many training scores as their distinct values and how often each came: what a
    calibration needs of them (exact quantiles, the excesses over u), without holding one
    float per bucket of every series when many scores repeat (10,000 entities x 14 days
    of 5-minute buckets are 40 million scores, mostly the same few values on a quiet
    agent). Filled a chunk of series at a time (`add`); non-finite scores are left out
    and -0.0 counts as 0.0. Quantiles and the median are numpy's (`linear` method),
    computed from the order statistics, so a tally gives what np.quantile and np.median
    of all the scores give."""

    MERGE_AT = 1 << 20          # pending distinct values merged once there are this many

    def __init__(self) -> None:
        self.values = np.zeros(0, dtype=float)        # distinct, increasing
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self._cumulative: np.ndarray | None = None

    @classmethod
    def of(cls, scores: np.ndarray) -> "ScoreTally":
        tally = cls()
        tally.add(scores)
        return tally

    def add(self, scores: np.ndarray) -> None:
        s = np.asarray(scores, dtype=float).ravel()
        s = s[np.isfinite(s)] + 0.0
        if not s.size:
            return
        values, counts = np.unique(s, return_counts=True)
        self._pending.append((values, counts.astype(np.int64)))
        self._pending_size += len(values)
        self._cumulative = None
        if self._pending_size >= max(self.MERGE_AT, len(self.values)):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        values = np.concatenate([self.values] + [v for v, _ in self._pending])
        counts = np.concatenate([self.counts] + [c for _, c in self._pending])
        self._pending, self._pending_size = [], 0
        self.values, inverse = np.unique(values, return_inverse=True)
        self.counts = np.bincount(inverse.ravel(), weights=counts, minlength=len(self.values)).astype(np.int64)

    @property
    def n(self) -> int:
        self._merge()
        return int(self.counts.sum())

    def at(self, ranks: np.ndarray) -> np.ndarray:
        """The order statistics of these 0-based ranks (of the sorted scores)."""
        self._merge()
        if self._cumulative is None:
            self._cumulative = np.cumsum(self.counts)
        return self.values[np.searchsorted(self._cumulative, np.asarray(ranks), side="right")]

    def quantile(self, q: float | np.ndarray) -> float | np.ndarray:
        """np.quantile(scores, q) (the `linear` method), from the order statistics."""
        n = self.n
        if n == 0:
            raise ValueError("quantile of no scores")
        q = np.asanyarray(q, dtype=float)
        virtual = np.asanyarray((n - 1) * q)
        previous = np.asanyarray(np.floor(virtual))
        following = np.asanyarray(previous + 1)
        above = virtual >= n - 1
        if above.any():
            previous[above] = -1
            following[above] = -1
        below = virtual < 0
        if below.any():
            previous[below] = 0
            following[below] = 0
        previous = previous.astype(np.intp)
        following = following.astype(np.intp)
        a = self.at(np.where(previous < 0, n + previous, previous))
        b = self.at(np.where(following < 0, n + following, following))
        t = np.asanyarray(virtual - previous)
        diff = np.subtract(b, a)
        result = np.asanyarray(np.add(a, diff * t))
        np.subtract(b, diff * (1 - t), out=result, where=t >= 0.5, casting="unsafe", dtype=type(result.dtype))
        return result[()] if result.ndim == 0 else result

    def median(self) -> float:
        """np.median(scores): the middle score, or the mean of the middle two."""
        n = self.n
        if n == 0:
            raise ValueError("median of no scores")
        middle = self.at([n // 2] if n % 2 else [n // 2 - 1, n // 2])
        return float(np.mean(middle, axis=0))

    @property
    def max(self) -> float:
        self._merge()
        return float(self.values[-1])

    def above(self, u: float) -> np.ndarray:
        """Every score above u, increasing (each as often as it came)."""
        self._merge()
        kept = self.values > u
        return np.repeat(self.values[kept], self.counts[kept])


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
    """How rare a detector's score is, learned from the scores it gave its training data.

    The upper tail of the training scores is fitted with a generalised Pareto
    distribution above a high threshold `u` (peaks over threshold, as in SPOT, Siffer et
    al., KDD 2017): empirical quantiles at the levels an alert budget needs (one bucket in
    tens of thousands) are not reliable on days of history, a fitted tail is. A score's
    `tail_probability` is the chance that an ordinary bucket scores at least as high;
    it is comparable across detectors, entities and scenarios, so one alert budget can be
    shared between them (`alert_probability`). `p_alert` is this series' share of the
    budget: a score is anomalous when its tail probability is at or below it.
    """

    center: float                      # median training score
    quantiles: dict[str, float]        # training score distribution, for drift checks
    n_scores: int
    u: float                           # peaks-over-threshold threshold (a high training quantile)
    zeta: float                        # share of training scores above u
    sigma: float                       # generalised Pareto scale of the excesses over u
    xi: float                          # generalised Pareto shape (0: exponential tail)
    n_tail: int                        # training scores above u
    method: str                        # "gpd"; "gpd-short" (shape held at XI_MIN); "exponential" (too few or unruly excesses)
    body: tuple[tuple[float, float], ...] = ()   # (score, tail probability) points below u
    floor: float | None = None         # scores below this never alert, however rare
    p_alert: float = 1e-3              # set from the alert budget by the model (pipeline/models.py)

    @classmethod
    def from_scores(cls, scores: np.ndarray | ScoreTally, *, floor: float | None = None,
                    p_alert: float = 1e-3) -> "Calibration":
        """From the training scores, as an array or a ScoreTally (the same calibration)."""
        scores = scores if isinstance(scores, ScoreTally) else ScoreTally.of(scores)
        n = scores.n
        if n == 0:
            raise ValueError("no training scores to calibrate on")
        center = scores.median()
        qs = {f"q{int(q * 1000):03d}": float(scores.quantile(q)) for q in (0.5, 0.9, 0.95, 0.99, 0.999)}
        qs["max"] = scores.max
        # The top TAIL_SHARE of the scores (at most MAX_TAIL of them: beyond that more
        # excesses only cost time) are the peaks over the threshold u.
        share = min(TAIL_SHARE, MAX_TAIL / n)
        u = float(scores.quantile(1.0 - share))
        excesses = scores.above(u) - u
        if excesses.size == 0:
            # Nothing above u (a flat or nearly flat training): everything above the top
            # score is new; how far above is measured in the spread of the scores.
            u = scores.max
        zeta = max(excesses.size, 1) / (n + 1)
        sigma, xi, method = _fit_tail(excesses, scores)
        if method == "gpd-short" and excesses.size:
            # A tail fitted at XI_MIN must not end at the training maximum: that score was
            # seen once in n, so the fitted tail gives it at least that chance.
            ratio = 1.0 / ((n + 1) * zeta)
            if ratio < 1.0:
                sigma = max(sigma, xi * float(excesses.max()) / (ratio ** -xi - 1.0))
        body: list[tuple[float, float]] = []
        for p in BODY_LEVELS:            # increasing scores; a tied score keeps its likelier level
            at = float(scores.quantile(1.0 - p))
            if p > zeta and at < u and (not body or at > body[-1][0]):
                body.append((at, p))
        return cls(center=center, quantiles=qs, n_scores=n, u=u, zeta=float(zeta), sigma=float(sigma), xi=float(xi),
                   n_tail=int(excesses.size), method=method, body=tuple(body), floor=floor, p_alert=float(p_alert))

    # ---------------------------------------------------------------- probabilities
    def tail_probability(self, score: float | np.ndarray) -> np.ndarray:
        """P(an ordinary bucket scores at least `score`), from the fitted tail above u
        and the training quantiles below it; never below MIN_PROBABILITY."""
        s = np.asarray(score, dtype=float)
        excess = np.maximum(s - self.u, 0.0) / self.sigma
        if abs(self.xi) < 1e-6:
            tail = self.zeta * np.exp(-excess)
        else:
            if self.xi < 0:       # the exponential continuation of a short tail
                splice = (SPLICE ** -self.xi - 1.0) / self.xi       # excess (in sigmas) at zeta * SPLICE
                local = 1.0 + self.xi * splice                      # the tail's scale there, in sigmas
                beyond = self.zeta * SPLICE * np.exp(-(np.maximum(excess, splice) - splice) / local)
            base = 1.0 + self.xi * excess
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                tail = self.zeta * np.power(np.maximum(base, 1e-300), -1.0 / self.xi)
            if self.xi < 0:
                tail = np.where(excess > splice, beyond, tail)
        if self.body:
            xs = np.asarray([b[0] for b in self.body] + [self.u])
            lp = np.log(np.asarray([b[1] for b in self.body] + [self.zeta]))
            below = np.exp(np.interp(s, xs, lp, left=0.0))
        else:
            below = np.full(s.shape, self.zeta)
        p = np.where(s > self.u, tail, np.maximum(below, self.zeta))
        p = np.where(np.isnan(s), 1.0, p)
        return np.clip(p, MIN_PROBABILITY, 1.0)

    def score_at(self, p: float) -> float:
        """The score whose tail probability is `p` (the inverse of tail_probability)."""
        p = max(float(p), MIN_PROBABILITY)
        if p >= self.zeta:
            if not self.body:
                return self.u
            xs = [b[0] for b in self.body] + [self.u]
            lp = [np.log(b[1]) for b in self.body] + [np.log(self.zeta)]
            return float(np.interp(-np.log(p), [-v for v in lp], xs))
        ratio = p / self.zeta
        if abs(self.xi) < 1e-6:
            return self.u - self.sigma * float(np.log(ratio))
        if self.xi < 0 and ratio < SPLICE:
            splice = (SPLICE ** -self.xi - 1.0) / self.xi
            local = 1.0 + self.xi * splice
            return self.u + self.sigma * (splice - local * float(np.log(ratio / SPLICE)))
        return self.u + self.sigma / self.xi * (ratio ** (-self.xi) - 1.0)

    @property
    def threshold(self) -> float:
        """The score at which this series alerts: tail probability p_alert (or the floor)."""
        at = self.score_at(self.p_alert)
        return max(at, self.floor) if self.floor is not None else at

    def exceedance(self, score: float | np.ndarray) -> float | np.ndarray:
        """How far past the alert threshold, in powers of ten of rarity: 1.0 at p_alert,
        2.0 ten times rarer, 3.0 a hundred times, and so on (below 1: not anomalous).
        A score under the floor stays below 1 however rare."""
        s = np.asarray(score, dtype=float)
        e = 1.0 + np.log10(self.p_alert / self.tail_probability(s))
        if self.floor is not None:
            e = np.where(s < self.floor, np.minimum(e, 0.999), e)
        return e if e.ndim else float(e)

    def with_alert_probability(self, p_alert: float) -> "Calibration":
        return replace(self, p_alert=float(p_alert))

    # ---------------------------------------------------------------- JSON
    def to_json(self) -> dict:
        data = asdict(self)
        data["body"] = [list(b) for b in self.body]
        del data["p_alert"]          # follows the budget in force, not the one at training
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Calibration":
        return cls(center=float(data["center"]), quantiles={k: float(v) for k, v in data["quantiles"].items()},
                   n_scores=int(data["n_scores"]), u=float(data["u"]), zeta=float(data["zeta"]),
                   sigma=float(data["sigma"]), xi=float(data["xi"]), n_tail=int(data["n_tail"]),
                   method=str(data["method"]), body=tuple((float(s), float(p)) for s, p in data.get("body", [])),
                   floor=None if data.get("floor") is None else float(data["floor"]))


def _fit_tail(excesses: np.ndarray, scores: ScoreTally) -> tuple[float, float, str]:
    """(sigma, xi, method) of the excesses over u: a generalised Pareto maximum-likelihood
    fit with MIN_TAIL or more excesses and a shape in [XI_MIN, XI_MAX] (a shorter one
    at XI_MIN), else an exponential tail whose scale is the mean excess (the exponential's maximum
    likelihood estimate; with no excess at all, a tenth of the scores' spread)."""
    if excesses.size >= MIN_TAIL and np.ptp(excesses) > 0:
        from scipy.stats import genpareto
        try:
            xi, _, sigma = genpareto.fit(excesses, floc=0.0)
        except Exception:  # noqa: BLE001 - an optimiser failure means the fallback below
            xi, sigma = np.nan, np.nan
        if np.isfinite(xi) and np.isfinite(sigma) and sigma > 0 and XI_MIN <= xi <= XI_MAX:
            return float(sigma), float(xi), "gpd"
        if np.isfinite(xi) and xi < XI_MIN:
            # A tail shorter than XI_MIN allows (counts that cannot grow much): the
            # shortest trusted shape, its scale fitted, past its end the exponential splice.
            try:
                _, _, sigma = genpareto.fit(excesses, fc=XI_MIN, floc=0.0)
            except Exception:  # noqa: BLE001
                sigma = np.nan
            if np.isfinite(sigma) and sigma > 0:
                return float(sigma), XI_MIN, "gpd-short"
    if excesses.size:
        scale = float(np.mean(excesses))
    else:
        scale = 0.0
    spread = float(scores.quantile(0.75) - scores.quantile(0.25))
    scale = max(scale, spread / 10.0, abs(scores.median()) * 1e-3, 1e-6)
    return scale, 0.0, "exponential"


def alert_probability(alerts_per_day: float, series: int, bucket_minutes: int) -> float:
    """The tail probability at which each of `series` series (scenario x entity x detector)
    scored every `bucket_minutes` alerts, so that together they raise `alerts_per_day`
    false alarms a day on ordinary data: the budget spread evenly over every score made."""
    scores_per_day = max(int(series), 1) * (1440.0 / bucket_minutes)
    return min(float(alerts_per_day) / scores_per_day, 0.5)


def worth_raising(features: Sequence[FeatureSpec], actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Which (bucket, feature) cells moved enough to be raised, as OpenSearch AD's
    suppression rules: in the feature's direction (up, down or both), by at least its
    min_deviation and by at least min_relative_deviation times the expected value.
    `actual` and `expected` are (buckets, features); a bucket none of whose features
    qualifies is not an anomaly, however rare its score (one or two web 404s)."""
    diff = np.asarray(actual, dtype=float) - np.asarray(expected, dtype=float)
    size = np.abs(diff)
    ok = np.zeros(diff.shape, dtype=bool)
    for j, f in enumerate(features):
        moved = diff[:, j] > 0 if f.direction == "up" else diff[:, j] < 0 if f.direction == "down" else diff[:, j] != 0
        ok[:, j] = (moved & (size[:, j] >= f.min_deviation)
                    & (size[:, j] >= f.min_relative_deviation * np.abs(np.asarray(expected, dtype=float)[:, j])))
    return ok


def title_of(feature: FeatureSpec, rising: bool) -> str:
    """What an anomaly led by this feature means, for the alert: the scenario's own
    words (features[].text.up / .down) or the feature's name and direction."""
    text = feature.text_up if rising else feature.text_down
    return text or f"{feature.name} {'far above' if rising else 'far below'} its usual level"


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
