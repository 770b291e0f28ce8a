"""Features: alerts streamed into a bucket x feature frame per scenario (and entity).

Buckets are aligned to UTC multiples of the bucket size; every bucket of the range is a
row, and a bucket with no matching alert is a real zero. A bucket's numbers depend only
on the alerts inside it, so aggregating a range in one pass or in several runs that
split it at bucket boundaries gives the same frame.
"""
from __future__ import annotations

import bisect
import math
import re
from collections import defaultdict
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd

from ..core import progress
from ..core.chunks import CHUNK, LazyFrames
from ..core.config import Condition, Scenario
# The one filter language's compiler and field access (core/filters.py), shared with the real-time path.
from ..core.filters import any_of_slow as _any_of_slow
from ..core.filters import as_number as _as_number
from ..core.filters import as_strings as _as_strings
from ..core.filters import as_text as _text
from ..core.filters import compile_filter, field_getter
from ..core.filters import disjoint as _disjoint
from .aggregations import Aggregation, aggregation


def _usable_strings(value: Any) -> bool:
    """Can a distinct/rare feature count this value whole (no object, no nested list)?"""
    if isinstance(value, dict):
        return False
    return not isinstance(value, list) or not any(isinstance(v, (dict, list)) for v in value)


def _groups_gate(groups: dict[tuple[Condition, ...], list[int]]) -> frozenset | None:
    """The union of rule.groups values when every filter of a scenario requires one of
    them (so an alert in none of them matches nothing); None otherwise."""
    union: set[str] = set()
    for conditions in groups:
        wanted = [c for c in conditions if c.field == "rule.groups" and c.equals and c.exists is not False
                  and c.min is None and c.max is None]
        if not wanted:
            return None
        union.update(wanted[0].equals)
    return frozenset(union) if union else None


VOCABULARY_LIMIT = 5000
_SET = "set"
_CALL = "call"     # an aggregation without an inline operation: its add() is called


def _vocab_key(entity: str | None) -> str:
    return "" if entity is None else "=" + entity


def _entity_order(entity: str | None) -> tuple[bool, str]:
    """How compact() orders entities: None first, then by name."""
    return (entity is not None, entity or "")


def _capped(counts: dict[str, int]) -> dict[str, int]:
    """Keep the vocabulary bounded: past the limit, forget the rarest values first."""
    if len(counts) <= VOCABULARY_LIMIT:
        return counts
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:VOCABULARY_LIMIT])


class FeatureAggregator:
    """Streams alerts into per-bucket feature values of one scenario for [start, end).

    Times are UTC epoch seconds; `start` and `end` must be aligned to the bucket size.
    Alerts outside the range are ignored, so several aggregators can share one pass
    over a source that reads the union of their ranges.
    """

    def __init__(self, scenario: Scenario, start: float, end: float,
                 vocabulary: dict[str, dict[str, dict[str, int]]] | None = None):
        step = scenario.bucket_seconds
        if end < start:
            raise ValueError(f"range [{start}, {end}) ends before it starts")
        if start % step or end % step:
            raise ValueError(f"range [{start}, {end}) is not aligned to {step}-second buckets")
        self.scenario = scenario
        self.start = float(start)
        self.end = float(end)
        self.step = step
        self.n_buckets = int((end - start) // step)
        self.features = scenario.features
        # Features that share a filter are tested once per alert.
        groups: dict[tuple[Condition, ...], list[int]] = defaultdict(list)
        for i, feature in enumerate(self.features):
            groups[feature.filter].append(i)
        # Members carry the operation: the built-ins' inline one (distinct and rare as one
        # marker: both collect a set) or a call of the aggregation's add; no getter for count.
        self._aggs: list[Aggregation] = [aggregation(f.aggregation) for f in self.features]
        self._groups = [(compile_filter(conds),
                         [(i, self._aggs[i].inline or _CALL,
                           field_getter(self.features[i].field)
                           if self.features[i].field and self._aggs[i].collects != "count" else None,
                           self._aggs[i])
                          for i in idxs])
                        for conds, idxs in groups.items()]
        self._entity = field_getter(scenario.entity.field) if scenario.entity else None
        self._gate = _groups_gate(groups)
        # (entity, bucket) -> accumulators, only for buckets that saw a matching alert.
        self._cells: dict[tuple[str | None, int], list[Any]] = {}
        # After compact(): entity -> (bucket numbers, their finished feature values), the
        # cells of the chosen entities in arrays (a few bytes a value instead of objects).
        self._compact: tuple[list, np.ndarray, np.ndarray, np.ndarray] | None = None
        self.entity_volume: dict[str | None, int] = defaultdict(int)
        # feature -> entity key -> value -> number of earlier buckets it was seen in
        self.vocabulary = vocabulary or {}
        self._vocabulary_after: dict[str, dict[str, dict[str, int]]] = {}
        self.alerts_seen = 0
        self.alerts_matched = 0
        self.alerts_without_entity = 0
        # field -> alerts whose value of it no feature could use (an object where a string
        # or a number belongs, a number that is not finite): only that value is left out.
        self.unusable: dict[str, int] = {}
        # Called as (field, value) for each of them, so the caller can say where it was.
        self.on_unusable: Callable[[str, Any], None] | None = None

    def add(self, ts: float, alert: dict) -> None:
        if not self.start <= ts < self.end:
            return
        self.alerts_seen += 1
        entity: str | None = None
        if self._entity is not None:
            value = self._entity(alert)
            if type(value) is str and value:
                entity = value
            elif value is None or isinstance(value, (dict, list)) or value == "":
                self.alerts_without_entity += 1
                return
            else:
                entity = _text(value)
        gate = self._gate
        if gate is not None:
            # Most alerts are in none of the groups this scenario counts: one set test
            # instead of one per filter (exact: every filter requires one of these groups).
            rule = alert.get("rule")
            groups = rule.get("groups") if type(rule) is dict else None
            kind = type(groups)
            if kind is list:
                if _disjoint(gate, groups) and not _any_of_slow(groups, gate):
                    return
            elif kind is str:
                if groups not in gate:
                    return
            elif groups is None or kind is dict:
                return
        cell = None
        matched = False
        for test, members in self._groups:
            if not test(alert):
                continue
            if cell is None:
                key = (entity, int((ts - self.start) // self.step))
                cell = self._cells.get(key)
                if cell is None:
                    cell = self._cells[key] = [a.new() for a in self._aggs]
            for i, op, get, agg in members:
                if get is None:                      # count
                    if op is _CALL:
                        cell[i] = agg.add(cell[i], None)
                    else:
                        cell[i] += 1
                    matched = True
                    continue
                value = get(alert)
                if value is None:
                    continue
                if op is _SET or (op is _CALL and agg.collects == "strings"):
                    if type(value) is str and op is _SET:
                        cell[i].add(value)
                        matched = True
                        continue
                    if not _usable_strings(value):
                        self._unusable(i, value)
                    for v in _as_strings(value):
                        if op is _SET:
                            cell[i].add(v)
                        else:
                            cell[i] = agg.add(cell[i], v)
                        matched = True
                    continue
                number = value if type(value) is float else _as_number(value)
                if number is None or number != number or number in (math.inf, -math.inf):
                    self._unusable(i, value)
                    continue
                matched = True
                if op == "max":
                    if number > cell[i]:
                        cell[i] = number
                elif op == "mean":
                    cell[i][0] += number
                    cell[i][1] += 1
                elif op is _CALL:
                    cell[i] = agg.add(cell[i], float(number))
                else:
                    cell[i] += number
        if matched:
            self.alerts_matched += 1
            self.entity_volume[entity] += 1

    def _unusable(self, i: int, value: Any) -> None:
        name = self.features[i].field
        self.unusable[name] = self.unusable.get(name, 0) + 1
        if self.on_unusable is not None:
            self.on_unusable(name, value)

    def put(self, entity: str | None, bucket: int, values: list[float], volume: int) -> None:
        """Set one bucket's finished feature values, computed elsewhere (the indexer's
        aggregations), so that frame() and entities() read them like streamed alerts."""
        self._cells[(entity, bucket)] = [a.from_value(v) for a, v in zip(self._aggs, values)]
        if volume:
            self.entity_volume[entity] += volume

    def index(self) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(
            pd.to_datetime(self.start + np.arange(self.n_buckets) * self.step, unit="s", utc=True),
            name="bucket")

    def entities(self, top: int | None = None) -> list[str | None]:
        """Entities by volume, busiest first (ties by name); [None] without an entity split."""
        if self._entity is None:
            return [None]
        ranked = sorted(self.entity_volume, key=lambda e: (-self.entity_volume[e], e))
        return ranked if top is None else ranked[:top]

    def release(self) -> None:
        """Forget the accumulated cells (and their compact arrays)."""
        self._cells = {}
        self._compact = None

    def compact(self, top: int | None = None) -> list[str | None]:
        """Turn the cells of the entities frames() would choose into a few arrays (bucket
        numbers and finished feature values, entity after entity; rare values judged in
        time order, as frames() does) and forget every cell. The cells of millions of
        alerts are objects of about 230 bytes each, scattered over the interpreter's
        memory; the arrays are 8 bytes a value, and no small object is made while the
        cells are let go, so their memory goes back to the system. Returns those
        entities, busiest first; frame(), frames() and series() then read the arrays."""
        if top is None and self.scenario.entity is not None:
            top = self.scenario.entity.top
        chosen = self.entities(top)
        wanted = set(chosen)
        cells = self._cells
        keys = [k for k in cells if k[0] in wanted]
        try:
            keys.sort()                       # entity, then bucket: each entity's cells in time order
        except TypeError:                     # None beside names (no entity and entities): None first
            keys.sort(key=lambda k: (k[0] is not None, k[0] or "", k[1]))
        names = sorted(wanted, key=_entity_order)
        offsets = np.zeros(len(names) + 1, dtype=np.int64)
        buckets = np.empty(len(keys), dtype=np.int64)
        values = np.empty((len(keys), len(self.features)), dtype=float)
        rare = [i for i, a in enumerate(self._aggs) if a.uses_vocabulary]
        at = 0
        with progress.steps("compacting entities", len(names)) as compacting:
            for n, entity in enumerate(names):
                compacting.step()
                at = self._compact_one(entity, keys, at, cells, buckets, values, rare)
                offsets[n + 1] = at
        del keys, cells
        self._cells = {}
        self._compact = (names, offsets, buckets, values)
        return chosen

    def _compact_one(self, entity: str | None, keys: list, at: int, cells: dict, buckets: np.ndarray,
                     values: np.ndarray, rare: list[int]) -> int:
        """Copy one entity's cells (keys[at:], in time order) into the arrays; the next position.
        Rare values: seen in at most max_seen earlier buckets of this entity, in time order."""
        aggs = self._aggs
        seen = {i: dict(self.vocabulary.get(self.features[i].name, {}).get(_vocab_key(entity), {})) for i in rare}
        while at < len(keys) and keys[at][0] == entity:
            key = keys[at]
            cell = cells[key]
            buckets[at] = key[1]
            values[at] = [a.final(acc) for a, acc in zip(aggs, cell)]
            for i in rare:
                counts, limit = seen[i], self.features[i].max_seen
                values[at, i] = float(sum(1 for v in cell[i] if counts.get(v, 0) <= limit))
                for v in cell[i]:
                    counts[v] = counts.get(v, 0) + 1
            at += 1
        for i in rare:
            self._vocabulary_after.setdefault(self.features[i].name, {})[_vocab_key(entity)] = _capped(seen[i])
        return at

    def _compacted(self, entity: str | None) -> tuple[np.ndarray, np.ndarray] | None:
        """(bucket numbers, finished values) of a compacted entity; None if it is not."""
        if self._compact is None:
            return None
        names, offsets, buckets, values = self._compact
        i = bisect.bisect_left(names, _entity_order(entity), key=_entity_order)
        if i >= len(names) or names[i] != entity:
            return None
        return buckets[offsets[i]:offsets[i + 1]], values[offsets[i]:offsets[i + 1]]

    def series(self, entities: list[str | None], start: float | None = None, *, chunk: int = CHUNK) -> LazyFrames:
        """The frames of these entities (compacted) from `start` on (aligned; default the
        range's start), as a mapping that builds them only when asked, a chunk at a time."""
        if self._compact is None:
            self.compact()
        offset = 0 if start is None else max(0, min(self.n_buckets, int((start - self.start) // self.step)))
        index = self.index()[offset:]
        columns = [f.name for f in self.features]
        empty = (np.zeros(0, dtype=np.int64), np.zeros((0, len(columns))))

        def build(entities: list) -> dict:
            out = {}
            for entity in entities:
                buckets, finals = self._compacted(entity) or empty
                values = np.zeros((self.n_buckets, len(columns)), dtype=float)
                values[buckets] = finals
                out[entity] = pd.DataFrame(values[offset:], index=index, columns=columns)
            return out
        return LazyFrames(entities, build, lambda entity: len(index), lambda entity: index, chunk_size=chunk)

    def last_seen(self) -> dict[str | None, float]:
        """Each entity's last bucket (its start, epoch seconds) with an alert a feature counted."""
        last: dict[str | None, int] = {}
        for entity, bucket in self._cells:
            if bucket > last.get(entity, -1):
                last[entity] = bucket
        if self._compact is not None:
            names, offsets, buckets, _ = self._compact
            for n, entity in enumerate(names):
                if offsets[n + 1] > offsets[n] and int(buckets[offsets[n + 1] - 1]) > last.get(entity, -1):
                    last[entity] = int(buckets[offsets[n + 1] - 1])
        return {e: self.start + b * self.step for e, b in last.items()}

    def recent_entities(self, since: float) -> set[str | None]:
        """The entities with an alert in a bucket starting at or after `since`."""
        return {e for e, t in self.last_seen().items() if t >= since}

    def frame(self, entity: str | None = None) -> pd.DataFrame:
        """The bucket x feature frame of one entity (or of the whole stream)."""
        if self._compacted(entity) is not None:
            return self.series([entity])[entity]
        return self._frame_of(entity, [(bucket, cell) for (cell_entity, bucket), cell in self._cells.items()
                                       if cell_entity == entity])

    def _frame_of(self, entity: str | None, cells: list[tuple[int, list]],
                  index: pd.DatetimeIndex | None = None) -> pd.DataFrame:
        values = np.zeros((self.n_buckets, len(self.features)), dtype=float)
        rare = [i for i, a in enumerate(self._aggs) if a.uses_vocabulary]
        if rare:
            cells = sorted(cells, key=lambda bc: bc[0])
        seen = {i: dict(self.vocabulary.get(self.features[i].name, {}).get(_vocab_key(entity), {})) for i in rare}
        for bucket, cell in cells:
            values[bucket] = [a.final(acc) for a, acc in zip(self._aggs, cell)]
            # Rare values: seen in at most max_seen earlier buckets of this entity, in time order.
            for i in rare:
                counts, limit = seen[i], self.features[i].max_seen
                values[bucket, i] = float(sum(1 for v in cell[i] if counts.get(v, 0) <= limit))
                for v in cell[i]:
                    counts[v] = counts.get(v, 0) + 1
        for i in rare:
            self._vocabulary_after.setdefault(self.features[i].name, {})[_vocab_key(entity)] = _capped(seen[i])
        return pd.DataFrame(values, index=self.index() if index is None else index,
                            columns=[f.name for f in self.features])

    def vocabulary_after(self, keep: set[str | None] | None = None) -> dict[str, dict[str, dict[str, int]]]:
        """The rare-value counts after this range, for the next run (call after frames());
        with `keep`, only those entities' (the others are forgotten)."""
        merged = {name: dict(entities) for name, entities in self.vocabulary.items()}
        for name, entities in self._vocabulary_after.items():
            merged.setdefault(name, {}).update(entities)
        if keep is not None:
            keys = {_vocab_key(e) for e in keep}
            merged = {name: {k: v for k, v in entities.items() if k in keys} for name, entities in merged.items()}
        # With an entity such as data.srcip the set of entities never ends: keep the
        # ones with the most history (a forgotten entity's values are simply rare again).
        # With every entity modelled (entity.top: all) nothing is trimmed here: training
        # rebuilds the vocabulary from its own range, which forgets the entities gone since.
        entity = self.scenario.entity
        limit = (math.inf if entity.top is None else max(100, 4 * entity.top)) if entity else 1
        for name, entities in merged.items():
            if len(entities) > limit:
                keep = sorted(entities, key=lambda e: (-sum(entities[e].values()), e))[:limit]
                merged[name] = {e: entities[e] for e in keep}
        return merged

    def frames(self, top: int | None = None) -> dict[str | None, pd.DataFrame]:
        """The frame of each entity, busiest first: the scenario's `entity.top` of them
        (every entity when it is `all`), or `top` when given. One pass over the cells,
        so the cost grows with the cells, not with entities x cells."""
        if top is None and self.scenario.entity is not None:
            top = self.scenario.entity.top
        chosen = self.entities(top)
        if self._compact is not None and all(self._compacted(e) is not None for e in chosen):
            return dict(self.series(chosen).items())
        by_entity: dict[str | None, list[tuple[int, list]]] = {e: [] for e in chosen}
        for (entity, bucket), cell in self._cells.items():
            cells = by_entity.get(entity)
            if cells is not None:
                cells.append((bucket, cell))
        index = self.index()    # one index shared by every frame
        return {entity: self._frame_of(entity, by_entity[entity], index) for entity in chosen}


def aggregate(scenario: Scenario, alerts: Iterable[tuple[float, dict]], start: float, end: float,
              ) -> FeatureAggregator:
    """Aggregate an iterable of (epoch seconds, alert) into a finished aggregator."""
    agg = FeatureAggregator(scenario, start, end)
    add = agg.add
    for ts, alert in alerts:
        add(ts, alert)
    return agg


def align_down(ts: float, step: int) -> float:
    return float(math.floor(ts / step) * step)


def align_up(ts: float, step: int) -> float:
    return float(math.ceil(ts / step) * step)
