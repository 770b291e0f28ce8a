"""Per-scenario state between wodle runs, written atomically, and the run lock.

A scenario's state is its watermark (end of the last scored bucket) and the trailing
context MVAD needs before the next bucket, per entity; both are saved in one file
after the run's anomalies are written, so a run killed half-way is repeated by the next
one without gaps, and the emitter's id store keeps the repeat from duplicating.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import jsonio as fastjson
from . import fileio
from .chunks import frames_of, in_chunks
from .errors import LockBusy
from .fileio import atomic_write, set_aside_damaged

REBUILT = "what it held is rebuilt from the alerts and the models by this run"


def atomic_write_json(path: Path, data: Any, *, mode: int = 0o640) -> None:
    """Write JSON so that readers see the old or the new file, never half of one."""
    fileio.makedirs(path.parent, 0o750)
    atomic_write(path, json.dumps(data, separators=(",", ":")).encode("utf-8"), mode)


def state_dir_of(where: Any) -> Path:
    """The state directory of a Layout, a Config, or a directory given as is."""
    return Path(getattr(where, "state_dir", where))


def read_json(path: Path, default: Any = None, *, consequence: str = REBUILT) -> Any:
    """A state file's content; a missing one reads as `default`, and so does a damaged
    one, which is moved aside to `<name>.corrupt-<time>` and noted for a health event
    (fileio.set_aside_damaged): state is never a reason to stop scoring."""
    try:
        return fastjson.loads(fileio.read_bytes(path))
    except FileNotFoundError:
        return default
    except ValueError:
        damaged(path, consequence)
        return default


def damaged(path: Path, consequence: str = REBUILT) -> None:
    """A state file that cannot be used: logged, moved aside and noted for a health event."""
    logging.getLogger("wazuh_anomaly").warning("%s: damaged state file moved aside; %s", path, consequence)
    set_aside_damaged(path, consequence)


class RunLock:
    """One run at a time: a second wodle run while one is still going is skipped."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        fileio.makedirs(self.path.parent, 0o750)
        fd = fileio.open_file(self.path, os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockBusy(f"another wazuh-anomaly run holds {self.path}; this run is skipped "
                           f"(if none is running, the lock frees itself when that process exits).") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass
class ScenarioState:
    """What one scenario remembers between runs."""

    name: str
    watermark: float | None = None            # end of the last scored bucket, epoch seconds
    context: dict[str, list[list[float]]] = field(default_factory=dict)  # entity key -> last rows
    last_run: float | None = None
    last_error: str | None = None
    last_anomalies: int = 0
    total_anomalies: int = 0
    vocabulary: dict = field(default_factory=dict)  # rare features: value counts per entity
    last_train_attempt: float | None = None

    @staticmethod
    def entity_key(entity: str | None) -> str:
        return "" if entity is None else "=" + entity

    @staticmethod
    def entity_of(key: str) -> str | None:
        return None if key == "" else key[1:]

    def context_frame(self, entity: str | None, features: list[str], rows: int, step: int) -> pd.DataFrame:
        """The `rows` buckets before the watermark for one entity; zeros where unknown
        (an entity not seen before had no matching alerts: zero is the truth)."""
        index = pd.DatetimeIndex(pd.to_datetime(self.watermark - step * np.arange(rows, 0, -1), unit="s", utc=True),
                                 name="bucket")
        values = np.zeros((rows, len(features)))
        stored = self.context.get(self.entity_key(entity))
        if stored:
            tail = np.asarray(stored, dtype=float)[-rows:]
            if tail.ndim == 2 and tail.shape[1] == len(features):
                values[rows - len(tail):] = tail
        return pd.DataFrame(values, index=index, columns=features)

    def remember(self, frames: dict[str | None, pd.DataFrame], rows: int, keep: int) -> None:
        """Keep the last `rows` buckets of the busiest `keep` entities that had any activity."""
        # One chunk of frames at a time (training's frames are built on demand): the
        # ranking needs one number per entity, the context only the busiest frames.
        busy = {e: -float(f.tail(rows).to_numpy().sum()) for part in in_chunks(frames) for e, f in part.items()}
        ranked = sorted(busy, key=busy.__getitem__)[:keep]
        top = frames_of(frames, ranked)
        self.context = {self.entity_key(e): np.round(top[e].tail(rows).to_numpy(dtype=float), 6).tolist()
                        for e in ranked if rows and top[e].tail(rows).to_numpy().any()}

    def to_json(self) -> dict:
        return {"name": self.name, "watermark": self.watermark, "context": self.context,
                "last_run": self.last_run, "last_error": self.last_error,
                "last_anomalies": self.last_anomalies, "total_anomalies": self.total_anomalies,
                "vocabulary": self.vocabulary, "last_train_attempt": self.last_train_attempt}

    @classmethod
    def load(cls, state_dir: Path, name: str) -> "ScenarioState":
        path = state_dir / "scenarios" / f"{name}.json"
        data = read_json(path)
        if data is None:
            return cls(name)
        try:
            return cls(name=name, watermark=_time(data.get("watermark")), context=_context(data.get("context")),
                       last_run=_time(data.get("last_run")), last_error=_text(data.get("last_error")),
                       last_anomalies=_count(data.get("last_anomalies")),
                       total_anomalies=_count(data.get("total_anomalies")),
                       vocabulary=_vocabulary(data.get("vocabulary")),
                       last_train_attempt=_time(data.get("last_train_attempt")))
        except (TypeError, ValueError, AttributeError, OverflowError):
            damaged(path)
            return cls(name)

    def save(self, state_dir: Path) -> None:
        atomic_write_json(state_dir / "scenarios" / f"{self.name}.json", self.to_json())


# -- checking what a scenario state file holds (anything else is a damaged file) --------

# Epoch seconds a state may hold: 1970 to the year 3000 (pandas cannot place later ones).
_LAST_TIME = 32_503_680_000.0


def _time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < _LAST_TIME:
        raise TypeError(f"not a time: {value!r}"[:80])
    return float(value)


def _count(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"not a count: {value!r}"[:80])
    return value


def _text(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("not a text")
    return value


def _context(value: Any) -> dict[str, list[list[float]]]:
    """entity key -> rows of numbers, all rows of one entity as long."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError("context is not an object")
    for rows in value.values():
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise TypeError("context rows are not lists")
        if len({len(row) for row in rows}) > 1:
            raise ValueError("context rows of different lengths")
        for row in rows:
            for x in row:
                if isinstance(x, bool) or not isinstance(x, (int, float)):
                    raise TypeError("context value is not a number")
    return value


def _vocabulary(value: Any) -> dict:
    """feature -> entity key -> value -> count."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError("vocabulary is not an object")
    for entities in value.values():
        if not isinstance(entities, dict):
            raise TypeError("vocabulary entities are not an object")
        for counts in entities.values():
            if not isinstance(counts, dict) or not all(
                    type(n) is int for n in counts.values()):
                raise TypeError("vocabulary counts are not numbers")
    return value
