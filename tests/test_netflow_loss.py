"""NetFlow normaliser, issue 15 "nothing lost, nothing fatal": a bad counter, an over-long
line or a log rotation never stops the rest nor loses other records; what cannot be
avoided is counted, said in one sentence and raised as a health event."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.follow import Follower
from wazuh_anomaly.netflow.normalize import BadRecord, Normalizer
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.netflow.stream import FileOutput, follow, normalize_file, state_file_for

LINE = {"event_type": "purge", "ip_src": "147.32.80.40", "ip_dst": "147.32.80.37", "port_src": 36679,
        "port_dst": 902, "tcp_flags": "6", "ip_proto": "tcp", "stamp_inserted": "2026-03-22 22:47:00",
        "stamp_updated": "2026-11-21 23:31:31", "packets": 1000, "bytes": 84}


def record(seq: int) -> bytes:
    """A flow whose byte count carries its sequence number."""
    return json.dumps(dict(LINE, bytes=seq + 1)).encode() + b"\n"


def installed(tmp_path: Path) -> Path:
    """A manager directory with the add-on installed: the resume state and health events go there."""
    prefix = tmp_path / "ossec"
    (prefix / "etc" / "anomaly").mkdir(parents=True)
    return prefix


def seqs_of(out: Path) -> list[int]:
    return [json.loads(l)["network"]["bytes"] - 1 for l in out.read_bytes().splitlines()]


# -- counters --------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, reason", [
    ("bytes", -1, "a negative byte count"),
    ("packets", -3, "a negative packet count"),
    ("bytes", 2 ** 64, "a byte count of 2^64 or more"),
    ("packets", 2 ** 70, "a packet count of 2^64 or more"),
    ("bytes", 10 ** 30, "a byte count of 2^64 or more"),
    ("bytes", 1.5, "a byte count that is not a whole number"),
    ("bytes", "12a", "a byte count that is not a whole number"),
    ("bytes", 1000 * 65535 + 1, "more bytes than packets × 65,535"),
])
def test_an_impossible_counter_is_refused_with_its_reason(key, value, reason):
    with pytest.raises(BadRecord) as caught:
        Normalizer().normalize(dict(LINE, **{key: value}))
    assert caught.value.kind == "with " + reason


def test_the_largest_64_bit_counters_are_flows():
    event = Normalizer().normalize(dict(LINE, bytes=2 ** 64 - 1, packets=2 ** 64 - 1))
    assert event["network"] == {"bytes": 2 ** 64 - 1, "packets": 2 ** 64 - 1}


def test_counters_of_2_64_and_more_are_counted_and_never_stop_the_rest(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    lines = [record(0), json.dumps(dict(LINE, bytes=2 ** 64)).encode() + b"\n", record(1),
             b'{"ip_src": "1.2.3.4", "ip_dst": "5.6.7.8", "ip_proto": "tcp", "stamp_inserted": '
             b'"2026-03-22 22:47:00", "packets": 1, "bytes": 123456789012345678901234567890}\n',
             json.dumps(dict(LINE, bytes=-5)).encode() + b"\n", record(2)]
    src.write_bytes(b"".join(lines))
    stats = normalize_file(src, FileOutput(out), NetflowSettings())
    assert seqs_of(out) == [0, 1, 2]
    assert stats.skipped == 3
    assert stats.sentence() == (f"skipped 3 records: 2 with a byte count of 2^64 or more (first at {src}:2), "
                                f"1 with a negative byte count (first at {src}:5)")


# -- over-long lines -------------------------------------------------------------------

def test_a_line_over_64_kib_is_the_only_line_skipped(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    monster = json.dumps(dict(LINE, padding="x" * 70_000)).encode() + b"\n"
    src.write_bytes(b"".join(record(i) for i in range(3500)) + monster
                    + b"".join(record(i) for i in range(3500, 3510)))
    stats = normalize_file(src, FileOutput(out), NetflowSettings())
    assert seqs_of(out) == list(range(3510))[:3500] + list(range(3500, 3510))
    assert (stats.records, stats.skipped) == (3510, 1)
    assert stats.sentence() == f"skipped 1 record: 1 longer than 65,536 bytes (first at {src}:3501)"


@pytest.mark.parametrize("before", [0, 1, 100, 3000, 3500])
def test_over_long_lines_anywhere_in_a_read_cost_only_themselves(tmp_path, before):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    monster = b"{" + b"7" * 200_000 + b"\n"
    src.write_bytes(b"".join(record(i) for i in range(before)) + monster + monster
                    + b"".join(record(i) for i in range(before, before + 50)))
    stats = normalize_file(src, FileOutput(out), NetflowSettings())
    assert seqs_of(out) == list(range(before + 50))
    assert stats.skipped == 2


def test_an_over_long_line_still_being_written_is_skipped_once_it_ends(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_bytes(record(0) + b"{" + b"7" * 100_000)
    first = normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
    with src.open("ab") as fh:
        fh.write(b"7" * 100_000 + b"\n" + record(1))
    second = normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
    assert seqs_of(out) == [0, 1]
    assert first.skipped + second.skipped == 1


# -- the skip summary ------------------------------------------------------------------

def test_the_skip_summary_is_one_readable_sentence_with_reasons_counts_and_places(tmp_path, capsys):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    src.write_bytes(record(0) + json.dumps(dict(LINE, bytes=-1)).encode() + b"\nnot json\n" + record(1)
                    + json.dumps(dict(LINE, packets=-2)).encode() + b"\n")
    assert main(["--prefix", str(installed(tmp_path)), "netflow", "normalize", str(src), "--output", str(out)]) == 0
    err = capsys.readouterr().err
    assert (f"skipped 3 records: 1 with a negative byte count (first at {src}:2), 1 not JSON (first at {src}:3), "
            f"1 with a negative packet count (first at {src}:5)") in err
    assert "(a)" not in err and "skipped 2 (" not in err


def test_skipped_records_are_raised_as_a_health_event(tmp_path):
    prefix = installed(tmp_path)
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    src.write_bytes(record(0) + b"not json\n")
    assert main(["--prefix", str(prefix), "netflow", "normalize", str(src), "--output", str(out)]) == 0
    health = [json.loads(l)["anomaly"] for l in (prefix / "logs" / "anomaly" / "anomalies.json").read_text().splitlines()]
    assert [(h["health"], h["scenario"]) for h in health] == [("malformed_input", "netflow")]
    assert health[0]["message"] == f"{src}: skipped 1 record: 1 not JSON (first at {src}:2)."


# -- rotation against real logrotate and a writer that never pauses --------------------

WRITER = r"""
import json, os, sys, time
path, stop, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
line = json.loads(sys.argv[4])
seq = 0
while not os.path.exists(stop):
    # one flow a second of flow time: the detection windows slide as they would in real traffic
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(1774219620 + seq))
    data = (json.dumps(dict(line, bytes=seq + 1, stamp_inserted=stamp)) + "\n").encode()
    with open(path, "ab") as fh:        # pmacct's print plugin opens the file for each write
        fh.write(data)
    seq += 1
    time.sleep(every)
print(seq)
"""


def logrotate(tmp_path: Path, src: Path, style: str) -> None:
    conf = tmp_path / "logrotate.conf"
    conf.write_text(f"{src} {{\n  rotate 50\n  {style}\n  missingok\n  delaycompress\n  compress\n}}\n")
    subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(conf)],
                   check=True, capture_output=True)


def rotate_while_writing(tmp_path, src, style, rotations, between, every=0.002):
    """Real logrotate `rotations` times while a writer appends without pausing; yields before
    each rotation and once after the last; returns how many records the writer wrote."""
    stop = tmp_path / "stop-writing"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(src), str(stop), str(every), json.dumps(LINE)],
                              stdout=subprocess.PIPE, text=True)
    try:
        while not src.exists():
            time.sleep(0.01)
        for _ in range(rotations):
            time.sleep(between / 2)
            yield
            time.sleep(between / 2)
            logrotate(tmp_path, src, style)
        time.sleep(between / 2)
    finally:
        stop.write_text("")
        written, _ = writer.communicate(timeout=60)
    yield
    return int(written)


def records_left(tmp_path: Path, src: Path) -> list[list[int]]:
    """The records whole in each file logrotate left, oldest first: the rotated copies
    (flows.json.N or .N.gz, the highest N the oldest), then the file itself."""
    def age(path: Path) -> int:
        return int(path.name[len(src.name) + 1:].removesuffix(".gz"))
    left = []
    for path in sorted(tmp_path.glob(src.name + ".*"), key=age, reverse=True) + [src]:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        lines = data.split(b"\n")
        lines.pop()      # after the last newline: nothing, or a record the copy caught half-written
        left.append([json.loads(line)["bytes"] - 1 for line in lines])
    return left


def destroyed_by_copytruncate(tmp_path: Path, src: Path, written: int) -> set[int]:
    """The records in no file that logrotate left: written between logrotate's copy and its
    truncation, they are in neither file, by copytruncate's design, and no reader can have
    them unless it read them from the file in that instant. Derived from the files, not from
    timing: each file holds consecutive records, newer than the file before it, and each run
    of records in no file starts right after the last record of a rotated copy (where the
    truncation destroyed them); anything else fails the test."""
    left = records_left(tmp_path, src)
    ends, last = set(), -1
    for i, seqs in enumerate(left):
        if seqs:
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), f"file {i} of {len(left)} has a gap"
            assert seqs[0] > last, f"file {i} of {len(left)} repeats records of an older one"
            last = seqs[-1]
        if i < len(left) - 1:
            ends.add(last + 1)       # right after the copy: where its truncation cut
    destroyed = set(range(written)) - {seq for seqs in left for seq in seqs}
    starts = {seq for seq in destroyed if seq - 1 not in destroyed}
    assert starts <= ends, f"records {sorted(starts - ends)} and after are in no file and not after a copy's end"
    return destroyed


def last_kept(tmp_path: Path, src: Path) -> int:
    """The newest record in a file: once it is in the output, the follower has read everything."""
    return max((seqs[-1] for seqs in records_left(tmp_path, src) if seqs), default=-1)


def run_rotations(tmp_path, src, style, rotations, between, each):
    gen = rotate_while_writing(tmp_path, src, style, rotations, between)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value
        each()


@pytest.mark.parametrize("style", ["copytruncate", "create"])
def test_follow_loses_and_repeats_no_record_across_real_logrotate(tmp_path, style):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    stop = threading.Event()
    result = {}
    health = []
    worker = threading.Thread(target=lambda: result.setdefault("stats", follow(
        src, FileOutput(out), NetflowSettings(), state_file=state, poll_seconds=0.02, stop=stop.is_set,
        health=lambda check, message: health.append((check, message)))))
    worker.start()
    try:
        count = run_rotations(tmp_path, src, style, rotations=6, between=0.4, each=lambda: None)
        newest, deadline = last_kept(tmp_path, src), time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or newest not in seqs_of(out)):
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(60)
    seqs = seqs_of(out)
    stats = result["stats"]
    print(f"{style} follow: {len(set(seqs))} of {count} written, {len(seqs) - len(set(seqs))} repeated, "
          f"lost_in_rotation {stats.lost_in_rotation}")
    assert len(seqs) == len(set(seqs)), "a record was written twice"
    missing = set(range(count)) - set(seqs)
    destroyed = destroyed_by_copytruncate(tmp_path, src, count) if style == "copytruncate" else set()
    print(f"  {len(destroyed)} destroyed by logrotate's copy-truncate window, {len(destroyed - missing)} of them "
          f"read from the file before the truncation; {len(missing - destroyed)} missing that a file still holds")
    assert missing <= destroyed, f"records still in a file were never read: {sorted(missing - destroyed)}"
    assert (stats.lost_in_rotation, health) == (0, [])


@pytest.mark.parametrize("style", ["copytruncate", "create"])
def test_cron_runs_between_rotations_lose_and_repeat_no_record(tmp_path, style):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    runs = []
    count = run_rotations(tmp_path, src, style, rotations=6, between=0.4, each=lambda: runs.append(
        normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)))
    seqs = seqs_of(out)
    lost = sum(r.lost_in_rotation for r in runs)
    print(f"{style} cron: {len(set(seqs))} of {count} written, {len(seqs) - len(set(seqs))} repeated, "
          f"lost_in_rotation {lost}")
    assert len(seqs) == len(set(seqs)), "a record was written twice"
    missing = set(range(count)) - set(seqs)
    destroyed = destroyed_by_copytruncate(tmp_path, src, count) if style == "copytruncate" else set()
    print(f"  {len(destroyed)} destroyed by logrotate's copy-truncate window; "
          f"{len(missing - destroyed)} missing that a file still holds")
    assert missing <= destroyed, f"records still in a file were never read: {sorted(missing - destroyed)}"
    assert lost == 0


def test_a_rotated_file_that_is_gone_is_counted_as_a_loss_and_raised(tmp_path):
    prefix = installed(tmp_path)
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    args = ["--prefix", str(prefix), "netflow", "normalize", str(src), "--output", str(out)]
    src.write_bytes(record(0))
    assert main(args) == 0
    with src.open("ab") as fh:
        fh.write(record(1))                          # written after that run ...
    os.rename(src, tmp_path / "flows.json.1")
    os.unlink(tmp_path / "flows.json.1")             # ... and rotated away (compressed, deleted) before the next
    src.write_bytes(record(2))
    assert main(args) == 0
    assert seqs_of(out) == [0, 2]
    health = [json.loads(l)["anomaly"] for l in (prefix / "logs" / "anomaly" / "anomalies.json").read_text().splitlines()]
    assert [h["health"] for h in health] == ["source_unreadable"]
    assert "rotated" in health[0]["message"] and str(src) in health[0]["message"]


def test_a_truncation_without_a_copy_while_following_is_counted_and_raised_at_once(tmp_path):
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    src.write_bytes(record(0) + record(1))
    health = []
    stop = threading.Event()
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("stats", follow(
        src, FileOutput(out), NetflowSettings(), state_file=state_file_for(tmp_path / "state", src),
        poll_seconds=0.02, stop=stop.is_set, health=lambda check, sentence: health.append((check, sentence)))))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not out.exists() or len(seqs_of(out)) < 2):
            time.sleep(0.02)
        src.write_bytes(b"")                      # truncated, and no copy is left beside it
        with src.open("ab") as fh:
            fh.write(record(2))
        while time.monotonic() < deadline and len(seqs_of(out)) < 3:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join(60)
    assert seqs_of(out) == [0, 1, 2]
    assert result["stats"].lost_in_rotation == 1
    assert [check for check, _ in health] == ["source_unreadable"]
    assert f"{src} was rotated" in health[0][1] and "delaycompress" in health[0][1]


@pytest.mark.parametrize("style", ["copytruncate", "create"])
@pytest.mark.parametrize("rotations", [2, 3])
def test_a_follower_asleep_through_several_rotations_reads_every_file_even_compressed(tmp_path, rotations, style):
    """Real logrotate (delaycompress, compress) several times between two polls: the file
    we were reading is compressed by then (or still open, when renamed), the newer ones
    too but the last; every record is in a file, so every record is read, once, and no
    loss is claimed."""
    src = tmp_path / "flows.json"
    src.write_bytes(b"".join(record(i) for i in range(10)))
    follower = Follower(src, grace_seconds=0.0)
    got = [line for batch in follower.batches() for _, line in batch]
    seq = 10
    for _ in range(rotations):
        with src.open("ab") as fh:
            fh.write(b"".join(record(i) for i in range(seq, seq + 5)))
        seq += 5
        logrotate(tmp_path, src, style)
        time.sleep(0.02)         # the rotated files' modification times tell which is newer
    with src.open("ab") as fh:
        fh.write(b"".join(record(i) for i in range(seq, seq + 3)))
    seq += 3
    got += [line for batch in follower.batches() for _, line in batch]
    follower.close()
    assert [json.loads(line)["bytes"] - 1 for line in got] == list(range(seq))
    assert follower.losses == []
    assert (tmp_path / "flows.json.2.gz").exists() and (tmp_path / "flows.json.1").exists()


@pytest.mark.parametrize("rotations", [2, 3])
def test_a_cron_run_after_several_copytruncates_reads_every_copy_even_compressed(tmp_path, rotations):
    """The same between two runs from cron: the rest of the first copy is read from its
    .gz, the newer copies whole, oldest first, then the file."""
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_bytes(b"".join(record(i) for i in range(10)))
    runs = [normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)]
    seq = 10
    for _ in range(rotations):
        with src.open("ab") as fh:
            fh.write(b"".join(record(i) for i in range(seq, seq + 5)))
        seq += 5
        logrotate(tmp_path, src, "copytruncate")
        time.sleep(0.02)
    with src.open("ab") as fh:
        fh.write(record(seq))
    seq += 1
    runs.append(normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state))
    assert seqs_of(out) == list(range(seq))
    assert [r.lost_in_rotation for r in runs] == [0, 0]


def test_a_restart_while_reading_a_compressed_copy_resumes_inside_it(tmp_path):
    """Stopped after a few lines of a copy read from its .gz: the saved position names the
    .gz, and the next follower goes on from the next line of it, then the newer copy."""
    src = tmp_path / "flows.json"
    src.write_bytes(b"".join(record(i) for i in range(10)))
    follower = Follower(src)
    got = [line for batch in follower.batches() for _, line in batch]
    seq = 10
    for _ in range(2):
        with src.open("ab") as fh:
            fh.write(b"".join(record(i) for i in range(seq, seq + 5)))
        seq += 5
        logrotate(tmp_path, src, "copytruncate")
        time.sleep(0.02)
    batches = follower.batches(2)
    got += [line for _, line in next(batches)]          # two lines of the .gz, then stopped
    saved = json.loads(json.dumps(follower.position()))
    batches.close()
    follower.close()
    assert any(mark["id"] == "{0.st_dev}:{0.st_ino}".format(os.stat(tmp_path / "flows.json.2.gz"))
               for mark in saved["rotated"])
    follower = Follower(src, position=saved)
    got += [line for batch in follower.batches() for _, line in batch]
    follower.close()
    assert [json.loads(line)["bytes"] - 1 for line in got] == list(range(seq))
    assert follower.losses == []
