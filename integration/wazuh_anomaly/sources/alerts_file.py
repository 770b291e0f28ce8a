"""The embedded default source: the manager's own alert files, no indexer needed.

Reads `logs/alerts/alerts.json` and the rotated `logs/alerts/YYYY/Mon/ossec-alerts-DD.json`,
`ossec-alerts-DD-NNN.json` (size rotations) and their `.json.gz` (compressed past days),
streaming, in bounded memory, and yields `(ts, alert)` for a half-open UTC range
`[start, end)` given as epoch seconds (floats). Bad lines never stop the stream: they are
counted per reason in a `SourceStats` and skipped.
"""
from __future__ import annotations

import os
import re
import time
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

try:  # orjson is several times faster than json on alert lines
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - the project environment always has orjson
    from json import loads as _loads

from ..core.errors import UnsafePath
from ..core.fileio import open_binary
from ..core.registry import SOURCES
from ..core.timeparse import MINUTE_CACHE, SECONDS_BYTES, TAIL_CACHE, wazuh_timestamp
from ..core.follow import FileReader, GzipStream, StreamReader, head_fingerprint
from ..core.reading import SKIP_REASONS, ReadCursor, SourceStats, SourceUnreadable

__all__ = [
    "AlertsFileSource",
    "AlertFile",
    "ReadCursor",
    "SourceStats",
    "SourceUnreadable",
    "parse_wazuh_timestamp",
    "SKIP_REASONS",
]


# ---------------------------------------------------------------------------------------
# Timestamps
# ---------------------------------------------------------------------------------------

# The one timestamp parser (core/timeparse.py). The hot loop below inlines its three
# cache lookups on the raw bytes of a line: minute head, ":SS", fraction and zone.
parse_wazuh_timestamp = wazuh_timestamp
_parse_timestamp_bytes = wazuh_timestamp
_minute_cache_b, _SECONDS_B, _tail_cache_b = MINUTE_CACHE, SECONDS_BYTES, TAIL_CACHE


_HEAD_BYTES = 64


# ---------------------------------------------------------------------------------------
# Listing
# ---------------------------------------------------------------------------------------

# Wazuh names month folders in the C locale, whatever the system locale is.
_MONTH_NAMES = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_DATED_RE = re.compile(r"ossec-alerts-(\d{2})(?:-(\d{3,}))?\.json(\.gz)?", re.ASCII)
_DAY = 86400
_EPOCH_DAY = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class AlertFile:
    """One alerts file in reading order: (day, rotation) sorts the rotated files of a day."""

    path: Path
    day: date | None       # the manager's local date in the name; None for alerts.json
    rotation: int          # 0 for ossec-alerts-DD.json, N for ossec-alerts-DD-NNN.json
    compressed: bool


@SOURCES.register("alerts_file")
class AlertsFileSource:
    """Streams the manager's alerts from `alerts_dir` (normally /var/ossec/logs/alerts).

    Parameters
    ----------
    alerts_dir : Path
        The `logs/alerts` directory of a manager (or a copy of it).
    max_line_bytes : int
        Longer lines are skipped as `line_too_long` without being held in memory.

    Ranges are half-open ``[start, end)`` in UTC epoch seconds (floats); datetimes are
    refused so that no naive local time can slip in. Files are named by the manager's
    local date, so the listing takes one more day on each side and every alert is filtered
    on its own `timestamp`.

    Errors: a missing directory, a file that cannot be opened or read (permissions) or a
    path that is not a regular file raises `SourceUnreadable`: silently losing a file
    would look like a drop in activity to the detectors. A damaged `.json.gz` is counted
    as `corrupt_gzip` and its readable part is used, because re-running cannot repair it.
    """

    CHUNK_BYTES = 1 << 20
    # An alert stamped further than this after the clock is skipped as `future_timestamp`:
    # no range would ever take it, and it must not hold the read cursor back either.
    FUTURE_SECONDS = 86400.0

    @classmethod
    def from_config(cls, config, scenario=None, *, resume: bool = True) -> "AlertsFileSource":
        """The alert files config.yaml names (source.alerts_dir); the read cursor is the caller's."""
        return cls(config.alerts_dir)

    @property
    def key(self) -> tuple:
        """Sources with equal keys are read in one pass."""
        return ("alerts_file", str(self.alerts_dir))

    def __init__(self, alerts_dir: Path, *, max_line_bytes: int = 65536):
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be positive")
        self.alerts_dir = Path(alerts_dir)
        self.max_line_bytes = max_line_bytes
        self.stats = SourceStats()
        self._at: tuple | str = ""   # where the alert last yielded was read: (run, index) while reading (see position())

    def position(self) -> str:
        """'file:line' of the alert the last read yielded last ('' before any)."""
        at = self._at
        return at if type(at) is str else at[0].where(at[1])

    # -- listing -------------------------------------------------------------------------

    def files(self, start: float, end: float) -> list[AlertFile]:
        """The files that may hold alerts of [start, end), in reading order, alerts.json last.

        Where both X.json and X.json.gz exist (monitord is compressing X), only X.json.
        """
        start, end = _check_range(start, end)
        directory = self.alerts_dir
        try:
            top = os.listdir(directory)
        except FileNotFoundError:
            raise SourceUnreadable(
                f"The alerts directory {directory} does not exist; "
                f"check the Wazuh install prefix (normally /var/ossec)."
            ) from None
        except NotADirectoryError:
            raise SourceUnreadable(f"The alerts directory {directory} is not a directory; check the Wazuh install prefix.") from None
        except PermissionError:
            raise SourceUnreadable(_permission_message(directory)) from None
        # named by the manager's local date: one more day each side covers any UTC offset
        first = max(_utc_day(start) - 1, 1)
        last = min(_utc_day(end) + 1, date.max.toordinal())
        years = range(date.fromordinal(first).year, date.fromordinal(last).year + 1)
        found: dict[tuple[date, int], AlertFile] = {}
        for year in sorted(int(name) for name in top if name.isascii() and name.isdigit() and int(name) in years):
            for month in range(1, 13):
                month_dir = directory / str(year) / _MONTH_NAMES[month]
                try:
                    names = os.listdir(month_dir)
                except (FileNotFoundError, NotADirectoryError):
                    continue
                except PermissionError:
                    raise SourceUnreadable(_permission_message(month_dir)) from None
                for name in names:
                    match = _DATED_RE.fullmatch(name)
                    if match is None:
                        continue  # .sum signatures, alerts.log rotations, anything else
                    try:
                        day = date(year, month, int(match.group(1)))
                    except ValueError:
                        continue
                    if not first <= day.toordinal() <= last:
                        continue
                    rotation = int(match.group(2) or 0)
                    compressed = match.group(3) is not None
                    key = (day, rotation)
                    if key in found and not found[key].compressed:
                        continue  # X.json wins over X.json.gz
                    found[key] = AlertFile(month_dir / name, day, rotation, compressed)
        listing = [found[k] for k in sorted(found)]
        listing.append(AlertFile(directory / "alerts.json", None, 0, False))
        return listing

    # -- reading -------------------------------------------------------------------------

    def read(
        self,
        start: float,
        end: float,
        *,
        cursor: ReadCursor | None = None,
        slack_seconds: float = 600.0,
        stats: SourceStats | None = None,
    ) -> Iterator[tuple[float, dict]]:
        """Yield ``(ts, alert)`` for every alert with ``start <= ts < end``, in file order.

        Files are read in (date, rotation) order, alerts.json last; within a file in line
        order (only roughly time-ordered). A file is read once even when it has several
        names (alerts.json is a hard link to today's file): deduplicated by (st_dev, st_ino).
        Each opened file is read to its end through its descriptor, so a rename or unlink
        by rotation meanwhile loses nothing; a file that vanished before it could be opened
        is looked for again as X.json.gz.

        Resuming with `cursor` (updated in place, only when the iteration completes):
        after the read, each plain file's entry is the offset of the first line whose
        timestamp is >= ``end - slack_seconds`` (or the end of its last complete line).
        Every line before that offset has a timestamp < end - slack_seconds, so a later
        read whose start >= end - slack_seconds (the cursor's `resume_from`) can skip it
        without missing anything: reading [a, b) then [b, c) with the same cursor yields
        exactly the alerts of [a, c), however disordered the file is. A read starting
        earlier than `resume_from` ignores the offsets. Compressed files carry no cursor.
        In the file alerts.json points to, a last line without a newline is still being
        written: it is not read (`incomplete_tail`) and the cursor stays before it; in any
        other file it is read as it is. Alerts that are *appended later* with a timestamp < b are not in [b, c):
        choose `end` some time behind the clock (or overlap reads by up to the slack and
        deduplicate) to catch late writes.

        `stats` (or a new SourceStats) receives the counters and is also kept as `self.stats`.
        """
        start, end = _check_range(start, end)
        if not slack_seconds >= 0:
            raise ValueError("slack_seconds must be >= 0")
        stats = stats if stats is not None else SourceStats()
        self.stats = stats
        mark_from = end - slack_seconds
        listing = self.files(start, end)
        live = _identity(listing[-1].path)  # alerts.json: the only file analysisd may be mid-line in
        seen: set[tuple[int, int]] = set()
        marks: dict[str, dict] = {}
        for entry in listing:
            opened = self._open(entry, stats)
            if opened is None:
                continue
            handle, entry, info = opened
            with handle:
                identity = (info.st_dev, info.st_ino)
                if identity in seen:
                    continue
                seen.add(identity)
                stats.files += 1
                fd = handle.fileno()
                if entry.compressed:
                    reader = StreamReader(GzipStream(fd), entry.path, max_line_bytes=self.max_line_bytes,
                                          chunk_bytes=self.CHUNK_BYTES)
                    yield from self._read_lines(reader, start, end, None, stats, True)
                    continue
                finished = identity != live
                key = f"{info.st_dev}:{info.st_ino}"
                offset = cursor.offset_for(key, fd, info.st_size, start) if cursor is not None else 0
                # line numbers are known from the start of a file; after a resume, places are byte offsets
                reader = FileReader(fd, entry.path, offset, 0 if offset == 0 else None,
                                    max_line_bytes=self.max_line_bytes, chunk_bytes=self.CHUNK_BYTES)
                mark = {"offset": offset}
                yield from self._read_lines(reader, start, end, mark_from, stats, finished, mark)
                mark["head"] = head_fingerprint(fd, min(os.fstat(fd).st_size, _HEAD_BYTES))
                marks[key] = mark
        if cursor is not None:
            cursor.files = marks
            cursor.resume_from = mark_from

    def _open(self, entry: AlertFile, stats: SourceStats):
        """Open one listed file; None if it is gone for good (or alerts.json is absent)."""
        try:
            return self._open_path(entry)
        except FileNotFoundError:
            pass
        if entry.day is None:
            return None  # alerts.json between unlink and relink at midnight; today's dated file has it
        if not entry.compressed:
            # compressed meanwhile by monitord: look again, once, for the .gz
            gz = AlertFile(entry.path.with_name(entry.path.name + ".gz"), entry.day, entry.rotation, True)
            try:
                return self._open_path(gz)
            except FileNotFoundError:
                pass
        stats.files_vanished += 1
        return None

    @staticmethod
    def _open_path(entry: AlertFile):
        path = entry.path
        try:
            # logs/alerts belongs to the wazuh user: a link planted there must not make root read another file
            raw = open_binary(path, buffering=0)
        except UnsafePath as exc:
            raise SourceUnreadable(f"The alerts file {exc}") from None
        except PermissionError:
            raise SourceUnreadable(_permission_message(path)) from None
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SourceUnreadable(f"Cannot open the alerts file {path}: {exc.strerror}; check the disk and the file.") from None
        return raw, entry, os.fstat(raw.fileno())

    def _read_lines(self, reader, start, end, mark_from, stats, finished, mark=None):
        """The hot loop: the lines of one file (core.follow's reader splits them), parse,
        filter, yield (ts, alert). A place is formatted only for a line that is skipped."""
        loads = _loads
        parse_ts = _parse_timestamp_bytes
        prefix = b'{"timestamp":"'  # how every line of alerts.json starts
        minutes, seconds, tails = _minute_cache_b, _SECONDS_B, _tail_cache_b
        limit = self.max_line_bytes
        future = time.time() + self.FUTURE_SECONDS
        n_out = n_alerts = 0
        need_mark = mark_from is not None
        try:
            try:
                for run in reader.runs(self.CHUNK_BYTES, final=finished):
                    lines = run.lines
                    if lines is None:
                        stats.skip("line_too_long", run.where(), f"{run.size} bytes, longer than {limit}")
                        continue
                    for i, line in enumerate(lines):
                        ts = None
                        if line[:14] == prefix:
                            # parse_wazuh_timestamp inlined: three cache hits on the raw bytes
                            try:
                                ts = minutes[line[14:30]] + seconds[line[30:33]] + tails[line[33:line.find(b'"', 33, 64)]]
                            except KeyError:
                                quote = line.find(b'"', 14, 64)
                                if quote > 0:
                                    try:
                                        ts = parse_ts(line[14:quote])
                                    except ValueError:
                                        ts = None
                        if ts is None:
                            parsed = _parse_slow(line, stats, run, i)
                            if parsed is None:
                                continue
                            ts, alert = parsed
                        else:
                            alert = None    # parsed only inside the range
                        if ts > future:
                            stats.skip("future_timestamp", run.where(i), _iso_of(ts))
                            continue
                        if need_mark and ts >= mark_from:
                            mark["offset"] = run.offset_of(i)
                            need_mark = False
                        if ts < start or ts >= end:
                            n_out += 1
                            continue
                        if alert is None:
                            try:
                                alert = loads(line)
                            except ValueError:
                                _classify_bad(line, stats, run.where(i))
                                continue
                            if type(alert) is not dict:
                                stats.skip("not_object", run.where(i), type(alert).__name__)
                                continue
                        n_alerts += 1
                        self._at = (run, i)
                        yield ts, alert
            except (EOFError, zlib.error) as exc:
                stats.skip("corrupt_gzip", str(reader.path), f"{exc}; the part before it was used")
            except OSError as exc:
                raise SourceUnreadable(
                    f"Reading the alerts file {reader.path} failed at byte {reader.read_to}: "
                    f"{exc.strerror or exc}; check the disk."
                ) from None
            if not finished and (reader.pending or reader.skipping):
                stats.incomplete_tail += 1  # still being written: the next read takes it whole
            if need_mark:
                # nothing at or after end - slack: resume after the last complete line
                mark["offset"] = reader.offset
        finally:
            stats.lines += reader.line
            stats.bytes += reader.bytes_read
            stats.alerts += n_alerts
            stats.outside_range += n_out
            if type(self._at) is tuple:
                self._at = self.position()   # a place, not the lines of a chunk, outlives the read


def _classify_bad(line: bytes, stats: SourceStats, where: str) -> None:
    if not line.strip():
        stats.skip("empty_line", where)
        return
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as exc:
        stats.skip("invalid_utf8", where, f"byte {exc.start}")
        return
    stats.skip("bad_json", where, repr(line[:60]))


def _parse_slow(line: bytes, stats: SourceStats, run, i: int):
    """Full parse of a line without the usual `{"timestamp":"` prefix; None if skipped."""
    try:
        alert = _loads(line)
    except (ValueError, RecursionError):
        _classify_bad(line, stats, run.where(i))
        return None
    if type(alert) is not dict:
        stats.skip("not_object", run.where(i), type(alert).__name__)
        return None
    text = alert.get("timestamp")
    if text is None:
        text = alert.get("@timestamp")  # an alert exported from the indexer
    if text is None:
        stats.skip("no_timestamp", run.where(i))
        return None
    try:
        return parse_wazuh_timestamp(text), alert
    except (ValueError, TypeError):
        stats.skip("bad_timestamp", run.where(i), repr(text)[:60])
        return None


def _iso_of(ts: float) -> str:
    """A timestamp in the skip example, as a date (far years included)."""
    try:
        return time.strftime("stamped %Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
    except (OverflowError, OSError, ValueError):
        return f"stamped {ts:.0f} s after 1970"


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _check_range(start: float, end: float) -> tuple[float, float]:
    for value in (start, end):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"range bounds are UTC epoch seconds (float), not {type(value).__name__}")
    return float(start), float(end)


def _utc_day(epoch: float) -> int:
    """Proleptic ordinal of the UTC date of an epoch (what date.toordinal() returns), clamped to dates Python has."""
    return min(max(_EPOCH_DAY + int(epoch // _DAY), 1), date.max.toordinal())


def _permission_message(path: Path) -> str:
    return (
        f"Cannot read {path}: permission denied; run wazuh-anomaly as root (as the wodle does) "
        f"or as the wazuh user, and keep logs/alerts readable by the wazuh group."
    )


