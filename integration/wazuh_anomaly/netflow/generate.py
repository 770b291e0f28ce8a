"""Synthetic pmacct flows for every flow detection: safe test events (documentation and
private addresses only) for admins validating the rules with wazuh-logtest, and the
source of the rule tests in tests/ruleset/wazuh_anomaly_netflow_rules.ini.

Each scenario writes raw nfacctd-style records (`raw_records`); `tagged_events` runs them
through the real normaliser and detector and keeps the events that carry the
scenario's tag, so what an admin feeds wazuh-logtest is exactly what the collector
would write.
"""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Callable

from .settings import NetflowSettings
from .stream import FlowPipeline

START = datetime(2026, 3, 2, 10, 0, 0, tzinfo=timezone.utc)
EXPORTER = "10.0.0.1"
SCAN_LAST_PORT = 47775   # the example: a SYN from 192.168.56.30 to 192.168.56.28:47775


def _flow(ts: datetime, src: str, dst: str, sport: int, dport: int, proto: str = "tcp", *,
          flags: int = 27, packets: int = 10, bytes_: int = 1500, duration: float = 1.0) -> dict:
    end = ts + timedelta(seconds=duration)
    return {"event_type": "purge", "peer_ip_src": EXPORTER, "ip_src": src, "ip_dst": dst,
            "port_src": sport, "port_dst": dport, "tcp_flags": str(flags if proto == "tcp" else 0),
            "ip_proto": proto,
            "timestamp_start": ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "timestamp_end": end.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "packets": packets, "bytes": bytes_}


def _at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def port_scan(rng: random.Random, n: int, t) -> list[dict]:
    ports = rng.sample([p for p in range(1, 65536) if p != SCAN_LAST_PORT], t.port_scan_ports - 2 + n)
    ports.append(SCAN_LAST_PORT)
    return [_flow(_at(i * 0.05), "192.168.56.30", "192.168.56.28", 40000 + i, p,
                  flags=2, packets=1, bytes_=44, duration=0.0) for i, p in enumerate(ports)]


def icmp_sweep(rng: random.Random, n: int, t) -> list[dict]:
    hosts = [f"192.168.56.{h}" for h in range(1, 255) if h != 30][: t.port_scan_hosts - 1 + n]
    return [_flow(_at(i * 0.2), "192.168.56.30", h, 0, 8 * 256, "icmp", packets=1, bytes_=28, duration=0.0)
            for i, h in enumerate(hosts)]


def high_outbound(rng: random.Random, n: int, t) -> list[dict]:
    size = t.high_outbound_bytes // 4 + 1
    return [_flow(_at(i * 300), "10.0.5.20", "203.0.113.50", 50000 + i, 443, packets=size // 1400,
                  bytes_=size, duration=290) for i in range(3 + n)]


def beaconing(rng: random.Random, n: int, t) -> list[dict]:
    return [_flow(_at(i * 300 + rng.uniform(-1.5, 1.5)), "10.0.5.23", "198.51.100.77", 51000 + i, 8443,
                  packets=6, bytes_=900) for i in range(t.beaconing_min_connections - 1 + n)]


def random_traffic(rng: random.Random, n: int, t) -> list[dict]:
    """The control for beaconing: the same host and port at random (Poisson) times."""
    at, flows = 0.0, []
    for i in range(max(n, t.beaconing_min_connections * 3)):
        at += rng.expovariate(1 / 300)
        flows.append(_flow(_at(at), "10.0.5.24", "198.51.100.77", 52000 + i, 8443, packets=6, bytes_=900))
    return flows


def lateral_movement(rng: random.Random, n: int, t) -> list[dict]:
    ports = (445, 3389, 22, 5985, 5986, 1433, 3306)
    return [_flow(_at(i * 7), "10.0.5.30", f"10.0.5.{40 + i % 5}", 53000 + i, ports[i % len(ports)])
            for i in range(n)]


def dns(rng: random.Random, n: int, t) -> list[dict]:
    return [_flow(_at(i * 0.5), "10.0.5.31", "10.0.0.53", 30000 + i, 53, "udp", packets=2, bytes_=310, duration=0.01)
            for i in range(t.dns_flows - 1 + n)]


def external_inbound(rng: random.Random, n: int, t) -> list[dict]:
    return [_flow(_at(i * 40), "203.0.113.9", "10.0.5.10", 60000 + i, 3389, packets=12, bytes_=2400)
            for i in range(n)]


def unusual_outbound(rng: random.Random, n: int, t) -> list[dict]:
    return [_flow(_at(i * 13), "10.0.5.32", "192.0.2.66", 54000 + i, 4444, packets=20, bytes_=5000)
            for i in range(n)]


def dos(rng: random.Random, n: int, t) -> list[dict]:
    per_flow = t.dos_packets // 3 + 1
    return [_flow(_at(i * 2), f"198.51.100.{100 + i}", "10.0.5.80", 40000 + i, 80, flags=2,
                  packets=per_flow, bytes_=per_flow * 40, duration=2) for i in range(2 + n)]


def brute_force(rng: random.Random, n: int, t) -> list[dict]:
    return [_flow(_at(i * 3), "203.0.113.45", "10.0.5.22", 41000 + i, 22, packets=14, bytes_=2900, duration=2.5)
            for i in range(t.brute_force_connections - 1 + n)]


# scenario -> (raw records, the tag its events carry)
SCENARIOS: dict[str, tuple[Callable, str | None]] = {
    "port_scan": (port_scan, "possible_port_scan"),
    "icmp_sweep": (icmp_sweep, "possible_port_scan"),
    "high_outbound": (high_outbound, "high_outbound_bytes"),
    "beaconing": (beaconing, "possible_beaconing"),
    "lateral_movement": (lateral_movement, "possible_lateral_movement"),
    "dns": (dns, "suspicious_dns_flow"),
    "external_inbound": (external_inbound, "external_inbound_sensitive_service"),
    "unusual_outbound": (unusual_outbound, "unusual_outbound_port"),
    "dos": (dos, "possible_dos"),
    "brute_force": (brute_force, "possible_brute_force"),
    "random_traffic": (random_traffic, None),
}
ALL = [name for name, (_, tag) in SCENARIOS.items() if tag]   # the control is asked for by name


def raw_records(scenario: str, count: int, *, seed: int = 7, settings: NetflowSettings | None = None) -> list[dict]:
    settings = settings or NetflowSettings()
    make, _ = SCENARIOS[scenario]
    return make(random.Random(f"{seed}:{scenario}"), count, settings.thresholds)


def tagged_events(scenario: str, count: int, *, seed: int = 7, settings: NetflowSettings | None = None) -> list[dict]:
    """The last `count` normalised events of the scenario that carry its tag (for the
    control scenario: its last `count` events, which carry none)."""
    settings = settings or NetflowSettings()
    pipeline = FlowPipeline(settings)
    _, tag = SCENARIOS[scenario]
    events = [pipeline.event(r) for r in raw_records(scenario, count, seed=seed, settings=settings)]
    chosen = [e for e in events if tag is None or tag in e["anomaly"]["tags"]]
    return chosen[-count:]
