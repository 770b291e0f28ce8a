"""Reading pmacct files and writing normalised flow events: one pass (`normalize_file`)
or following a growing file (`follow`), rotation-safe, resuming where the last run
stopped. Output is appended with one write per batch (O_APPEND), so wazuh-logcollector
never sees half a batch; the resume offset and the detection windows are saved
atomically after each batch. Writing to a file, each batch is journaled first (where
the output ended, the batch's length, hash and first bytes, and the state after it), so
a crash between the append and the state save neither repeats nor loses the batch: the
next run looks for the batch in the output and resumes after it only if it is there.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import orjson

from ..core.errors import WazuhAnomalyError
from ..core.eventtext import MAX_LINE_BYTES as MAX_EVENT_BYTES
from ..core.fileio import atomic_write, makedirs, open_append, open_binary, open_file, read_bytes, set_aside_damaged
from ..sources.alerts_file import fingerprint_length, head_fingerprint
from .detect import FlowDetector
from .normalize import PRIVATE, BadRecord, Normalizer
from .settings import NetflowSettings

log = logging.getLogger("wazuh_anomaly")
BATCH_LINES = 4096
MAX_LINE_BYTES = 65536        # an input line from pmacct
MAX_LOGGED_BAD = 20          # bad lines logged one by one; beyond, only counted
HEAD_BYTES = 1024          # identifies a file by its first bytes (a reused inode, a rewrite)


@dataclass
class NormalizeStats:
    records: int = 0            # good records written
    tagged: int = 0             # of which carried at least one tag
    skipped: int = 0
    reasons: dict[str, int] = field(default_factory=dict)     # the reason's name -> records
    first: dict[str, str] = field(default_factory=dict)       # the reason's name -> file:line of the first
    tags: dict[str, int] = field(default_factory=dict)
    bytes_read: int = 0
    lost_in_rotation: int = 0   # rotations after which flows may be missing (see `losses`)
    losses: list[str] = field(default_factory=list)           # one sentence each

    def skip(self, where: str, reason: str, kind: str | None = None) -> None:
        self.skipped += 1
        key = kind or "not a flow (" + reason.split(" '")[0].split(" {")[0][:80] + ")"
        if key in self.reasons:
            self.reasons[key] += 1
        else:
            self.reasons[key] = 1
            self.first[key] = where
        if self.skipped <= MAX_LOGGED_BAD:
            log.warning("%s: skipped, %s.", where, reason)
        elif self.skipped == MAX_LOGGED_BAD + 1:
            log.warning("more bad lines follow; only their count is reported from now on.")

    def lost(self, sentence: str) -> None:
        self.lost_in_rotation += 1
        self.losses.append(sentence)
        log.warning("%s", sentence)

    def sentence(self) -> str:
        """'skipped 2 records: 1 with a negative byte count (first at flows.json:17), 1 not JSON
        (first at flows.json:40)'; empty when nothing was skipped."""
        if not self.skipped:
            return ""
        parts = ", ".join(f"{n} {r} (first at {self.first[r]})" for r, n in self.reasons.items())
        return f"skipped {self.skipped} record{'s' if self.skipped != 1 else ''}: {parts}"

    def describe(self) -> str:
        tags = ", ".join(f"{n} {t}" for t, n in sorted(self.tags.items())) or "none"
        text = f"{self.records} flows written, {self.tagged} tagged (tags: {tags})"
        if self.skipped:
            text += "; " + self.sentence()
        if self.losses:
            text += "; " + " ".join(self.losses)
        return text


class FlowPipeline:
    """Normaliser + detector over raw lines; returns the output bytes of a batch."""

    def __init__(self, settings: NetflowSettings, detector_state: dict | None = None, *, detect: bool = True):
        self.normalizer = Normalizer(settings)
        self.detector = FlowDetector(settings, detector_state) if detect else None
        self.stats = NormalizeStats()

    def event(self, record) -> dict:
        """One parsed record -> the normalised, tagged event (private keys removed)."""
        event = self.normalizer.normalize(record)
        if self.detector is not None:
            self.detector.observe(event)
        del event[PRIVATE]
        return event

    def process(self, lines: Iterable[tuple[str, bytes]]) -> bytes:
        out = []
        stats = self.stats
        loads, dumps = orjson.loads, orjson.dumps
        normalize = self.normalizer.normalize
        observe = self.detector.observe if self.detector is not None else None
        for where, line in lines:
            if line is None:
                stats.skip(where, f"a line longer than {MAX_LINE_BYTES} bytes", f"longer than {MAX_LINE_BYTES:,} bytes")
                continue
            if not line.strip():
                continue
            try:
                event = normalize(loads(line))      # self.event(), inlined: it runs for every line
                if observe is not None:
                    observe(event)
                del event[PRIVATE]
            except orjson.JSONDecodeError:
                stats.skip(where, "not a JSON line", "not JSON")
                continue
            except BadRecord as exc:
                stats.skip(where, str(exc), exc.kind)
                continue
            except (TypeError, ValueError, OverflowError, KeyError, AttributeError) as exc:
                # a value of a type no check foresaw: this line only, never the collector
                stats.skip(where, f"a field of an unexpected type ({type(exc).__name__}: {str(exc)[:80]})",
                           "with a field of an unexpected type")
                continue
            try:
                data = dumps(event)
            except (TypeError, OverflowError) as exc:   # orjson's JSONEncodeError is a TypeError
                stats.skip(where, f"the flow event cannot be written as JSON ({str(exc)[:80]})",
                           "whose flow event cannot be written as JSON")
                continue
            if len(data) > MAX_EVENT_BYTES:   # every field is bounded; this only guards logcollector's limit
                stats.skip(where, f"the flow event would be longer than the {MAX_EVENT_BYTES} bytes a line may take",
                           f"whose flow event would be longer than {MAX_EVENT_BYTES:,} bytes")
                continue
            tags = event["anomaly"]["tags"]
            if tags:
                stats.tagged += 1
                for tag in tags:
                    stats.tags[tag] = stats.tags.get(tag, 0) + 1
            out.append(data)
        stats.records += len(out)
        if not out:
            return b""
        out.append(b"")
        return b"\n".join(out)


def append_atomically(path: Path, data: bytes) -> None:
    """One write with O_APPEND: a reader sees the whole batch or none of it."""
    if not data:
        return
    # logs/anomaly may be writable by the wazuh group and this service runs as root
    makedirs(path.parent, 0o750)
    fd = open_append(path, 0o640)
    try:
        written = os.write(fd, data)
        while written < len(data):   # only on a full disk or a signal; the rest follows at once
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


class FileOutput:
    """Appends batches to the events file; `position()` and `holds()` let the resume
    journal tell, after a crash, whether the last batch reached the file."""

    PROBE_BYTES = 256

    def __init__(self, path: Path):
        self.path = Path(path)

    def __call__(self, data: bytes) -> None:
        append_atomically(self.path, data)

    def position(self) -> dict:
        try:
            fd = open_file(self.path)
        except FileNotFoundError:
            return {"id": None, "size": 0}
        try:
            st = os.fstat(fd)
        finally:
            os.close(fd)
        return {"id": f"{st.st_dev}:{st.st_ino}", "size": st.st_size}

    @classmethod
    def describe(cls, data: bytes) -> dict:
        return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "probe": data[:cls.PROBE_BYTES].decode("utf-8", "replace")}

    def holds(self, before: dict, batch: dict) -> bool:
        """Whether `batch` (describe()) was appended after the file ended at `before`
        (another normaliser may have appended to the same file in between)."""
        now = self.position()
        if now["id"] is None or (before["id"] is not None and now["id"] != before["id"]):
            return False
        start = before["size"] if before["id"] is not None else 0
        if now["size"] < start + batch["length"]:
            return False
        with open_binary(self.path) as fh:
            fh.seek(start)
            tail = fh.read()
        probe = batch["probe"].encode("utf-8")
        at = tail.find(probe)
        while at != -1:
            if (at == 0 or tail[at - 1:at] == b"\n") and \
                    hashlib.sha256(tail[at:at + batch["length"]]).hexdigest() == batch["sha256"]:
                return True
            at = tail.find(probe, at + 1)
        return False


def atomic_write_json(path: Path, data, *, mode: int = 0o640) -> None:
    """Readers see the old or the new state, never half. Not state.atomic_write_json: that
    module imports pandas, which would triple the follow daemon's memory."""
    makedirs(path.parent, 0o750)   # state: not world-readable
    atomic_write(path, orjson.dumps(data), mode)


def read_json(path: Path, default=None):
    """A damaged or missing state file reads as `default`: the windows restart empty, and
    a damaged one is moved aside to `<name>.corrupt-<time>` (and logged)."""
    try:
        return orjson.loads(read_bytes(path))
    except FileNotFoundError:
        return default
    except orjson.JSONDecodeError:
        _set_aside(path)
        return default


def _set_aside(path: Path) -> None:
    consequence = "the flows are read again from the start of the file and the windows start empty"
    set_aside_damaged(path, consequence)
    log.warning("%s: damaged state file moved aside; %s", path, consequence)


def state_file_for(state_dir: Path, input_path: Path) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in str(input_path.absolute()).strip("/"))
    return state_dir / "netflow" / f"{name[-120:]}.json"


def _valid_mark(mark) -> bool:
    return isinstance(mark, dict) and type(mark.get("offset")) is int and type(mark.get("line")) is int \
        and isinstance(mark.get("head"), str) and isinstance(mark.get("id"), str) \
        and mark["offset"] >= 0 and mark["line"] >= 0


class _Resume:
    """Where to resume one input file: identity, byte offset, line number."""

    def __init__(self, path: Path, state_file: Path | None, output=None):
        self.path = path
        self.state_file = state_file
        self.output = output if isinstance(output, FileOutput) else None
        data = read_json(state_file, {}) if state_file else {}
        if not isinstance(data, dict) or not isinstance(data.get("file", {}), dict):
            _set_aside(state_file)
            data = {}
        self.data = data
        pending = self.data.pop("pending", None)
        if pending and self.output is not None:
            try:
                reached = self.output.holds(pending["output"], pending["batch"])
            except (KeyError, TypeError, OSError):
                reached = False
            if reached:  # appended before the crash: resume after it, with the windows it left
                self.data["file"], self.data["detector"] = pending["file"], pending["detector"]
                log.info("%s: the last batch before the interruption had reached %s; resuming after it",
                         path, self.output.path)
        # The detection windows are serialised once per batch and embedded as is in both the
        # journal and the state (orjson.Fragment): they are the bulk of the state, and the
        # journal's "before" must be the windows as they were, not the live ones.
        self._detector = orjson.dumps(self.data.get("detector"))
        self.data["detector"] = orjson.Fragment(self._detector)

    @property
    def detector(self) -> dict | None:
        """The saved detection windows (a fresh copy)."""
        return orjson.loads(self._detector)

    def offset_for(self, fd: int, st: os.stat_result) -> tuple[int, int]:
        mark = self.data.get("file")
        if not _valid_mark(mark):
            return 0, 0                    # none, or a hand-edited or damaged mark: read the file again
        offset, line, head = mark["offset"], mark["line"], mark["head"]
        if mark.get("id") != f"{st.st_dev}:{st.st_ino}" or offset > st.st_size:
            return 0, 0
        if head_fingerprint(fd, fingerprint_length(head, st.st_size)) != head:
            return 0, 0
        return offset, line

    def _state(self, fd: int, offset: int, line: int, windows: bytes) -> dict:
        st = os.fstat(fd)
        return {"version": 1, "input": str(self.path),
                "file": {"id": f"{st.st_dev}:{st.st_ino}", "offset": offset, "line": line,
                         "head": head_fingerprint(fd, min(HEAD_BYTES, offset))},
                "detector": orjson.Fragment(windows)}

    def save(self, fd: int, offset: int, line: int, detector: FlowDetector | None, windows: bytes | None = None) -> None:
        if self.state_file is None:
            return
        if windows is None:
            windows = orjson.dumps(detector.to_json() if detector else None)
        self.data = self._state(fd, offset, line, windows)
        self._detector = windows
        atomic_write_json(self.state_file, self.data, mode=0o640)

    def deliver(self, data: bytes, output: Callable[[bytes], None], fd: int, offset: int, line: int,
                detector: FlowDetector | None) -> None:
        """Append one batch and save the state after it, journaled so that a crash in
        between neither repeats nor loses the batch."""
        if self.state_file is None:
            output(data)
            return
        windows = orjson.dumps(detector.to_json() if detector else None)
        if data and self.output is not None:
            after = self._state(fd, offset, line, windows)
            journal = dict(self.data, pending={"output": self.output.position(), "batch": FileOutput.describe(data),
                                               "file": after["file"], "detector": after["detector"]})
            atomic_write_json(self.state_file, journal, mode=0o640)
        output(data)
        self.save(fd, offset, line, detector, windows)


@contextlib.contextmanager
def _only_reader(state_file: Path | None, input_path: Path):
    """One normaliser per input: two would both write every flow and fight over the offset."""
    if state_file is None:
        yield
        return
    makedirs(state_file.parent, 0o750)
    fd = open_file(state_file.with_suffix(".lock"), os.O_RDWR | os.O_CREAT, 0o640)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WazuhAnomalyError(f"{input_path}: another 'wazuh-anomaly netflow normalize' is reading it "
                                    f"(the wazuh-anomaly-netflow service?); stop that one or let it do the work.") from None
        yield
    finally:
        os.close(fd)


def _open_input(path: Path) -> int:
    try:
        return os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise WazuhAnomalyError(f"{path}: flow file not found; check pmacct's print_output_file "
                                f"(or pass the right file).") from None
    except PermissionError:
        raise WazuhAnomalyError(f"{path}: cannot be read (permission denied); run as root or give "
                                f"the wazuh group read access.") from None
    except IsADirectoryError:
        raise WazuhAnomalyError(f"{path}: is a directory; name the pmacct JSON file itself.") from None


class YamlReader:
    """Complete lines from an open file, from an offset, with their line numbers."""

    def __init__(self, fd: int, path: Path, offset: int, line: int):
        self.fd, self.path, self.offset, self.line = fd, path, offset, line
        self.pending = b""
        self.skipping = False        # within a line longer than MAX_LINE_BYTES
        self.head: str | None = None

    def head_changed(self) -> bool:
        """The first bytes differ from when they were read: truncated and rewritten to the same size."""
        if self.offset == 0:
            return False
        if self.head is None:
            self.head = head_fingerprint(self.fd, min(HEAD_BYTES, self.offset))
            return False
        return head_fingerprint(self.fd, fingerprint_length(self.head, os.fstat(self.fd).st_size)) != self.head

    def _remember_head(self) -> None:
        """Fingerprint the first bytes as they are read, not at the next idle poll: a file
        truncated and rewritten to the same size before that poll is still noticed."""
        if self.head is None or fingerprint_length(self.head, HEAD_BYTES) < min(HEAD_BYTES, self.offset):
            self.head = head_fingerprint(self.fd, min(HEAD_BYTES, self.offset))

    def batches(self, batch_lines: int = BATCH_LINES):
        """Yields lists of (where, line) up to the last complete line; the offset follows.
        A line longer than MAX_LINE_BYTES comes as (where, None), once its end is in the
        file: only that line is skipped, never the lines around it."""
        while True:
            if self.skipping:                  # inside an over-long line: on to its newline
                chunk = os.pread(self.fd, 1 << 20, self.offset)
                if not chunk:
                    return
                end = chunk.find(b"\n")
                if end == -1:
                    self.offset += len(chunk)
                    continue
                self.offset += end + 1
                self.line += 1
                self.skipping = False
                yield [(f"{self.path}:{self.line}", None)]
                continue
            chunk = os.pread(self.fd, 1 << 20, self.offset + len(self.pending))
            if not chunk:
                return
            data = self.pending + chunk
            lines = data.split(b"\n")
            self.pending = lines.pop()
            if len(self.pending) > MAX_LINE_BYTES:   # no newline in sight: the lines before it, then skip it
                self.pending = b""
                self.skipping = True
            too_long = bool(lines) and max(map(len, lines)) > MAX_LINE_BYTES
            for i in range(0, len(lines), batch_lines):
                part = lines[i:i + batch_lines]
                first = self.line + 1
                if too_long:
                    batch = [(f"{self.path}:{first + j}", ln if len(ln) <= MAX_LINE_BYTES else None)
                             for j, ln in enumerate(part)]
                else:
                    batch = [(f"{self.path}:{first + j}", ln) for j, ln in enumerate(part)]
                self.line += len(part)
                self.offset += sum(len(ln) + 1 for ln in part)
                self._remember_head()
                yield batch


_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lock")
ROTATED_GRACE_SECONDS = 5.0   # a renamed file is still read this long after its last growth


def find_rotated(input_path: Path, ident: str | None, head: str | None, offset: int) -> Path | None:
    """The rotated file holding the rest of what we were reading: the same file renamed
    (logrotate's create: the same inode) or its copy (copytruncate: the same first bytes,
    the newest such). None when no uncompressed one is beside it."""
    directory = input_path.parent
    try:
        names = os.listdir(directory)
    except OSError:
        return None
    copies = []
    for name in names:
        if name == input_path.name or not name.startswith(input_path.name) or name.endswith(_COMPRESSED):
            continue
        path = directory / name
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        if ident is not None and f"{st.st_dev}:{st.st_ino}" == ident:
            return path
        if head and offset > 0 and st.st_size >= fingerprint_length(head, st.st_size) > 0:
            # a copy may end before `offset`: we read what was written between the copy and the truncate
            copies.append((st.st_mtime_ns, path))
    for _, path in sorted(copies, reverse=True):
        try:
            fd = open_file(path)
        except (OSError, WazuhAnomalyError):
            continue
        try:
            if head_fingerprint(fd, fingerprint_length(head, os.fstat(fd).st_size)) == head:
                return path
        finally:
            os.close(fd)
    return None


def _read_rotated_rest(input_path: Path, ident: str | None, head: str | None, offset: int, line: int,
                       deliver: Callable[[list], None], stats: "NormalizeStats") -> None:
    """After a rotation: what the rotated file holds beyond `offset` (what we had read),
    delivered; counted as a loss, in one sentence, when that file cannot be found."""
    if offset <= 0 and ident is None:
        return
    rotated = find_rotated(input_path, ident, head, offset)
    if rotated is None:
        stats.lost(f"{input_path} was rotated and no uncompressed rotated file beside it holds what was written "
                   f"to it after byte {offset} (line {line}): those flows, if any, were not read; keep the newest "
                   f"rotated file uncompressed (logrotate's delaycompress) and read before it is removed")
        return
    try:
        fd = open_file(rotated)
    except (OSError, WazuhAnomalyError) as exc:
        stats.lost(f"{input_path} was rotated to {rotated}, which cannot be read ({exc}): the flows written after "
                   f"byte {offset} (line {line}) were not read")
        return
    try:
        reader = YamlReader(fd, rotated, offset, line)
        for batch in reader.batches():
            deliver(batch)
        if reader.offset > offset:
            log.info("%s was rotated; read the rest of it (%d bytes) from %s", input_path, reader.offset - offset, rotated)
    finally:
        os.close(fd)


def normalize_file(input_path: Path, output: Callable[[bytes], None], settings: NetflowSettings, *,
                   state_file: Path | None = None, from_start: bool = False) -> NormalizeStats:
    """One pass: everything after the saved offset (all of it with from_start)."""
    with _only_reader(state_file, input_path):
        return _normalize_file(input_path, output, settings, state_file, from_start)


def _normalize_file(input_path, output, settings, state_file, from_start) -> NormalizeStats:
    resume = _Resume(input_path, state_file, output)
    pipeline = FlowPipeline(settings, None if from_start else resume.detector)
    fd = _open_input(input_path)
    try:
        st = os.fstat(fd)
        offset, line = (0, 0) if from_start else resume.offset_for(fd, st)
        mark = resume.data.get("file")
        if not from_start and (offset, line) == (0, 0) and _valid_mark(mark) and mark["offset"] > 0:
            # not the file we read last, or it was truncated: rotated since the last run
            _read_rotated_rest(input_path, mark["id"], mark["head"], mark["offset"], mark["line"],
                               lambda batch: resume.deliver(pipeline.process(batch), output, fd, 0, 0,
                                                            pipeline.detector), pipeline.stats)
            resume.save(fd, 0, 0, pipeline.detector)     # the rotated file is done with
        reader = YamlReader(fd, input_path, offset, line)
        for batch in reader.batches():
            resume.deliver(pipeline.process(batch), output, fd, reader.offset, reader.line, pipeline.detector)
        pipeline.stats.bytes_read = reader.offset - offset
    finally:
        os.close(fd)
    return pipeline.stats


HEALTH_EVERY_SECONDS = 300.0   # skipped records are raised at most this often while following


def follow(input_path: Path, output: Callable[[bytes], None], settings: NetflowSettings, *,
           state_file: Path | None, poll_seconds: float = 1.0, stop: Callable[[], bool] = lambda: False,
           idle_exit_seconds: float | None = None,
           health: Callable[[str, str], None] | None = None) -> NormalizeStats:
    """Follows a growing file until `stop()`; survives rotation (rename or copytruncate):
    the old file is read to its end, then the new one from its start. `health(check,
    sentence)` hears of every loss at once and of skipped records now and then."""
    with _only_reader(state_file, input_path):
        return _follow(input_path, output, settings, state_file, poll_seconds, stop, idle_exit_seconds,
                       health or (lambda check, sentence: None))


def _follow(input_path, output, settings, state_file, poll_seconds, stop, idle_exit_seconds, health) -> NormalizeStats:
    resume = _Resume(input_path, state_file, output)
    pipeline = FlowPipeline(settings, resume.detector)
    stats = pipeline.stats
    fd = None
    reader = None
    retired = None          # [reader, fd, until]: a renamed file, read a while longer (its writer may lag)
    idle_since = time.monotonic()
    waiting = False
    told = {"skipped": 0, "losses": 0, "at": 0.0}

    def deliver(batch):
        resume.deliver(pipeline.process(batch), output, fd, reader.offset, reader.line, pipeline.detector)

    def tell(final: bool = False) -> None:
        if len(stats.losses) > told["losses"]:
            health("source_unreadable", " ".join(stats.losses[told["losses"]:]))
            told["losses"] = len(stats.losses)
        now = time.monotonic()
        if stats.skipped > told["skipped"] and (final or now - told["at"] >= HEALTH_EVERY_SECONDS):
            health("malformed_input", f"{input_path}: {stats.sentence()}.")
            told["skipped"], told["at"] = stats.skipped, now

    try:
        while not stop():
            if fd is None:
                try:
                    fd = os.open(input_path, os.O_RDONLY)
                except FileNotFoundError:
                    fd = None
                    if not waiting:
                        log.info("%s does not exist yet; waiting for pmacct to write it", input_path)
                        waiting = True
                if fd is not None:
                    offset, line = resume.offset_for(fd, os.fstat(fd))
                    reader = YamlReader(fd, input_path, offset, line)
            progressed = False
            if retired is not None:
                for batch in retired[0].batches():
                    deliver(batch)
                    retired[2] = time.monotonic() + ROTATED_GRACE_SECONDS
                    progressed = True
                if time.monotonic() > retired[2]:
                    os.close(retired[1])
                    retired = None
            if reader is not None:
                for batch in reader.batches():
                    deliver(batch)
                    progressed = True
                try:
                    now = os.stat(input_path)
                except FileNotFoundError:
                    now = None
                mine = os.fstat(fd)
                if now is None or (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
                    # Renamed away: what is in the old file was just read; start the new one,
                    # and keep reading the old one a while (a writer may still append to it).
                    if now is not None:
                        log.info("%s was rotated; reading the new file from its start", input_path)
                        if retired is not None:
                            os.close(retired[1])
                        retired = [reader, fd, time.monotonic() + ROTATED_GRACE_SECONDS]
                        fd = os.open(input_path, os.O_RDONLY)
                        reader = YamlReader(fd, input_path, 0, 0)
                        resume.save(fd, 0, 0, pipeline.detector)
                        continue
                elif mine.st_size < reader.offset or (not progressed and reader.head_changed()):
                    log.info("%s was truncated (copytruncate); reading it again from its start", input_path)
                    old = reader
                    reader = YamlReader(fd, input_path, 0, 0)
                    # what was written between our last read and the copy is in the copy
                    _read_rotated_rest(input_path, None, old.head, old.offset, old.line, deliver, stats)
                    tell()
                    continue
            tell()
            if progressed:
                idle_since = time.monotonic()
            elif idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                break
            time.sleep(poll_seconds)
    finally:
        tell(final=True)
        if retired is not None:
            os.close(retired[1])
        if fd is not None:
            os.close(fd)
    return pipeline.stats
