"""Reading pmacct files and writing normalised flow events: one pass (`normalize_file`)
or following a growing file (`follow`), rotation-safe, resuming where the last run
stopped. Output is appended with one write per delivery (O_APPEND: up to DELIVERY_LINES
lines, DELIVERY_BYTES or DELIVERY_SECONDS of batches, or what the file holds now), so
wazuh-logcollector never sees half of one; the resume offset and the detection windows
are saved atomically after each delivery, serialised once. Writing to a file, each
delivery is journaled first (the state after it, where the output ended, the delivery's
length, first bytes and a hash of its edges, in `<state>.journal`, renamed over the
state after the append), so a crash between the append and the state save neither
repeats nor loses the delivery: the next run looks for it in the output and keeps the
journal only if it is there.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import orjson

from ..core.errors import UnsafePath, WazuhAnomalyError
from ..core.eventtext import MAX_LINE_BYTES as MAX_EVENT_BYTES
from ..core.fileio import (atomic_write, makedirs, open_append, open_binary, open_file, open_parent, read_bytes,
                           set_aside_damaged)
from ..core.follow import HEAD_BYTES, FileReader, Follower
from .detect import FlowDetector
from .normalize import PRIVATE, BadRecord, Normalizer
from .settings import NetflowSettings

try:        # the compiled fast path (setup.py; optional: without it the Python code below runs)
    from . import flowfast
except ImportError:
    flowfast = None

log = logging.getLogger("wazuh_anomaly")
BATCH_LINES = 4096
MAX_LINE_BYTES = 65536        # an input line from pmacct
# What normalising or observing one record may raise on a value no check foresaw: that
# record is skipped (FlowPipeline.unexpected), on the compiled path too (flowfast.Engine).
UNEXPECTED = (TypeError, ValueError, OverflowError, KeyError, AttributeError)
MAX_LOGGED_BAD = 20          # bad lines logged one by one; beyond, only counted


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


def compiled_available() -> bool:
    """Whether the compiled fast path was built (see setup.py and docs/netflow.md)."""
    return flowfast is not None


class FlowPipeline:
    """Normaliser + detector over raw lines; returns the output bytes of a batch.

    With the compiled fast path (`flowfast`, built by setup.py when a C compiler is there)
    the batch loop runs in C for the records it knows; every other line, and everything
    without it, runs `python_collect`. Both write the same bytes and keep one state."""

    def __init__(self, settings: NetflowSettings, detector_state: dict | None = None, *, detect: bool = True,
                 compiled: bool = True):
        self.normalizer = Normalizer(settings)
        self.detector = FlowDetector(settings, detector_state) if detect else None
        self.stats = NormalizeStats()
        self._engine = flowfast.Engine(self, MAX_EVENT_BYTES) if compiled and flowfast is not None else None

    @property
    def compiled(self) -> bool:
        """Whether the compiled fast path runs this pipeline's batches."""
        return self._engine is not None

    def event(self, record) -> dict:
        """One parsed record -> the normalised, tagged event (private keys removed)."""
        event = self.normalizer.normalize(record)
        if self.detector is not None:
            self.detector.observe(event)
        del event[PRIVATE]
        return event

    def process(self, lines: Iterable[tuple[str, bytes]]) -> bytes:
        """The output lines of a batch, newline-terminated."""
        out: list[bytes] = []
        self.collect(lines, out)
        if not out:
            return b""
        out.append(b"")
        return b"\n".join(out)

    def collect(self, lines: Iterable[tuple[str, bytes]], out: list[bytes]) -> None:
        """Appends the output of each good record to `out`: bytes objects of one or more
        lines joined by newlines (none at the end)."""
        if self._engine is not None:
            self._engine.collect(self, lines if isinstance(lines, list) else list(lines), out)
        else:
            self.python_collect(lines, out)

    def collect_run(self, run, out: list[bytes]) -> None:
        """`collect` for a core.follow.Run: its lines, each place named only when needed."""
        if run.lines is None or self._engine is None:
            self.collect(run.pairs(), out)
        else:
            self._engine.collect(self, run.lines, out, run.where)

    def too_long(self, where) -> None:
        """Skips a record whose event would be longer than logcollector takes."""
        self.stats.skip(where, f"the flow event would be longer than the {MAX_EVENT_BYTES} bytes a line may take",
                        f"whose flow event would be longer than {MAX_EVENT_BYTES:,} bytes")

    def unexpected(self, where, exc: Exception) -> None:
        """Skips a record that met a value of a type no check foresaw (in the record or in a
        hand-edited state file): this line only, never the collector."""
        self.stats.skip(where, f"a field of an unexpected type ({type(exc).__name__}: {str(exc)[:80]})",
                        "with a field of an unexpected type")

    def python_collect(self, lines: Iterable[tuple[str, bytes]], out: list[bytes]) -> None:
        """The Python path of `collect`: one output line per bytes object."""
        stats = self.stats
        before = len(out)
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
            except UNEXPECTED as exc:
                self.unexpected(where, exc)
                continue
            try:
                data = dumps(event)
            except (TypeError, OverflowError) as exc:   # orjson's JSONEncodeError is a TypeError
                stats.skip(where, f"the flow event cannot be written as JSON ({str(exc)[:80]})",
                           "whose flow event cannot be written as JSON")
                continue
            if len(data) > MAX_EVENT_BYTES:   # every field is bounded; this only guards logcollector's limit
                self.too_long(where)
                continue
            tags = event["anomaly"]["tags"]
            if tags:
                stats.tagged += 1
                for tag in tags:
                    stats.tags[tag] = stats.tags.get(tag, 0) + 1
            out.append(data)
        stats.records += len(out) - before


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

    EDGE_BYTES = 65536

    @classmethod
    def describe(cls, data: bytes) -> dict:
        """The length, the first bytes and a hash of the first and last EDGE_BYTES: a
        delivery (up to 16 MiB) is recognised without hashing all of it."""
        return {"length": len(data), "edges_sha256": cls._edges(data),
                "probe": data[:cls.PROBE_BYTES].decode("utf-8", "replace")}

    @classmethod
    def _edges(cls, data) -> str:
        if len(data) <= 2 * cls.EDGE_BYTES:
            return hashlib.sha256(data).hexdigest()
        edges = hashlib.sha256(data[:cls.EDGE_BYTES])
        edges.update(data[-cls.EDGE_BYTES:])
        return edges.hexdigest()

    @staticmethod
    def _matches(data, batch: dict) -> bool:
        if "edges_sha256" in batch:
            return FileOutput._edges(data) == batch["edges_sha256"]
        return hashlib.sha256(data).hexdigest() == batch["sha256"]      # a journal of an earlier release

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
            if (at == 0 or tail[at - 1:at] == b"\n") and len(tail) - at >= batch["length"] and \
                    self._matches(memoryview(tail)[at:at + batch["length"]], batch):
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


class _Resume:
    """Where to resume one input file (the follower's position) and the detector's windows.

    The state is saved once per delivery (several batches: see `_deliveries`), serialised
    once. Writing to a file, it is first written whole to a journal beside the state file
    (`<state>.journal`: the state after the delivery, plus where the output ended and the
    delivery's length, hash and first bytes), then the output is appended, then the journal
    is renamed over the state file. A crash before the rename leaves the old state file and
    the journal: the next run keeps the journal only if the delivery is in the output."""

    def __init__(self, path: Path, state_file: Path | None, output=None):
        self.path = path
        self.state_file = state_file
        self.journal = state_file.with_suffix(".journal") if state_file else None
        self.output = output if isinstance(output, FileOutput) else None
        data = read_json(state_file, {}) if state_file else {}
        if not isinstance(data, dict) or not isinstance(data.get("file", {}), dict):
            _set_aside(state_file)
            data = {}
        data.pop("delivery", None)         # a committed journal's note: the delivery is in the output
        self.data = data
        pending = self.data.pop("pending", None)     # the journal of earlier releases, inside the state
        if pending and self.output is not None:
            try:
                reached = self.output.holds(pending["output"], pending["batch"])
            except (KeyError, TypeError, OSError):
                reached = False
            if reached:  # appended before the crash: resume after it, with the windows it left
                self.data["file"], self.data["detector"] = pending["file"], pending["detector"]
                self.data["rotated"] = pending.get("rotated")
                self._resumed_after(path)
        if self.journal is not None:
            self._recover_journal()
        # The windows are kept serialised and embedded as is in the state (orjson.Fragment).
        self._detector = orjson.dumps(self.data.get("detector"))
        self.data["detector"] = orjson.Fragment(self._detector)

    def _resumed_after(self, path: Path) -> None:
        log.info("%s: the last batch before the interruption had reached %s; resuming after it",
                 path, self.output.path)

    def _recover_journal(self) -> None:
        """A journal left by a crash: its state if its delivery reached the output, else nothing."""
        try:
            journal = orjson.loads(read_bytes(self.journal))
        except FileNotFoundError:
            return
        except (orjson.JSONDecodeError, OSError):
            journal = None
        reached = False
        if isinstance(journal, dict) and self.output is not None:
            note = journal.pop("delivery", None)
            try:
                reached = self.output.holds(note["output"], note["batch"]) and isinstance(journal.get("file", {}), dict)
            except (KeyError, TypeError, OSError):
                reached = False
        if reached:      # committed now, as the rename after the append would have done
            self.data = journal
            self._resumed_after(self.path)
            _rename(self.journal, self.state_file)
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.journal)

    @property
    def detector(self) -> dict | None:
        """The saved detection windows (a fresh copy)."""
        return orjson.loads(self._detector)

    @property
    def position(self) -> dict:
        """The saved position of the follower (a damaged or hand-edited mark reads the file again)."""
        return {"file": self.data.get("file"), "rotated": self.data.get("rotated")}

    def _state(self, position: dict, windows: bytes) -> dict:
        state = {"version": 1, "input": str(self.path), "file": position.get("file"),
                 "detector": orjson.Fragment(windows)}
        if position.get("rotated"):
            state["rotated"] = position["rotated"]
        return state

    def save(self, position: dict, detector: FlowDetector | None, windows: bytes | None = None) -> None:
        if self.state_file is None:
            return
        if windows is None:
            windows = orjson.dumps(detector.to_json() if detector else None)
        self.data = self._state(position, windows)
        self._detector = windows
        atomic_write_json(self.state_file, self.data, mode=0o640)

    def deliver(self, data: bytes, output: Callable[[bytes], None], position: dict,
                detector: FlowDetector | None) -> None:
        """Append one delivery and save the state after it, journaled so that a crash in
        between neither repeats nor loses it."""
        if self.state_file is None:
            output(data)
            return
        windows = orjson.dumps(detector.to_json() if detector else None)
        if not data or self.output is None:
            output(data)
            self.save(position, detector, windows)
            return
        after = self._state(position, windows)
        after["delivery"] = {"output": self.output.position(), "batch": FileOutput.describe(data)}
        atomic_write_json(self.journal, after, mode=0o640)
        output(data)
        _rename(self.journal, self.state_file)
        del after["delivery"]
        self.data, self._detector = after, windows


def _rename(source: Path, target: Path) -> None:
    """Renames within one directory, reached without following planted links."""
    dir_fd, name, _ = open_parent(source)
    try:
        os.replace(name, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


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


def _open_input(path) -> int:
    """The flow file pmacct writes (FileNotFoundError passes: the follower waits for it)."""
    try:
        # pmacct's directory may be writable by others (a sensor user, the wazuh group):
        # root reads the file only as itself, never through a link planted there.
        return open_file(path)
    except UnsafePath as exc:
        raise WazuhAnomalyError(f"The flow file {exc}") from None
    except PermissionError:
        raise WazuhAnomalyError(f"{path}: cannot be read (permission denied); run as root or give "
                                f"the wazuh group read access.") from None
    except IsADirectoryError:
        raise WazuhAnomalyError(f"{path}: is a directory; name the pmacct JSON file itself.") from None


def _not_found(path: Path) -> WazuhAnomalyError:
    return WazuhAnomalyError(f"{path}: flow file not found; check pmacct's print_output_file "
                             f"(or pass the right file).")


# The reader of one open file: core.follow's, under the name the flow tests knew.
YamlReader = FileReader
ROTATED_GRACE_SECONDS = 5.0   # a renamed file is still read this long after its last growth


def _follower(input_path: Path, position: dict | None, grace: float) -> Follower:
    return Follower(input_path, position=position, max_line_bytes=MAX_LINE_BYTES, head_bytes=HEAD_BYTES,
                    grace_seconds=grace, opener=_open_input)


def _take_losses(follower: Follower, stats: NormalizeStats, told: int) -> int:
    for sentence in follower.losses[told:]:
        stats.lost(sentence)
    return len(follower.losses)


# One delivery (the output appended, the state saved) per this many lines, output bytes or
# seconds, and whenever the input has nothing more for now: the state (the windows, up to
# a few MB) is written once per delivery, not once per batch of BATCH_LINES.
DELIVERY_LINES = 65536
DELIVERY_BYTES = 16 << 20
DELIVERY_SECONDS = 1.0


def _deliveries(follower: Follower, pipeline: FlowPipeline) -> Iterator[bytes]:
    """The output of the batches the follower has now, in deliveries; when one is yielded,
    `follower.position()` covers exactly the lines it came from."""
    out: list[bytes] = []
    lines = size = 0
    since = time.monotonic()
    stats = pipeline.stats
    collect = pipeline.collect_run
    for run in follower.runs():
        count = len(run.lines) if run.lines is not None else 1
        read = sum(map(len, run.lines)) + count if run.lines is not None else 0
        stats.bytes_read += read
        collect(run, out)
        lines += count
        size += read           # an event is about as long as its record: this bounds the output held
        if lines >= DELIVERY_LINES or size >= DELIVERY_BYTES or time.monotonic() - since >= DELIVERY_SECONDS:
            yield _joined(out)
            out, lines, size, since = [], 0, 0, time.monotonic()
    if lines:
        yield _joined(out)


def _joined(out: list[bytes]) -> bytes:
    if not out:
        return b""
    out.append(b"")
    return b"\n".join(out)


def normalize_file(input_path: Path, output: Callable[[bytes], None], settings: NetflowSettings, *,
                   state_file: Path | None = None, from_start: bool = False, compiled: bool = True) -> NormalizeStats:
    """One pass: everything after the saved offset (all of it with from_start). `compiled`:
    the compiled fast path when it was built (False: the Python path alone; same output)."""
    with _only_reader(state_file, input_path):
        return _normalize_file(input_path, output, settings, state_file, from_start, compiled)


def _normalize_file(input_path, output, settings, state_file, from_start, compiled) -> NormalizeStats:
    resume = _Resume(input_path, state_file, output)
    pipeline = FlowPipeline(settings, None if from_start else resume.detector, compiled=compiled)
    follower = _follower(input_path, None if from_start else resume.position, 0.0)
    try:
        if follower.waiting:
            raise _not_found(input_path)
        for data in _deliveries(follower, pipeline):
            resume.deliver(data, output, follower.position(), pipeline.detector)
        _take_losses(follower, pipeline.stats, 0)
    finally:
        follower.close()
    return pipeline.stats


HEALTH_EVERY_SECONDS = 300.0   # skipped records are raised at most this often while following


def follow(input_path: Path, output: Callable[[bytes], None], settings: NetflowSettings, *,
           state_file: Path | None, poll_seconds: float = 1.0, stop: Callable[[], bool] = lambda: False,
           idle_exit_seconds: float | None = None,
           health: Callable[[str, str], None] | None = None, compiled: bool = True) -> NormalizeStats:
    """Follows a growing file until `stop()`; survives rotation (rename or copytruncate):
    the old file is read to its end, then the new one from its start. `health(check,
    sentence)` hears of every loss at once and of skipped records now and then."""
    with _only_reader(state_file, input_path):
        return _follow(input_path, output, settings, state_file, poll_seconds, stop, idle_exit_seconds,
                       health or (lambda check, sentence: None), compiled)


def _follow(input_path, output, settings, state_file, poll_seconds, stop, idle_exit_seconds, health,
            compiled) -> NormalizeStats:
    resume = _Resume(input_path, state_file, output)
    pipeline = FlowPipeline(settings, resume.detector, compiled=compiled)
    stats = pipeline.stats
    follower = _follower(input_path, resume.position, ROTATED_GRACE_SECONDS)
    idle_since = time.monotonic()
    told = {"skipped": 0, "losses": 0, "said": 0, "at": 0.0, "rotations": 0, "waiting": False}

    def tell(final: bool = False) -> None:
        told["losses"] = _take_losses(follower, stats, told["losses"])
        if len(stats.losses) > told["said"]:
            health("source_unreadable", " ".join(stats.losses[told["said"]:]))
            told["said"] = len(stats.losses)
        now = time.monotonic()
        if stats.skipped > told["skipped"] and (final or now - told["at"] >= HEALTH_EVERY_SECONDS):
            health("malformed_input", f"{input_path}: {stats.sentence()}.")
            told["skipped"], told["at"] = stats.skipped, now

    try:
        while not stop():
            progressed = False
            for data in _deliveries(follower, pipeline):
                resume.deliver(data, output, follower.position(), pipeline.detector)
                progressed = True
            if follower.waiting and not told["waiting"]:
                log.info("%s does not exist yet; waiting for pmacct to write it", input_path)
            told["waiting"] = follower.waiting
            if follower.rotations > told["rotations"]:
                log.info("%s was rotated; reading the new file from its start", input_path)
                told["rotations"] = follower.rotations
            tell()
            if progressed:
                idle_since = time.monotonic()
            elif idle_exit_seconds is not None and time.monotonic() - idle_since >= idle_exit_seconds:
                break
            time.sleep(poll_seconds)
    finally:
        tell(final=True)
        follower.close()
    return pipeline.stats
