"""Normalised flow events (what `wazuh-anomaly netflow normalize` appends to
logs/anomaly/netflow.json) as a source for learned flow baselines: `(ts, event)` pairs,
ts from `event.start`, streaming, for scenarios with `source: flows`.

Reads the file and its rotated copies (`netflow.json.1`, `netflow.json.2.gz`,
`netflow.json-20260301[.gz]` …: logrotate's names, gzip-compressed or not). A rotated
file last written before the range starts is skipped without reading it. The live file is resumed from a cursor (its identity, first bytes
and the offset of the first line at or after the previous range's end less the slack),
kept in `cursor_file`, so a scoring run does not re-read the day. Lines are split by
the one line reader of core/follow.py, as for the alerts files: a line over
`max_line_bytes` is skipped as `line_too_long`, the live file's torn last line is left
for the next read, a rotated copy's unterminated last line is read as it is.
"""
from __future__ import annotations

import os
import re
import time
import zlib
from pathlib import Path
from typing import Iterator

import orjson

from ..core.errors import UnsafePath
from ..core.fileio import open_file
from ..core.registry import SOURCES
from .normalize import BadRecord, Clock
from .stream import atomic_write_json, read_json
from ..core.follow import MAX_LINE_BYTES, FileReader, GzipStream, StreamReader, head_fingerprint
from ..core.reading import ReadCursor, SourceStats, SourceUnreadable

_ROTATED = re.compile(r"^(?:\.(\d+)|-(\d{8,}))(\.gz)?$")


@SOURCES.register("flows")
class FlowsFileSource:
    """Flow events of `path` and its rotated copies in [start, end)."""

    what = "flow events"        # what a terminal's progress line says is being read

    @classmethod
    def from_config(cls, config, scenario=None, *, resume: bool = True) -> "FlowsFileSource":
        """The scenario's flows_file (default logs/anomaly/netflow.json); with `resume`, a
        cursor in the state directory lets the next scheduled read start where this one ended."""
        flows_file = getattr(scenario, "flows_file", "") if scenario is not None else ""
        path = Path(flows_file) if flows_file else config.layout.logs_dir / "netflow.json"
        name = "".join(c if c.isalnum() else "_" for c in str(path.absolute()))[-100:]
        return cls(path, cursor_file=config.state_dir / f"flows_cursor_{name}.json" if resume else None)

    @property
    def key(self) -> tuple:
        return ("flows", str(self.path.absolute()))

    def skip_message(self, stats: SourceStats) -> str:
        return f"{self.path}: {stats.describe()}"

    def waiting_message(self, scenario: str) -> str | None:
        """Why a scenario reading this file cannot train or score yet (None once it exists)."""
        if self.available():
            return None
        return (f"scenario {scenario} counts NetFlow events and {self.path} does not exist yet; start the NetFlow "
                f"normaliser first ('wazuh-anomaly netflow normalize --follow', see docs/netflow.md).")

    CHUNK_BYTES = 1 << 20

    def __init__(self, path: Path, *, cursor_file: Path | None = None, max_line_bytes: int = MAX_LINE_BYTES):
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.path = Path(path)
        self.cursor_file = cursor_file
        self.max_line_bytes = max_line_bytes
        self.clock = Clock()
        self._at: tuple | str = ""   # where the event yielded last was read: (run, index) while reading

    # An event stamped further than this after the clock is skipped as `future_timestamp`.
    FUTURE_SECONDS = 86400.0

    def position(self) -> str:
        """'file:line' of the event the last read yielded last ('' before any)."""
        at = self._at
        return at if type(at) is str else at[0].where(at[1])

    def available(self) -> bool:
        return self.path.is_file()

    def files(self) -> list[Path]:
        """Rotated copies oldest first, then the live file."""
        directory, name = self.path.parent, self.path.name
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise SourceUnreadable(f"{directory}: cannot be read ({exc.strerror}); run as root.") from None
        rotated = []
        for other in names:
            match = _ROTATED.match(other[len(name):]) if other.startswith(name) else None
            if match:
                number, date, _ = match.groups()
                # numbered copies: higher is older; dated copies: earlier date is older
                key = (0, -int(number)) if number is not None else (1, int(date))
                rotated.append((key, directory / other))
        ordered = [p for _, p in sorted(rotated)]
        if self.path.is_file():
            ordered.append(self.path)
        return ordered

    def read(self, start: float, end: float, *, cursor=None, stats: SourceStats | None = None,
             slack_seconds: float = 600.0) -> Iterator[tuple[float, dict]]:
        """`cursor` belongs to the alert sources' interface: this source keeps its own (cursor_file)."""
        stats = stats if stats is not None else SourceStats()
        cursor = ReadCursor.from_dict(read_json(self.cursor_file, {}) if self.cursor_file else {})
        mark_from = end - slack_seconds
        for path in self.files():
            live = path == self.path
            try:
                fd = open_file(path)  # logs/anomaly may be writable by the wazuh group
            except FileNotFoundError:
                stats.files_vanished += 1
                continue
            except UnsafePath as exc:
                raise SourceUnreadable(f"The flow events file {exc}") from None
            except PermissionError:
                raise SourceUnreadable(f"{path}: cannot be read (permission denied); run as root or give the "
                                       f"wazuh group read access.") from None
            try:
                st = os.fstat(fd)
                if st.st_mtime < start - slack_seconds and not live:
                    continue
                stats.files += 1
                if path.name.endswith(".gz") and not live:
                    reader = StreamReader(GzipStream(fd), path, max_line_bytes=self.max_line_bytes,
                                          chunk_bytes=self.CHUNK_BYTES)
                    yield from self._events(reader, start, end, mark_from, stats, True)
                    continue
                key = f"{st.st_dev}:{st.st_ino}"
                offset = cursor.offset_for(key, fd, st.st_size, start) if live else 0
                # line numbers are known from the start of a file; after a resume, places are byte offsets
                reader = FileReader(fd, path, offset, 0 if offset == 0 else None, max_line_bytes=self.max_line_bytes,
                                    chunk_bytes=self.CHUNK_BYTES)
                # a rotated copy is finished: its unterminated last line is read as it is
                mark = yield from self._events(reader, start, end, mark_from, stats, not live)
                if live:
                    cursor.files = {key: {"offset": mark, "head": head_fingerprint(fd, min(64, mark))}}
            finally:
                os.close(fd)
        if self.cursor_file is not None:
            cursor.resume_from = mark_from
            atomic_write_json(self.cursor_file, cursor.to_dict())

    def _events(self, reader, start: float, end: float, mark_from: float, stats: SourceStats, finished: bool):
        """Yields the events in range of one file (core.follow's reader splits its lines);
        returns the offset of the first line at or after mark_from (else where the reader
        stopped: before a torn last line). A damaged archive is counted and skipped from
        the point where it breaks."""
        mark = None
        loads, parse = orjson.loads, self.clock.parse
        future = time.time() + self.FUTURE_SECONDS
        limit = self.max_line_bytes
        try:
            for run in reader.runs(self.CHUNK_BYTES, final=finished):
                lines = run.lines
                if lines is None:
                    stats.skip("line_too_long", run.where(), f"{run.size} bytes, longer than {limit}")
                    continue
                for i, line in enumerate(lines):
                    if not line.strip():
                        continue
                    try:
                        event = loads(line)
                        ts, _ = parse(event["event"]["start"], "event.start")
                    except (orjson.JSONDecodeError, KeyError, TypeError, BadRecord):
                        stats.skip("not_a_flow_event", run.where(i), "not a normalised flow event")
                        continue
                    if ts > future:
                        stats.skip("future_timestamp", run.where(i), f"stamped {event['event']['start']}"[:80])
                        continue
                    if mark is None and ts >= mark_from:
                        mark = run.offset_of(i)
                    if start <= ts < end:
                        stats.alerts += 1
                        self._at = (run, i)
                        yield ts, event
                    else:
                        stats.outside_range += 1
        except (OSError, EOFError, zlib.error) as exc:
            if not isinstance(reader, StreamReader):
                raise
            stats.skip("damaged_archive", str(reader.path), f"not a complete gzip file ({exc}); the rest of it was skipped")
        finally:
            stats.lines += reader.line
            stats.bytes += reader.bytes_read
            if type(self._at) is tuple:
                self._at = self.position()   # a place, not the lines of a chunk, outlives the read
        if not finished and (reader.pending or reader.skipping):
            stats.incomplete_tail += 1
        return mark if mark is not None else reader.offset
