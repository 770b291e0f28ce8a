"""Appending to `logs/anomaly/anomalies.json` exactly once per id, safely shared
between processes.

The wodle (`emitter.AnomalyWriter`, anomalies and health events) and the real-time
integration (this class directly, `realtime/events.py` findings) write the same file.
All appends and state updates happen under an flock on `<file>.lock`; the ids written
in the last 35 days are kept in `<state_dir>/emitted-ids.json`, and lines appended after
the last saved state (a crash between append and state save) are read back, so a re-run
never writes an id twice.

Light on purpose (os and json only): the integration imports it in a
new process for every alert that raises a finding.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

from . import fastjson
from .fileio import atomic_write, lock_exclusive, set_aside_damaged
from .eventtext import MAX_LINE_BYTES, parse_iso

LOG_FILE_MODE = 0o640
# Ids are remembered this long; a re-run never goes further back than this.
DEDUPE_DAYS = 35


class WriteResult:
    """How many findings were appended, and how many were already in the file."""

    __slots__ = ("written", "duplicates")

    def __init__(self, written: int, duplicates: int):
        self.written = written
        self.duplicates = duplicates

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteResult) and (self.written, self.duplicates) == (other.written, other.duplicates)

    def __repr__(self) -> str:
        return f"WriteResult(written={self.written}, duplicates={self.duplicates})"


def render(event: dict) -> str:
    """One compact JSON line (no newline); NaN is refused, oversized lines too."""
    line = fastjson.dumps_strict(event)
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise ValueError(f"event {event.get('anomaly', {}).get('id')} renders to more than {MAX_LINE_BYTES} bytes")
    return line


class AnomalyLog:
    """Appends findings to anomalies.json, each id once (state kept in `state_dir`).

    A finding needs an `id`, a `window_start` (aware datetime) and a
    `to_event(detected_at)` giving its schema v1 event; `emitter.AnomalyWriter`
    renders the wodle's anomalies and health events instead.
    """

    STATE_NAME = "emitted-ids.json"
    # Appends take milliseconds; a holder this slow is stuck (LockTimeout, one sentence).
    LOCK_TIMEOUT_SECONDS = 30.0

    def __init__(self, path: str | os.PathLike, state_dir: str | os.PathLike) -> None:
        self.path = os.fspath(path)
        self.state_dir = os.fspath(state_dir)
        self.state_path = os.path.join(self.state_dir, self.STATE_NAME)
        self.lock_path = self.path + ".lock"

    # -- what a finding gives -----------------------------------------------------
    def line_for(self, finding, detected_at: datetime) -> str:
        return render(finding.to_event(detected_at))

    def window_time(self, finding) -> datetime:
        return finding.window_start

    # -- public -------------------------------------------------------------
    def write(self, findings, detected_at: datetime) -> WriteResult:
        """Appends the findings (any iterable) not written before; how many were."""
        findings = list(findings)
        for directory in (os.path.dirname(self.path), self.state_dir):
            if directory:
                os.makedirs(directory, exist_ok=True)
        fd = self._lock()
        try:
            seen, file_pos = self._load_state()
            self._recover(seen, file_pos)
            lines: list[str] = []
            duplicates = 0
            for f in findings:
                if f.id in seen:
                    duplicates += 1
                    continue
                lines.append(self.line_for(f, detected_at))
                # Kept 35 days after writing (or after the window, if later), so a
                # backfill of an old range re-run next week still finds its ids.
                seen[f.id] = max(self.window_time(f).timestamp(), detected_at.timestamp())
            if lines:
                file_pos = self._append(lines)
            elif file_pos is None and os.path.exists(self.path):
                st = os.stat(self.path)
                file_pos = (st.st_ino, st.st_size)
            self._prune(seen, detected_at.timestamp())
            self._save_state(seen, file_pos)
        finally:
            os.close(fd)  # closing releases the lock
        return WriteResult(written=len(lines), duplicates=duplicates)

    # -- internals ------------------------------------------------------------
    def _lock(self) -> int:
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, LOG_FILE_MODE)
        try:
            lock_exclusive(fd, self.lock_path, self.LOCK_TIMEOUT_SECONDS, "the anomalies-file lock")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _load_state(self) -> tuple[dict[str, float], tuple[int, int] | None]:
        try:
            raw = fastjson.load_file(self.state_path)
            ids = {str(k): float(v) for k, v in raw.get("ids", {}).items()}
            pos = raw.get("file")
            return ids, (int(pos["inode"]), int(pos["size"])) if pos else None
        except FileNotFoundError:
            return {}, None
        except OSError:
            return {}, None
        except (ValueError, AttributeError, KeyError, TypeError, OverflowError):
            # A damaged state file: the recovery scan rebuilds what it can.
            set_aside_damaged(self.state_path, "the ids of the anomalies written before were read back "
                                               "from anomalies.json instead")
            return {}, None

    def _recover(self, seen: dict[str, float], file_pos: tuple[int, int] | None) -> None:
        """Adds the ids of lines appended after the last saved state (a crash between
        append and state save must not duplicate them on the next run)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        if file_pos is None or st.st_ino != file_pos[0] or st.st_size < file_pos[1]:
            # No state, or rotated/truncated since: the id store covers the old file,
            # and every line of the new one was written after it, so read it whole.
            start = 0
        else:
            start = file_pos[1]
        if st.st_size <= start:
            return
        with open(self.path, "rb") as fh:
            fh.seek(start)
            tail = fh.read()
        for raw in tail.split(b"\n"):
            found = _id_of(raw)   # a line torn by a crash mid-write is simply not an id
            if found is not None:
                seen.setdefault(*found)

    def _append(self, lines: list[str]) -> tuple[int, int]:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        created = not os.path.exists(self.path)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
        try:
            if created:
                os.fchmod(fd, LOG_FILE_MODE)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                # The last line was torn (a writer died mid-line): end it, or the first
                # new event would be glued to it and lost to the manager's JSON decoder.
                data = b"\n" + data
            view = memoryview(data)
            while view:  # a regular file takes it all at once; loop only for safety
                view = view[os.write(fd, view):]
            os.fsync(fd)
            st = os.fstat(fd)
            return st.st_ino, st.st_size
        finally:
            os.close(fd)

    @staticmethod
    def _prune(seen: dict[str, float], now: float) -> None:
        oldest = now - DEDUPE_DAYS * 86400
        for ident in [k for k, t in seen.items() if t < oldest]:
            del seen[ident]

    def _save_state(self, seen: dict[str, float], file_pos: tuple[int, int] | None) -> None:
        state: dict = {"version": 1, "ids": dict(sorted(seen.items()))}
        if file_pos:
            state["file"] = {"inode": file_pos[0], "size": file_pos[1]}
        atomic_write(self.state_path, fastjson.dumps(state).encode(), LOG_FILE_MODE, sync_dir=True)


def _id_of(raw: bytes) -> tuple[str, float] | None:
    """(id, when) of one anomalies.json line; None for a line that is not an event of ours."""
    try:
        body = fastjson.loads(raw)["anomaly"]
        ident = body["id"]
        window = body.get("window") or {}
        when = max(_seconds(window.get("start")), _seconds(body.get("detected_at")))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        return None
    if not isinstance(ident, str) or not ident:
        return None
    return ident, when


def _seconds(text) -> float:
    """Seconds of an event's timestamp (now when absent or unreadable)."""
    try:
        when = parse_iso(text) if isinstance(text, str) else None
    except (ValueError, OverflowError):
        when = None
    return when.timestamp() if when else time.time()
