"""Flow detections: sliding windows over flow time that tag normalised flow events.

Each tag names what the flow is part of; rules 117001-117008 (and 117040) turn tags into
alerts. A port-scan flow also carries `anomaly.port_scan.repeat`, the port-scan flows of
its source within `port_scan_repeat_window` seconds of flow time (itself included), and
`anomaly.escalated` = "true" from `port_scan_repeat` on (rule 117009): decided here from
flow time, not by a counting rule in wazuh-analysisd, which counts arrival time.
The windows survive between runs (`to_json` / `from_json`, written atomically
by the caller), so a scan split across two runs is still one scan. Memory is bounded by
`thresholds.max_tracked` keys per window, and each key by a small constant (the
threshold it is compared with, or a few hundred time buckets): a key hit by millions of
flows costs no more than one hit by a few.

What counts, per detection:
- a connection *opening* (lateral movement, brute force, beaconing): a TCP flow whose
  flags include SYN; without exported flags, a 5-tuple not seen within the last hour
  (pmacctd writes a long session once a minute, nfacctd at every active timeout);
- a brute-force *attempt*: an opening that did not stay open: SYN without ACK, or closed
  in the same record (FIN or RST); without flags, shorter than a minute (nfacctd's
  durations) — a pool of long database connections or an admin's SSH session never counts;
- a scan *probe*: a TCP SYN without ACK (however many retransmissions), FIN/NULL/Xmas
  probes, or a handshake with no payload (no PSH, few packets); without flags, a flow of
  header-sized packets only (retransmissions included); a closed port's RST reply is
  evidence against the client that knocked;
- multicast, broadcast and link-local destinations (mDNS, SSDP, DHCP, neighbour
  discovery) are local traffic: never outbound, never scan targets, never beacons.
"""
from __future__ import annotations

import bisect
import math

from . import tables
from .normalize import PRIVATE
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
STATE_VERSION = 2
_ICMP = tables.ICMP_PROTOCOLS
_PORT_PROTOCOLS = tables.PORT_PROTOCOLS
_SERVICES = tables.SERVICES
_EPHEMERAL = tables.EPHEMERAL_PORT_START
SYN, ACK, RST, FIN, PSH = tables.SYN, tables.ACK, tables.RST, 0x01, 0x08
_SESSION_IDLE = 3600.0      # a 5-tuple seen again within this is the same session (no flags exported)
_ATTEMPT_SECONDS = 60.0     # without flags: a login attempt is shorter than this
_PROBE_PACKET_BYTES = 100   # a packet of this size or less carries no payload (IPv6 + TCP options: 80)
_PROBE_MAX_PACKETS = 8      # a probe and its retransmissions
_SUM_BUCKETS = 256          # time buckets per key of a byte/packet window (resolution window/256)
# Beaconing. Exact times (nfacctd): the spread of the last intervals. Binned times
# (pmacctd's one-minute bins): sparse beacons (mean interval >= 2 bins) by their intervals,
# with the bins' rounding (variance bin^2/6 per interval) taken out; denser ones by
# the counts per block of bins, which for a periodic source barely vary (Fano factor
# var/mean near 0) and for random traffic vary as much as their mean (Fano near 1).
_BIN = 60.0
_BLOCK_EVENTS = 8           # a block holds at least this many openings on average
_MIN_BLOCKS = 16            # ... and at least this many blocks are compared
_MAX_FANO = 0.1             # random (Poisson) traffic: 1; a beacon with 10 % jitter: < 0.04
_MAX_BINS = 512             # bins kept per key (8.5 hours)


class _Seen:
    """key -> {member: last seen}: whether a key had `threshold` distinct members within
    the window. Each key keeps only its `threshold` most recently seen members (that is
    all the question needs), least recent first."""

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
        else:
            members.pop(member, None)          # re-inserted last: the dict stays in last-seen order
        members[member] = ts
        if len(members) > threshold:
            del members[next(iter(members))]
        if len(members) < threshold:
            return False
        # the least recently seen member (first in the dict) decides
        return next(iter(members.values())) >= ts - self.window


class _Sum:
    """key -> [total, count, [[ts, amount, count], ...]]: amounts and flows within the window,
    in at most _SUM_BUCKETS time buckets per key."""

    def __init__(self, window: float, limit: int, data: dict | None = None):
        self.window = window
        self.limit = limit
        self.step = window / _SUM_BUCKETS
        self.data: dict[str, list] = data or {}

    def add(self, key: str, ts: float, amount: float) -> list:
        """Adds; returns the key's entry: [total amount, flows, buckets] within the window."""
        entry = self.data.get(key)
        if entry is not None:
            items = entry[2]
            last = items[-1]
            if ts < last[0] + self.step:     # the newest bucket (or a little out of order): the common case
                last[1] += amount
                last[2] += 1
                entry[0] += amount
                entry[1] += 1
                if items[0][0] >= ts - self.window:
                    return entry
            else:
                items.append([ts, amount, 1])
                entry[0] += amount
                entry[1] += 1
        else:
            if len(self.data) >= self.limit:
                _evict(self.data, ts - self.window, lambda e: e[2][-1][0] if e[2] else 0.0)
            entry = self.data[key] = [amount, 1, [[ts, amount, 1]]]
            return entry
        horizon = ts - self.window
        drop = 0
        while drop < len(items) - 1 and items[drop][0] < horizon:
            entry[0] -= items[drop][1]
            entry[1] -= items[drop][2]
            drop += 1
        if drop:
            del items[:drop]
        return entry


class _Recent:
    """key -> the last `keep` times: whether `threshold` of them fall within the window,
    and how many do (up to `keep`)."""

    def __init__(self, window: float, limit: int, keep: int, data: dict | None = None):
        self.window = window
        self.limit = limit
        self.keep = keep
        self.data: dict[str, list[float]] = data or {}

    def add(self, key: str, ts: float) -> int:
        times = self.data.get(key)
        if times is None:
            if len(self.data) >= self.limit:
                _evict(self.data, ts - self.window, lambda v: v[-1] if v else 0.0)
            times = self.data[key] = []
        if not times or ts >= times[-1]:
            times.append(ts)
        else:
            bisect.insort(times, ts)
        if len(times) > self.keep:
            del times[0]
        horizon = ts - self.window
        if times[0] >= horizon:
            return len(times)
        return len(times) - bisect.bisect_left(times, horizon)


def _number(x) -> bool:
    return type(x) in (int, float) and x - x == 0          # not NaN, not infinite, not a bool


def _numbers(values, n: int) -> bool:
    return isinstance(values, list) and len(values) == n and all(_number(v) for v in values)


def well_formed(state) -> bool:
    """A saved detector state as to_json() writes it; anything else starts the windows empty."""
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        return False
    for name in ("scan_ports", "scan_hosts"):
        seen = state.get(name) or {}
        if not isinstance(seen, dict) or not all(
                isinstance(m, dict) and all(_number(t) for t in m.values()) for m in seen.values()):
            return False
    for name in ("outbound", "dns", "dos"):
        sums = state.get(name) or {}
        if not isinstance(sums, dict) or not all(
                isinstance(e, list) and len(e) == 3 and _number(e[0]) and _number(e[1]) and isinstance(e[2], list)
                and e[2] and all(_numbers(i, 3) for i in e[2]) for e in sums.values()):
            return False
    for name in ("brute", "scan_repeat"):
        recent = state.get(name) or {}
        if not isinstance(recent, dict) or not all(
                isinstance(v, list) and all(_number(t) for t in v) for v in recent.values()):
            return False
    sessions = state.get("sessions") or {}
    if not isinstance(sessions, dict) or not all(_number(t) for t in sessions.values()):
        return False
    beacons = state.get("beacons") or {}
    return isinstance(beacons, dict) and all(
        isinstance(b, list) and len(b) == 3 and b[0] in (0, 1) and isinstance(b[1], list) and _number(b[2])
        and all(_number(x) if b[0] == 0 else _numbers(x, 2) for x in b[1]) for b in beacons.values())


def _evict(data: dict, horizon: float, last_seen) -> None:
    """Drops keys not seen within the window; if none, the oldest tenth (insertion order)."""
    stale = [k for k, v in data.items() if last_seen(v) < horizon]
    if not stale:
        stale = list(data)[: max(1, len(data) // 10)]
    for k in stale:
        del data[k]


def _is_probe(protocol: str, flags: int, packets: int, bytes_: int) -> bool:
    """A flow that carried no data: a scan probe rather than a conversation."""
    if protocol == "tcp":
        if flags:
            if not flags & ACK:
                return True                  # SYN (any retransmissions), FIN, NULL or Xmas probe
            return not flags & PSH and packets <= 4   # a handshake that pushed nothing
        return packets <= _PROBE_MAX_PACKETS and bytes_ <= packets * _PROBE_PACKET_BYTES
    if protocol in _ICMP:
        return True
    return packets <= 2


def _fano_is_periodic(counts: list, first_bin: float, current_bin: float) -> bool | None:
    """Binned openings `[[bin, count], ...]` (bins after the first and before `current_bin`,
    which may be partial): True when the counts per block vary far less than random traffic's; None when
    there are not yet enough blocks."""
    first_bin += _BIN            # the first bin is partial too: the source began within it
    bins = int(round((current_bin - first_bin) / _BIN))
    if bins <= 0:
        return None
    total = sum(c for b, c in counts if first_bin <= b < current_bin)
    if total == 0:
        return None
    block = max(1, math.ceil(_BLOCK_EVENTS * bins / total))
    blocks = min(bins // block, 2 * _MIN_BLOCKS)
    if blocks < _MIN_BLOCKS:
        return None
    start = current_bin - blocks * block * _BIN
    sums = [0] * blocks
    for b, c in counts:
        if start <= b < current_bin:
            sums[int(round((b - start) / _BIN)) // block] += c
    mean = sum(sums) / blocks
    if mean <= 0:
        return False
    var = sum((s - mean) ** 2 for s in sums) / (blocks - 1)
    return var / mean <= _MAX_FANO


class FlowDetector:
    """Tags flows; `observe(event)` appends to `event["anomaly"]["tags"]` and returns the tags."""

    def __init__(self, settings: NetflowSettings | None = None, state: dict | None = None):
        self.settings = s = settings or NetflowSettings()
        t = s.thresholds
        state = state if well_formed(state) else {}
        self.scan_ports = _Seen(t.port_scan_window, t.max_tracked, state.get("scan_ports"))
        self.scan_hosts = _Seen(t.port_scan_window, t.max_tracked, state.get("scan_hosts"))
        self.brute = _Recent(t.brute_force_window, t.max_tracked, t.brute_force_connections, state.get("brute"))
        self.outbound = _Sum(t.high_outbound_window, t.max_tracked, state.get("outbound"))
        self.dns = _Sum(t.dns_window, t.max_tracked, state.get("dns"))
        self.dos = _Sum(t.dos_window, t.max_tracked, state.get("dos"))
        self.scan_repeat = _Recent(t.port_scan_repeat_window, t.max_tracked, max(t.port_scan_repeat, 1000),
                                   state.get("scan_repeat"))
        self.sessions: dict[str, float] = state.get("sessions") or {}
        self.beacons: dict[str, list] = state.get("beacons") or {}
        # key -> (the newest bin, its binned verdict): not saved, it follows from `beacons`
        self._verdicts: dict[str, tuple[float, bool]] = {}
        self.beacon_intervals = max(2, t.beaconing_min_connections - 1)
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
                "dos": self.dos.data, "beacons": self.beacons, "scan_repeat": self.scan_repeat.data,
                "sessions": self.sessions}

    def _opening(self, flags: int, src: str, sport, dst: str, dport, protocol: str, ts: float) -> bool:
        """Whether the flow opens a connection rather than continuing one."""
        if flags:
            return bool(flags & SYN)
        key = f"{src}:{sport}>{dst}:{dport}/{protocol}"
        sessions = self.sessions
        seen = sessions.get(key)
        if seen is None and len(sessions) >= self.t.max_tracked:
            _evict(sessions, ts - _SESSION_IDLE, lambda v: v)
        sessions[key] = ts if seen is None or ts > seen else seen
        return seen is None or ts - seen > _SESSION_IDLE

    def observe(self, event: dict) -> list[str]:
        # One function on purpose: it runs for every flow (see bench/bench_netflow.py); the
        # probe test (_is_probe) and the common case of the denial-of-service sum are inlined.
        t = self.t
        ts, flags, src_local, dst_local, res, src, dst, sport, dport, protocol, direction, packets, bytes_, \
            duration, icmp_type = event[PRIVATE]
        anomaly = event["anomaly"]
        tags = anomaly["tags"]

        # a server's answer rather than a connection attempt (is_reply)
        if icmp_type is not None:
            if icmp_type == 0 or icmp_type == 129:
                return tags
        elif sport is not None and dport is not None and (
                sport < _EPHEMERAL <= dport or (sport in _SERVICES and dport not in _SERVICES and dport >= _EPHEMERAL)):
            # a closed port's RST to a client: that client knocked on the port (a probe)
            if flags & RST and not flags & (SYN | PSH) and packets <= 4 and protocol == "tcp" and not src_local:
                self.scan_ports.add(f"{dst}>{src}", str(sport), ts, t.port_scan_ports)
            return tags
        has_ports = dport is not None and protocol in _PORT_PROTOCOLS

        # port scan: many ports of one host, or one port (or ICMP) across many hosts, by probes
        if not dst_local:
            if protocol == "tcp":           # _is_probe
                if flags:
                    probe = not flags & ACK or (not flags & PSH and packets <= 4)
                else:
                    probe = packets <= _PROBE_MAX_PACKETS and bytes_ <= packets * _PROBE_PACKET_BYTES
            else:
                probe = protocol in _ICMP or packets <= 2
            if probe:
                scanned = False
                if has_ports:
                    scanned = self.scan_ports.add(f"{src}>{dst}", str(dport), ts, t.port_scan_ports)
                lane = f"{src}>{protocol}:{dport}" if has_ports else f"{src}>{protocol}"
                if self.scan_hosts.add(lane, dst, ts, t.port_scan_hosts) or scanned:
                    tags.append("possible_port_scan")
                    repeat = self.scan_repeat.add(src, ts)
                    anomaly["port_scan"] = {"repeat": repeat}
                    if repeat >= t.port_scan_repeat:
                        anomaly["escalated"] = "true"

        opening = None
        if direction == "internal_to_external":
            if self.outbound.add(src, ts, bytes_)[0] >= t.high_outbound_bytes:
                tags.append("high_outbound_bytes")
            if has_ports:
                if dport not in self.beacon_ignored:
                    opening = self._opening(flags, src, sport, dst, dport, protocol, ts)
                    if opening and self._beaconing(f"{src}>{dst}:{protocol}/{dport}", ts, res):
                        tags.append("possible_beaconing")
        elif direction == "internal_to_internal":
            if has_ports and dport in self.lateral and not dst_local:
                opening = self._opening(flags, src, sport, dst, dport, protocol, ts)
                if opening:
                    tags.append("possible_lateral_movement")

        if has_ports and dport in self.dns_ports:
            sent, flows, _ = self.dns.add(src, ts, bytes_)
            if flows >= t.dns_flows or sent >= t.dns_bytes:
                tags.append("suspicious_dns_flow")

        if direction == "external_to_internal" and has_ports and dport in self.sensitive:
            tags.append("external_inbound_sensitive_service")

        if direction == "internal_to_external" and has_ports and dport not in self.usual_out:
            tags.append("unusual_outbound_port")

        # the packets to one destination (_Sum.add's common case inlined: the newest bucket)
        dos = self.dos
        entry = dos.data.get(dst)
        if entry is not None:
            items = entry[2]
            last = items[-1]
            if ts < last[0] + dos.step and items[0][0] >= ts - dos.window:
                last[1] += packets
                last[2] += 1
                entry[0] += packets
                entry[1] += 1
            else:
                entry = dos.add(dst, ts, packets)
        else:
            entry = dos.add(dst, ts, packets)
        if entry[0] >= t.dos_packets:
            tags.append("possible_dos")

        if protocol == "tcp" and has_ports and dport in self.brute_ports:
            # a new login attempt: an opening that did not stay open
            if flags:
                attempt = flags & SYN and (not flags & ACK or flags & (FIN | RST))
            else:
                attempt = (opening if opening is not None else self._opening(0, src, sport, dst, dport, protocol, ts)) \
                    and (duration is None or duration < _ATTEMPT_SECONDS)
            if attempt and self.brute.add(f"{src}>{dst}:{dport}", ts) >= t.brute_force_connections:
                tags.append("possible_brute_force")
        return tags

    def _beaconing(self, key: str, ts: float, res: float) -> bool:
        """Openings at regular intervals (see the module's notes on the two kinds of time)."""
        t = self.t
        binned = 1 if res else 0
        entry = self.beacons.get(key)
        if entry is None or entry[0] != binned:
            if entry is None and len(self.beacons) >= t.max_tracked:
                _evict(self.beacons, ts - 86400, lambda v: v[2])
            entry = self.beacons[key] = [binned, [], ts]
        data = entry[1]
        n = self.beacon_intervals
        if not binned:
            if not data or ts >= data[-1]:
                data.append(ts)
            else:
                bisect.insort(data, ts)
            if len(data) > n + 1:
                del data[0]
            entry[2] = max(entry[2], ts)
            if len(data) <= n:
                return False
            return self._regular(data, 0.0)
        # binned: [[bin, openings], ...] in bin order
        verdicts = self._verdicts
        if data and data[-1][0] == ts:
            data[-1][1] += 1
            # one more opening in the newest bin: the bins before it, all the verdict
            # reads, are as they were (no re-scan of up to _MAX_BINS bins per opening)
            known = verdicts.get(key)
            if known is not None and known[0] == ts:
                entry[2] = max(entry[2], ts)
                return known[1]
        elif not data or ts > data[-1][0]:
            data.append([ts, 1])
            while data[0][0] < ts - _MAX_BINS * _BIN:
                del data[0]
        else:
            i = bisect.bisect_left(data, [ts, 0])
            if i < len(data) and data[i][0] == ts:
                data[i][1] += 1
            else:
                data.insert(i, [ts, 1])
        entry[2] = max(entry[2], ts)
        # judged at every opening over the bins before its own: pmacct may write the records
        # of several bins in one purge, in any order, so a bin is complete only once all
        # later bins' records are arriving
        verdict = self._binned_verdict(data, ts)
        if ts == data[-1][0]:           # remembered for the newest bin only
            if len(verdicts) >= self.t.max_tracked:
                verdicts.clear()
            verdicts[key] = (ts, verdict)
        else:
            verdicts.pop(key, None)     # an earlier bin changed: the newest bin's verdict may differ
        return verdict

    def _binned_verdict(self, data: list, current: float) -> bool:
        n = self.beacon_intervals
        # the last n+1 openings before the current bin, one time each
        times: list[float] = []
        for b, c in reversed(data):
            if b >= current:
                continue
            times.extend([b] * min(c, n + 1 - len(times)))
            if len(times) > n:
                break
        times.reverse()
        if len(times) > n and times[-1] - times[0] >= 2 * _BIN * n:
            return self._regular(times, _BIN)
        verdict = _fano_is_periodic(data, data[0][0], current)
        return bool(verdict)

    def _regular(self, times: list[float], res: float) -> bool:
        """The spread of the intervals is small against their mean, once the rounding of
        times to `res` (variance res^2/6 per interval) is taken out."""
        t = self.t
        n = len(times) - 1
        mean = (times[-1] - times[0]) / n
        if mean < t.beaconing_min_interval or mean <= 0:
            return False
        var = sum((b - a - mean) ** 2 for a, b in zip(times, times[1:])) / (n - 1)
        if res:
            var = max(0.0, var - res * res / 6)
        return math.sqrt(var) <= t.beaconing_max_jitter * mean
