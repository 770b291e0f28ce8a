"""core/follow.py: the one rotation-following reader (alerts files, flows, the real-time service).

Every test writes real files and rotates them the way Wazuh and logrotate do (rename and
create, copytruncate), with the reader running or stopped in between; the lines handed
out, across restarts from the saved position, must be exactly the lines written.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hypothesis import given, settings, strategies as st

from wazuh_anomaly.core.follow import FileReader, Follower


def lines_of(batches) -> list:
    return [line for batch in batches for _, line in batch]


def poll(follower: Follower) -> list:
    return lines_of(follower.batches())


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def read_and_stop(path: Path) -> dict:
    """Read `path` to its end with a new Follower and stop it: the position it saved."""
    first = Follower(path)
    poll(first)
    saved = first.position()
    first.close()
    return saved


def copytruncate(path: Path, to: Path) -> None:
    shutil.copy2(path, to)
    with open(path, "r+b") as fh:
        fh.truncate(0)


def test_complete_lines_come_in_order_and_a_torn_last_line_waits(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b'{"a":1}\n{"a":2}\n{"a"')
    follower = Follower(f)
    assert poll(follower) == [b'{"a":1}', b'{"a":2}']
    assert follower.position()["file"]["offset"] == 16       # before the torn line
    append(f, b':3}\n')
    assert poll(follower) == [b'{"a":3}']
    follower.close()


def test_an_over_long_line_costs_only_itself_and_is_handed_out_as_none(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"one\n" + b"x" * 5000 + b"\ntwo\n")
    follower = Follower(f, max_line_bytes=1000)
    got = [(where, line) for batch in follower.batches() for where, line in batch]
    assert [line for _, line in got] == [b"one", None, b"two"]
    assert got[1][0] == f"{f}:2"
    follower.close()


def test_an_over_long_line_still_being_written_is_skipped_once_its_end_arrives(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"one\n" + b"y" * 3000)
    follower = Follower(f, max_line_bytes=1000)
    assert poll(follower) == [b"one"]
    append(f, b"y" * 3000)
    assert poll(follower) == []
    append(f, b"y\ntwo\n")
    assert poll(follower) == [None, b"two"]
    follower.close()


def test_a_rename_rotation_while_following_loses_and_repeats_nothing(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n2\n")
    follower = Follower(f, grace_seconds=0.0)
    assert poll(follower) == [b"1", b"2"]
    append(f, b"3\n")                         # written just before the rotation
    os.rename(f, tmp_path / "alerts.json.1")
    f.write_bytes(b"4\n")
    assert poll(follower) == [b"3", b"4"]
    assert follower.rotations == 1
    follower.close()


def test_a_copytruncate_while_following_reads_the_rest_from_the_copy(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"line-1\nline-2\n")
    follower = Follower(f)
    assert poll(follower) == [b"line-1", b"line-2"]
    append(f, b"line-3\n")                    # not read yet when logrotate copies
    copytruncate(f, tmp_path / "alerts.json.1")
    append(f, b"line-4\nline-5\nline-6\n")    # longer than before: only the first bytes tell
    assert poll(follower) == [b"line-3", b"line-4", b"line-5", b"line-6"]
    follower.close()


def test_a_copytruncate_to_the_same_size_right_after_a_read_is_noticed(tmp_path):
    f = tmp_path / "flows.json"
    f.write_bytes(b'{"port":4}\n')
    fd = os.open(f, os.O_RDONLY)
    try:
        reader = FileReader(fd, f, 0, 0)
        assert len(list(reader.batches())) == 1
        f.write_bytes(b'{"port":5}\n')        # same size, other flow
        assert os.fstat(fd).st_size == reader.offset
        assert reader.head_changed()
    finally:
        os.close(fd)


def test_a_restart_resumes_after_the_last_line_handed_out(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n2\n3")
    first = Follower(f)
    assert poll(first) == [b"1", b"2"]
    saved = json.loads(json.dumps(first.position()))
    first.close()
    append(f, b"\n4\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"3", b"4"]
    second.close()


def test_a_rename_while_stopped_is_found_by_identity_and_its_rest_read_first(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n2\n")
    saved = read_and_stop(f)
    append(f, b"3\n")
    os.rename(f, tmp_path / "alerts.json.1")
    f.write_bytes(b"4\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"3", b"4"]
    assert second.losses == []
    second.close()


def test_a_rotation_into_another_folder_is_found_among_the_given_candidates(tmp_path):
    # Wazuh moves yesterday's alerts.json into logs/alerts/YYYY/Mon/ossec-alerts-DD.json.
    f = tmp_path / "alerts.json"
    dated = tmp_path / "2026" / "Dec"
    dated.mkdir(parents=True)
    f.write_bytes(b"1\n")
    saved = read_and_stop(f)
    append(f, b"2\n")
    os.rename(f, dated / "ossec-alerts-02.json")
    f.write_bytes(b"3\n")
    second = Follower(f, position=saved, candidates=lambda: [dated / n for n in os.listdir(dated)])
    assert poll(second) == [b"2", b"3"]
    second.close()


def test_a_copytruncate_while_stopped_is_found_by_the_first_bytes(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"alpha\nbeta\n")
    saved = read_and_stop(f)
    append(f, b"gamma\n")
    copytruncate(f, tmp_path / "alerts.json.1")
    append(f, b"delta\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"gamma", b"delta"]
    second.close()


def test_two_copytruncates_while_stopped_read_the_rest_of_the_first_copy_and_the_second_whole(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"a-1\na-2\n")
    saved = read_and_stop(f)
    append(f, b"a-3\n")
    copytruncate(f, tmp_path / "alerts.json.1")
    os.utime(tmp_path / "alerts.json.1", ns=(10**18, 10**18))          # rotated first ...
    append(f, b"b-1\nb-2\n")                                         # ... lines the reader never saw ...
    copytruncate(f, tmp_path / "alerts.json.2")
    os.utime(tmp_path / "alerts.json.2", ns=(2 * 10**18, 2 * 10**18))  # ... rotated second
    append(f, b"c-1\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"a-3", b"b-1", b"b-2", b"c-1"]
    second.close()


def test_two_renames_while_stopped_read_the_middle_file_whole_and_the_current_once(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"a-1\n")
    saved = read_and_stop(f)
    append(f, b"a-2\n")
    os.rename(f, tmp_path / "alerts.json.2")
    os.utime(tmp_path / "alerts.json.2", ns=(10**18, 10**18))
    f.write_bytes(b"b-1\n")
    os.rename(f, tmp_path / "alerts.json.1")
    os.utime(tmp_path / "alerts.json.1", ns=(2 * 10**18, 2 * 10**18))
    f.write_bytes(b"c-1\n")
    os.link(f, tmp_path / "alerts.json.today")         # Wazuh's alerts.json is a link to the day's file
    second = Follower(f, position=saved)
    assert poll(second) == [b"a-2", b"b-1", b"c-1"]
    second.close()


def test_a_rotated_file_that_is_gone_is_one_sentence_not_a_silent_gap(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n2\n")
    saved = read_and_stop(f)
    os.unlink(f)
    f.write_bytes(b"3\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"3"]
    assert len(second.losses) == 1
    assert "no rotated file holds what was written to it after byte 4 (line 2)" in second.losses[0]
    second.close()


def test_a_reused_inode_with_other_first_bytes_is_read_from_its_start(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"old-1\nold-2\n")
    saved = read_and_stop(f)
    with open(f, "r+b") as fh:                  # the same inode, rewritten longer
        fh.write(b"new-1\nnew-2\nnew-3\n")
    second = Follower(f, position=saved)
    assert poll(second) == [b"new-1", b"new-2", b"new-3"]
    second.close()


def test_a_damaged_position_reads_the_file_again_from_its_start(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n")
    follower = Follower(f, position={"file": {"id": 3, "offset": -1}, "rotated": "x"})
    assert poll(follower) == [b"1"]
    follower.close()


def test_from_end_starts_after_the_last_complete_line(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"1\n2\n3")
    follower = Follower(f, from_end=True)
    assert poll(follower) == []
    append(f, b"\n4\n")
    assert poll(follower) == [b"3", b"4"]
    follower.close()


def test_a_file_that_appears_after_a_start_from_its_end_is_read_from_its_start(tmp_path):
    f = tmp_path / "alerts.json"
    follower = Follower(f, from_end=True)
    f.write_bytes(b"1\n")
    assert poll(follower) == [b"1"]
    follower.close()


def test_a_file_that_does_not_exist_yet_is_waited_for(tmp_path):
    f = tmp_path / "alerts.json"
    follower = Follower(f)
    assert poll(follower) == [] and follower.waiting
    f.write_bytes(b"1\n")
    assert poll(follower) == [b"1"]
    follower.close()


# One step of a writer and a reader sharing a file: write some bytes (possibly a part of
# a line), rotate one way or the other, poll, or stop the reader and start a new one
# from its saved position.
STEPS = st.lists(st.one_of(
    st.tuples(st.just("write"), st.integers(1, 6), st.booleans()),
    st.tuples(st.just("rename"), st.just(0), st.booleans()),
    st.tuples(st.just("copytruncate"), st.just(0), st.booleans()),
    st.tuples(st.just("poll"), st.just(0), st.booleans()),
    st.tuples(st.just("restart"), st.just(0), st.booleans()),
), max_size=40)


@settings(max_examples=150, deadline=None)
@given(STEPS)
def test_any_mix_of_writes_rotations_and_restarts_hands_out_each_line_exactly_once(steps):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        f = tmp / "alerts.json"
        f.write_bytes(b"")
        written: list[bytes] = []
        got: list[bytes] = []
        serial = 0
        rotated = 0
        torn = b""                       # the part of a line written so far
        rotated_since_poll = False
        follower = Follower(f, grace_seconds=0.0)
        for op, n, flag in steps:
            if op == "write":
                data = b""
                for _ in range(n):
                    serial += 1
                    line = f'{{"n":{serial},"pad":"{"p" * (serial % 7)}"}}'.encode()
                    written.append(line)
                    data += line + b"\n"
                if flag:                  # leave the next line torn, completed by the next write
                    serial += 1
                    line = f'{{"n":{serial}}}'.encode()
                    written.append(line)
                    data += line[:5]
                    append(f, torn + data)
                    torn = line[5:] + b"\n"
                else:
                    append(f, torn + data)
                    torn = b""
            elif op in ("rename", "copytruncate"):
                append(f, torn)          # rotations happen between whole writes
                torn = b""
                if rotated_since_poll or (op == "copytruncate" and follower.current.offset == 0):
                    # The blind spots, both far from real use (rotations are hours apart, polls
                    # a fraction of a second): a file rotated away unseen between two
                    # rotations, and a file copied and emptied before the reader took a
                    # single line from it (no size, no first bytes to compare).
                    got += poll(follower)
                    rotated_since_poll = False
                rotated_since_poll = True
                rotated += 1
                target = tmp / f"alerts.json.{rotated}"
                if op == "rename":
                    os.rename(f, target)
                    f.write_bytes(b"")
                else:
                    copytruncate(f, target)
            elif op == "poll":
                got += poll(follower)
                rotated_since_poll = False
            else:
                if flag:
                    got += poll(follower)
                    rotated_since_poll = False
                saved = json.loads(json.dumps(follower.position()))
                follower.close()
                follower = Follower(f, position=saved, grace_seconds=0.0)
        append(f, torn)
        got += poll(follower)
        got += poll(follower)
        follower.close()
        assert got == written


# --- the line reader itself: files and decompressing streams split the same way ---------

def reference_lines(data: bytes, limit: int, final: bool) -> list:
    """(line number, byte offset, line or None when longer than limit) of every complete
    line, and of the unterminated last one when the source is finished."""
    parts = data.split(b"\n")
    tail = parts.pop()
    if final and tail:
        parts.append(tail)
    out, offset = [], 0
    for number, part in enumerate(parts, 1):
        out.append((number, offset, part if len(part) <= limit else None))
        offset += len(part) + 1
    return out


def flat(runs) -> list:
    out = []
    for run in runs:
        if run.lines is None:
            out.append((run.first, run.offset, None))
        else:
            out += [(run.first + i, run.offset_of(i), line) for i, line in enumerate(run.lines)]
    return out


DATA = st.lists(st.sampled_from([b"a", b"bb", b"\n", b"\r\n", b"\xff", b"x" * 9]), max_size=60).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(DATA, st.integers(1, 12), st.integers(1, 8), st.integers(1, 5), st.booleans())
def test_a_file_read_while_it_grows_gives_every_line_with_its_number_and_offset(data, limit, chunk, pieces, final):
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flows.json"
        path.write_bytes(b"")
        fd = os.open(path, os.O_RDONLY)
        try:
            reader = FileReader(fd, path, 0, 0, max_line_bytes=limit, chunk_bytes=chunk)
            got = []
            step = max(1, len(data) // pieces)
            for at in range(0, len(data), step):       # the writer appends, the reader polls
                append(path, data[at:at + step])
                got += flat(reader.runs(3))
            got += flat(reader.runs(3, final=final))
        finally:
            os.close(fd)
    assert got == reference_lines(data, limit, final)
    assert reader.offset == (len(data) if final else len(data) - len(data.rsplit(b"\n", 1)[-1]))


@settings(max_examples=200, deadline=None)
@given(DATA, st.integers(1, 12), st.integers(1, 8), st.booleans())
def test_a_decompressing_stream_is_split_exactly_like_the_file(data, limit, chunk, final):
    import gzip
    import io
    from wazuh_anomaly.core.follow import GzipStream, StreamReader
    r, w = os.pipe()                      # GzipStream reads a descriptor, as the sources open files
    packed = gzip.compress(data)
    try:
        os.write(w, packed)
        os.close(w)
        reader = StreamReader(GzipStream(r), "x.json.gz", max_line_bytes=limit, chunk_bytes=chunk)
        got = flat(reader.runs(2, final=final))
    finally:
        os.close(r)
    assert got == reference_lines(data, limit, final)
    assert reader.bytes_read == len(data)
    plain = StreamReader(io.BytesIO(data), "x.json", max_line_bytes=limit, chunk_bytes=chunk)
    assert flat(plain.runs(5, final=final)) == got


def test_a_damaged_archive_gives_its_lines_up_to_the_damage_then_says_so(tmp_path):
    import gzip
    import zlib
    from wazuh_anomaly.core.follow import GzipStream, StreamReader
    data = b"".join(b'{"n":%d,"pad":"%s"}\n' % (n, os.urandom(20).hex().encode()) for n in range(3000))
    packed = gzip.compress(data)
    cut = tmp_path / "flows.json.2.gz"
    cut.write_bytes(packed[:len(packed) // 2])
    fd = os.open(cut, os.O_RDONLY)
    got = []
    try:
        reader = StreamReader(GzipStream(fd), cut, chunk_bytes=4096)
        try:
            for run in reader.runs():
                got += run.lines
        except (EOFError, zlib.error):
            pass
        else:
            raise AssertionError("a cut archive read as if whole")
    finally:
        os.close(fd)
    assert 0 < len(got) < 3000 and got == data.split(b"\n")[:len(got)]


def test_a_place_is_a_line_number_or_after_a_resume_a_byte_offset(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"one\ntwo\nthree\n")
    fd = os.open(f, os.O_RDONLY)
    try:
        numbered = next(FileReader(fd, f, 0, 0).runs())
        resumed = next(FileReader(fd, f, 4, None).runs())
    finally:
        os.close(fd)
    assert [numbered.where(i) for i in range(3)] == [f"{f}:1", f"{f}:2", f"{f}:3"]
    assert [resumed.where(i) for i in (1, 0)] == [f"{f} at byte 8", f"{f} at byte 4"]


def test_a_restart_while_an_over_long_line_is_written_does_not_hand_out_its_tail_as_a_line(tmp_path):
    f = tmp_path / "alerts.json"
    f.write_bytes(b"one\n" + b"y" * 1500)
    first = Follower(f, max_line_bytes=1000)
    assert poll(first) == [b"one"]
    saved = json.loads(json.dumps(first.position()))
    first.close()
    assert saved["file"]["offset"] == 4                 # the over-long line is still to come
    append(f, b"y\ntwo\n")
    second = Follower(f, position=saved, max_line_bytes=1000)
    assert poll(second) == [None, b"two"]
    second.close()
