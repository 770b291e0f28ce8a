"""The compiled fast path of `netflow normalize` (wazuh_anomaly.netflow.flowfast, built by
setup.py) writes exactly what the Python path writes: the same event bytes, the same
detection state, the same counts and skip reasons, whatever mix of good and bad lines,
collectors and timestamp kinds, in one run or resumed in pieces; and it holds no memory
per record. CI builds it (.ci/run); without it these tests fail, they never skip."""
from __future__ import annotations

import dataclasses
import gc
import tracemalloc

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from netflow_mixed import bench_inputs, mixed_lines
from wazuh_anomaly.netflow import flowfast, stream
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.netflow.stream import FileOutput, FlowPipeline, normalize_file, state_file_for


def _run(tmp_path, data: bytes, name: str, *, compiled: bool, settings: NetflowSettings | None = None):
    here = tmp_path / name          # the same file name in each: the skip summary names it
    here.mkdir()
    src, out = here / "flows.json", here / "out.json"
    src.write_bytes(data)
    state = state_file_for(here / "state", src)
    stats = normalize_file(src, FileOutput(out), settings or NetflowSettings(), state_file=state, compiled=compiled)
    saved = orjson.loads(state.read_bytes())
    return out.read_bytes(), saved["detector"], stats


def _same(a, b) -> None:
    def first(stats) -> dict:          # file:line of each reason's first skip, without the folder
        return {reason: where.rsplit("/", 1)[-1] for reason, where in stats.first.items()}
    assert (a.records, a.tagged, a.skipped, a.reasons, first(a), a.tags) == \
        (b.records, b.tagged, b.skipped, b.reasons, first(b), b.tags)


def test_the_compiled_path_is_built_and_runs_the_pipeline():
    assert stream.compiled_available()
    assert FlowPipeline(NetflowSettings()).compiled
    assert flowfast.mirrored(FlowPipeline(NetflowSettings()).detector)     # the shipped settings: C observes
    assert not FlowPipeline(NetflowSettings(), compiled=False).compiled


@pytest.mark.parametrize("seed", [1, 3, 11])
def test_the_compiled_path_writes_what_the_python_path_writes_on_every_kind_of_line(tmp_path, seed):
    data = b"\n".join(mixed_lines(seed, 6000)) + b"\n"
    fast, fast_state, fast_stats = _run(tmp_path, data, "fast", compiled=True)
    slow, slow_state, slow_stats = _run(tmp_path, data, "slow", compiled=False)
    assert fast == slow
    assert fast_state == slow_state
    _same(fast_stats, slow_stats)
    assert len(fast_stats.tags) >= 8 and fast_stats.skipped > 100      # the mix exercises (nearly) everything


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), repeated=st.floats(0, 0.95), bad=st.floats(0, 0.3),
       max_tracked=st.sampled_from([3, 20, 100_000]), scan_ports=st.integers(2, 30))
def test_any_mix_and_any_thresholds_give_the_same_bytes_state_and_counts(tmp_path_factory, seed, repeated, bad,
                                                                        max_tracked, scan_ports):
    """Tiny windows (evictions on almost every flow) and thresholds reached early."""
    tmp_path = tmp_path_factory.mktemp("ff")
    base = NetflowSettings()
    chosen = dataclasses.replace(base, thresholds=dataclasses.replace(
        base.thresholds, max_tracked=max_tracked, port_scan_ports=scan_ports, brute_force_connections=3,
        high_outbound_bytes=50_000, dos_packets=500))
    assert flowfast.mirrored(FlowPipeline(chosen).detector)
    data = b"\n".join(mixed_lines(seed, 1000, repeated=repeated, bad=bad)) + b"\n"
    fast, fast_state, fast_stats = _run(tmp_path, data, "fast", compiled=True, settings=chosen)
    slow, slow_state, slow_stats = _run(tmp_path, data, "slow", compiled=False, settings=chosen)
    assert fast == slow
    assert fast_state == slow_state
    _same(fast_stats, slow_stats)


def test_a_run_resumed_by_the_compiled_path_continues_the_python_path_exactly(tmp_path):
    """The state one path saved is the state the other reads: switching paths (a manager
    where the extension was built later) changes nothing."""
    lines = mixed_lines(5, 5000)
    src, out = tmp_path / "flows.json", tmp_path / "out.json"
    state = state_file_for(tmp_path / "state", src)
    src.write_bytes(b"")
    for i, part in enumerate([lines[:1200], lines[1200:2500], lines[2500:4100], lines[4100:]]):
        with src.open("ab") as fh:
            fh.write(b"\n".join(part) + b"\n")
        normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state, compiled=i % 2 == 0)
    alone, alone_state, _ = _run(tmp_path, src.read_bytes(), "alone", compiled=False)
    assert out.read_bytes() == alone
    assert orjson.loads(state.read_bytes())["detector"] == alone_state


def test_an_event_longer_than_logcollector_takes_is_skipped_by_both_paths_alike(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "MAX_EVENT_BYTES", 420)      # real events are far shorter than the limit
    data = b"\n".join(mixed_lines(2, 3000, bad=0.0)) + b"\n"
    fast, _, fast_stats = _run(tmp_path, data, "fast", compiled=True)
    slow, _, slow_stats = _run(tmp_path, data, "slow", compiled=False)
    assert fast == slow
    _same(fast_stats, slow_stats)
    assert fast_stats.reasons.get("whose flow event would be longer than 420 bytes", 0) > 100
    assert 0 < fast_stats.records < 3000


def test_the_output_of_a_batch_is_whole_lines_in_order_whatever_goes_to_the_python_path():
    """Lines the compiled path hands to the Python path (bad ones, unusual shapes) keep their
    place among the others; the pieces appended to `out` never end with a newline."""
    lines = mixed_lines(9, 3000, bad=0.25)
    where = [(f"x:{i}", line) for i, line in enumerate(lines)]
    fast, slow = FlowPipeline(NetflowSettings()), FlowPipeline(NetflowSettings(), compiled=False)
    pieces: list[bytes] = []
    fast.collect(where, pieces)
    single: list[bytes] = []
    slow.collect(where, single)
    assert all(p and not p.endswith(b"\n") for p in pieces)
    assert b"\n".join(pieces) == b"\n".join(single)
    assert fast.stats.records == slow.stats.records == len(single)
    assert sum(p.count(b"\n") + 1 for p in pieces if b"\n" in p) > len(single) / 3   # runs of compiled lines


@pytest.mark.filterwarnings("ignore")
def test_the_compiled_path_holds_no_memory_per_record():
    """Nor per pipeline: the engine the pipeline holds does not hold the pipeline."""
    lines = mixed_lines(4, 4000, bad=0.0)      # no skips: the test's log capture would keep their records
    batch = [(f"x:{i}", line) for i, line in enumerate(lines)]

    def one_run() -> None:
        pipeline = FlowPipeline(NetflowSettings())
        out: list[bytes] = []
        for i in range(0, len(batch), 512):
            pipeline.collect(batch[i:i + 512], out)

    one_run()                                   # caches, interned names
    gc.collect()
    tracemalloc.start()
    try:
        one_run()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        for _ in range(4):
            one_run()
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # a leak of one small object per record would be 4 x 4,000 x >= 32 bytes = 512 kB
    assert after - first < 64 * 1024, f"{after - first} bytes kept over 4 runs of {len(lines)} records"


def test_the_bench_records_go_through_the_compiled_path_and_match(tmp_path):
    """The records bench/bench_netflow.py times (real pmacct records and every scenario,
    both kinds of timestamps): the compiled path writes the Python path's bytes."""
    for kind, timed in bench_inputs(tmp_path, 20_000).items():
        data = timed.read_bytes()
        fast, fast_state, fast_stats = _run(tmp_path, data, f"fast-{kind}", compiled=True)
        slow, slow_state, slow_stats = _run(tmp_path, data, f"slow-{kind}", compiled=False)
        assert fast == slow and fast_state == slow_state
        _same(fast_stats, slow_stats)
        assert fast_stats.records == 20_000 and fast_stats.tagged > 1000


def test_the_engine_refuses_a_second_initialisation():
    pipeline = FlowPipeline(NetflowSettings())
    engine = flowfast.Engine(pipeline, 1000)
    with pytest.raises(RuntimeError):
        engine.__init__(pipeline, 1000)


def test_the_command_says_which_path_normalises(tmp_path):
    import os
    import subprocess
    import sys
    src = tmp_path / "flows.json"
    src.write_bytes(b"\n".join(mixed_lines(1, 50, bad=0.0)) + b"\n")
    env = dict(os.environ, PYTHONPATH=str(stream.Path(stream.__file__).resolve().parents[2]))
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(tmp_path / "ossec"), "-v",
                           "netflow", "normalize", str(src), "--output", "-"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "normalising with the compiled fast path" in done.stderr
    assert len(done.stdout.splitlines()) == 50


_MUTATIONS = st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]), st.integers(0, 10_000),
                                st.binary(min_size=1, max_size=4)), min_size=1, max_size=6)


def _mutate(line: bytes, edits) -> bytes:
    for kind, at, data in edits:
        at %= len(line) + 1
        if kind == "flip" and at < len(line):
            line = line[:at] + bytes([line[at] ^ data[0]]) + line[at + 1:]
        elif kind == "insert":
            line = line[:at] + data + line[at:]
        elif kind == "delete":
            line = line[:at] + line[at + len(data):]
        elif kind == "cut":
            line = line[:at]
    return line.replace(b"\n", b" ")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 100_000), edits=st.lists(st.tuples(st.integers(0, 399), _MUTATIONS), max_size=40))
def test_hostile_bytes_give_the_same_bytes_state_and_counts_on_both_paths(tmp_path_factory, seed, edits):
    """Lines damaged anywhere (flipped, inserted, deleted bytes, cut short; invalid UTF-8,
    NULs, stray quotes and escapes) are taken or skipped alike, and never stop the rest."""
    tmp_path = tmp_path_factory.mktemp("ff")
    lines = mixed_lines(seed, 400, bad=0.05)
    for index, one in edits:
        lines[index % len(lines)] = _mutate(lines[index % len(lines)], one)
    data = b"\n".join(lines) + b"\n"
    fast, fast_state, fast_stats = _run(tmp_path, data, "fast", compiled=True)
    slow, slow_state, slow_stats = _run(tmp_path, data, "slow", compiled=False)
    assert fast == slow
    assert fast_state == slow_state
    _same(fast_stats, slow_stats)
    assert fast_stats.records + fast_stats.skipped == sum(1 for one in lines if one.strip())


_EXTREME = (1e308, -1e308, 1.7e308, (1 << 64) - 1, -(1 << 63), 0, 0.0, 1e-300, 5e15, 2.5, 1772445600.0)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.large_base_example, HealthCheck.too_slow])
@given(seed=st.integers(0, 100_000), rng=st.randoms(use_true_random=False))
def test_a_hand_edited_state_that_trips_a_detection_skips_those_records_alike_and_never_stops_the_rest(seed, rng):
    """A state file in the saved shapes with odd numbers in it (huge, negative, float
    counts: it loads) makes some flows raise in the detections: the Python path skips
    those records with a sentence and goes on; the compiled path must do the same."""
    lines = mixed_lines(seed, 300, bad=0.0)
    warm = FlowPipeline(NetflowSettings(), compiled=False)
    warm.collect([("warm", line) for line in lines[:200]], [])

    def odd(value):
        if isinstance(value, dict):
            return {k: odd(v) for k, v in value.items()}
        if isinstance(value, list):
            return [odd(v) for v in value]
        return rng.choice(_EXTREME) if type(value) in (int, float) and rng.random() < 0.3 else value

    saved = orjson.loads(orjson.dumps(warm.detector.to_json()))
    edited = {name: value if name in ("version", "beacons") else odd(value) for name, value in saved.items()}
    edited["beacons"] = {k: [b[0], odd(b[1]), odd(b[2])] for k, b in saved.get("beacons", {}).items()}
    results = []
    for compiled in (True, False):
        pipeline = FlowPipeline(NetflowSettings(), orjson.loads(orjson.dumps(edited)), compiled=compiled)
        out: list[bytes] = []
        pipeline.collect([(f"flows.json:{i}", line) for i, line in enumerate(lines[200:])], out)
        stats = pipeline.stats
        results.append((b"\n".join(out), repr(pipeline.detector.to_json()), stats.records, stats.skipped,
                        stats.reasons, stats.first, stats.tags))
    assert results[0] == results[1]
    assert results[0][2] + results[0][3] == sum(1 for line in lines[200:] if line.strip())
