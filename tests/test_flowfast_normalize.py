"""The compiled normaliser (netflow/csrc/normalize.c) against the Python one, record by record.

For every record the compiled path takes, the event it writes (up to "anomaly", with the
rest written from the Python event) is byte for byte `orjson.dumps(public_view(event))`
of the Python normaliser, and its private tuple is the Python event's (same types, floats
exactly equal); every record the Python normaliser rejects, the compiled path declines.
It runs on its own Normalizer, as FlowPipeline runs it: a declined record goes to the
Python code on that same Normalizer (the caches both fill), and the result must be what a
Normalizer that never saw the compiled path gives. Inputs: hypothesis records, realistic
and hostile, of both pmacct dialects; tests/netflow_mixed.py's seeded mixes; the real
pmacct records of the shared data; the bench's records, which the compiled path must take
nearly all of (it is the common path, not an exception)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import need_shared_data
from netflow_mixed import bench_inputs, mixed_lines
from wazuh_anomaly.netflow import flowfast   # built by setup.py (CI builds it): no silent skip
from wazuh_anomaly.netflow.normalize import PRIVATE, Normalizer, public_view
from wazuh_anomaly.netflow.settings import NetflowSettings

SETTINGS = [NetflowSettings(), NetflowSettings(internal_networks=("147.32.0.0/16", "2001:db8::/32", "10.0.0.0/8"))]


def _tail(event: dict) -> bytes:
    """What module.c writes after the normaliser's part: anomaly, srcip, dstip, '}'."""
    rest = {k: event[k] for k in ("anomaly", "srcip", "dstip") if k in event}
    return orjson.dumps(rest)[1:]


def _typed(values) -> list:
    return [(type(v), v) for v in values]


class Pair:
    """A reference Normalizer (Python only) and one the compiled path runs on first, with
    the Python code on the same object for what it declines (FlowPipeline's way)."""

    def __init__(self, netflow_settings: NetflowSettings):
        self.reference = Normalizer(netflow_settings)
        self.compiled = Normalizer(netflow_settings)
        self.taken = self.declined = self.rejected = 0

    def check(self, record) -> None:
        try:
            want = self.reference.normalize(record)
        except Exception:   # noqa: BLE001 - BadRecord, or what a record of an unforeseen type raises
            want = None
        got = flowfast.normalize_only(self.compiled, record) if type(record) is dict else None
        if want is None:
            assert got is None, f"the compiled path took a record the Python code rejects: {record!r}"
            self.rejected += 1
            return
        if got is None:
            self.declined += 1
            again = self.compiled.normalize(record)    # the fallback, after the decline, on the same caches
            assert orjson.dumps(public_view(again)) == orjson.dumps(public_view(want)), record
            assert _typed(again[PRIVATE]) == _typed(want[PRIVATE]), record
            return
        self.taken += 1
        head, private, src_internal = got
        assert head + _tail(want) == orjson.dumps(public_view(want)), record
        assert _typed(private) == _typed(want[PRIVATE]), record
        assert src_internal == (want["flow"]["direction"] in ("internal_to_internal", "internal_to_external"))


# ---- hypothesis: records as orjson.loads gives them, realistic and hostile ----

ADDRESSES = ["10.0.0.5", "10.1.2.3", "192.168.1.109", "147.32.80.40", "8.8.8.8", "198.51.100.7", "203.0.113.9",
             "2001:db8::7", "2001:4860::8888", "::ffff:10.0.0.5", "::ffff:8.8.8.8", "fe80::2", "fe80::1%eth0",
             "10.0.0.1%1", "224.0.0.251", "239.255.255.250", "255.255.255.255", "0.0.0.0", "::", "127.0.0.1", "::1",
             "169.254.1.1", "ff02::fb", "10.0.0.256", "", "not an ip", " 10.0.0.5", "10.0.0.5\n", "1" * 60,
             "10.0.0.5\u0000", "\u0661\u0660.0.0.5"]
PROTOCOLS = ["tcp", "udp", "icmp", "icmpv6", "ipv6-icmp", "ICMP6", "TCP", " tcp ", "gre", "sctp", "esp", "6", "17", "1",
             "58", "300", "", "a\u0001b", "tc\"p", "t\\cp", "tcp\u00e9", "x" * 40, "\u00e9" * 20, "\ud800", 6, 17, 1, 58,
             132, 47, 0, 255, 256, -1, True, None, 6.0, [6], {"n": 6}]
PEERS = ["10.0.0.1", "192.0.2.1", "", "router \"core\"", "back\\slash", "ctl\u0001\u0002x", "tab\there", "\u00e9t\u00e9",
         "\u2028\u0085", "x" * 300, "\ud800", 17, None, ["10.0.0.1"]]


def _time_text(at: datetime, fraction_digits: int, sep: str = " ") -> str:
    text = at.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if fraction_digits:
        text += "." + f"{at.microsecond:06d}{at.microsecond % 997:03d}"[:fraction_digits]
    return text


@st.composite
def times(draw, start: datetime):
    """A pmacct time value: mostly well formed, sometimes every other shape pmacct or a
    forger could write (placeholders, zones, epochs, impossible dates, 60 and 61 seconds)."""
    at = start + timedelta(microseconds=draw(st.integers(0, 10 ** 9)))
    if draw(st.integers(0, 9)):
        if draw(st.integers(0, 9)) == 0:    # the first minute of 1970: the epoch is the seconds, every bit shows
            at = datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=draw(st.integers(10 ** 6, 6 * 10 ** 7)))
        return _time_text(at, draw(st.sampled_from([0, 0, 6, 6, 1, 3, 9, 10])), draw(st.sampled_from(" " * 5 + "T")))
    return draw(st.sampled_from([
        "0000-00-00 00:00:00", "1970-01-01 00:00:00", "1970-01-01 00:00:00.000000", "1970-01-01T00:00:00",
        "", None, 0, 1772445600, 1772445600.25, "1772445600.5", True, [at.isoformat()], {"t": 1},
        at.strftime("%Y-%m-%d %H:%M:%S.%f") + "Z", at.strftime("%Y-%m-%d %H:%M:%S.%f") + "+02:00",
        at.strftime("%Y-%m-%d %H:%M:%S") + "-0530", at.strftime("%Y-%m-%d %H:%M:60.5"),
        at.strftime("%Y-%m-%d %H:%M:61.0"), at.strftime("%Y-%m-%d %H:%M:99"), "2024-02-30 10:00:00",
        "2024-02-29 23:59:59.999999", "2023-02-29 10:00:00", "2024-13-01 10:00:00", "2024-01-01 24:00:00",
        "0001-01-01 00:00:00.5", "9999-12-31 23:59:59.999999", "2024-01-31 23:59:00.", "2024-01-31 23:59:00.12x",
        " 2024-01-31 23:59:00", "2024-01-31 23:59:00 ", "2024-01-31 23:59X00.5", "2024-01-31 23:59:0\u0661.5",
        "\uff12024-01-31 23:59:00", "2024-01-31 23:59:00.1234567890123", "yesterday",
    ]))


def _ints():
    return st.one_of(st.integers(0, 70000), st.integers(-(2 ** 70), 2 ** 70), st.sampled_from(
        [0, 1, 65535, 65536, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, 2 ** 64, -1]))


def _count_values():
    return st.one_of(st.integers(0, 10 ** 6), _ints(), st.sampled_from(
        ["12", "18446744073709551616", "12x", "-3", "\u0661\u0662", 1.0, 1.5, 2.0 ** 70, True, None, [1]]))


def _port_values():
    return st.one_of(st.integers(0, 65535), st.sampled_from(
        [None, 0, 65536, -1, "80", "-1", "70000", "\u0668\u0660", 80.0, True, False, [80], "80 "]))


def _flag_values():
    return st.one_of(st.integers(0, 255).map(str), st.integers(0, 0x1FFF), st.sampled_from(
        [None, "", "0", "27", "0027", "4095", "4096", "99999", "0x1b", "0X12", "0xZZ", "-2", "\u0663", "\u00b2", "1b",
         27.0, True, [1], 0x100, 0x800, "256"]))


def _mostly(good, hostile):
    """`good` nine times in ten, else `hostile`: most records well formed, with one or two
    odd fields (a record with every field odd tests only the first check)."""
    return st.integers(0, 9).flatmap(lambda k: hostile if k == 0 else good)


GOOD_ADDRESSES = [a for a in ADDRESSES[:13] if "%" not in a] + ["224.0.0.251", "255.255.255.255", "0.0.0.0", "fe80::2"]


@st.composite
def records(draw):
    """A pmacct record of either dialect, its fields mostly realistic, some hostile, some missing."""
    nfacctd = draw(st.booleans())
    start = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc) - timedelta(days=draw(st.integers(0, 4000)))
    r: dict = {"event_type": "purge"}
    r["ip_src"] = draw(_mostly(st.sampled_from(GOOD_ADDRESSES),
                               st.one_of(st.sampled_from(ADDRESSES), st.sampled_from([None, 17, ["10.0.0.1"]]))))
    r["ip_dst"] = draw(_mostly(st.sampled_from(GOOD_ADDRESSES), st.sampled_from(ADDRESSES + [None, 17])))
    good_protocol = st.sampled_from([6, 17, 1, 58, 47, 132, 6, 17] if nfacctd else
                                    ["tcp", "udp", "icmp", "ipv6-icmp", "gre", "tcp", "udp"])
    r["ip_proto" if draw(st.integers(0, 19)) else "proto"] = draw(_mostly(
        good_protocol, st.one_of(st.sampled_from(PROTOCOLS), st.text(max_size=12))))
    r["port_src"] = draw(_mostly(st.integers(0, 65535), _port_values()))
    icmp = r.get("ip_proto") in (1, 58, "icmp", "ipv6-icmp")
    r["port_dst"] = draw(_mostly(st.integers(0, 255).map(lambda t: t * 256 + 3) if icmp and nfacctd else
                                 st.sampled_from([0, 22, 53, 80, 443, 445, 3389, 8443, 50000, 65535]), _port_values()))
    packets = draw(_mostly(st.integers(0, 10 ** 6), _count_values()))
    r["packets"] = packets
    r["bytes"] = draw(_mostly(st.integers(0, 1500).map(lambda k: k * packets) if type(packets) is int else
                              st.integers(0, 10 ** 9),
                              st.one_of(_count_values(), st.integers(0, 100).map(lambda k: k * 65535 + 1))))
    r["tcp_flags"] = draw(_mostly(st.integers(0, 255).map(str) if not nfacctd or draw(st.booleans())
                                  else st.integers(0, 255), _flag_values()))
    if nfacctd:
        r["peer_ip_src"] = draw(_mostly(st.sampled_from(PEERS[:2]),
                                        st.one_of(st.sampled_from(PEERS), st.text(max_size=40))))
        r["timestamp_start"] = draw(times(start))
        r["timestamp_end"] = draw(_mostly(times(start + timedelta(seconds=1001)), times(start)))
        if draw(st.integers(0, 9)) == 0:
            r["stamp_inserted"] = draw(times(start))
    else:
        r["stamp_inserted"] = draw(times(start))
        r["stamp_updated"] = draw(times(start + timedelta(seconds=60)))
    for key in draw(_mostly(st.just([]), st.lists(st.sampled_from(sorted(r)), max_size=2))):
        r.pop(key, None)
    return r


@pytest.mark.parametrize("which", range(len(SETTINGS)))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(records(), min_size=1, max_size=12))
def test_every_generated_record_gives_the_python_event_or_is_declined(which, batch):
    pair = Pair(SETTINGS[which])
    for record in batch + batch:        # twice: the second time from the caches the first filled
        pair.check(record)


def test_what_is_not_a_dict_or_lacks_a_field_is_declined():
    pair = Pair(SETTINGS[0])
    good = {"ip_src": "10.0.0.5", "ip_dst": "8.8.8.8", "ip_proto": "udp", "port_src": 5353, "port_dst": 53,
            "packets": 1, "bytes": 70, "stamp_inserted": "2026-03-02 10:00:00"}
    pair.check(good)
    assert pair.taken == 1
    for key in ("ip_src", "ip_dst", "ip_proto", "stamp_inserted"):
        pair.check({k: v for k, v in good.items() if k != key})
    assert flowfast.normalize_only(pair.compiled, [good]) is None
    assert flowfast.normalize_only(pair.compiled, "10.0.0.5") is None
    assert (pair.taken, pair.rejected) == (1, 4)


# ---- the hand-picked shapes of both dialects, each of which must be taken ----

COMMON = [
    # pmacctd: one-minute bins, protocol names, decimal flag text, ICMP with both ports 0
    {"event_type": "purge", "ip_src": "147.32.80.40", "ip_dst": "147.32.80.37", "port_src": 36679, "port_dst": 902,
     "tcp_flags": "6", "ip_proto": "tcp", "stamp_inserted": "2026-03-22 22:47:00",
     "stamp_updated": "2026-11-21 23:31:31", "packets": 2, "bytes": 84},
    {"ip_src": "192.168.1.109", "ip_dst": "192.168.1.1", "port_src": 0, "port_dst": 0, "tcp_flags": "0",
     "ip_proto": "icmp", "stamp_inserted": "2022-09-24 21:23:00", "packets": 1, "bytes": 28},
    {"ip_src": "192.168.1.109", "ip_dst": "192.168.1.1", "port_src": 0, "port_dst": 2048, "tcp_flags": "0",
     "ip_proto": "icmp", "stamp_inserted": "2022-09-24 21:23:00", "packets": 1, "bytes": 28},
    {"ip_src": "10.0.0.5", "ip_dst": "8.8.8.8", "port_src": 40000, "port_dst": 443, "tcp_flags": "4095",
     "ip_proto": "tcp", "stamp_inserted": "2024-02-29 23:59:00", "packets": 2 ** 50, "bytes": 2 ** 64 - 1},
    {"ip_src": "10.0.0.5", "ip_dst": "8.8.8.8", "port_src": 40000, "port_dst": 443, "tcp_flags": "256",
     "ip_proto": "tcp", "stamp_updated": "2024-02-29 23:59:00", "packets": 2, "bytes": 100},
    # nfacctd: exporter, exact times, numeric protocols, ICMP type*256+code in port_dst
    {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": "10.0.5.60", "ip_dst": "198.51.100.90",
     "port_src": 51515, "port_dst": 22, "ip_proto": 6, "tcp_flags": 27, "packets": 40, "bytes": 9000,
     "timestamp_start": "2026-03-02 10:00:00.000000", "timestamp_end": "2026-03-02 10:00:00.500000"},
    {"peer_ip_src": "10.0.0.1", "ip_src": "8.8.8.8", "ip_dst": "10.0.5.60", "port_src": 0, "port_dst": 0x0300 + 3,
     "ip_proto": 1, "packets": 1, "bytes": 56, "timestamp_start": "2026-03-02 10:59:59.999",
     "timestamp_end": "2026-03-02 11:00:01.1"},
    {"peer_ip_src": "10.0.0.1", "ip_src": "2001:db8::7", "ip_dst": "ff02::fb", "ip_proto": 58, "packets": 1,
     "bytes": 56, "timestamp_start": "2026-03-02T10:00:00.123456789", "timestamp_end": "0000-00-00 00:00:00"},
    {"peer_ip_src": "", "ip_src": "::ffff:10.0.0.5", "ip_dst": "224.0.0.251", "port_src": 5353, "port_dst": 5353,
     "ip_proto": 17, "packets": 3, "bytes": 300, "timestamp_start": "2026-03-02 10:00:00",
     "timestamp_end": "2026-03-02 10:12:00"},
    {"peer_ip_src": "edge \"1\"\\\u00e9", "ip_src": "10.0.0.5", "ip_dst": "10.0.0.6", "port_src": None,
     "port_dst": 445, "ip_proto": "tcp", "packets": 0, "bytes": 0, "timestamp_start": "1970-01-01 00:00:00",
     "stamp_inserted": "2026-03-02 10:00:00"},
    {"ip_src": "0.0.0.0", "ip_dst": "255.255.255.255", "port_src": 68, "port_dst": 67, "ip_proto": "udp",
     "packets": 1, "bytes": 328, "timestamp_start": "2026-03-02 10:00:00.25", "timestamp_end": ""},
    {"ip_src": "10.0.0.5", "ip_dst": "10.0.0.6", "port_src": 1, "port_dst": 9, "ip_proto": "gre", "tcp_flags": "0xZZ",
     "packets": 1, "bytes": 1, "timestamp_start": "9999-12-31 23:59:59.999999", "timestamp_end": None},
    {"ip_src": "10.0.0.5", "ip_dst": "10.0.0.6", "ip_proto": "tcp", "timestamp_start": "0001-01-01 00:00:00.5",
     "timestamp_end": "9999-12-31 23:59:60.999999"},
    # the first minute of 1970 (not the placeholder): float("12.002942") is not 12 + 0.002942
    {"peer_ip_src": "10.0.0.1", "ip_src": "10.0.0.5", "ip_dst": "10.0.0.6", "ip_proto": 17, "port_src": 1,
     "port_dst": 2, "packets": 1, "bytes": 1, "timestamp_start": "1970-01-01 00:00:01.003691",
     "timestamp_end": "1970-01-01 00:00:12.002942"},
]


@pytest.mark.parametrize("which", range(len(SETTINGS)))
def test_the_common_records_of_both_dialects_are_taken_and_give_the_python_event(which):
    pair = Pair(SETTINGS[which])
    for record in COMMON:
        pair.check(record)
    assert pair.declined == pair.rejected == 0
    assert pair.taken == len(COMMON)


# One field of a common record made into what the Python code rejects (BadRecord, or an
# error of an unforeseen type): each must be declined, never written.
REJECTED = [
    (0, {"bytes": 2 * 65535 + 1}), (0, {"packets": 0}), (5, {"bytes": 2 ** 64}), (5, {"packets": -1}),
    (0, {"tcp_flags": "4096"}), (5, {"tcp_flags": 4096}), (5, {"tcp_flags": -1}), (0, {"tcp_flags": "0xZZ"}),
    (0, {"tcp_flags": True}), (0, {"tcp_flags": 27.0}), (0, {"port_src": True}), (0, {"port_dst": 65536}),
    (0, {"port_dst": -1}), (0, {"ip_src": "fe80::1%eth0"}), (0, {"ip_dst": "10.0.0.256"}), (0, {"ip_src": 17}),
    (0, {"ip_proto": ""}), (0, {"ip_proto": 256}), (0, {"ip_proto": "a\u0001b"}), (0, {"ip_proto": None}),
    (0, {"stamp_inserted": "2023-02-29 10:00:00", "stamp_updated": None}),
    (0, {"stamp_inserted": "2026-03-22 22:47:61", "stamp_updated": None}),
    (0, {"stamp_inserted": "0000-00-00 00:00:00", "stamp_updated": ""}),
    (5, {"timestamp_end": "2026-03-02 09:59:59.999999"}), (5, {"timestamp_start": "2026-03-02 10:00:61.0"}),
    (0, {"stamp_inserted": "2026-03-22 22:47:00.5x"}), (0, {"stamp_inserted": "2026-03-22 22:47:0x.5"}),
    (0, {"stamp_inserted": "2026-03-22 22:47:1:"}), (0, {"tcp_flags": "1b"}),
]


@pytest.mark.parametrize("base, changes", REJECTED)
def test_a_record_the_python_code_rejects_is_declined(base, changes):
    pair = Pair(SETTINGS[0])
    pair.check({**COMMON[base], **changes})
    assert pair.rejected == 1


JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                        max_size=3), max_leaves=5)
FIELDS = ["ip_src", "ip_dst", "ip_proto", "proto", "port_src", "port_dst", "bytes", "packets", "tcp_flags", "peer_ip_src",
          "timestamp_start", "timestamp_end", "stamp_inserted", "stamp_updated", "event_type"]


@settings(max_examples=300, deadline=None)
@given(base=st.sampled_from(COMMON), changes=st.dictionaries(st.sampled_from(FIELDS), JSON_VALUES, min_size=1, max_size=3))
def test_a_common_record_with_arbitrary_values_in_some_fields_is_declined_unless_it_gives_the_python_event(base,
                                                                                                           changes):
    Pair(SETTINGS[0]).check({**base, **changes})


# ---- recorded and generated inputs ----

@pytest.mark.parametrize("seed", [1, 7, 23])
def test_the_mixed_inputs_give_the_python_events(seed):
    pair = Pair(SETTINGS[seed % 2])
    for line in mixed_lines(seed, 6000):
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        pair.check(record)
    assert pair.rejected > 50 and pair.taken > 4000, (pair.taken, pair.declined, pair.rejected)


@pytest.mark.parametrize("name", ["malicious-ssh-bruteforce.json", "test12-icmp-portscan.json"])
def test_the_real_pmacct_records_are_all_taken_and_give_the_python_events(name):
    path = need_shared_data(f"pmacct/{name}")
    pair = Pair(NetflowSettings(internal_networks=("147.32.0.0/16", "192.168.0.0/16")))
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    for line in lines:
        pair.check(orjson.loads(line))
    assert pair.taken == len(lines) > 20


@pytest.mark.parametrize("kind", ["distinct", "repeated"])
def test_the_bench_records_are_nearly_all_taken_and_give_the_python_events(tmp_path, kind):
    need_shared_data("pmacct")
    timed = bench_inputs(tmp_path, 12_000, (kind,))[kind]
    pair = Pair(NetflowSettings())
    for line in timed.read_bytes().splitlines():
        pair.check(orjson.loads(line))
    assert pair.rejected == 0
    assert pair.taken >= 0.99 * 12_000, (pair.taken, pair.declined)


# ---- the compiled normaliser in the batch loop: its own caches warm, line after line ----

def _pipeline_output(lines: list[bytes], compiled: bool) -> tuple[bytes, tuple]:
    from wazuh_anomaly.netflow.stream import FlowPipeline
    pipeline = FlowPipeline(SETTINGS[1], detect=False, compiled=compiled)
    assert pipeline.compiled == compiled
    written = b"".join(pipeline.process([(f"x:{i}", line) for i, line in enumerate(lines[at:at + 500], at)])
                       for at in range(0, len(lines), 500))
    stats = pipeline.stats
    return written, (stats.records, stats.skipped, dict(stats.reasons))


@pytest.mark.parametrize("seed", [2, 11])
def test_the_batch_loop_without_detections_writes_what_the_python_path_writes(seed):
    lines = mixed_lines(seed, 5000)
    lines = lines + lines            # again: from the caches the first pass filled (times, durations, keys)
    compiled, python = _pipeline_output(lines, True), _pipeline_output(lines, False)
    assert compiled == python
    assert compiled[1][0] > 8000
