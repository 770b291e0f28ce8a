"""The compiled detector (csrc/detect.c) does exactly what FlowDetector.observe does.

Twin detectors (same settings, same starting state) see the same flows, one through the
Python `observe(event)`, the other through the compiled one (`flowfast.observe_only`,
which runs csrc/detect.c on the flow's private tuple): every flow gets the same tags,
port-scan repeat and escalation, and the state (`to_json()`, serialised: key order and
int/float types included, and the beacon verdict memo) is the same after every flow.
The extension must be built (setup.py; CI builds it): without it these tests fail.
"""
from __future__ import annotations

import copy
import json
import math
import random
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import need_shared_data
from netflow_mixed import bench_inputs, mixed_lines
from wazuh_anomaly.netflow import flowfast
from wazuh_anomaly.netflow.detect import FlowDetector
from wazuh_anomaly.netflow.normalize import PRIVATE, BadRecord, Normalizer
from wazuh_anomaly.netflow.settings import NetflowSettings, Thresholds

DIRECTIONS = ("internal_to_internal", "internal_to_external", "external_to_internal", "external_to_external")
ADDRESSES = ("10.0.0.1", "10.0.0.2", "192.168.1.5", "8.8.8.8", "203.0.113.9", "224.0.0.251", "fe80::1", "2001:db8::7",
             "hôte")     # not an address the normaliser passes, but a key is the f-string of any text
PORTS = (22, 53, 80, 123, 443, 445, 853, 902, 1023, 1024, 3389, 4444, 5000, 8080, 40000, 60000)
FLAGS = (0, 0x02, 0x12, 0x10, 0x18, 0x1A, 0x04, 0x14, 0x01, 0x11, 0x03, 0x06, 0x29, 0x1B)
BASE = 1772445600.0


def python_observe(detector: FlowDetector, private: tuple):
    event = {"anomaly": {"tags": []}, PRIVATE: private}
    tags = detector.observe(event)
    anomaly = event["anomaly"]
    assert tags is anomaly["tags"]
    repeat = anomaly["port_scan"]["repeat"] if "port_scan" in anomaly else None
    return list(tags), repeat, anomaly.get("escalated") == "true"


def compiled_observe(detector: FlowDetector, private: tuple):
    tags, repeat, escalated = flowfast.observe_only(detector, private)
    return tags, repeat, escalated


def outcome(observe, detector: FlowDetector, private: tuple):
    """The result, or the kind of exception (a state file Python cannot use: the same error)."""
    try:
        return observe(detector, private)
    except (TypeError, ValueError, OverflowError, IndexError) as exc:
        return type(exc)


def state(detector: FlowDetector) -> tuple[str, str]:
    """repr: key order and int/float types count (and sums beyond 2^64, which orjson cannot write)."""
    return repr(detector.to_json()), repr(detector._verdicts)


def twins(netflow_settings: NetflowSettings, saved: dict | None = None) -> tuple[FlowDetector, FlowDetector]:
    return FlowDetector(netflow_settings, copy.deepcopy(saved)), FlowDetector(netflow_settings, copy.deepcopy(saved))


def assert_same_run(netflow_settings: NetflowSettings, flows: list[tuple], saved: dict | None = None,
                    every: int = 1) -> list:
    """Python and compiled detectors agree on every flow, and their states after every
    `every` flows and at the end; returns the Python results."""
    python, compiled = twins(netflow_settings, saved)
    assert flowfast.mirrored(compiled), "the C detector would hand every flow to Python: nothing here tests it"
    results = []
    for i, private in enumerate(flows):
        want = outcome(python_observe, python, private)
        got = outcome(compiled_observe, compiled, private)
        assert got == want, (i, private)
        results.append(want)
        if i % every == 0 or i == len(flows) - 1:
            assert state(compiled) == state(python), (i, private)
    return results


# ---- hypothesis: few addresses and ports, tiny windows and thresholds ----

@st.composite
def flow(draw, kinds=("exact", "binned"), sports=PORTS, dports=PORTS, flags=FLAGS):
    kind = draw(st.sampled_from(kinds))
    if kind == "binned":
        ts = BASE + 60.0 * draw(st.integers(0, 40))
        res = 60.0
    else:
        ts = BASE + draw(st.one_of(st.integers(0, 2000).map(float), st.floats(0, 2000, allow_nan=False)))
        res = 0.0
    protocol = draw(st.sampled_from(("tcp", "tcp", "tcp", "udp", "icmp", "icmpv6", "sctp", "gre")))
    packets = draw(st.one_of(st.integers(0, 12), st.integers(0, (1 << 64) - 1)))
    bytes_ = draw(st.one_of(st.integers(0, 1500).map(lambda b: min(b * max(packets, 1) // 10, (1 << 64) - 1)),
                            st.integers(0, (1 << 64) - 1)))     # normalize.MAX_COUNT at most
    duration = draw(st.sampled_from((None, 0.0, 0.5, 59.999, 60.0, 700.0)))
    if protocol in ("icmp", "icmpv6"):
        flags, sport, dport = 0, None, None
        icmp_type = draw(st.sampled_from((None, 0, 3, 8, 128, 129)))
    else:
        flags = draw(st.sampled_from(flags)) if protocol == "tcp" else 0
        sport = draw(st.one_of(st.none(), st.sampled_from(sports)))
        dport = draw(st.one_of(st.none(), st.sampled_from(dports)))
        icmp_type = None
    return (ts, flags, draw(st.booleans()), draw(st.booleans()), res, draw(st.sampled_from(ADDRESSES)),
            draw(st.sampled_from(ADDRESSES)), sport, dport, protocol, draw(st.sampled_from(DIRECTIONS)),
            packets, bytes_, duration, icmp_type)


@st.composite
def tiny_settings(draw) -> NetflowSettings:
    small = st.integers(1, 4)
    window = st.sampled_from((1, 30, 120, 600, 3600))
    thresholds = Thresholds(
        port_scan_window=draw(window), port_scan_ports=draw(small), port_scan_hosts=draw(small),
        port_scan_repeat=draw(small), port_scan_repeat_window=draw(window), brute_force_window=draw(window),
        brute_force_connections=draw(small), high_outbound_window=draw(window),
        high_outbound_bytes=draw(st.sampled_from((1, 5000, 1 << 64, 1 << 70))),
        beaconing_min_connections=draw(st.integers(1, 6)),
        beaconing_max_jitter=draw(st.sampled_from((0.2, 0.5, 3.0))),
        beaconing_min_interval=draw(st.sampled_from((0.5, 10.0))), dns_window=draw(window),
        dns_flows=draw(small), dns_bytes=draw(st.sampled_from((100, 1 << 65))), dos_window=draw(window),
        dos_packets=draw(st.sampled_from((3, 50, (1 << 64) + 5))), max_tracked=draw(st.integers(1, 6)))
    return NetflowSettings(thresholds=thresholds)


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(tiny_settings(), st.lists(flow(), max_size=60))
def test_every_flow_gets_the_python_tags_and_leaves_the_python_state(netflow_settings, flows):
    assert_same_run(netflow_settings, flows)


@FAST
@given(tiny_settings(), st.lists(flow(("exact",)), max_size=60))
def test_exact_times_out_of_order_give_the_python_tags_and_state(netflow_settings, flows):
    assert_same_run(netflow_settings, flows)


@FAST
@given(tiny_settings(), st.lists(flow(("binned",)), max_size=60))
def test_pmacctd_bins_out_of_order_give_the_python_tags_and_state(netflow_settings, flows):
    assert_same_run(netflow_settings, flows)


@FAST
@given(tiny_settings(), st.lists(flow(), max_size=40), st.lists(flow(), max_size=40))
def test_a_state_saved_by_the_python_detector_is_continued_the_same(netflow_settings, before, after):
    first = FlowDetector(netflow_settings)
    for private in before:
        python_observe(first, private)
    saved = json.loads(json.dumps(first.to_json()))   # (orjson cannot write ints beyond 64 bits)
    assert_same_run(netflow_settings, after, saved)


@FAST
@given(tiny_settings(), st.lists(flow(), max_size=60), st.randoms(use_true_random=False))
def test_python_and_compiled_observing_one_detector_in_turn_give_what_python_alone_gives(netflow_settings, flows,
                                                                                            rng):
    alone, mixed = twins(netflow_settings)
    assert flowfast.mirrored(mixed)
    for i, private in enumerate(flows):
        want = python_observe(alone, private)
        got = compiled_observe(mixed, private) if rng.random() < 0.5 else python_observe(mixed, private)
        assert got == want, (i, private)
    assert state(mixed) == state(alone)


@settings(max_examples=60, deadline=None)
@given(st.lists(flow(), max_size=30))
def test_a_state_file_with_ints_for_times_and_floats_for_counts_is_handled_as_python_does(flows):
    """A hand-edited state file (to_json's shapes, other number types): every number
    of the state compared and added as Python's operators do."""
    state_file = {
        "version": 2,
        "scan_ports": {"10.0.0.1>8.8.8.8": {"80": int(BASE), "443": BASE + 1}},
        "scan_hosts": {"10.0.0.1>tcp:80": {"8.8.8.8": int(BASE) + 5}},
        "brute": {"10.0.0.1>8.8.8.8:22": [int(BASE), BASE + 2, int(BASE) + 3]},
        "outbound": {"10.0.0.1": [5.5, 2.0, [[int(BASE), 3.5, 1], [BASE + 20, 2, 1.0]]]},
        "dns": {"10.0.0.2": [(1 << 64) + 1, 3, [[BASE, (1 << 64) + 1, 3]]]},
        "dos": {"8.8.8.8": [10, 1, [[int(BASE), 10, 1]]]},
        "scan_repeat": {"10.0.0.1": [int(BASE) - 50, BASE]},
        "sessions": {"10.0.0.1:None>8.8.8.8:443/tcp": int(BASE), "10.0.0.1:40000>8.8.8.8:80/tcp": 1 << 60},
        "beacons": {"10.0.0.1>8.8.8.8:tcp/443": [1, [[int(BASE), 2], [BASE + 60, 1.0]], int(BASE)],
                    "10.0.0.1>8.8.8.8:tcp/80": [0, [int(BASE), BASE + 10], BASE + 10]},
    }
    targeted = []
    for i in range(40):      # the saved beacons, scans and sessions, both kinds of time (each key flips kind)
        binned = i % 3 != 0
        ts = BASE + 60.0 * (i // 2) if binned else BASE + 7.5 * i
        targeted.append((ts, (0, 0x02, 0x12)[i % 3], False, False, 60.0 if binned else 0.0, "10.0.0.1", "8.8.8.8",
                         None if i % 4 == 0 else 40000, (443, 80)[i % 2], "tcp", "internal_to_external", 1 + i % 3,
                         60, None, None))
    assert_same_run(NetflowSettings(thresholds=Thresholds(max_tracked=50, port_scan_ports=3, port_scan_hosts=2,
                                                          beaconing_min_connections=3)),
                    targeted + flows, state_file)


def unusual(detector: FlowDetector) -> FlowDetector:
    detector.lateral = frozenset({22.0, 3389, "x"})       # a port 22.0 == 22: asked of the set itself
    detector.beacon_intervals = 1 << 50                   # beyond what the C series holds: FlowDetector.observe
    return detector


@settings(max_examples=40, deadline=None)
@given(tiny_settings(), st.lists(flow(), max_size=30))
def test_a_detector_changed_beyond_what_the_compiled_code_mirrors_observes_through_python(netflow_settings, flows):
    python, compiled = (unusual(d) for d in twins(netflow_settings))
    assert not flowfast.mirrored(compiled)
    for i, private in enumerate(flows):
        assert compiled_observe(compiled, private) == python_observe(python, private), (i, private)
        assert state(compiled) == state(python)


@settings(max_examples=60, deadline=None)
@given(tiny_settings(), st.lists(flow(dports=(22, 443, 3389, 8080)), min_size=5, max_size=30))
def test_port_sets_with_other_numbers_are_asked_as_python_asks_them(netflow_settings, flows):
    python, compiled = twins(netflow_settings)
    for d in (python, compiled):
        d.lateral = frozenset({22.0, 3389, "x"})
        d.usual_out = frozenset({443.0, True, 1 << 70})
    assert flowfast.mirrored(compiled)          # asked of the sets themselves, the rest in C
    for i, private in enumerate(flows):
        assert compiled_observe(compiled, private) == python_observe(python, private), (i, private)
        assert state(compiled) == state(python)


@FAST
@given(tiny_settings(), st.lists(flow(sports=(22, 80, 443, 1023, 1024, 8080), dports=(22, 80, 1024, 40000, 60000),
                                      flags=(0x04, 0x14, 0x06, 0x0C, 0x04, 0x14, 0x02, 0x12)), min_size=3, max_size=40))
def test_server_replies_and_closed_port_resets_are_handled_as_python_does(netflow_settings, flows):
    """From a service port to a client port: never a connection; a bare RST is the client's probe."""
    assert_same_run(netflow_settings, flows)


# ---- beacons long enough for every verdict path ----

def beacon_flows(rng: random.Random, binned: bool, count: int) -> list[tuple]:
    """A periodic client (with jitter), a random one, and a burst of late and repeated bins."""
    flows = []
    for i in range(count):
        periodic = BASE + i * (300.0 if i % 2 else 30.0) + rng.uniform(-2, 2)
        noisy = BASE + rng.uniform(0, count * 90.0)
        for at, dst, port in ((periodic, "203.0.113.9", 443), (noisy, "8.8.8.8", 8443)):
            ts = (at // 60) * 60.0 if binned else at
            flags = rng.choice((0x02, 0x1B, 0))
            flows.append((ts, flags, False, False, 60.0 if binned else 0.0, "10.0.0.1", dst, 40000 + i % 7, port,
                          "tcp", "internal_to_external", 5, 400, 0.5 if not binned else None, None))
    flows.sort(key=lambda f: f[0] + rng.uniform(-400, 60))       # mostly in order, some late
    return flows


@pytest.mark.parametrize("binned", [False, True], ids=["exact", "binned"])
def test_beacons_over_hundreds_of_openings_get_the_python_verdicts(binned):
    rng = random.Random(5)
    for min_connections in (5, 17):
        netflow_settings = NetflowSettings(thresholds=Thresholds(beaconing_min_connections=min_connections))
        results = assert_same_run(netflow_settings, beacon_flows(rng, binned, 700), every=7)
        tagged = sum("possible_beaconing" in tags for tags, _, _ in results)
        assert 0 < tagged < len(results)        # both verdicts occur


def test_binned_beacons_dense_enough_for_the_counts_per_block_get_the_python_verdicts():
    rng = random.Random(9)
    flows = []
    for minute in range(700):
        for dst, openings in (("203.0.113.9", 10 + rng.choice((0, 1))), ("8.8.8.8", rng.randint(0, 22))):
            for _ in range(openings):
                flows.append((BASE + 60.0 * minute, 0x02, False, False, 60.0, "10.0.0.1", dst, rng.randint(1024, 65535),
                              8443, "tcp", "internal_to_external", 3, 180, None, None))
        if minute % 50 == 49:          # a purge of an older bin, late
            flows.append((BASE + 60.0 * (minute - 3), 0x02, False, False, 60.0, "10.0.0.1", "203.0.113.9", 1999,
                          8443, "tcp", "internal_to_external", 3, 180, None, None))
    results = assert_same_run(NetflowSettings(), flows, every=97)
    assert any("possible_beaconing" in tags for tags, _, _ in results)
    assert not all("possible_beaconing" in tags for tags, _, _ in results)


@pytest.mark.parametrize("binned", [False, True], ids=["exact", "binned"])
def test_beacon_verdicts_near_the_jitter_limit_are_the_python_verdicts(binned):
    """Periodic clients with every spread around beaconing_max_jitter (sparse and dense
    bins), so that a verdict computed slightly differently would differ somewhere."""
    rng = random.Random(13)
    flows = []
    for client in range(60):
        src, period = f"10.0.1.{client}", rng.choice((60.0, 120.0, 180.0, 300.0, 600.0))
        jitter = period * rng.uniform(0.0, 0.6)
        at = BASE
        for _ in range(40):
            at += period + rng.uniform(-jitter, jitter)
            ts = (at // 60) * 60.0 if binned else at
            flows.append((ts, 0x02, False, False, 60.0 if binned else 0.0, src, "203.0.113.9", 40000, 8443, "tcp",
                          "internal_to_external", 3, 180, None, None))
    for client in range(30):                 # dense: openings every bin, counts varying a little or a lot
        src, spread = f"10.0.2.{client}", rng.choice((0, 1, 2, 3, 4, 6))
        for minute in range(200):
            for _ in range(max(0, 10 + rng.randint(-spread, spread))):
                ts = BASE + 60.0 * minute + (0.0 if binned else rng.uniform(0, 59))
                flows.append((ts, 0x02, False, False, 60.0 if binned else 0.0, src, "203.0.113.9", 40000, 8443,
                              "tcp", "internal_to_external", 3, 180, None, None))
    flows.sort(key=lambda f: f[0])
    results = assert_same_run(NetflowSettings(), flows, every=499)
    tagged = sum("possible_beaconing" in tags for tags, _, _ in results)
    assert 0 < tagged < len(results)


def _other_float_sum(values: list[float]) -> float:
    """sum() as the other Python versions add floats (3.12 compensates, 3.11 does not)."""
    if sys.version_info >= (3, 12):
        total = 0.0
        for v in values:
            total += v
        return total
    total, c = 0.0, 0.0
    for v in values:
        t = total + v
        c += (total - t) + v if abs(total) >= abs(v) else (v - t) + total
        total = t
    return total + c if c and math.isfinite(c) else total


def test_the_spread_of_intervals_is_summed_as_this_python_sums_floats():
    """A beacon whose verdict turns on the last bit of sum(): exact times whose squared
    deviations this Python's sum() and the other versions' sum() add up differently, and a
    jitter limit between the two."""
    rng = random.Random(21)
    n = 16
    for _ in range(100_000):
        times = [BASE + i * 60.0 + rng.uniform(-6, 6) for i in range(n + 1)]
        mean = (times[-1] - times[0]) / n
        squares = [(b - a - mean) ** 2 for a, b in zip(times, times[1:])]
        this, other = math.sqrt(sum(squares) / (n - 1)), math.sqrt(_other_float_sum(squares) / (n - 1))
        if this == other:
            continue
        jitter = this / mean          # the jitter limit that makes the two verdicts differ, if there is one
        for _ in range(8):
            if (this <= jitter * mean) != (other <= jitter * mean):
                break
            jitter = math.nextafter(jitter, math.inf if this > other else -math.inf)
        if (this <= jitter * mean) != (other <= jitter * mean):
            break
    else:
        pytest.fail("no series found whose verdict turns on how sum() adds floats")
    flows = [(ts, 0x02, False, False, 0.0, "10.0.0.1", "203.0.113.9", 40000, 8443, "tcp", "internal_to_external", 3,
              180, 0.5, None) for ts in times]
    netflow_settings = NetflowSettings(thresholds=Thresholds(beaconing_min_connections=n + 1,
                                                             beaconing_max_jitter=jitter))
    results = assert_same_run(netflow_settings, flows)
    assert ("possible_beaconing" in results[-1][0]) == (this <= jitter * mean)


def test_full_windows_evict_as_python_does():
    """max_tracked keys per window: every new key evicts (stale keys, else the oldest tenth)."""
    rng = random.Random(3)
    flows = []
    for i in range(3000):
        protocol = rng.choice(("tcp", "udp"))
        flows.append((BASE + i * rng.choice((0.5, 30.0)), rng.choice((0, 0x02, 0x04)), False, False, 0.0,
                      f"10.0.{rng.randint(0, 3)}.{rng.randint(1, 40)}", f"203.0.113.{rng.randint(1, 40)}",
                      rng.choice((None, 40000, 80)), rng.choice((22, 53, 445, 3389, 8443, rng.randint(1, 65535))),
                      protocol, rng.choice(DIRECTIONS), rng.randint(1, 9), rng.randint(40, 900), rng.choice((None, 1.0)),
                      None))
    thresholds = Thresholds(max_tracked=25, port_scan_ports=3, port_scan_hosts=3, brute_force_connections=3,
                            beaconing_min_connections=4, dns_flows=5, dos_packets=30, port_scan_repeat=2)
    assert_same_run(NetflowSettings(thresholds=thresholds), flows, every=13)


# ---- the normaliser's own flows: netflow_mixed's seeded lines and the bench's records ----

def privates(lines) -> list[tuple]:
    normalizer = Normalizer(NetflowSettings())
    out = []
    for line in lines:
        try:
            out.append(normalizer.normalize(orjson.loads(line))[PRIVATE])
        except (orjson.JSONDecodeError, BadRecord, TypeError, ValueError, OverflowError, KeyError, AttributeError):
            continue
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_netflow_mixed_lines_get_the_python_tags_and_state(seed):
    flows = privates(mixed_lines(seed, 3000))
    assert len(flows) > 2000
    results = assert_same_run(NetflowSettings(), flows, every=50)
    assert any(tags for tags, _, _ in results)
    small = Thresholds(max_tracked=40, port_scan_ports=4, port_scan_hosts=3, brute_force_connections=4,
                       dns_flows=10, dos_packets=500, beaconing_min_connections=5, port_scan_repeat=3)
    assert_same_run(NetflowSettings(thresholds=small), flows, every=50)


@pytest.mark.parametrize("kind", ["distinct", "repeated"])
def test_the_bench_records_get_the_python_tags_and_state(kind, tmp_path):
    need_shared_data("pmacct")
    timed = bench_inputs(tmp_path, 12_000, (kind,))[kind]
    flows = privates(Path(timed).read_bytes().splitlines())
    assert len(flows) == 12_000
    results = assert_same_run(NetflowSettings(), flows, every=500)
    assert any(tags for tags, _, _ in results)
