"""One line reader for every input: the alerts-file source, the flows source and the
Follower (NetFlow follower, real-time service) split lines with core/follow.py's reader,
so the same bytes give the same lines and the same counts through each of them.

Each input gets the same layout of lines (good records, CRLF-terminated ones, over-long
ones, invalid UTF-8, blank lines, a torn last line) in its own record format; what every
input yields and counts must be the same, and what the layout says it must be. A reader
of its own that treats one of these differently makes these tests fail.
"""
from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from wazuh_anomaly.core.follow import Follower
from wazuh_anomaly.netflow.flows_source import FlowsFileSource
from wazuh_anomaly.sources import AlertsFileSource, SourceStats

LIMIT = 300                        # max_line_bytes of every reader here
EVERYTHING = (0.0, 4e9)


def alert_record(n: int, pad: int = 0, bad_utf8: bool = False) -> bytes:
    text = b"\xff\xfe" if bad_utf8 else b"p" * pad
    return b'{"timestamp":"2022-01-24T10:%02d:%02d.000+0000","id":"r%d","pad":"%s"}' % (n // 60 % 60, n % 60, n, text)


def flow_record(n: int, pad: int = 0, bad_utf8: bool = False) -> bytes:
    text = b"\xff\xfe" if bad_utf8 else b"p" * pad
    return b'{"event":{"start":"2022-01-24T10:%02d:%02dZ"},"id":"r%d","pad":"%s"}' % (n // 60 % 60, n % 60, n, text)


PIECES = ("good", "crlf", "long", "utf8", "blank")


def layout_bytes(pieces, torn: str | None, record, finished: bool) -> tuple[bytes, bytes]:
    """(the file's bytes, the rest that completes its torn last line). In a finished file
    the last line is whole but has no newline (a writer stopped before it); in a live
    one the writer is in the middle of it."""
    out = b""
    for n, kind in enumerate(pieces):
        if kind == "blank":
            out += b"\n"
        elif kind == "crlf":
            out += record(n) + b"\r\n"
        else:
            out += record(n, pad=LIMIT * 2 if kind == "long" else 0, bad_utf8=kind == "utf8") + b"\n"
    if torn is None:
        return out, b""
    last = record(len(pieces), pad=LIMIT * 2 if torn == "long" else 0)
    if finished:
        return out + last, b""
    return out + last[:-3], last[-3:] + b"\n"


def expected(pieces, torn: str | None, finished: bool) -> dict:
    """What the layout says every reader hands out: the ids of the good records, the lines
    read, the over-long lines skipped, and whether a torn last line is held back."""
    ids = [f"r{n}" for n, kind in enumerate(pieces) if kind in ("good", "crlf")]
    lines, too_long, held = len(pieces), pieces.count("long"), 0
    if torn is not None:
        if finished:                 # a finished file's last line is as complete as it will ever be
            lines += 1
            if torn == "long":
                too_long += 1
            else:
                ids.append(f"r{len(pieces)}")
        else:
            held = 1
    return {"ids": ids, "lines": lines, "line_too_long": too_long, "held": held}


# --- the inputs: each writes a layout and reads it back the way it is read in use --------

def counts(got, stats: SourceStats) -> dict:
    return {"ids": [event["id"] for _, event in got], "lines": stats.lines,
            "line_too_long": stats.skipped.get("line_too_long", 0), "held": stats.incomplete_tail}


class Appended:
    """A live file: its writer appends."""
    finished = False
    path: Path

    def write(self, data: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(data)


class Compressed:
    """A finished file, compressed whole (read through the gzip stream)."""
    finished = True
    path: Path

    def write(self, data: bytes) -> None:
        self.path.write_bytes(gzip.compress(data))


class AlertsLive(Appended):
    record = staticmethod(alert_record)

    def __init__(self, tmp: Path, chunk: int):
        self.dir = tmp / "logs" / "alerts"
        self.dir.mkdir(parents=True)
        self.path, self.chunk = self.dir / "alerts.json", chunk

    def read(self) -> dict:
        source = AlertsFileSource(self.dir, max_line_bytes=LIMIT)
        source.CHUNK_BYTES = self.chunk
        got = list(source.read(*EVERYTHING))
        return counts(got, source.stats)


class AlertsCompressedDay(Compressed, AlertsLive):
    """A past day, ossec-alerts-DD.json.gz."""

    def __init__(self, tmp: Path, chunk: int):
        super().__init__(tmp, chunk)
        (self.dir / "2022" / "Jan").mkdir(parents=True)
        self.path = self.dir / "2022" / "Jan" / "ossec-alerts-24.json.gz"


class FlowsLive(Appended):
    record = staticmethod(flow_record)

    def __init__(self, tmp: Path, chunk: int):
        self.live = self.path = tmp / "netflow.json"
        self.chunk = chunk

    def read(self) -> dict:
        source = FlowsFileSource(self.live, max_line_bytes=LIMIT)
        source.CHUNK_BYTES = self.chunk
        stats = SourceStats()
        got = list(source.read(*EVERYTHING, stats=stats))
        return counts(got, stats)


class FlowsCompressedCopy(Compressed, FlowsLive):
    """netflow.json.1.gz, as logrotate's compress leaves it."""

    def __init__(self, tmp: Path, chunk: int):
        super().__init__(tmp, chunk)
        self.path = tmp / "netflow.json.1.gz"


class FollowerInput(Appended):
    """The Follower as the NetFlow follower and the real-time service use it: a record is
    what parses to an object; lines handed out as None are the over-long ones."""
    record = staticmethod(alert_record)

    def __init__(self, tmp: Path, chunk: int):
        self.path = tmp / "alerts.json"
        self.path.write_bytes(b"")
        self.follower = Follower(self.path, max_line_bytes=LIMIT, chunk_bytes=chunk)
        self.seen = {"ids": [], "lines": 0, "line_too_long": 0}

    def read(self) -> dict:
        for batch in self.follower.batches():
            for _, line in batch:
                self.seen["lines"] += 1
                if line is None:
                    self.seen["line_too_long"] += 1
                    continue
                try:
                    record = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if isinstance(record, dict):
                    self.seen["ids"].append(record["id"])
        reader = self.follower.current
        return {**self.seen, "ids": list(self.seen["ids"]), "held": int(bool(reader.pending or reader.skipping))}

    def close(self) -> None:
        self.follower.close()


INPUTS = {"alerts_file": AlertsLive, "alerts_file_gz": AlertsCompressedDay, "flows_file": FlowsLive,
          "flows_file_gz": FlowsCompressedCopy, "follower": FollowerInput}


def through(kind: str, tmp: Path, pieces, torn, chunk: int) -> tuple[dict, dict | None]:
    """What the input reads of the layout, and (live inputs) after its torn line is completed."""
    reading = INPUTS[kind](tmp, chunk)
    try:
        data, rest = layout_bytes(pieces, torn, reading.record, reading.finished)
        reading.write(data)
        first = reading.read()
        if reading.finished or torn is None:
            return first, None
        reading.write(rest)
        return first, reading.read()
    finally:
        getattr(reading, "close", lambda: None)()


LAYOUTS = {
    "over_long_line": (["good", "long", "good"], None),
    "over_long_lines_back_to_back": (["long", "long", "good", "long"], None),
    "torn_last_line": (["good", "good"], "short"),
    "torn_over_long_last_line": (["good"], "long"),
    "crlf_line_ends": (["crlf", "good", "crlf"], None),
    "invalid_utf8": (["good", "utf8", "good"], None),
    "blank_lines": (["blank", "good", "blank", "blank", "good"], None),
    "everything_at_once": (["crlf", "long", "utf8", "blank", "good", "long", "crlf"], "short"),
}


@pytest.mark.parametrize("chunk", [1 << 20, 64])
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", list(INPUTS))
def test_the_same_lines_give_the_same_records_and_counts_through_every_input(tmp_path, kind, layout, chunk):
    pieces, torn = LAYOUTS[layout]
    first, completed = through(kind, tmp_path, pieces, torn, chunk)
    assert first == expected(pieces, torn, INPUTS[kind].finished)
    if completed is not None:
        # the torn line, once its writer ends it, is read whole (by the follower once, on
        # from where it stopped; by a source with the rest of the range it reads again)
        assert completed == expected(pieces, torn, True)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12), st.sampled_from([None, "short", "long"]),
       st.integers(16, 700))
def test_any_layout_reads_the_same_through_the_sources_and_the_follower(pieces, torn, chunk):
    seen = {}
    for kind in INPUTS:
        with tempfile.TemporaryDirectory() as tmp:
            seen[kind] = through(kind, Path(tmp), pieces, torn, chunk)
    for kind, (first, completed) in seen.items():
        assert first == expected(pieces, torn, INPUTS[kind].finished), kind
        assert completed == (None if INPUTS[kind].finished or torn is None else expected(pieces, torn, True)), kind
