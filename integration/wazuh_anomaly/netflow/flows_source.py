"""Normalised flow events (what `wazuh-anomaly netflow normalize` appends to
logs/anomaly/netflow.json) as a source for learned flow baselines: `(ts, event)` pairs,
ts from `event.start`, streaming, for scenarios with `source: flows`.

Reads the file and its rotated copies (`netflow.json.1`, `netflow.json.2.gz`,
`netflow.json-20260301[.gz]` …: logrotate's names, gzip-compressed or not). A rotated
file last written before the range starts is skipped without reading it. The live file is resumed from a cursor (its identity, first bytes
and the offset of the first line at or after the previous range's end less the slack),
kept in `cursor_file`, so a scoring run does not re-read the day.
"""
from __future__ import annotations

import gzip
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
from ..core.follow import head_fingerprint
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

    def __init__(self, path: Path, *, cursor_file: Path | None = None):
        self.path = Path(path)
        self.cursor_file = cursor_file
        self.clock = Clock()
        self._at = ""        # file:line of the event yielded last (position())

    # An event stamped further than this after the clock is skipped as `future_timestamp`.
    FUTURE_SECONDS = 86400.0

    def position(self) -> str:
        """'file:line' of the event the last read yielded last ('' before any)."""
        return self._at

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
                    yield from self._gzip_lines(fd, path, start, end, mark_from, stats)
                    continue
                key = f"{st.st_dev}:{st.st_ino}"
                offset = cursor.offset_for(key, fd, st.st_size, start) if live else 0
                mark = yield from self._lines(_chunks(fd, offset, self.CHUNK_BYTES), path, offset, start, end,
                                              mark_from, stats)
                if live:
                    cursor.files = {key: {"offset": mark, "head": head_fingerprint(fd, min(64, mark))}}
            finally:
                os.close(fd)
        if self.cursor_file is not None:
            cursor.resume_from = mark_from
            atomic_write_json(self.cursor_file, cursor.to_dict())

    def _gzip_lines(self, fd: int, path: Path, start: float, end: float, mark_from: float, stats: SourceStats):
        """The events in range of a compressed rotated copy; a damaged archive is counted
        and skipped from the point where it breaks."""
        with open(fd, "rb", closefd=False) as raw, gzip.GzipFile(fileobj=raw) as unzipped:
            chunks = iter(lambda: unzipped.read(self.CHUNK_BYTES), b"")
            try:
                yield from self._lines(chunks, path, 0, start, end, mark_from, stats)
            except (OSError, EOFError, zlib.error) as exc:
                stats.skip("damaged_archive", str(path), f"not a complete gzip file ({exc}); the rest of it was skipped")

    def _lines(self, chunks: Iterator[bytes], path: Path, offset: int, start: float, end: float, mark_from: float,
               stats: SourceStats):
        """Yields the events in range of `chunks` (the file's bytes from `offset` on);
        returns the offset of the first line at or after mark_from."""
        pending = b""
        position = offset          # file offset of the start of `pending`
        line_no = 0
        mark = None
        loads, parse = orjson.loads, self.clock.parse
        future = time.time() + self.FUTURE_SECONDS
        for chunk in chunks:
            data = pending + chunk
            lines = data.split(b"\n")
            pending = lines.pop()
            for line in lines:
                line_start = position
                position += len(line) + 1
                line_no += 1
                stats.lines += 1
                stats.bytes += len(line) + 1
                if not line.strip():
                    continue
                try:
                    event = loads(line)
                    ts, _ = parse(event["event"]["start"], "event.start")
                except (orjson.JSONDecodeError, KeyError, TypeError, BadRecord):
                    stats.skip("not_a_flow_event", f"{path}:{line_no if not offset else 'after byte ' + str(line_start)}",
                               "not a normalised flow event")
                    continue
                where = f"{path}:{line_no if not offset else 'after byte ' + str(line_start)}"
                if ts > future:
                    stats.skip("future_timestamp", where, f"stamped {event['event']['start']}"[:80])
                    continue
                if mark is None and ts >= mark_from:
                    mark = line_start
                if start <= ts < end:
                    stats.alerts += 1
                    self._at = where
                    yield ts, event
                else:
                    stats.outside_range += 1
        if pending:
            stats.incomplete_tail += 1
        return mark if mark is not None else position


def _chunks(fd: int, offset: int, size: int) -> Iterator[bytes]:
    """The bytes of `fd` from `offset` to its current end, `size` at a time."""
    while True:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            return
        offset += len(chunk)
        yield chunk
