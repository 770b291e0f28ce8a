"""Appending to `logs/anomaly/anomalies.json` exactly once per id, safely shared
between processes.

The wodle (`emitter.AnomalyWriter`, anomalies and health events) and the real-time
integration (this class directly, `realtime/events.py` findings) write the same file.
All appends and state updates happen under an flock on `<file>.lock`; the ids written
in the last 35 days are kept in `<state_dir>/emitted-ids.json`, and lines appended after
the last saved state (a crash between append and state save) are read back, so a re-run
never writes an id twice. The same state keeps, per scenario, the window starts of the
time-series anomalies written (`escalation.py`): a finding that counts for escalation
gets its repeats from it, under the same lock, before its line is rendered.

Light on purpose (os, fcntl, bisect and the json module only): the integration imports
it in a new process for every alert that raises a finding.
"""
from __future__ import annotations

import os
import time
from datetime import datetime

from ..core import jsonio as fastjson
from ..core import fileio
from .escalation import Repeat, RepeatHistory, series_of_event
from ..core.fileio import atomic_write, lock_exclusive, set_aside_damaged
from ..core.eventtext import fit_line, parse_iso

LOG_FILE_MODE = 0o640
# Ids are remembered this long; a re-run never goes further back than this.
DEDUPE_DAYS = 35


class WriteResult:
    """How many findings were appended, and how many were already in the file; `repeats`:
    id -> `escalation.Repeat` of every finding that counts for escalation (written or not)."""

    __slots__ = ("written", "duplicates", "repeats")

    def __init__(self, written: int, duplicates: int, repeats: dict[str, Repeat] | None = None):
        self.written = written
        self.duplicates = duplicates
        self.repeats = repeats or {}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WriteResult) and (self.written, self.duplicates) == (other.written, other.duplicates)

    def __repr__(self) -> str:
        return f"WriteResult(written={self.written}, duplicates={self.duplicates})"


def render(event: dict) -> str:
    """One compact JSON line (no newline) within Wazuh's limits (eventtext.fit_line); NaN is refused."""
    return fit_line(event, fastjson.dumps_strict)


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
    def line_for(self, finding, detected_at: datetime, repeat: Repeat | None = None) -> str:
        return render(finding.to_event(detected_at))

    def window_time(self, finding) -> datetime:
        return finding.window_start

    def series_of(self, finding) -> tuple[str, str, float] | None:
        """(scenario, entity key, window start) when the finding counts for escalation
        (`escalation.py`); the real-time findings do not."""
        return None

    # -- public -------------------------------------------------------------
    def write(self, findings, detected_at: datetime) -> WriteResult:
        """Appends the findings (any iterable) not written before; how many were."""
        findings = list(findings)
        for directory in (os.path.dirname(self.path), self.state_dir):
            if directory:
                fileio.makedirs(directory, 0o750)
        fd = self._lock()
        try:
            seen, file_pos, history = self._load_state()
            history = self._recover(seen, file_pos, history)
            # Every new finding joins the history before any is counted, so the counts of
            # one batch do not depend on its order (escalation.py).
            series = {}
            for f in findings:
                s = self.series_of(f)
                if s is not None:
                    series[f.id] = s
                    history.add(f.id, *s)   # by id: a replayed anomaly is not counted twice
            repeats = {ident: history.count(*s) for ident, s in series.items()}
            lines: list[str] = []
            duplicates = 0
            for f in findings:
                if f.id in seen:
                    duplicates += 1
                    continue
                lines.append(self.line_for(f, detected_at, repeats.get(f.id)))
                # Kept 35 days after writing (or after the window, if later), so a
                # backfill of an old range re-run next week still finds its ids.
                seen[f.id] = max(self.window_time(f).timestamp(), detected_at.timestamp())
            if lines:
                file_pos = self._append(lines)
            elif file_pos is None:
                file_pos = self._position()
            self._prune(seen, detected_at.timestamp())
            history.keep_only(seen)
            self._save_state(seen, file_pos, history)
        finally:
            os.close(fd)  # closing releases the lock
        return WriteResult(written=len(lines), duplicates=duplicates, repeats=repeats)

    # -- internals ------------------------------------------------------------
    def _position(self) -> tuple[int, int] | None:
        """(inode, size) of the file, or None when there is none yet."""
        try:
            fd = fileio.open_file(self.path)
        except FileNotFoundError:
            return None
        try:
            st = os.fstat(fd)
            return st.st_ino, st.st_size
        finally:
            os.close(fd)

    def _lock(self) -> int:
        # logs/anomaly may be writable by the wazuh group (real-time path): never through a planted link
        fd = fileio.open_file(self.lock_path, os.O_RDWR | os.O_CREAT, LOG_FILE_MODE)
        try:
            lock_exclusive(fd, self.lock_path, self.LOCK_TIMEOUT_SECONDS, "the anomalies-file lock")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _load_state(self) -> tuple[dict[str, float], tuple[int, int] | None, RepeatHistory | None]:
        """Ids, file position and the escalation history (None in a state written before
        escalation was counted: the recovery scan then rebuilds it from the file)."""
        try:
            raw = fastjson.loads(fileio.read_bytes(self.state_path))
            ids = {str(k): float(v) for k, v in raw.get("ids", {}).items()}
            pos = raw.get("file")
            history = RepeatHistory(raw["series"]) if "series" in raw else None
            return ids, (int(pos["inode"]), int(pos["size"])) if pos else None, history
        except FileNotFoundError:
            return {}, None, None
        except OSError:
            return {}, None, None
        except (ValueError, AttributeError, KeyError, TypeError, OverflowError):
            # A damaged state file: the recovery scan rebuilds what it can.
            set_aside_damaged(self.state_path, "the ids of the anomalies written before were read back "
                                               "from anomalies.json instead")
            return {}, None, None

    def _recover(self, seen: dict[str, float], file_pos: tuple[int, int] | None,
                 history: RepeatHistory | None) -> RepeatHistory:
        """Adds the ids (and escalation history) of lines appended after the last saved
        state (a crash between append and state save must not duplicate them on the next
        run, nor leave them uncounted); without a history, the whole file is read for it."""
        rebuild = history is None
        if history is None:
            history = RepeatHistory()
        try:
            fh = fileio.open_binary(self.path)
        except FileNotFoundError:
            return history
        with fh:
            return self._recover_from(fh, seen, file_pos, history, rebuild)

    @staticmethod
    def _recover_from(fh, seen: dict[str, float], file_pos: tuple[int, int] | None,
                      history: RepeatHistory, rebuild: bool) -> RepeatHistory:
        st = os.fstat(fh.fileno())
        if file_pos is None or st.st_ino != file_pos[0] or st.st_size < file_pos[1] or rebuild:
            # No state, or rotated/truncated since: the id store covers the old file,
            # and every line of the new one was written after it, so read it whole.
            start = 0
        else:
            start = file_pos[1]
        if st.st_size <= start:
            return history
        fh.seek(start)
        tail = fh.read()
        for raw in tail.split(b"\n"):
            try:
                event = fastjson.loads(raw)
                body = event["anomaly"]
                ident = body["id"]
                window = body.get("window") or {}
                when = max(_seconds(window.get("start")), _seconds(body.get("detected_at")))
            except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                continue   # a line torn by a crash mid-write is simply not an id
            if not isinstance(ident, str) or not ident:
                continue
            seen.setdefault(ident, when)
            series = series_of_event(event)
            if series is not None:
                history.add(ident, *series)
        return history

    def _append(self, lines: list[str]) -> tuple[int, int]:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        try:
            fd = fileio.open_file(self.path, os.O_RDWR | os.O_APPEND)
        except FileNotFoundError:
            fd = fileio.open_append(self.path, LOG_FILE_MODE)   # new and empty: nothing torn
        try:
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

    def _save_state(self, seen: dict[str, float], file_pos: tuple[int, int] | None, history: RepeatHistory) -> None:
        state: dict = {"version": 1, "ids": dict(sorted(seen.items())), "series": history.to_json()}
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
