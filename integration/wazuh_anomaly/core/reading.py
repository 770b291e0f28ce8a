"""What every source shares: the statistics of a read, the resumable cursor, the error
of an unreadable source, and what a source that computes features itself fills
(`FeatureSink`). Part of the core, so that each source imports only the core.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .errors import WazuhAnomalyError
from .follow import same_file

if TYPE_CHECKING:
    from .config import Scenario

__all__ = ["FeatureSink", "ReadCursor", "SKIP_REASONS", "SourceStats", "SourceUnreadable"]


class FeatureSink(Protocol):
    """What a source's `push_down` fills: one scenario's bucket x feature cells over
    [start, end), in buckets of `step` seconds (`features.aggregate.FeatureAggregator` is one).

    A source that computes the features itself (the indexer) puts each finished cell as
    it arrives, so it never needs to hold more than what one answer carries.
    """

    scenario: "Scenario"
    start: float
    end: float
    step: int
    n_buckets: int

    def put(self, entity: str | None, bucket: int, values: list[float], volume: int) -> None:
        """Set the feature values of one bucket (its index from `start`) of one entity (None:
        no entity split); `volume` alerts count towards the entity's ranking."""


class SourceUnreadable(WazuhAnomalyError):
    """The alerts directory or one of its files cannot be read (missing, permissions, not a file)."""


# ---------------------------------------------------------------------------------------
# Statistics and cursor
# ---------------------------------------------------------------------------------------

SKIP_REASONS = (
    "empty_line",      # blank or whitespace-only line
    "invalid_utf8",    # bytes that are not UTF-8
    "bad_json",        # not parseable as JSON
    "not_object",      # valid JSON but not an object (array, string, number)
    "line_too_long",   # longer than max_line_bytes; never read into memory whole
    "no_timestamp",    # an object without `timestamp` (or the indexer's `@timestamp`)
    "bad_timestamp",   # a `timestamp` that is not a Wazuh timestamp
    "corrupt_gzip",    # a .json.gz that ends early or is damaged; its readable part is used
    "future_timestamp",  # stamped more than FUTURE_SECONDS after the clock (year 9999, a wrong clock)
    # counted by the runner, not by the source: the alert was read, a scenario could not use it
    "bad_alert",       # a scenario failed on this alert (an unexpected shape): skipped for that scenario
    "unusable_value",  # a feature's field held an object or a non-number: that value left out
)


@dataclass
class SourceStats:
    """What one `read()` saw. `skipped` and `examples` are keyed by SKIP_REASONS.

    `lines` and `bytes` count what was read in this call (after a cursor resume, only the
    new part). Lines outside the range are counted in `outside_range` and are not
    validated beyond their timestamp.
    """

    files: int = 0              # files opened and read
    lines: int = 0              # lines read, good and bad
    bytes: int = 0              # bytes read (uncompressed)
    alerts: int = 0             # alerts yielded (inside the range)
    outside_range: int = 0      # alerts read but outside [start, end)
    files_vanished: int = 0     # listed but gone before opening (retention, compression)
    incomplete_tail: int = 0    # a last line still being written (no newline yet), left for the next read
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, str] = field(default_factory=dict)  # first "file:line: detail" per reason

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skip(self, reason: str, where: str, detail: str = "") -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if reason not in self.examples:
            self.examples[reason] = f"{where}: {detail}" if detail else where

    def describe(self) -> str:
        """One sentence for a health event or a log line."""
        if not self.skipped:
            return f"read {self.alerts} alerts from {self.files} files, no malformed lines"
        # Counts first, then one example: the sentence must survive truncation in an alert.
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        first = next(iter(self.examples))   # examples keep the order the reasons first appeared in
        return (
            f"read {self.alerts} alerts from {self.files} files and skipped "
            f"{self.skipped_total} malformed lines ({counts}); first {first} at {self.examples[first]}"
        )


@dataclass
class ReadCursor:
    """Where the previous `read()` may be resumed, so each run does not re-read the whole day.

    `files` maps "st_dev:st_ino" of each plain (not compressed) file read to
    ``{"offset": byte offset of a line start, "head": fingerprint of the first bytes}``.
    `resume_from` is the previous range's end minus the slack: the offsets are only used by
    a read whose start is >= resume_from; an earlier start reads the files from the
    beginning. Serialise with `to_dict()` / `from_dict()` (plain JSON types).
    """

    files: dict[str, dict] = field(default_factory=dict)
    resume_from: float | None = None

    def offset_for(self, key: str, fd: int, size: int, start: float) -> int:
        """Where to start reading the open file `fd` (identity `key`) for a range starting at `start`."""
        if self.resume_from is None or start < self.resume_from:
            return 0
        mark = self.files.get(key)
        if not mark:
            return 0
        offset = mark["offset"]
        # A file shorter than the offset was truncated; another head means the inode was reused.
        return offset if same_file(fd, size, offset, mark["head"]) else 0

    def to_dict(self) -> dict:
        return {"version": 1, "resume_from": self.resume_from, "files": dict(self.files)}

    @classmethod
    def from_dict(cls, data: dict) -> "ReadCursor":
        """Rebuild from `to_dict()` output; anything unexpected gives an empty cursor (a full re-read is safe)."""
        if not isinstance(data, dict) or data.get("version") != 1:
            return cls()
        files = data.get("files")
        resume_from = data.get("resume_from")
        if not isinstance(files, dict) or isinstance(resume_from, bool) or not isinstance(resume_from, (int, float)) \
                or resume_from != resume_from:
            return cls()
        clean = {
            k: {"offset": v["offset"], "head": v["head"]}
            for k, v in files.items()
            if isinstance(v, dict) and type(v.get("offset")) is int and v["offset"] >= 0 and isinstance(v.get("head"), str)
        }
        return cls(files=clean, resume_from=float(resume_from))
