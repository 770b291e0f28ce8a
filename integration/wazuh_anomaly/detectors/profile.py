"""What each feature usually is at this time of day: median and robust scale per hour
(optionally per weekday and hour), pooled over entities and per busy entity.

Used by the seasonal detector to score, and by every detector to tell an analyst the
expected value and the deviation of each feature in an anomaly.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np
import pandas as pd

from ..core.chunks import in_chunks, length_of, ordered

MAD_TO_SIGMA = 1.4826
POOLED = "*"
POOLED_SAMPLE = 500     # entities the pooled profile is fitted on, at most
CHUNK = 500             # entities fitted together as one array


def slot_of(index: pd.DatetimeIndex, weekday: bool) -> np.ndarray:
    """The seasonal slot of each bucket: hour of day, or weekday * 24 + hour (UTC)."""
    hours = np.asarray(index.hour)
    return np.asarray(index.weekday) * 24 + hours if weekday else hours


@dataclass
class SeasonalProfile:
    features: list[str]
    weekday: bool = False
    min_scale: float = 1.0
    min_samples: int = 3                      # fewer samples in a slot: fall back to all slots
    # key (entity or POOLED) -> array (slots, features) of medians and scales
    medians: dict[str, np.ndarray] = field(default_factory=dict)
    scales: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_slots(self) -> int:
        return 168 if self.weekday else 24

    def fit(self, series: Mapping[str | None, pd.DataFrame], *, chunk: int | None = None) -> "SeasonalProfile":
        """Fit the pooled profile and each entity's; `series` may build its frames on
        demand (core.chunks.LazyFrames): they are read `chunk` entities at a time."""
        self.medians, self.scales = {}, {}
        self.fit_pooled(series)
        if len(series) > 1:
            for part in in_chunks(series, chunk):
                self.fit_entities(part)
        return self

    def fit_pooled(self, series: Mapping[str | None, pd.DataFrame],
                   rows: "Callable[[str | None], np.ndarray] | None" = None) -> None:
        """The pooled profile (for entities never seen) from at most POOLED_SAMPLE entities,
        evenly spread: exact up to that many, bounded memory past it. Their rows (those of
        `rows(entity)` when given) are copied into one array a chunk of frames at a time."""
        keys = [e for e in series if length_of(series, e)]
        if not keys:
            raise ValueError("no training data")
        step = max(1, -(-len(keys) // POOLED_SAMPLE))
        sample = keys[::step]
        kept = {e: rows(e) if rows is not None else slice(None) for e in sample}
        total = sum(int(np.count_nonzero(kept[e])) if rows is not None else length_of(series, e) for e in sample)
        values = np.empty((total, len(self.features)))
        slots = np.empty(total, dtype=np.intp)
        at = 0
        for part in in_chunks(ordered(series, sample)):
            for e, frame in part.items():
                frame = frame[kept[e]] if rows is not None else frame
                values[at:at + len(frame)] = self._values(frame)
                slots[at:at + len(frame)] = slot_of(frame.index, self.weekday)
                at += len(frame)
        self._fit_arrays(POOLED, values, slots)

    def fit_entities(self, frames: Mapping[str | None, pd.DataFrame]) -> None:
        """Each entity's own profile (independent of the other entities fitted with it)."""
        entities = [(str(e), f) for e, f in frames.items() if e is not None and len(f)]
        for i in range(0, len(entities), CHUNK):
            self._fit_many(entities[i:i + CHUNK])

    def _fit_many(self, entities: list[tuple[str, pd.DataFrame]]) -> None:
        """_fit_key of many entities at once where their frames share one index."""
        groups: dict[tuple, list[tuple[str, pd.DataFrame]]] = {}
        for key, frame in entities:
            groups.setdefault((len(frame), frame.index[0], frame.index[-1]), []).append((key, frame))
        for members in groups.values():
            index = members[0][1].index
            same = [(k, f) for k, f in members if f.index.equals(index)]
            for key, frame in members:
                if not frame.index.equals(index):
                    self._fit_key(key, frame[self.features])
            values = np.stack([self._values(f) for _, f in same])   # E x B x F
            slots = slot_of(index, self.weekday)
            overall_median = np.median(values, axis=1)                                    # E x F
            overall_scale = np.maximum(MAD_TO_SIGMA * np.median(np.abs(values - overall_median[:, None, :]), axis=1),
                                       self.min_scale)
            medians = np.repeat(overall_median[:, None, :], self.n_slots, axis=1)         # E x slots x F
            scales = np.repeat(overall_scale[:, None, :], self.n_slots, axis=1)
            for slot in np.unique(slots):
                rows = values[:, slots == slot, :]
                if rows.shape[1] < self.min_samples:
                    continue
                median = np.median(rows, axis=1)
                medians[:, slot] = median
                scales[:, slot] = np.maximum(MAD_TO_SIGMA * np.median(np.abs(rows - median[:, None, :]), axis=1),
                                             self.min_scale)
            for i, (key, _) in enumerate(same):
                self.medians[key] = medians[i]
                self.scales[key] = scales[i]

    def _values(self, frame: pd.DataFrame) -> np.ndarray:
        """The frame's features as a float array (without a column lookup when they are its columns)."""
        if len(frame.columns) == len(self.features) and (frame.columns == self.features).all():
            return frame.to_numpy(dtype=float)
        return frame[self.features].to_numpy(dtype=float)

    def _fit_key(self, key: str, frame: pd.DataFrame) -> None:
        self._fit_arrays(key, frame.to_numpy(dtype=float), slot_of(frame.index, self.weekday))

    def _fit_arrays(self, key: str, values: np.ndarray, slots: np.ndarray) -> None:
        overall_median = np.median(values, axis=0)
        # The deviations in place, one copy of the values at a time (the pooled sample of
        # 500 entities over 14 days of 5-minute buckets is 80 MB a copy).
        deviations = values - overall_median
        np.abs(deviations, out=deviations)
        overall_scale = np.maximum(MAD_TO_SIGMA * np.median(deviations, axis=0, overwrite_input=True), self.min_scale)
        del deviations
        medians = np.tile(overall_median, (self.n_slots, 1))
        scales = np.tile(overall_scale, (self.n_slots, 1))
        for slot in np.unique(slots):
            rows = values[slots == slot]
            if len(rows) < self.min_samples:
                continue
            median = np.median(rows, axis=0)
            medians[slot] = median
            scales[slot] = np.maximum(MAD_TO_SIGMA * np.median(np.abs(rows - median), axis=0), self.min_scale)
        self.medians[key] = medians
        self.scales[key] = scales

    def expected(self, index: pd.DatetimeIndex, entity: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(median, scale) arrays of shape (len(index), features) for these buckets."""
        key = str(entity) if entity is not None and str(entity) in self.medians else POOLED
        slots = slot_of(index, self.weekday)
        return self.medians[key][slots], self.scales[key][slots]

    def deviation(self, frame: pd.DataFrame, entity: str | None = None) -> np.ndarray:
        """Robust z of every value: (value - median) / scale for its slot."""
        median, scale = self.expected(frame.index, entity)
        return (self._values(frame) - median) / scale

    def deviation_many(self, values: np.ndarray, index: pd.DatetimeIndex,
                       entities: list[str | None]) -> np.ndarray:
        """Robust z of an entities x buckets x features array whose buckets are `index`:
        deviation() of every entity at once."""
        pooled = POOLED
        keys = [str(e) if e is not None and str(e) in self.medians else pooled for e in entities]
        order = {k: i for i, k in enumerate(dict.fromkeys(keys))}
        medians = np.stack([self.medians[k] for k in order])     # distinct keys x slots x features
        scales = np.stack([self.scales[k] for k in order])
        rows = np.fromiter((order[k] for k in keys), dtype=np.intp, count=len(keys))
        slots = slot_of(index, self.weekday)
        return (values - medians[rows][:, slots, :]) / scales[rows][:, slots, :]

    def to_json(self) -> dict:
        return {
            "features": self.features, "weekday": self.weekday, "min_scale": self.min_scale,
            "min_samples": self.min_samples,
            "medians": {k: np.round(v, 6).tolist() for k, v in self.medians.items()},
            "scales": {k: np.round(v, 6).tolist() for k, v in self.scales.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> "SeasonalProfile":
        profile = cls(features=list(data["features"]), weekday=bool(data["weekday"]),
                      min_scale=float(data["min_scale"]), min_samples=int(data["min_samples"]))
        profile.medians = {k: np.asarray(v, dtype=float) for k, v in data["medians"].items()}
        profile.scales = {k: np.asarray(v, dtype=float) for k, v in data["scales"].items()}
        expected = (profile.n_slots, len(profile.features))
        for key, array in list(profile.medians.items()) + list(profile.scales.items()):
            if array.shape != expected:
                raise ValueError(f"profile of {key!r} has shape {array.shape}, expected {expected}")
        return profile
