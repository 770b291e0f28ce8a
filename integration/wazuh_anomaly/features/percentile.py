"""p95: the 95th percentile of a numeric field's values within one bucket (per entity),
e.g. the bytes of the largest flows of a 5-minute bucket without the single biggest one
deciding the number as `max` would.

Added through the "Add an aggregation" recipe of docs/architecture.md: this module
registers itself, nothing else lists it. Memory is bounded per cell: the first
`KEEP` values are kept as they are (the percentile is exact up to there); after that a
reservoir sample of `KEEP` values stands for all of them (Vitter's algorithm R, drawn
from a generator seeded the same way in every cell, so the same alerts in the same order
give the same number). The percentile interpolates linearly between the two nearest
ranks, as numpy.percentile does by default. A bucket without a usable value is 0.
"""
from __future__ import annotations

import math
from array import array

from ..core.registry import AGGREGATIONS
from .aggregations import Aggregation

KEEP = 1000          # values kept per (entity, bucket) cell: 8 KB of doubles at most
_SEED = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


@AGGREGATIONS.register("p95")
class P95(Aggregation):
    unit = "95th percentile"
    collects = "number"
    quantile = 0.95
    keep = KEEP

    def new(self) -> list:
        return [0, _SEED, array("d")]       # values seen, generator state, values kept

    def add(self, acc: list, value: float) -> list:
        seen = acc[0] = acc[0] + 1
        kept = acc[2]
        if len(kept) < self.keep:
            kept.append(value)
            return acc
        # Algorithm R: the seen-th value replaces a kept one with probability keep/seen.
        x = acc[1]                           # xorshift64
        x ^= (x << 13) & _MASK
        x ^= x >> 7
        x ^= (x << 17) & _MASK
        acc[1] = x
        slot = x % seen
        if slot < self.keep:
            kept[slot] = value
        return acc

    def final(self, acc: list) -> float:
        kept = sorted(acc[2])
        if not kept:
            return 0.0
        pos = self.quantile * (len(kept) - 1)
        low = math.floor(pos)
        high = min(low + 1, len(kept) - 1)
        return float(kept[low] + (kept[high] - kept[low]) * (pos - low))

    def describe(self, field: str | None, bucket_minutes: int) -> str:
        return f"{self.unit} of {field}"
