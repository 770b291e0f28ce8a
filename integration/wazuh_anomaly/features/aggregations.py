"""The aggregations a feature can name: how the matching alerts of one bucket become
one number. Each is a small class registered by name (`core.registry.AGGREGATIONS`).

An aggregation keeps an accumulator per bucket (and entity): `new()` makes an empty
one, `add(acc, value)` folds in one value and returns the accumulator, `final(acc)`
gives the bucket's number, and `from_value(number)` makes an accumulator that
`final()` turns back into that number (the indexer computes some values itself).
`collects` says what `add` is given: "count" (nothing: every matching alert counts),
"strings" (each string of the field, lists flattened) or "number" (the field as a
finite number; other values are counted as unusable and left out).

The built-ins set `inline`, the operation `FeatureAggregator.add` runs without a call
on its hot path; a new aggregation leaves it None and `add` is called.
"""
from __future__ import annotations

import math
from typing import Any

from ..core.registry import AGGREGATIONS


class Aggregation:
    name = ""
    collects = "number"        # "count" | "strings" | "number"
    needs_field = True         # a feature with this aggregation must name a field
    uses_vocabulary = False    # values are judged against the ones seen in earlier buckets (rare)
    inline: str | None = None  # the built-ins' fast path in FeatureAggregator.add
    unit = ""                  # how the report labels the axis

    def new(self) -> Any:
        return 0.0

    def add(self, acc: Any, value: Any) -> Any:
        raise NotImplementedError

    def final(self, acc: Any) -> float:
        return float(acc)

    def from_value(self, value: float) -> Any:
        raise ValueError(f"aggregation {self.name} is computed from documents, not from finished values")

    def describe(self, field: str | None, bucket_minutes: int) -> str:
        """The axis label of the report: what one value of this feature is."""
        of = f" of {field}" if field and self.needs_field else ""
        return f"{self.unit or self.name}{of} per {bucket_minutes} min"


@AGGREGATIONS.register("count")
class Count(Aggregation):
    collects = "count"
    needs_field = False
    inline = "count"
    unit = "alerts"

    def new(self) -> int:
        return 0

    def add(self, acc: int, value: Any) -> int:
        return acc + 1

    def from_value(self, value: float) -> int:
        return int(value)


@AGGREGATIONS.register("distinct")
class Distinct(Aggregation):
    collects = "strings"
    inline = "set"
    unit = "distinct values"

    def new(self) -> set:
        return set()

    def add(self, acc: set, value: str) -> set:
        acc.add(value)
        return acc

    def final(self, acc: Any) -> float:
        return float(len(acc))

    def from_value(self, value: float) -> range:
        return range(int(value))       # only its length is read


@AGGREGATIONS.register("max")
class Max(Aggregation):
    inline = "max"
    unit = "maximum"

    def new(self) -> float:
        return -math.inf

    def add(self, acc: float, value: float) -> float:
        return value if value > acc else acc

    def final(self, acc: float) -> float:
        return 0.0 if acc == -math.inf else float(acc)

    def from_value(self, value: float) -> float:
        return value if value else -math.inf

    def describe(self, field: str | None, bucket_minutes: int) -> str:
        return f"{self.unit} of {field}"


@AGGREGATIONS.register("mean")
class Mean(Aggregation):
    inline = "mean"
    unit = "mean"

    def new(self) -> list:
        return [0.0, 0]

    def add(self, acc: list, value: float) -> list:
        acc[0] += value
        acc[1] += 1
        return acc

    def final(self, acc: list) -> float:
        return acc[0] / acc[1] if acc[1] else 0.0

    def from_value(self, value: float) -> list:
        return [value, 1] if value else [0.0, 0]

    def describe(self, field: str | None, bucket_minutes: int) -> str:
        return f"{self.unit} of {field}"


@AGGREGATIONS.register("sum")
class Sum(Aggregation):
    inline = "sum"
    unit = "sum"

    def add(self, acc: float, value: float) -> float:
        return acc + value

    def from_value(self, value: float) -> float:
        return value


@AGGREGATIONS.register("rare")
class Rare(Distinct):
    uses_vocabulary = True
    unit = "rare values"

    def from_value(self, value: float) -> Any:
        raise ValueError("rare values are counted from documents, not from finished values")


def aggregation(name: str) -> Aggregation:
    """An instance of the aggregation a feature names."""
    return AGGREGATIONS.get(name)()
