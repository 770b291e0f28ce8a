"""Entities' frames a chunk at a time: training streams them instead of holding them all.

A scenario with every agent an entity has thousands of bucket x feature frames; over a
14-day lookback they are gigabytes together. `LazyFrames` is a mapping entity -> frame
that builds a frame only when asked (and `chunks()` a few hundred of them at once, the
way they are fitted and scored), so what is held at a time is one chunk. A plain dict of
frames works everywhere a LazyFrames does (`in_chunks`, `length_of`).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Callable, Hashable, Iterable, Iterator

import pandas as pd

CHUNK = 500     # entities built, fitted and scored together (as scoring does)

Builder = Callable[[list], "dict[Hashable, pd.DataFrame]"]


class LazyFrames(Mapping):
    """entity -> frame, each built on demand by `build(entities)` (which returns their
    frames); `lengths` gives each frame's number of rows without building it."""

    def __init__(self, entities: Iterable, build: Builder, lengths: Mapping | Callable[[Hashable], int],
                 index: Callable[[Hashable], pd.Index] | None = None, *, chunk_size: int = CHUNK):
        self.chunk_size = max(int(chunk_size), 1)   # what in_chunks() builds at once by default
        self._entities = list(entities)
        self._known = set(self._entities)
        self._build = build
        self._lengths = lengths
        self._index = index

    def __getitem__(self, entity):
        if entity not in self._known:
            raise KeyError(entity)
        return self._build([entity])[entity]

    def __iter__(self) -> Iterator:
        return iter(self._entities)

    def __len__(self) -> int:
        return len(self._entities)

    def __contains__(self, entity) -> bool:
        return entity in self._known

    def length(self, entity) -> int:
        lengths = self._lengths
        return int(lengths(entity) if callable(lengths) else lengths[entity])

    def index(self, entity) -> pd.Index:
        """One entity's row index (without building its frame when the builder says it)."""
        return self._index(entity) if self._index is not None else self[entity].index

    def frames(self, entities: list) -> dict:
        """The frames of these entities, built together."""
        return self._build(list(entities)) if entities else {}

    def chunks(self, size: int | None = None) -> Iterator[dict]:
        size = max(int(size or self.chunk_size), 1)
        for i in range(0, len(self._entities), size):
            yield self._build(self._entities[i:i + size])

    def subset(self, entities: Iterable) -> "LazyFrames":
        """The same frames for only these entities (in this order)."""
        return LazyFrames([e for e in entities if e in self._known], self._build, self._lengths, self._index,
                          chunk_size=self.chunk_size)

    def map(self, transform: Callable[[Hashable, pd.DataFrame], pd.DataFrame]) -> "LazyFrames":
        """Each frame as `transform(entity, frame)` makes it (same rows)."""
        build = self._build
        return LazyFrames(self._entities, lambda es: {e: transform(e, f) for e, f in build(es).items()},
                          self._lengths, self._index, chunk_size=self.chunk_size)


def in_chunks(series: Mapping, size: int | None = None) -> Iterator[dict]:
    """The entities' frames `size` entities at a time (default: the lazy mapping's own
    chunk size, CHUNK for a dict), in the mapping's order."""
    chunks = getattr(series, "chunks", None)
    if chunks is not None:
        yield from chunks(size)
        return
    keys = list(series)
    size = max(int(size or CHUNK), 1)
    for i in range(0, len(keys), size):
        yield {e: series[e] for e in keys[i:i + size]}


def length_of(series: Mapping, entity) -> int:
    """Rows of one entity's frame, without building it when the mapping is lazy."""
    length = getattr(series, "length", None)
    return length(entity) if length is not None else len(series[entity])


def index_of(series: Mapping, entity) -> pd.Index:
    """One entity's row index, without building its frame when the mapping can say it."""
    index = getattr(series, "index", None)
    return index(entity) if index is not None else series[entity].index


def frames_of(series: Mapping, entities: list) -> dict:
    """The frames of these entities (built together when the mapping is lazy)."""
    frames = getattr(series, "frames", None)
    return frames(list(entities)) if frames is not None else {e: series[e] for e in entities}


def ordered(series: Mapping, entities: list) -> Mapping:
    """The same frames for only these entities, in this order (still lazy when it was)."""
    subset = getattr(series, "subset", None)
    return subset(entities) if subset is not None else {e: series[e] for e in entities}


def materialize(series: Mapping) -> dict:
    """Every frame at once (for a detector that needs them all: MVAD on its few entities)."""
    if isinstance(series, dict):
        return series
    out: dict = {}
    for part in in_chunks(series):
        out.update(part)
    return out
