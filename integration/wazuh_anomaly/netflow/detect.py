"""Flow detections: sliding windows over flow time that tag normalised flow events.

Each tag names what the flow is part of; rules 117001-117008 (and 117040) turn tags into
alerts. A port-scan flow also carries `anomaly.port_scan.repeat`, the port-scan flows of
its source within `port_scan_repeat_window` seconds of flow time (itself included), and
`anomaly.escalated` = "true" from `port_scan_repeat` on (rule 117009): decided here from
flow time, not by a counting rule in wazuh-analysisd, which counts arrival time.
The windows survive between runs (`to_json` / `from_json`, written atomically
by the caller), so a scan split across two runs is still one scan. Memory is bounded by
`thresholds.max_tracked` keys per window.
"""
from __future__ import annotations

import math

from . import tables
from .normalize import is_reply
from .settings import NetflowSettings

TAGS = (
    "possible_port_scan",
    "high_outbound_bytes",
    "possible_beaconing",
    "possible_lateral_movement",
    "suspicious_dns_flow",
    "external_inbound_sensitive_service",
    "unusual_outbound_port",
    "possible_dos",
    "possible_brute_force",
)
STATE_VERSION = 1
_BIN_SECONDS = 60   # pmacctd's print plugin stamps flows with the start of their 1-minute bin


class _Seen:
    """key -> {member: last seen}: how many distinct members a key had within the window."""

    def __init__(self, window: float, limit: int, data: dict | None = None):
        self.window = window
        self.limit = limit
        self.data: dict[str, dict[str, float]] = data or {}

    def add(self, key: str, member: str, ts: float, threshold: int) -> bool:
        members = self.data.get(key)
        if members is None:
            if len(self.data) >= self.limit:
                _evict(self.data, ts - self.window, lambda m: max(m.values(), default=0.0))
            members = self.data[key] = {}
        members[member] = ts
        if len(members) < threshold:
            return False
        horizon = ts - self.window
        stale = [m for m, seen in members.items() if seen < horizon]
        for m in stale:
            del members[m]
        return len(members) >= threshold


class _Sum:
    """key -> [[ts, amount], ...] and their total within the window."""

    def __init__(self, window: float, limit: int, data: dict | None = None):
        self.window = window
        self.limit = limit
        self.data: dict[str, list] = data or {}

    def add(self, key: str, ts: float, amount: float) -> tuple[int, float]:
        entry = self.data.get(key)
        if entry is None:
            if len(self.data) >= self.limit:
                _evict(self.data, ts - self.window, lambda e: e[1][-1][0] if e[1] else 0.0)
            entry = self.data[key] = [0.0, []]
        items = entry[1]
        items.append([ts, amount])
        entry[0] += amount
        horizon = ts - self.window
        drop = 0
        while drop < len(items) and items[drop][0] < horizon:
            entry[0] -= items[drop][1]
            drop += 1
        if drop:
            del items[:drop]
        return len(items), entry[0]


def _number(x) -> bool:
    return type(x) in (int, float) and x - x == 0          # not NaN, not infinite, not a bool


def well_formed(state) -> bool:
    """A saved detector state as to_json() writes it; anything else starts the windows empty."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return False
    for name in ("scan_ports", "scan_hosts"):
        seen = state.get(name) or {}
        if not isinstance(seen, dict) or not all(
                isinstance(m, dict) and all(_number(t) for t in m.values()) for m in seen.values()):
            return False
    for name in ("brute", "outbound", "dns", "dos"):
        sums = state.get(name) or {}
        if not isinstance(sums, dict) or not all(
                isinstance(e, list) and len(e) == 2 and _number(e[0]) and isinstance(e[1], list)
                and all(isinstance(i, list) and len(i) == 2 and _number(i[0]) and _number(i[1]) for i in e[1])
                for e in sums.values()):
            return False
    beacons = state.get("beacons") or {}
    return isinstance(beacons, dict) and all(
        isinstance(b, list) and all(_number(t) for t in b) for b in beacons.values())


def _evict(data: dict, horizon: float, last_seen) -> None:
    """Drops keys not seen within the window; if none, the oldest tenth (insertion order)."""
    stale = [k for k, v in data.items() if last_seen(v) < horizon]
    if not stale:
        stale = list(data)[: max(1, len(data) // 10)]
    for k in stale:
        del data[k]


def _is_probe(event: dict) -> bool:
    """A flow that carried no data: a scan probe rather than a conversation."""
    protocol = event["flow"]["protocol"]
    packets = event["network"]["packets"]
    if protocol == "tcp":
        flags = event["_flags"]
        if flags:
            return not flags & 0x08 and packets <= 4   # no PSH: no payload was pushed
        return packets <= 3
    if protocol in tables.ICMP_PROTOCOLS:
        return True
    return packets <= 2


class FlowDetector:
    """Tags flows; `observe(event)` appends to `event["anomaly"]["tags"]` and returns the tags."""

    def __init__(self, settings: NetflowSettings | None = None, state: dict | None = None):
        self.settings = s = settings or NetflowSettings()
        t = s.thresholds
        state = state if well_formed(state) else {}
        self.scan_ports = _Seen(t.port_scan_window, t.max_tracked, state.get("scan_ports"))
        self.scan_hosts = _Seen(t.port_scan_window, t.max_tracked, state.get("scan_hosts"))
        self.brute = _Sum(t.brute_force_window, t.max_tracked, state.get("brute"))
        self.outbound = _Sum(t.high_outbound_window, t.max_tracked, state.get("outbound"))
        self.dns = _Sum(t.dns_window, t.max_tracked, state.get("dns"))
        self.dos = _Sum(t.dos_window, t.max_tracked, state.get("dos"))
        self.scan_repeat = _Sum(t.port_scan_repeat_window, t.max_tracked, state.get("scan_repeat"))
        self.beacons: dict[str, list[float]] = state.get("beacons") or {}
        self.lateral = frozenset(s.lateral_movement_ports)
        self.sensitive = frozenset(s.sensitive_inbound_ports)
        self.usual_out = frozenset(s.usual_outbound_ports)
        self.beacon_ignored = frozenset(s.beaconing_ignored_ports)
        self.brute_ports = frozenset(s.brute_force_ports)
        self.dns_ports = frozenset(tables.DNS_PORTS)
        self.t = t

    def to_json(self) -> dict:
        return {"version": STATE_VERSION, "scan_ports": self.scan_ports.data, "scan_hosts": self.scan_hosts.data,
                "brute": self.brute.data, "outbound": self.outbound.data, "dns": self.dns.data,
                "dos": self.dos.data, "beacons": self.beacons, "scan_repeat": self.scan_repeat.data}

    def observe(self, event: dict) -> list[str]:
        t = self.t
        ts = event["_ts"]
        flow = event["flow"]
        protocol = flow["protocol"]
        direction = flow["direction"]
        src = event["source"]["ip"]
        dst = event["destination"]["ip"]
        dport = event["destination"].get("port")
        tags = event["anomaly"]["tags"]
        if is_reply(event):
            return tags
        packets = event["network"]["packets"]
        has_ports = dport is not None and protocol in tables.PORT_PROTOCOLS

        # port scan: many ports of one host, or one port (or ICMP) across many hosts, by probes
        if _is_probe(event):
            scanned = False
            if has_ports:
                scanned = self.scan_ports.add(f"{src}>{dst}", str(dport), ts, t.port_scan_ports)
            lane = f"{src}>{protocol}:{dport}" if has_ports else f"{src}>{protocol}"
            if self.scan_hosts.add(lane, dst, ts, t.port_scan_hosts) or scanned:
                tags.append("possible_port_scan")
                repeat, _ = self.scan_repeat.add(src, ts, 1)
                event["anomaly"]["port_scan"] = {"repeat": repeat}
                if repeat >= t.port_scan_repeat:
                    event["anomaly"]["escalated"] = "true"

        if direction == "internal_to_external":
            _, sent = self.outbound.add(src, ts, event["network"]["bytes"])
            if sent >= t.high_outbound_bytes:
                tags.append("high_outbound_bytes")

        if event["_src_internal"] and has_ports and dport not in self.beacon_ignored:
            if self._beaconing(f"{src}>{dst}:{protocol}/{dport}", ts):
                tags.append("possible_beaconing")

        if direction == "internal_to_internal" and has_ports and dport in self.lateral:
            tags.append("possible_lateral_movement")

        if has_ports and dport in self.dns_ports:
            flows, sent = self.dns.add(src, ts, event["network"]["bytes"])
            if flows >= t.dns_flows or sent >= t.dns_bytes:
                tags.append("suspicious_dns_flow")

        if direction == "external_to_internal" and has_ports and dport in self.sensitive:
            tags.append("external_inbound_sensitive_service")

        if direction == "internal_to_external" and has_ports and dport not in self.usual_out:
            tags.append("unusual_outbound_port")

        _, received = self.dos.add(dst, ts, packets)
        if received >= t.dos_packets:
            tags.append("possible_dos")

        if protocol == "tcp" and has_ports and dport in self.brute_ports:
            connections, _ = self.brute.add(f"{src}>{dst}:{dport}", ts, 1)
            if connections >= t.brute_force_connections:
                tags.append("possible_brute_force")
        return tags

    def _beaconing(self, key: str, ts: float) -> bool:
        """Regular intervals over enough connections: the spread of the intervals is small
        against their mean (allowing for pmacctd's 1-minute time bins)."""
        t = self.t
        times = self.beacons.get(key)
        if times is None:
            if len(self.beacons) >= t.max_tracked:
                _evict(self.beacons, ts - 86400, lambda v: v[-1] if v else 0.0)
            times = self.beacons[key] = []
        times.append(ts)
        keep = max(t.beaconing_min_connections, 16)
        if len(times) > keep:
            del times[: len(times) - keep]
        if len(times) < t.beaconing_min_connections:
            return False
        recent = times[-t.beaconing_min_connections:]
        intervals = [b - a for a, b in zip(recent, recent[1:])]
        mean = sum(intervals) / len(intervals)
        if mean < t.beaconing_min_interval:
            return False
        binned = all(x % _BIN_SECONDS == 0 for x in recent)
        allowed = max(t.beaconing_max_jitter * mean, _BIN_SECONDS / 2 if binned else 0.0)
        spread = math.sqrt(sum((x - mean) ** 2 for x in intervals) / len(intervals))  # statistics.pstdev is 10x slower
        return spread <= allowed
