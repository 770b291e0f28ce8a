"""NetFlow detections on traffic: scapy pcaps through the real pmacctd and nfacctd
(tests/netflow_traffic.py), and synthetic records for the statistics. Ordinary office
traffic raises nothing; scans, password guessing and beacons are tagged through both
collectors (issue 15)."""
from __future__ import annotations

import random
from dataclasses import replace

import orjson
import pytest

import netflow_traffic as traffic
from netflow_traffic import START, connection, udp
from wazuh_anomaly.netflow.settings import NetflowSettings, Thresholds
from wazuh_anomaly.netflow.stream import FlowPipeline

# An admin who names their own networks: link-local and multicast are NOT listed.
OFFICE = NetflowSettings(internal_networks=("10.0.0.0/8", "fd00::/8"))


def run(records: list[dict], settings: NetflowSettings = OFFICE) -> list[dict]:
    pipeline = FlowPipeline(settings)
    return [pipeline.event(r) for r in records]


def tags_of(events: list[dict], *, src: str | None = None) -> list[str]:
    return [t for e in events if src is None or e["source"]["ip"] == src for t in e["anomaly"]["tags"]]


# -- ordinary traffic: nothing -----------------------------------------------------------

def office_packets() -> list:
    rng = random.Random(3)
    p = []
    for i in range(60):                   # an hour of service announcements, every minute
        t = START + i * 60 + rng.uniform(0, 1)
        p.append(udp(t, "10.0.5.21", "224.0.0.251", 5353, 5353))                 # mDNS
        p.append(udp(t + 1, "10.0.5.22", "239.255.255.250", 40000 + i, 1900))   # SSDP M-SEARCH
        p.append(udp(t + 2, "0.0.0.0", "255.255.255.255", 68, 67))              # DHCP discover
        p.append(udp(t + 3, "169.254.10.20", "169.254.255.255", 5000 + i, 6000))  # link-local
        p.append(udp(t + 4, "fe80::1", "ff02::fb", 5353, 5353))                  # mDNS over IPv6
        p.append(udp(t + 5, "fe80::2", "fe80::3", 40000 + i, 8888))            # link-local IPv6
    # an admin's SSH session of an hour, a keystroke echo every 10 s
    p += connection(START + 5, "10.0.5.50", "10.0.5.10", 50022, 22, exchanges=360, gap=10)
    # and one to a server outside
    p += connection(START + 7, "10.0.5.50", "192.0.2.10", 50023, 22, exchanges=360, gap=10)
    # an application server's pool of 20 database connections, open for the hour
    for c in range(20):
        p += connection(START + 30 + c * 0.05, "10.0.5.60", "10.0.5.70", 41000 + c, 5432,
                        exchanges=120, gap=30, close=False)
    return p


@pytest.fixture(scope="module")
def office(tmp_path_factory):
    traffic.need_pmacct()
    work = tmp_path_factory.mktemp("office")
    pcap = traffic.write_pcap(work / "office.pcap", office_packets())
    return {name: collect(pcap, work) for name, collect in traffic.COLLECTORS.items()}


@pytest.mark.parametrize("collector", ["pmacctd", "nfacctd"])
def test_multicast_broadcast_and_link_local_are_never_outbound_nor_tagged(office, collector):
    events = run(office[collector])
    senders = {"10.0.5.21", "10.0.5.22", "0.0.0.0", "169.254.10.20", "fe80::1", "fe80::2"}
    local = [e for e in events if e["source"]["ip"] in senders]
    assert {e["source"]["ip"] for e in local} == senders      # the collector saw every one
    assert {e["flow"]["direction"] for e in local} == {"internal_to_internal"}
    assert tags_of(local) == []


@pytest.mark.parametrize("collector", ["pmacctd", "nfacctd"])
def test_an_hour_long_ssh_session_is_no_brute_force_and_at_most_one_lateral_movement(office, collector):
    events = run(office[collector])
    inside = [e for e in events if e["destination"]["ip"] == "10.0.5.10"]
    outside = [e for e in events if e["destination"]["ip"] == "192.0.2.10"]
    assert inside and outside
    assert tags_of(inside) == ["possible_lateral_movement"]     # its opening, not every minute of it
    assert tags_of(outside) == []


@pytest.mark.parametrize("collector", ["pmacctd", "nfacctd"])
def test_a_connection_pool_of_20_long_flows_raises_nothing(office, collector):
    events = run(office[collector])
    pool = [e for e in events if e["destination"]["ip"] == "10.0.5.70"]
    assert len(pool) >= 20
    assert tags_of(pool) == []


def test_the_whole_office_hour_raises_nothing_but_the_admins_one_ssh_login(office):
    for collector in ("pmacctd", "nfacctd"):
        assert tags_of(run(office[collector])) == ["possible_lateral_movement"], collector


# -- brute force: new attempts, bounded state ------------------------------------------------

def _nfacctd_record(ts: float, src: str, dst: str, sport: int, dport: int, flags: int, duration: float = 2.0,
                    packets: int = 12) -> dict:
    from datetime import datetime, timezone
    fmt = lambda x: datetime.fromtimestamp(x, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")  # noqa: E731
    return {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": src, "ip_dst": dst, "port_src": sport,
            "port_dst": dport, "tcp_flags": str(flags), "ip_proto": "tcp", "timestamp_start": fmt(ts),
            "timestamp_end": fmt(ts + duration), "packets": packets, "bytes": packets * 120}


def test_password_guessing_is_still_brute_force_while_long_sessions_without_flags_are_not():
    guesses = [_nfacctd_record(START + i * 3, "203.0.113.45", "10.0.5.22", 41000 + i, 22, 27) for i in range(25)]
    assert "possible_brute_force" in tags_of(run(guesses))
    # an exporter without TCP flags: 25 pooled connections of an hour each are no guesses
    pool = [_nfacctd_record(START + i * 0.1, "10.0.5.60", "10.0.5.71", 42000 + i, 3306, 0, duration=3600,
                            packets=500) for i in range(25)]
    assert "possible_brute_force" not in tags_of(run(pool))


def test_brute_force_window_state_stays_small_with_many_flows_on_one_key():
    pipeline = FlowPipeline(OFFICE)
    for i in range(20_000):     # one attacker, one service, 20,000 attempts in the same 300 s
        pipeline.event(_nfacctd_record(START + i * 0.01, "203.0.113.45", "10.0.5.22", 1024 + i % 60000, 22, 27))
    state = pipeline.detector.to_json()
    assert len(state["brute"]["203.0.113.45>10.0.5.22:22"]) <= pipeline.detector.t.brute_force_connections
    assert len(orjson.dumps(state)) < 50_000


# -- attacks: tagged through both collectors -------------------------------------------------

SCANNERS = {2: ("10.0.5.30", "10.0.6.28"), 4: ("10.0.5.31", "10.0.6.29")}   # retransmissions: scanner, target
C2_PERIODS = {2.25: ("10.0.5.23", "198.51.100.77"), 300: ("10.0.5.25", "198.51.100.79")}
RANDOM = ("10.0.5.24", "198.51.100.78")    # the control: Poisson connections, mean gap 20 s


def attack_packets() -> list:
    rng = random.Random(5)
    p = []
    for retransmissions, (scanner, target) in SCANNERS.items():
        ports = rng.sample(range(1, 65536), 100)     # 100 ports, none answers: every SYN is retransmitted
        for i, port in enumerate(ports):
            p += traffic.syn_probe(START + 100 + i * 0.05, scanner, target, 45000 + retransmissions, port,
                                   retransmissions)
    for period, (client, server) in C2_PERIODS.items():
        duration = 1500 if period < 60 else 20 * period
        times = traffic.jittered(period, int(duration / period), rng)
        p += traffic.beacon_packets(times, client, server, 443)
    p += traffic.beacon_packets(traffic.poisson(20, 7200, rng), *RANDOM, 443, first_sport=20000)
    for i in range(30):                               # password guessing from outside, one try every 3 s
        p += connection(START + 200 + i * 3, "203.0.113.45", "10.0.5.22", 30000 + i, 22, exchanges=3)
    return p


@pytest.fixture(scope="module")
def attacks(tmp_path_factory):
    traffic.need_pmacct()
    work = tmp_path_factory.mktemp("attacks")
    pcap = traffic.write_pcap(work / "attacks.pcap", attack_packets())
    records = {name: collect(pcap, work) for name, collect in traffic.COLLECTORS.items()}
    records["pmacctd without tcpflags"] = traffic.pmacctd(pcap, work, tcpflags=False)
    return {name: run(r) for name, r in records.items()}


COLLECTED = ["pmacctd", "nfacctd", "pmacctd without tcpflags"]


@pytest.mark.parametrize("retransmissions", sorted(SCANNERS))
@pytest.mark.parametrize("collector", COLLECTED)
def test_a_100_port_scan_with_syn_retransmissions_is_tagged(attacks, collector, retransmissions):
    scanner, target = SCANNERS[retransmissions]
    probes = [e for e in attacks[collector] if e["source"]["ip"] == scanner]
    assert {e["destination"]["ip"] for e in probes} == {target}
    tagged = [e for e in probes if "possible_port_scan" in e["anomaly"]["tags"]]
    # every probe from the 15th port on (pmacctd may split a probe's retransmissions over two bins)
    assert len({e["destination"]["port"] for e in tagged}) >= 100 - 15, (len(probes), len(tagged))
    assert any(e["anomaly"].get("escalated") == "true" for e in tagged)


@pytest.mark.parametrize("collector", COLLECTED)
def test_password_guessing_over_ssh_is_tagged(attacks, collector):
    events = [e for e in attacks[collector] if e["source"]["ip"] == "203.0.113.45"]
    assert "possible_brute_force" in tags_of(events)


@pytest.mark.parametrize("period", sorted(C2_PERIODS))
@pytest.mark.parametrize("collector", ["pmacctd", "nfacctd"])
def test_a_c2_beacon_with_10_percent_jitter_is_tagged(attacks, collector, period):
    client, _ = C2_PERIODS[period]
    assert "possible_beaconing" in tags_of(attacks[collector], src=client)


@pytest.mark.parametrize("collector", ["pmacctd", "nfacctd"])
def test_random_connections_every_20_s_on_average_are_no_beacon(attacks, collector):
    events = [e for e in attacks[collector] if e["source"]["ip"] == RANDOM[0]]
    assert len(events) > 300
    assert tags_of(events) == []


# -- beaconing statistics: synthetic records, both kinds of time -------------------------------

def _record(kind: str, ts: float, sport: int, src: str = "10.0.5.40", dst: str = "198.51.100.90") -> dict:
    from datetime import datetime, timezone
    fmt = lambda x, f: datetime.fromtimestamp(x, timezone.utc).strftime(f)  # noqa: E731
    record = {"event_type": "purge", "ip_src": src, "ip_dst": dst, "port_src": sport, "port_dst": 443,
              "tcp_flags": "27", "ip_proto": "tcp", "packets": 8, "bytes": 1800}
    if kind == "exact":       # nfacctd: the flow's own times
        record.update(peer_ip_src="10.0.0.1", timestamp_start=fmt(ts, "%Y-%m-%d %H:%M:%S.%f"),
                      timestamp_end=fmt(ts + 0.2, "%Y-%m-%d %H:%M:%S.%f"))
    else:                     # pmacctd: the start of the flow's one-minute bin
        record["stamp_inserted"] = fmt(ts // 60 * 60, "%Y-%m-%d %H:%M:%S")
    return record


def _beacon_tags(kind: str, times: list[float], rng: random.Random) -> list[bool]:
    records = [_record(kind, START + t, 1024 + i % 60000) for i, t in enumerate(times)]
    if kind == "binned":      # a purge writes a bin's records in its cache's order, not in time order
        by_bin: dict[str, list] = {}
        for r in records:
            by_bin.setdefault(r["stamp_inserted"], []).append(r)
        records = [r for group in by_bin.values() for r in rng.sample(group, len(group))]
    return ["possible_beaconing" in e["anomaly"]["tags"] for e in run(records)]


# mean gap -> seconds of traffic: long enough that every test the detector has is applied
POISSON = {2: 2400, 5: 2400, 10: 7200, 20: 7200, 30: 7200, 60: 10800}


@pytest.mark.parametrize("kind", ["exact", "binned"])
def test_random_connections_at_2_to_60_s_mean_gaps_are_never_beaconing_in_100_seeds(kind):
    tagged = {}
    for gap, duration in POISSON.items():
        for seed in range(100):
            rng = random.Random(f"{kind}:{gap}:{seed}")
            n = sum(_beacon_tags(kind, traffic.poisson(gap, duration, rng), rng))
            if n:
                tagged[(gap, seed)] = n
    assert tagged == {}


# period -> seconds of traffic: enough for the slowest test (binned 60 s: ~2 hours)
PERIODS = {1: 1500, 2.25: 1500, 10: 3600, 60: 3 * 3600, 300: 3 * 3600}


@pytest.mark.parametrize("period", sorted(PERIODS))
@pytest.mark.parametrize("kind", ["exact", "binned"])
def test_a_beacon_with_10_percent_jitter_is_tagged(kind, period):
    for seed in range(5):
        rng = random.Random(f"{kind}:{period}:{seed}")
        start = rng.uniform(0, 60)            # a beacon starts anywhere within a minute
        tags = _beacon_tags(kind, traffic.jittered(period, int(PERIODS[period] / period), rng, start=start), rng)
        last = tags[len(tags) * 4 // 5:]
        assert sum(last) >= 0.9 * len(last), (seed, sum(tags), len(tags))
