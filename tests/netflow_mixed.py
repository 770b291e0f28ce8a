"""A seeded mix of pmacct lines for differential tests of the NetFlow normaliser: every
scenario of netflow/generate.py, both collectors' shapes (pmacctd's one-minute bins,
nfacctd's exact times, epoch and zoned times, string and float counters, hex flags,
ICMP, IPv6, missing ports), repeated timestamps, and bad lines of every kind the
normaliser must skip and count (not JSON, negative, absurd and 2^64 counters, bad
addresses, times, protocols, ports and flags, markers, over-long lines)."""
from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from wazuh_anomaly.netflow import generate

_BAD = [
    b'{"ip_src": "10.0.0.1", "ip_d',
    b"not json at all",
    b"[1, 2, 3]",
    b'{"event_type": "purge_init"}',
    b'{"ip_src": "10.0.0.1"}',
]


def _bad_record(rng: random.Random, base: dict) -> dict:
    r = dict(base)
    key, value = rng.choice([
        ("bytes", -5), ("packets", -1), ("bytes", 1 << 64), ("packets", "18446744073709551616"),
        ("bytes", 10 ** 9), ("bytes", "12x"), ("bytes", 1.5), ("ip_src", "10.0.0.256"), ("ip_dst", "fe80::1%eth0"),
        ("ip_src", 17), ("ip_proto", ""), ("ip_proto", 300), ("ip_proto", "a\u0001b"), ("port_dst", 70000),
        ("port_src", "-1"), ("tcp_flags", "0xZZ"), ("tcp_flags", 99999), ("tcp_flags", [1]),
        ("timestamp_start", "yesterday"), ("timestamp_start", "2026-13-40 10:00:00"),
        ("timestamp_start", "2026-03-02 10:00:99"), ("timestamp_start", -3), ("timestamp_start", 1e300),
        ("timestamp_end", "2020-01-01 00:00:00"), ("stamp_inserted", {"a": 1}),
    ])
    if key.startswith("timestamp") or key == "stamp_inserted":
        r.pop("stamp_inserted", None)
        if key == "stamp_inserted":
            r.pop("timestamp_start", None)
            r.pop("timestamp_end", None)
        elif "timestamp_start" not in r:
            r["timestamp_start"] = "2026-03-02 10:00:00.000000"
    r[key] = value
    return r


def _reshape(rng: random.Random, r: dict, at: datetime, binned: bool) -> dict:
    """The same flow as one of the shapes pmacct writes."""
    r = dict(r)
    for key in ("timestamp_start", "timestamp_end", "stamp_inserted", "stamp_updated"):
        r.pop(key, None)
    if binned:                                            # pmacctd's print plugin
        r.pop("peer_ip_src", None)
        r["stamp_inserted"] = at.replace(second=0, microsecond=0).strftime("%Y-%m-%d %H:%M:%S")
        if rng.random() < 0.2:
            r["stamp_updated"] = (at + timedelta(seconds=60)).strftime("%Y-%m-%d %H:%M:%S")
        if r.get("ip_proto") == "tcp" and rng.random() < 0.3:
            r.pop("tcp_flags", None)
        return r
    shape = rng.random()
    end = at + timedelta(seconds=rng.choice([0, 0.4, 2.5, 61, 700]))
    if shape < 0.6:
        r["timestamp_start"] = at.strftime("%Y-%m-%d %H:%M:%S.%f")
        r["timestamp_end"] = end.strftime("%Y-%m-%d %H:%M:%S.%f")
    elif shape < 0.7:
        r["timestamp_start"] = at.timestamp()
        r["timestamp_end"] = str(end.timestamp())
    elif shape < 0.8:
        r["timestamp_start"] = at.strftime("%Y-%m-%dT%H:%M:%S.%f") + rng.choice(["Z", "+00:00", "+0200", "-05:30"])
    elif shape < 0.9:
        r["timestamp_start"] = at.strftime("%Y-%m-%d %H:%M:%S")
        r["timestamp_end"] = "0000-00-00 00:00:00"
    else:
        r["timestamp_start"] = "1970-01-01 00:00:00"      # placeholder: the bin is used
        r["stamp_inserted"] = at.strftime("%Y-%m-%d %H:%M:00")
    for key in ("bytes", "packets"):
        if rng.random() < 0.1:
            r[key] = str(r[key])
        elif rng.random() < 0.05:
            r[key] = float(r[key])
    if r.get("ip_proto") == "tcp" and rng.random() < 0.1:
        r["tcp_flags"] = hex(int(r.get("tcp_flags") or 0))
    if rng.random() < 0.05:
        r["ip_proto"] = rng.choice(["6", "17", 6, 17, "TCP", "ipv6-icmp", 1, "gre"])
    if rng.random() < 0.03:
        r.pop("port_src", None)
    if rng.random() < 0.02:
        r["ip_src"] = rng.choice(["2001:db8::7", "::ffff:10.0.0.5", "fe80::2", "224.0.0.251", "255.255.255.255"])
    return r


# An admin's SSH session between two inside hosts and a client's connection to an outside
# server: the same 5-tuple, no flags exported; only their first record opens a connection.
_SESSIONS = [
    {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": "10.0.5.60", "ip_dst": "10.0.5.61",
     "port_src": 51515, "port_dst": 22, "ip_proto": "tcp", "packets": 40, "bytes": 9000},
    {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": "10.0.5.62", "ip_dst": "198.51.100.90",
     "port_src": 51516, "port_dst": 8443, "ip_proto": "tcp", "packets": 30, "bytes": 7000},
]


def mixed_lines(seed: int, count: int, *, repeated: float = 0.3, bad: float = 0.05) -> list[bytes]:
    """`count` lines; `repeated` of them share a timestamp with the line before."""
    rng = random.Random(seed)
    base: list[dict] = []
    for name in generate.SCENARIOS:
        base.extend(generate.raw_records(name, 5, seed=seed))
    start = datetime(2026, 3, 2, 10, 0, tzinfo=timezone.utc)
    at = start
    lines: list[bytes] = []
    binned = False
    scenarios = {name: generate.raw_records(name, 5, seed=seed) for name in generate.SCENARIOS}
    i = 0
    while len(lines) < count:
        i += 1
        if rng.random() < 0.01:
            binned = not binned
        if rng.random() < 0.008:          # a whole scenario (scan, beacon, brute force...) at its own pace
            records = scenarios[rng.choice(sorted(scenarios))]
            first = datetime.strptime(records[0]["timestamp_start"], "%Y-%m-%d %H:%M:%S.%f")
            for r in records[: count - len(lines)]:
                shifted = at + (datetime.strptime(r["timestamp_start"], "%Y-%m-%d %H:%M:%S.%f") - first)
                lines.append(json.dumps(_reshape(rng, r, shifted, binned)).encode())
            at = max(at, shifted)
            continue
        if rng.random() >= repeated:
            at += timedelta(seconds=rng.choice([0.001, 0.05, 0.5, 2.25, 10, 60, 300]))
        if i % 40 == 0:                   # long sessions without TCP flags, written again and again
            for session in _SESSIONS:
                lines.append(json.dumps(_reshape(rng, session, at, binned)).encode())
        r = dict(base[(i * 7 + rng.randrange(len(base))) % len(base)])
        if rng.random() < 0.5:
            r["ip_src"] = r["ip_src"].rpartition(".")[0] + f".{rng.randint(1, 254)}" if "." in r["ip_src"] else r["ip_src"]
            if isinstance(r.get("port_src"), int) and r["port_src"]:
                r["port_src"] = rng.randint(1024, 65535)
        r = _reshape(rng, r, at, binned)
        roll = rng.random()
        if roll < bad * 0.5:
            lines.append(json.dumps(_bad_record(rng, r)).encode())
        elif roll < bad * 0.7:
            lines.append(rng.choice(_BAD))
        elif roll < bad * 0.75:
            lines.append(b'{"ip_src": "10.0.0.1", "pad": "' + b"x" * 70000 + b'"}')   # over 64 KiB
        elif roll < bad * 0.8:
            lines.append(b"")
        else:
            lines.append(json.dumps(r).encode())
    return lines


def crash_then_resume(src, out, state, crash: str, check_delivery=None) -> None:
    """Run the normaliser over `src` in a child killed inside its next delivery: after
    appending it (`after_the_append`), before (`before_the_append`), or after another
    writer appended to the same output first (`after_another_writer_appended`); then run it
    again in this process, as a restart would. `check_delivery(data)` sees the delivery."""
    import multiprocessing
    import os

    from wazuh_anomaly.netflow.settings import NetflowSettings
    from wazuh_anomaly.netflow.stream import FileOutput, normalize_file

    class Crashing(FileOutput):
        def __call__(self, data: bytes) -> None:
            if check_delivery is not None:
                check_delivery(data)
            if crash == "after_another_writer_appended":   # e.g. an nfacctd normaliser on the same file
                super().__call__(b'{"other": "writer"}\n')
            if crash != "before_the_append":
                super().__call__(data)
            os._exit(3)                                     # killed before the state save

    child = multiprocessing.get_context("fork").Process(
        target=lambda: normalize_file(src, Crashing(out), NetflowSettings(), state_file=state))
    child.start()
    child.join()
    assert child.exitcode == 3
    normalize_file(src, FileOutput(out), NetflowSettings(), state_file=state)


def bench_inputs(folder: Path, records: int, kinds=("distinct", "repeated")) -> dict[str, Path]:
    """The records bench/bench_netflow.py times (the shared data's real pmacct records and
    every generated scenario, addresses and ports varied), written to `folder` once per kind
    of time it rewrites them to: {kind: file}."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")
    sys.path.insert(0, bench)
    try:
        import bench_netflow
    finally:
        sys.path.remove(bench)
    source = folder / "bench-source.json"
    bench_netflow.build_input(source, records, None)
    timed = {}
    for kind in kinds:
        timed[kind] = folder / f"bench-{kind}.json"
        bench_netflow.timed_input(source, timed[kind], kind)
    return timed
