"""The fast paths of `netflow normalize` change nothing of what it writes (issue 15, speed):
the state saved once per delivery instead of once per batch, the journal renamed over
the state instead of written twice, deliveries recognised after a crash by their edges.

Differential: one run over a generated mix of every scenario, both collectors' shapes
and bad lines writes exactly what the same lines write when they arrive in pieces (cut
anywhere, even mid-line), each piece read by a new run that resumes from the saved
state; and the batch path writes exactly what the per-record path (`FlowPipeline.event`)
gives for the same lines."""
from __future__ import annotations

import json
import multiprocessing
import os
import random

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netflow_mixed import crash_then_resume, mixed_lines
from wazuh_anomaly.netflow import stream
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.netflow.stream import FileOutput, FlowPipeline, normalize_file, state_file_for


def _one_run(tmp_path, data: bytes, name: str) -> tuple[bytes, dict]:
    src, out = tmp_path / f"{name}.json", tmp_path / f"{name}.out"
    src.write_bytes(data)
    stats = normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state_file_for(tmp_path / name, src))
    return out.read_bytes(), stats


def _in_pieces(tmp_path, data: bytes, cuts: list[int], name: str) -> tuple[bytes, dict]:
    src, out = tmp_path / f"{name}.json", tmp_path / f"{name}.out"
    state = state_file_for(tmp_path / name, src)
    src.write_bytes(b"")
    tags: dict[str, int] = {}
    records = skipped = 0
    for a, b in zip([0] + cuts, cuts + [len(data)]):
        with src.open("ab") as fh:
            fh.write(data[a:b])
        stats = normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
        records, skipped = records + stats.records, skipped + stats.skipped
        for tag, n in stats.tags.items():
            tags[tag] = tags.get(tag, 0) + n
    return out.read_bytes(), {"records": records, "skipped": skipped, "tags": tags}


def test_the_mixed_input_exercises_every_detection_and_every_kind_of_bad_line(tmp_path):
    written, stats = _one_run(tmp_path, b"\n".join(mixed_lines(3, 6000)) + b"\n", "cold")
    assert set(stats.tags) == {"possible_port_scan", "high_outbound_bytes", "possible_beaconing",
                               "possible_lateral_movement", "suspicious_dns_flow", "external_inbound_sensitive_service",
                               "unusual_outbound_port", "possible_dos", "possible_brute_force"}
    assert {"not JSON", "longer than 65,536 bytes", "with a negative byte count", "with a byte count of 2^64 or more",
            "with more bytes than packets × 65,535"} <= set(stats.reasons)
    assert len(written.splitlines()) == stats.records > 5000


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.floats(0, 1), min_size=1, max_size=6),
       delivery_lines=st.sampled_from([stream.DELIVERY_LINES, 700, 4096]))
def test_a_run_resumed_after_every_piece_writes_exactly_what_one_run_writes(tmp_path_factory, seed, cuts,
                                                                            delivery_lines):
    tmp_path = tmp_path_factory.mktemp("diff")
    data = b"\n".join(mixed_lines(seed, 2500)) + b"\n"
    cold, cold_stats = _one_run(tmp_path, data, "cold")
    at = sorted({int(c * len(data)) for c in cuts} - {0, len(data)})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stream, "DELIVERY_LINES", delivery_lines)    # several deliveries within one run, too
        resumed, stats = _in_pieces(tmp_path, data, at, "resumed")
    assert resumed == cold
    assert (stats["records"], stats["skipped"], stats["tags"]) == (cold_stats.records, cold_stats.skipped,
                                                                  cold_stats.tags)


def test_the_batch_path_writes_exactly_what_the_per_record_path_gives():
    lines = mixed_lines(7, 4000)
    batch = FlowPipeline(NetflowSettings()).process([(f"x:{i}", line) for i, line in enumerate(lines)])
    one = FlowPipeline(NetflowSettings())
    expected = []
    for line in lines:
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if len(line) > stream.MAX_LINE_BYTES:
            continue
        try:
            expected.append(orjson.dumps(one.event(record)) + b"\n")
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
            continue
    assert batch == b"".join(expected)
    assert batch.count(b"\n") > 3500


@pytest.mark.parametrize("crash", ["after_the_append", "before_the_append", "after_another_writer_appended"])
def test_a_crash_around_a_delivery_of_megabytes_neither_repeats_nor_loses_it(tmp_path, crash):
    """A delivery longer than the two 64 KiB edges the journal hashes."""
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    lines = [line for line in mixed_lines(3, 12000, bad=0.0) if line]
    src.write_bytes(b"\n".join(lines[:3000]) + b"\n")
    normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
    with src.open("ab") as fh:                                   # the delivery the crash interrupts: ~3 MB
        fh.write(b"\n".join(lines[3000:]) + b"\n")

    def big(data: bytes) -> None:
        assert len(data) > 4 * FileOutput.EDGE_BYTES

    crash_then_resume(src, out, state, crash, big)
    written = [line for line in out.read_bytes().splitlines() if line != b'{"other": "writer"}']
    expected, _ = _one_run(tmp_path, src.read_bytes(), "cold")
    assert written == expected.splitlines()
    assert not state.with_suffix(".journal").exists()


@settings(max_examples=12, deadline=None)
@given(period=st.sampled_from([1.0, 2.25, 10.0, 60.0, 300.0]), jitter=st.floats(0, 0.1), late=st.floats(0, 0.2),
       seed=st.integers(0, 1000))
def test_a_binned_beacon_verdict_remembered_for_the_newest_bin_is_the_one_recomputed(period, jitter, late, seed):
    """pmacctd's bins: the verdict over the bins before the newest is remembered while
    openings keep landing in the newest bin, and forgotten when a late record changes an
    earlier bin; it must always equal the verdict computed from scratch."""
    from wazuh_anomaly.netflow.detect import FlowDetector
    from wazuh_anomaly.netflow.normalize import Normalizer

    rng = random.Random(seed)
    normalizer, detector = Normalizer(), FlowDetector()
    judge = detector._beaconing
    checked = []

    def compared(key, ts, res):
        verdict = judge(key, ts, res)
        checked.append(verdict)
        assert verdict == detector._binned_verdict(detector.beacons[key][1], ts)
        return verdict

    detector._beaconing = compared
    for k in range(int(min(2000, 8 * 3600 / period))):
        at = 1772445600 + k * period * (1 + rng.uniform(-jitter, jitter))
        if rng.random() < late:
            at -= rng.choice([60, 120, 600])
        record = {"ip_src": "10.0.5.20", "ip_dst": "198.51.100.7", "port_src": 40000 + k % 20000, "port_dst": 8443,
                  "ip_proto": "tcp", "tcp_flags": "2", "packets": 3, "bytes": 180,
                  "stamp_inserted": _bin_text(at)}
        detector.observe(normalizer.normalize(record))
    assert len(checked) > 20


def _bin_text(epoch: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(epoch - epoch % 60, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("appended", [True, False])
def test_a_journal_left_by_the_previous_release_is_still_honoured(tmp_path, appended):
    """The previous release journaled a batch inside the state file ("pending", with a
    sha256 of the whole batch). A crash just before an upgrade leaves one: the new
    release neither repeats nor loses that batch."""
    import hashlib
    import shutil

    lines = [line for line in mixed_lines(5, 400, bad=0.0) if line]
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_bytes(b"\n".join(lines[:200]) + b"\n")
    normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
    with src.open("ab") as fh:
        fh.write(b"\n".join(lines[200:]) + b"\n")
    # what the interrupted run would have appended and saved, from a copy
    scratch = tmp_path / "scratch"
    shutil.copytree(tmp_path / "state", scratch / "state")
    shutil.copy(out, scratch / "out.json")
    normalize_file(src, FileOutput(scratch / "out.json"), NetflowSettings(),
                   state_file=scratch / "state" / state.relative_to(tmp_path / "state"))
    batch = (scratch / "out.json").read_bytes()[out.stat().st_size:]
    after = json.loads((scratch / "state" / state.relative_to(tmp_path / "state")).read_bytes())
    before = json.loads(state.read_bytes())
    before["pending"] = {"output": FileOutput(out).position(),
                         "batch": {"length": len(batch), "sha256": hashlib.sha256(batch).hexdigest(),
                                   "probe": batch[:256].decode()},
                         "file": after["file"], "rotated": None, "detector": after["detector"]}
    state.write_text(json.dumps(before))
    if appended:
        with out.open("ab") as fh:
            fh.write(batch)
    normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)
    assert out.read_bytes() == (scratch / "out.json").read_bytes()
