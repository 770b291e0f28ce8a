"""Reading JSON-lines files: the one line reader behind the alerts files, the flows
file, the NetFlow follower and the real-time service, and following a growing file
across rotations.

`LineReader` splits bytes into complete lines (chunked reads, a torn last line held back,
over-long lines skipped without holding them, line numbers and byte offsets) and hands
them out in `Run`s: a list of lines with the number and offset of the first, so a caller
formats a place only for a bad line. `FileReader` reads an open file from an offset
(and notices a truncation by its first bytes); `StreamReader` reads a decompressing
stream (`GzipStream`). The scheduled sources read a range of files with them and stop;
the `Follower` follows one file for ever.

A `Follower` hands out complete lines in batches, in file order, and a `position()`
that says exactly how far those batches went. Saved after each batch (atomically, by
the caller) and given back to a new `Follower`, the position resumes after the last
line handed out: nothing is read twice, nothing is skipped.

- **Rotation by rename** (Wazuh's own, logrotate's `create`): the renamed file is read to
  its end through the descriptor still open, and a while longer (`grace_seconds`: a writer
  may not have reopened yet), then any file renamed after it (rotated more than once
  between two looks: modified since we last looked, read whole, oldest first), then the
  new file from its start.
- **Rotation by copytruncate**: the file shrinks (or its first bytes change); what was
  written between our last read and the copy is read from the copy (the newest file
  beside it with the same first bytes; its `.gz` when logrotate compressed it since),
  then every copy made after it whole, oldest first (copied and truncated more than once
  between two looks), then the file again from its start. What the writer wrote between
  logrotate's copy and its truncation is in no file: no reader can count it.
- **While stopped**: a saved position names the file by identity (st_dev:st_ino) and a
  fingerprint of its first bytes (so a reused inode is not taken for the old file). If
  the file there is another one, the old one is looked for among the candidates (by
  identity, then by first bytes) and its rest read first. When it cannot be found the
  loss is one sentence in `losses`, never silent.
- **A torn last line** (no newline yet: the writer is mid-line) is held back and not
  counted in the position; the next poll takes it whole.
- **An over-long line** (over `max_line_bytes`) is handed out as ``(where, None)`` once
  its end is in the file, without ever being held in memory whole (the position stays at
  its start meanwhile): only that line is lost, and the caller counts it.

The standard library and `core.fileio` only (the core imports nothing else of the package).
"""
from __future__ import annotations

import hashlib
import os
import stat
import time
import zlib
from typing import Callable, Iterable, Iterator

from .fileio import open_file

__all__ = ["FileReader", "Follower", "GzipFileReader", "GzipStream", "LineReader", "Run", "StreamReader",
           "compressed", "find_rotated", "fingerprint_length", "gzip_head", "head_fingerprint", "same_file",
           "valid_mark", "HEAD_BYTES", "MAX_LINE_BYTES"]

HEAD_BYTES = 1024              # a file is known by its first bytes (a reused inode, a rewrite)
MAX_LINE_BYTES = 65536         # default limit of one input line
CHUNK_BYTES = 1 << 20
BATCH_LINES = 4096
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".lock", ".sum")

Batch = list  # [(where, line bytes or None for an over-long line)]


def head_fingerprint(fd: int, length: int) -> str:
    """Identifies a file by its first `length` bytes, so a reused inode is not mistaken for the old file."""
    return _fingerprint(os.pread(fd, length, 0) if length > 0 else b"")


def fingerprint_length(fingerprint: str, size: int) -> int:
    """How many head bytes a stored fingerprint covers (-1, never matching, if the file is now shorter)."""
    try:
        length = int(fingerprint.split(":", 1)[0])
    except ValueError:
        return -1
    return length if length <= size else -1


def identity(st: os.stat_result) -> str:
    return f"{st.st_dev}:{st.st_ino}"


def same_file(fd: int, size: int, offset: int, head: str) -> bool:
    """Whether the open file `fd` (now `size` bytes) is still the file a mark at `offset`
    with first-bytes fingerprint `head` was taken of: not truncated below the offset, and
    the same first bytes (a reused inode or a rewrite has others)."""
    return offset <= size and head_fingerprint(fd, fingerprint_length(head, size)) == head


def valid_mark(mark) -> bool:
    """A saved file mark: {"id": "dev:ino", "offset": int >= 0, "line": int >= 0, "head": fingerprint}."""
    return isinstance(mark, dict) and type(mark.get("offset")) is int and type(mark.get("line")) is int \
        and isinstance(mark.get("head"), str) and isinstance(mark.get("id"), str) \
        and mark["offset"] >= 0 and mark["line"] >= 0


class Run:
    """Lines handed out together by a reader: `lines` (without their newline) numbered from
    `first`, the first one starting at byte `offset`; or one over-long line that was
    skipped without being held (`lines` None, `size` its length in bytes).

    Naming a line for a message (`where(i)`) is left until one is needed: the hot loops
    never format a place for a good line."""

    __slots__ = ("path", "first", "offset", "lines", "size", "numbered", "_i", "_at")

    def __init__(self, path, first: int, offset: int, lines: list | None, size: int, numbered: bool):
        self.path, self.first, self.offset, self.lines, self.size = path, first, offset, lines, size
        self.numbered = numbered
        self._i, self._at = 0, offset

    def offset_of(self, i: int) -> int:
        """The byte offset of the i-th line (amortised: asked for in increasing order)."""
        if i < self._i:
            self._i, self._at = 0, self.offset
        lines = self.lines or ()
        self._at += sum(map(len, lines[self._i:i])) + i - self._i
        self._i = i
        return self._at

    def where(self, i: int = 0) -> str:
        """'file:line' of the i-th line; 'file at byte N' when the line numbers are not
        known (a read resumed at a byte offset)."""
        if self.numbered:
            return f"{self.path}:{self.first + i}"
        return f"{self.path} at byte {self.offset_of(i)}"

    def pairs(self) -> list:
        """[(where, line)], line None for an over-long line: what `Follower.batches` hands out."""
        if self.lines is None:
            return [(self.where(0), None)]
        if not self.numbered:
            return [(self.where(i), line) for i, line in enumerate(self.lines)]
        path, first = self.path, self.first
        return [(f"{path}:{first + i}", line) for i, line in enumerate(self.lines)]


class LineReader:
    """Complete lines of a byte source from an offset, with their line numbers: the one
    line splitter behind every input (the alerts files, the flows file, the NetFlow
    follower, the real-time service). A subclass says where the bytes come from
    (`_read`): `FileReader` an open file, `StreamReader` a decompressing stream.

    `offset` is always the start of the next line not handed out. A torn last line stays
    in `pending` (not counted in `offset`), unless `runs(final=True)` says the source is
    finished: then it is handed out as it is. A line longer than `max_line_bytes` is never
    held whole: it is skipped (`skipping`, `offset` at its start) up to its newline and
    handed out as a `Run` without lines. `bytes_read` counts every byte read."""

    def __init__(self, path, offset: int = 0, line: int | None = 0, *, max_line_bytes: int = MAX_LINE_BYTES,
                 chunk_bytes: int = CHUNK_BYTES):
        if max_line_bytes < 1 or chunk_bytes < 1:
            raise ValueError("max_line_bytes and chunk_bytes must be positive")
        self.path, self.offset = path, offset
        self.numbered = line is not None      # line numbers known (else places are byte offsets)
        self.line = line or 0
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.pending = b""
        self.skipping = False        # within a line longer than max_line_bytes, `skipped` bytes of it read
        self.skipped = 0
        self.bytes_read = 0

    @property
    def read_to(self) -> int:
        """Where the next read starts: past the torn line held, or the part of an over-long line skipped."""
        return self.offset + (self.skipped if self.skipping else len(self.pending))

    def _read(self, at: int) -> bytes | None:
        """Up to chunk_bytes from byte `at` (b"" at the end; None: stop, nothing of it is valid)."""
        raise NotImplementedError

    def _advanced(self) -> None:
        """Called each time `offset` moved past handed-out lines."""

    def runs(self, max_lines: int = BATCH_LINES, *, final: bool = False) -> Iterator[Run]:
        """Runs of up to `max_lines` complete lines, in order, up to the end of the source
        now; `offset` and `line` are after each run when it is handed out, so a consumer
        that stops early resumes exactly after the last run it took. With `final`, an
        unterminated last line (or over-long one) is handed out too."""
        limit = self.max_line_bytes
        while True:
            chunk = self._read(self.read_to)
            if chunk is None:
                return
            if not chunk:
                break
            self.bytes_read += len(chunk)
            if self.skipping:                  # inside an over-long line: on to its newline
                end = chunk.find(b"\n")
                if end == -1:
                    self.skipped += len(chunk)
                    continue
                size = self.skipped + end
                self.skipping, self.skipped = False, 0
                yield self._too_long(size, 1)
                data = chunk[end + 1:]
                if not data:
                    continue
            else:
                data = self.pending + chunk if self.pending else chunk
                self.pending = b""             # until the lines before it are handed out
            lines = data.split(b"\n")
            tail = lines.pop()
            if lines:
                if max(map(len, lines)) > limit:
                    yield from self._split_at_long(lines, max_lines)
                elif len(lines) <= max_lines:
                    yield self._run(lines)
                else:
                    for i in range(0, len(lines), max_lines):
                        yield self._run(lines[i:i + max_lines])
            if len(tail) > limit:              # no newline in sight: skip it from its start, never held
                self.skipping, self.skipped = True, len(tail)
            else:
                self.pending = tail
        if final:
            if self.skipping:
                size, self.skipping, self.skipped = self.skipped, False, 0
                yield self._too_long(size, 0)
            elif self.pending:
                last, self.pending = self.pending, b""
                run = Run(self.path, self.line + 1, self.offset, [last], 0, self.numbered)
                self.line += 1
                self.offset += len(last)
                self._advanced()
                yield run

    def _run(self, lines: list) -> Run:
        run = Run(self.path, self.line + 1, self.offset, lines, 0, self.numbered)
        self.line += len(lines)
        self.offset += sum(map(len, lines)) + len(lines)
        self._advanced()
        return run

    def _too_long(self, size: int, newline: int) -> Run:
        run = Run(self.path, self.line + 1, self.offset, None, size, self.numbered)
        self.line += 1
        self.offset += size + newline
        self._advanced()
        return run

    def _split_at_long(self, lines: list, max_lines: int) -> Iterator[Run]:
        limit, begin = self.max_line_bytes, 0
        for i, line in enumerate(lines):
            if len(line) > limit:
                for j in range(begin, i, max_lines):
                    yield self._run(lines[j:min(j + max_lines, i)])
                yield self._too_long(len(line), 1)
                begin = i + 1
        for j in range(begin, len(lines), max_lines):
            yield self._run(lines[j:j + max_lines])


class StreamReader(LineReader):
    """Complete lines of a stream read from its start (a decompressing `GzipStream`):
    the same splitting as `FileReader`, for what has no file offset to read from."""

    def __init__(self, stream, path, *, max_line_bytes: int = MAX_LINE_BYTES, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(path, 0, 0, max_line_bytes=max_line_bytes, chunk_bytes=chunk_bytes)
        self.stream = stream

    def _read(self, at: int) -> bytes:
        return self.stream.read(self.chunk_bytes)      # sequential: `at` is where the stream is


class GzipStream:
    """The uncompressed bytes of a gzip file open at `fd`, read(n) at a time.

    zlib directly instead of gzip.GzipFile: a damaged or cut file yields everything up to
    the damage and then raises (EOFError, zlib.error), instead of losing the last buffer
    with the error. Concatenated members and zero padding after a member are read too."""

    INPUT_BYTES = 1 << 18

    def __init__(self, fd: int):
        self.fd = fd
        self._inflate = zlib.decompressobj(31)  # gzip wrapper: header and CRC checked by zlib
        self._input = b""
        self._started = False

    def _more(self) -> bytes:
        return os.read(self.fd, self.INPUT_BYTES)

    def read(self, n: int) -> bytes:
        while True:
            inflate = self._inflate
            if inflate.eof:
                # end of one gzip member: another may follow (concatenated .gz), or zero padding
                data = (inflate.unused_data + self._input).lstrip(b"\0")
                self._input = b""
                while not data:
                    more = self._more()
                    if not more:
                        return b""
                    data = more.lstrip(b"\0")
                self._inflate = zlib.decompressobj(31)
                self._input = data
                continue
            data = inflate.unconsumed_tail or self._input or self._more()
            self._input = b""
            if not data:
                if not self._started:
                    return b""  # an empty file holds no lines
                raise EOFError("the compressed file ends before its end-of-stream marker")
            self._started = True
            out = inflate.decompress(data, n)
            if out:
                return out


class FileReader(LineReader):
    """Complete lines of one open file from a byte offset, with their line numbers (`line`
    None: not known, places are byte offsets), and the fingerprint of its first bytes to
    notice a truncation and rewrite under us. Every open goes through `core.fileio`: the
    reader takes the descriptor."""

    def __init__(self, fd: int, path, offset: int, line: int | None, *, max_line_bytes: int = MAX_LINE_BYTES,
                 head_bytes: int = HEAD_BYTES, chunk_bytes: int = CHUNK_BYTES):
        super().__init__(path, offset, line, max_line_bytes=max_line_bytes, chunk_bytes=chunk_bytes)
        self.fd = fd
        self.head_bytes = head_bytes
        self.head: str | None = None
        # The first bytes as this reader read them (from offset 0): the fingerprint is of
        # what was read, never of what the file holds later, so a truncation and rewrite
        # between two reads is still noticed.
        self._head_data: bytes | None = b"" if offset == 0 else None

    def mark(self) -> dict:
        """Where to resume this file: identity, offset, line number, first bytes."""
        self._remember_head()
        return {"id": identity(os.fstat(self.fd)), "offset": self.offset, "line": self.line,
                "head": self.head if self.head is not None else head_fingerprint(self.fd, 0)}

    def head_changed(self) -> bool:
        """The first bytes differ from when they were read: truncated and rewritten (to any size)."""
        if self.offset == 0:
            return False
        if self.head is None:
            self._remember_head()
            if self.head is None:
                self.head = head_fingerprint(self.fd, min(self.head_bytes, self.offset))
                return False
        return head_fingerprint(self.fd, fingerprint_length(self.head, os.fstat(self.fd).st_size)) != self.head

    def _remember_head(self) -> None:
        """Fingerprint the first bytes as they were read (see _head_data), as the offset passes them."""
        want = min(self.head_bytes, self.offset)
        if self._head_data is not None:
            n = min(want, len(self._head_data))
            if self.head is None or fingerprint_length(self.head, self.head_bytes) < n:
                self.head = _fingerprint(self._head_data[:n])
        elif self.head is None or fingerprint_length(self.head, self.head_bytes) < want:
            self.head = head_fingerprint(self.fd, want)

    _advanced = _remember_head

    def _read(self, at: int) -> bytes | None:
        """The next chunk from `at`; None when the file was truncated under us since the
        last read (its first bytes changed): the chunk may hold other lines, so nothing of
        it is handed out and the follower starts the file again."""
        chunk = os.pread(self.fd, self.chunk_bytes, at)
        data = self._head_data
        if data is not None and at == len(data) and at < self.head_bytes:
            self._head_data = data + chunk[:self.head_bytes - at]
        elif chunk and self.head is not None and self.head_changed():
            return None
        return chunk

    def batches(self, batch_lines: int = BATCH_LINES) -> Iterator[Batch]:
        """Lists of (where, line) up to the last complete line; `offset` and `line` follow
        each batch. A line longer than max_line_bytes comes as (where, None), once its end
        is in the file: only that line is skipped, never the lines around it."""
        for run in self.runs(batch_lines):
            yield run.pairs()


class GzipFileReader(StreamReader):
    """Lines of a gzip-compressed rotated file from an offset into its uncompressed bytes
    (those before it are decompressed and dropped): the rest of a copy that logrotate
    compressed before the follower had read it. `failed` says why it stopped early (a
    damaged or cut file): the lines before the damage are handed out, the rest is lost."""

    def __init__(self, fd: int, path, offset: int, line: int, *, max_line_bytes: int = MAX_LINE_BYTES,
                 chunk_bytes: int = CHUNK_BYTES, head: str | None = None):
        os.lseek(fd, 0, os.SEEK_SET)
        super().__init__(GzipStream(fd), path, max_line_bytes=max_line_bytes, chunk_bytes=chunk_bytes)
        self.fd, self.offset, self.line = fd, offset, line
        self.head = head
        self._skip = offset
        self.failed: str | None = None

    def _read(self, at: int) -> bytes | None:
        try:
            while self._skip:
                dropped = self.stream.read(min(self._skip, self.chunk_bytes))
                if not dropped:
                    self._skip = 0
                    return b""          # shorter than the offset: nothing of it is left to read
                self._skip -= len(dropped)
            return self.stream.read(self.chunk_bytes)
        except (EOFError, zlib.error, OSError) as exc:
            self.failed = f"{exc}"
            return None

    def mark(self) -> dict:
        return {"id": identity(os.fstat(self.fd)), "offset": self.offset, "line": self.line,
                "head": self.head if self.head is not None else _fingerprint(b"")}

    def batches(self, batch_lines: int = BATCH_LINES) -> Iterator[Batch]:
        for run in self.runs(batch_lines):
            yield run.pairs()


def gzip_head(fd: int, length: int) -> bytes:
    """The first `length` uncompressed bytes of the gzip file open at `fd` (fewer if it is
    shorter, cut or still being written); the descriptor is left at the start again."""
    os.lseek(fd, 0, os.SEEK_SET)
    stream, out = GzipStream(fd), b""
    try:
        while len(out) < length:
            data = stream.read(length - len(out))
            if not data:
                break
            out += data
    except (EOFError, zlib.error, OSError):
        pass
    os.lseek(fd, 0, os.SEEK_SET)
    return out[:length]


def compressed(path) -> bool:
    """A rotated file logrotate compressed (gzip: the only compression read here)."""
    return os.fspath(path).endswith(".gz")


def _fingerprint(head: bytes) -> str:
    return f"{len(head)}:{hashlib.blake2b(head, digest_size=8).hexdigest()}"


def siblings(path) -> list:
    """Where logrotate puts a rotated file: beside it, named after it (flows.json.1,
    alerts.json-20261203, flows.json.2.gz); compressed ones other than gzip are left out."""
    directory = os.path.dirname(os.fspath(path)) or "."
    base = os.path.basename(os.fspath(path))
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    return [os.path.join(directory, n) for n in names
            if n != base and n.startswith(base) and (n.endswith(".gz") or not n.endswith(_COMPRESSED))]


def _regular_files(candidates: Iterable) -> Iterator[tuple]:
    """(path, lstat) of each candidate that is a regular file now (a link or a vanished name is not)."""
    for path in candidates:
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            yield path, st


def find_rotated(candidates: Iterable, ident: str | None, head: str | None, offset: int):
    """The rotated file holding the rest of what we were reading: the same file renamed
    (the same identity) or its copy (copytruncate: the same first bytes, the newest such;
    an uncompressed one first, else one logrotate compressed since). None when none of
    `candidates` is."""
    copies = []
    for path, st in _regular_files(candidates):
        if ident is not None and identity(st) == ident:
            return path
        if not head or offset <= 0 or fingerprint_length(head, 1 << 62) <= 0:
            continue
        if compressed(path):
            copies.append((0, st.st_mtime_ns, os.fspath(path)))
        elif st.st_size >= fingerprint_length(head, st.st_size) > 0:
            # a copy may end before `offset`: what was written between the copy and the truncate is lost
            copies.append((1, st.st_mtime_ns, os.fspath(path)))
    length = fingerprint_length(head, 1 << 62) if head else -1
    for _, _, path in sorted(copies, reverse=True):
        try:
            fd = open_file(path)
        except (OSError, ValueError):
            continue
        try:
            if compressed(path):
                first = gzip_head(fd, length)
                if len(first) == length and _fingerprint(first) == head:
                    return path
            elif head_fingerprint(fd, fingerprint_length(head, os.fstat(fd).st_size)) == head:
                return path
        finally:
            os.close(fd)
    return None


class _Retired:
    """A rotated file still being read: renamed (read until quiet for the grace) or a copy (read once)."""

    __slots__ = ("reader", "until", "once")

    def __init__(self, reader: FileReader, until: float, once: bool):
        self.reader, self.until, self.once = reader, until, once


class Follower:
    """Follows `path` across rename and copytruncate rotations, resuming at `position`.

    Parameters
    ----------
    position : dict or None
        What `position()` returned after the last batch the caller kept (None: from the
        start of the file, or from its end with `from_end`).
    candidates : callable returning paths, optional
        Where a rotated file may be (default: the files beside `path` named after it).
    grace_seconds : float
        A renamed file is read this long after it last grew (its writer may lag).
    chunk_bytes : int
        Bytes read at a time (the line reader's chunk).
    """

    def __init__(self, path, *, position: dict | None = None, max_line_bytes: int = MAX_LINE_BYTES,
                 head_bytes: int = HEAD_BYTES, grace_seconds: float = 5.0,
                 candidates: Callable[[], Iterable] | None = None, from_end: bool = False,
                 opener: Callable[[str], int] | None = None, chunk_bytes: int = CHUNK_BYTES):
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.head_bytes = head_bytes
        self.grace_seconds = grace_seconds
        self.candidates = candidates or (lambda: siblings(path))
        self.opener = opener or (lambda p: open_file(p))
        self.from_end = from_end and not position
        saved = position if isinstance(position, dict) else {}
        self._saved_file = saved.get("file") if valid_mark(saved.get("file")) else None
        rotated = saved.get("rotated")
        self._saved_rotated = [m for m in rotated if valid_mark(m)] if isinstance(rotated, list) else []
        self.current: FileReader | None = None
        self.retired: list[_Retired] = []
        self.losses: list[str] = []         # one sentence per rotation whose rest could not be read
        self.rotations = 0
        self.torn_at_rotation = 0           # unterminated last lines of rotated files, never completed
        self.waiting = False                # the file does not exist (yet)
        # the current file's modification time when last seen not rotated: a rotated file
        # modified after it was rotated since (the file system's clock, never ours)
        self._clean_ns = 0
        self._open_current()                # from now on the file is held: a rotation before the first poll loses nothing
        self.from_end = False               # a file that appears later is new: read from its start

    # -- position ------------------------------------------------------------------
    def position(self) -> dict:
        """Where a new Follower resumes: the current file's mark and those of rotated files
        still being read (plain JSON types)."""
        rotated = [r.reader.mark() for r in self.retired]
        if self.current is not None:
            current = self.current.mark()
        else:
            current = self._saved_file
            rotated = self._saved_rotated + rotated
        out: dict = {"file": current}
        if rotated:
            out["rotated"] = rotated
        return out

    # -- reading -------------------------------------------------------------------
    def _reader(self, fd: int, path, offset: int, line: int) -> FileReader:
        return FileReader(fd, path, offset, line, max_line_bytes=self.max_line_bytes, head_bytes=self.head_bytes,
                          chunk_bytes=self.chunk_bytes)

    def _rotated_reader(self, fd: int, path, offset: int, line: int, head: str | None) -> LineReader:
        if compressed(path):
            return GzipFileReader(fd, path, offset, line, max_line_bytes=self.max_line_bytes,
                                  chunk_bytes=self.chunk_bytes, head=head)
        reader = self._reader(fd, path, offset, line)
        reader.head = head
        return reader

    def _lost(self, sentence: str) -> None:
        self.losses.append(sentence)

    def _recover(self, mark: dict, why: str, current: str | None = None, since_ns: int | None = None) -> None:
        """Queue the rest of a file we were reading that is no longer at `path`; with
        `current` (the identity of the file now at `path`), also every rotated file newer
        than that one (or, when it is gone, modified after `since_ns`), whole and oldest
        first: rotated more than once since the reader last looked (stopped, or asleep
        through two copytruncates), they hold lines it never saw."""
        if mark["offset"] <= 0 and not mark["id"]:
            return
        # at offset 0 the first bytes say nothing yet: only the same file (by identity) will do
        candidates = list(self.candidates())
        found = find_rotated(candidates, mark["id"] or None, mark["head"] if mark["offset"] > 0 else None,
                             mark["offset"])
        if found is None:
            if mark["offset"] > 0:      # at 0 nothing had been read from it: nothing known to be missing
                self._lost(f"{self.path} was rotated ({why}) and no rotated file holds what was written to it after "
                           f"byte {mark['offset']} (line {mark['line']}): those lines, if any, were not read; keep "
                           f"the newest rotated files until they have been read (logrotate's rotate count; "
                           f"compressed only with gzip, best with delaycompress)")
            if current is not None and since_ns:
                self._queue_newer(candidates, None, current, since_ns)
            return
        try:
            fd = self.opener(found)
        except (OSError, ValueError) as exc:
            self._lost(f"{self.path} was rotated to {found}, which cannot be read ({exc}): the lines written after "
                       f"byte {mark['offset']} (line {mark['line']}) were not read")
            return
        st = os.fstat(fd)
        if mark["offset"] > st.st_size and identity(st) == mark["id"] and not compressed(found):
            os.close(fd)
        else:
            self.retired.append(_Retired(self._rotated_reader(fd, found, mark["offset"], mark["line"], mark["head"]),
                                         0.0, True))
        if current is not None:
            self._queue_newer(candidates, st, current, st.st_mtime_ns)

    def _queue_newer(self, candidates: list, found: os.stat_result | None, current: str, since_ns: int) -> None:
        """The rotated files modified after `since_ns` (neither `found`, the current file nor
        one being read), oldest first. A compressed file whose uncompressed twin is there
        too (logrotate compressing it right now) or is being read is left to the twin."""
        queued = {identity(os.fstat(r.reader.fd)) for r in self.retired}
        skip = queued | {current} | ({identity(found)} if found is not None else set())
        later, plain = [], []
        for path, st in _regular_files(candidates):
            if not compressed(path):
                plain.append(path)
            if st.st_mtime_ns > since_ns and identity(st) not in skip:
                later.append((st.st_mtime_ns, os.fspath(path)))
        opened = []
        for _, path in later:
            try:
                fd = self.opener(path)
            except (OSError, ValueError):
                continue
            if compressed(path):
                held = [r.reader.fd for r in self.retired] + ([self.current.fd] if self.current is not None else [])
                if self._has_twin(fd, plain, held):
                    os.close(fd)
                    continue
                st = os.fstat(fd)           # its time is set to its twin's before the twin is removed
                if st.st_mtime_ns <= since_ns:
                    os.close(fd)
                    continue
                opened.append((st.st_mtime_ns, path, fd))
            else:
                opened.append((os.fstat(fd).st_mtime_ns, path, fd))
        for _, path, fd in sorted(opened, key=lambda o: o[:2]):
            self.retired.append(_Retired(self._rotated_reader(fd, path, 0, 0, None), 0.0, True))

    def _has_twin(self, fd: int, plain: list, held: list) -> bool:
        """Whether the gzip file at `fd` is (so far) the compression of one of the uncompressed
        `plain` files or of a file open at one of the `held` descriptors."""
        head = gzip_head(fd, self.head_bytes)
        if any(os.pread(other, self.head_bytes, 0).startswith(head) for other in held):
            return True
        for path in plain:
            try:
                twin = self.opener(path)
            except (OSError, ValueError):
                continue
            try:
                if os.pread(twin, self.head_bytes, 0).startswith(head):
                    return True
            finally:
                os.close(twin)
        return False

    def _open_current(self) -> bool:
        try:
            fd = self.opener(self.path)
        except FileNotFoundError:
            self.waiting = True
            return False
        self.waiting = False
        st = os.fstat(fd)
        saved, self._saved_file = self._saved_file, None
        rotated, self._saved_rotated = self._saved_rotated, []
        for mark in rotated:                  # rotated files we were still reading when stopped
            if identity(st) == mark["id"]:
                continue
            self._recover(mark, "a rotated file still being read")
        offset, line = 0, 0
        if saved is not None:
            if saved["id"] == identity(st) and same_file(fd, st.st_size, saved["offset"], saved["head"]):
                offset, line = saved["offset"], saved["line"]
            else:
                self.rotations += 1
                self._recover(saved, "while the reader was stopped", identity(st))
        elif self.from_end:
            offset = st.st_size                 # only what is written from now on (line numbers from here)
            tail = os.pread(fd, min(offset, CHUNK_BYTES), max(0, offset - CHUNK_BYTES))
            cut = tail.rfind(b"\n")
            offset = offset - len(tail) + cut + 1 if cut >= 0 else (0 if offset <= CHUNK_BYTES else offset)
        self.current = self._reader(fd, self.path, offset, line)
        self._clean_ns = st.st_mtime_ns
        if offset and saved is not None:
            self.current.head = saved["head"]     # a copytruncate before the first read is still noticed
        return True

    def batches(self, batch_lines: int = BATCH_LINES) -> Iterator[Batch]:
        """Every batch available now (rotated files first); `position()` after each batch
        covers exactly the batches handed out so far."""
        for run in self.runs(batch_lines):
            yield run.pairs()

    def runs(self, batch_lines: int = BATCH_LINES) -> Iterator[Run]:
        """`batches` as `Run`s: the lines without a place formatted for each (`run.where(i)`
        names one when it is needed)."""
        if self.current is None and not self._open_current():
            # no file: still finish what was rotated away
            yield from self._drain_retired(batch_lines)
            return
        yield from self._drain_retired(batch_lines)
        # Rotation is looked for before reading: after a copytruncate the old offset
        # points into other lines.
        for _ in range(4):          # a file rotated twice between polls is followed too
            if not self._check_rotation():
                break
            yield from self._drain_retired(batch_lines)
        yield from self.current.runs(batch_lines)

    def _drain_retired(self, batch_lines: int) -> Iterator[Run]:
        now = time.monotonic()
        for entry in list(self.retired):
            for run in entry.reader.runs(batch_lines):
                entry.until = time.monotonic() + self.grace_seconds
                yield run
            if entry.once or now > entry.until:
                if getattr(entry.reader, "failed", None):
                    self._lost(f"{self.path} was rotated to {entry.reader.path}, which is damaged "
                               f"({entry.reader.failed}): the lines after line {entry.reader.line} were not read")
                elif entry.reader.pending or entry.reader.skipping:
                    self.torn_at_rotation += 1
                self.retired.remove(entry)
                os.close(entry.reader.fd)

    def _check_rotation(self) -> bool:
        """Notices a rotation of the current file; True when there is new reading to do."""
        reader = self.current
        try:
            now = os.stat(self.path)
        except FileNotFoundError:
            return False          # renamed, its successor not created yet: keep reading the old one
        mine = os.fstat(reader.fd)
        if (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino):
            try:
                fd = self.opener(self.path)
            except FileNotFoundError:
                return False
            self.rotations += 1
            self.retired.append(_Retired(reader, time.monotonic() + self.grace_seconds, False))
            self.current = self._reader(fd, self.path, 0, 0)
            new = os.fstat(fd)
            if self._clean_ns:
                # renamed more than once since we last looked: the files in between are read whole
                self._queue_newer(list(self.candidates()), None, identity(new), self._clean_ns)
            self._clean_ns = new.st_mtime_ns
            return True
        if mine.st_size < reader.read_to or reader.head_changed():
            self.rotations += 1
            old = reader
            self.current = self._reader(reader.fd, self.path, 0, 0)
            if old.offset > 0 and old.head is not None:
                # what was written between our last read and the copy is in the copy (compressed
                # since, if the file was rotated again); copies made since are read whole
                self._recover({"id": "", "offset": old.offset, "line": old.line, "head": old.head},
                              "copied and truncated", identity(mine), self._clean_ns)
            self._clean_ns = mine.st_mtime_ns
            return True
        self._clean_ns = mine.st_mtime_ns
        return False

    def close(self) -> None:
        for entry in self.retired:
            os.close(entry.reader.fd)
        self.retired = []
        if self.current is not None:
            os.close(self.current.fd)
            self.current = None

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
