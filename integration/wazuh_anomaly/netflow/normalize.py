"""pmacct flow record -> the normalised flow event of DESIGN.md.

Accepts both pmacct JSON dialects: `pmacctd`'s print plugin (`ip_proto` a name,
`tcp_flags` a decimal string, `stamp_inserted` the start of the time bin, no zone) and
the `nfacctd` NetFlow/IPFIX collector (adds `peer_ip_src`, `timestamp_start`,
`timestamp_end`; reports ICMP type/code in `port_dst` as type*256+code). Pure
functions on dicts; a record that cannot be a flow raises `BadRecord` with the reason.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

from ..core.eventtext import MAX_IP, MAX_NAME, MAX_SHORT, clip, has_control
from ..core.timeparse import minute_epoch
from . import tables
from .settings import NetflowSettings

DIRECTIONS = ("internal_to_internal", "internal_to_external", "external_to_internal", "external_to_external")
_MARKER_EVENTS = frozenset({"purge_init", "purge_close", "start", "end"})


class BadRecord(ValueError):
    """A record that is not a usable flow; the message is the reason, in a few words, and
    `kind` the reason's name in the skip summary ("with a negative byte count")."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind


# Local traffic, whatever internal_networks says: multicast (mDNS 224.0.0.251, SSDP
# 239.255.255.250, ff00::/8), the limited broadcast, link-local (169.254/16, fe80::/10),
# "this host" (0.0.0.0, ::, a DHCP client's source) and loopback. It never leaves the link:
# never outbound, never a scan target, never a beacon.
LOCAL, INTERNAL, EXTERNAL = 2, 1, 0


def _local_scope(addr) -> bool:
    return addr.is_multicast or addr.is_link_local or addr.is_unspecified or addr.is_loopback \
        or (addr.version == 4 and addr.packed == b"\xff\xff\xff\xff")


class AddressBook:
    """Is an address internal (or local: see LOCAL)? Cached, because flows repeat the same
    few addresses; `cache` maps the text to EXTERNAL, INTERNAL or LOCAL."""

    def __init__(self, networks, *, max_cached: int = 65536):
        self.v4 = [n for n in networks if n.version == 4]
        self.v6 = [n for n in networks if n.version == 6]
        self.cache: dict[str, int] = {}
        self.max_cached = max_cached

    def is_internal(self, text: str) -> bool:
        return self.scope(text) != EXTERNAL

    def scope(self, text: str) -> int:
        hit = self.cache.get(text)
        if hit is not None:
            return hit
        # ipaddress accepts an IPv6 scope of any length ('fe80::1%<anything>'): flows carry
        # none, and an address must stay within the bytes the rule descriptions allow.
        if len(text) > MAX_IP or "%" in text:
            raise BadRecord(f"'{clip(text, MAX_NAME)}' is not an IP address", "with an address that is not an IP address")
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            raise BadRecord(f"'{clip(text, MAX_NAME)}' is not an IP address", "with an address that is not an IP address") from None
        if addr.version == 6 and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        nets = self.v4 if addr.version == 4 else self.v6
        if _local_scope(addr):
            scope = LOCAL
        else:
            scope = INTERNAL if any(addr in n for n in nets) else EXTERNAL
        if len(self.cache) >= self.max_cached:
            self.cache.clear()
        self.cache[text] = scope
        return scope


def direction_of(src_internal: bool, dst_internal: bool) -> str:
    return DIRECTIONS[(0 if src_internal else 2) + (0 if dst_internal else 1)]


class Clock:
    """pmacct time text -> (epoch seconds, ISO 8601 UTC text). Minutes are parsed once
    (`heads`: the first 16 characters -> their epoch and ISO form), whole stamps that
    repeat (pmacctd's bins) are looked up whole (`recent`)."""

    def __init__(self) -> None:
        self.heads: dict[str, tuple[int, str]] = {}
        self.recent: dict[str, tuple[float, str]] = {}   # pmacctd bins repeat one stamp per minute

    def parse(self, value, key: str) -> tuple[float, str]:
        if type(value) is str:
            n = len(value)
            if n == 19:
                hit = self.recent.get(value)      # only 19-character stamps are remembered whole
                if hit is not None:
                    return hit
            elif n <= 20 or value[19] != "." or not value[-1].isdigit():
                return self._parse(value, key)
            # the common shape, "2024-01-31 23:59:00[.123456]", without zone, of a minute seen
            # before (a head is only remembered from a valid time): no general parsing
            head = self.heads.get(value[:16])
            if head is not None:
                try:
                    seconds = float(value[17:])
                except ValueError:
                    seconds = -1.0
                if 0 <= seconds < 61:
                    result = (head[0] + seconds, head[1] + value[16:] + "Z")
                    if n == 19:
                        if len(self.recent) > 4096:
                            self.recent.clear()
                        self.recent[value] = result
                    return result
        return self._parse(value, key)

    def _parse(self, value, key: str) -> tuple[float, str]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return self._epoch(float(value), key)
            except OverflowError:          # an integer past a double
                raise BadRecord(f"{key} {value!r} is not a time after 1970") from None
        if not isinstance(value, str):
            raise BadRecord(f"{key} {value!r} is not a time")
        text = value.strip()
        if text[:1].isdigit() and len(text) >= 19 and text[4] == "-" and text[10] in " T":
            head = text[:16]
            known = self.heads.get(head)
            if known is None:
                minute = minute_epoch(head)   # the one timestamp parser's (core/timeparse.py)
                if minute is None:
                    raise BadRecord(f"{key} '{text}' is not a time such as 2024-01-31 23:59:00")
                if len(self.heads) > 4096:
                    self.heads.clear()
                self.heads[head] = (minute, f"{head[:10]}T{head[11:]}")
            else:
                minute = known[0]
            rest = text[17:]
            zone = ""
            if rest.endswith("Z"):
                rest = rest[:-1]
            elif len(rest) > 6 and rest[-6] in "+-" and rest[-3] == ":":
                zone = rest[-6:]
                rest = rest[:-6]
            elif len(rest) > 5 and rest[-5] in "+-":
                zone = rest[-5:-2] + ":" + rest[-2:]
                rest = rest[:-5]
            try:
                seconds = float(rest)
            except ValueError:
                raise BadRecord(f"{key} '{text}' is not a time such as 2024-01-31 23:59:00") from None
            if not 0 <= seconds < 61:
                raise BadRecord(f"{key} '{text}' has {rest} seconds")
            epoch = minute + seconds
            if zone and zone not in ("+00:00", "-00:00"):
                sign = 1 if zone[0] == "+" else -1
                epoch -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
                return self._epoch(epoch, key)
            return epoch, f"{text[:10]}T{text[11:16]}:{rest}Z"
        try:
            return self._epoch(float(text), key)  # timestamps_since_epoch: true
        except ValueError:
            raise BadRecord(f"{key} '{text}' is not a time such as 2024-01-31 23:59:00") from None

    @staticmethod
    def _epoch(epoch: float, key: str) -> tuple[float, str]:
        if not 0 <= epoch < 32503680000:
            raise BadRecord(f"{key} {epoch!r} is not a time after 1970")
        whole = int(epoch)
        frac = epoch - whole
        text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        if frac:
            text += f"{frac:.6f}"[1:].rstrip("0")
        return epoch, text + "Z"


# Counters are unsigned 64-bit in NetFlow/IPFIX; a larger number is not a count. A packet
# carries at most 65,535 bytes (the IP length field): more bytes than that per packet is a
# broken exporter or a forged record, and would only feed the volume detections nonsense.
MAX_COUNT = (1 << 64) - 1
MAX_PACKET_BYTES = 65535
_NOUN = {"bytes": "byte", "packets": "packet"}


def _count(record: dict, key: str) -> int:
    value = record.get(key, 0)
    noun = _NOUN.get(key, key)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value) if len(value) < 30 else 1 << 100
    elif isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise BadRecord(f"{key} {repr(value)[:60]} is not a count", f"with a {noun} count that is not a whole number")
    if value < 0:
        raise BadRecord(f"{key} {value} is a negative count", f"with a negative {noun} count")
    if value > MAX_COUNT:
        raise BadRecord(f"{key} {str(value)[:30]} is 2^64 or more, not a 64-bit count",
                        f"with a {noun} count of 2^64 or more")
    return value


def _port(record: dict, key: str) -> int | None:
    value = record.get(key)
    if value is None:
        return None
    if type(value) is int and 0 <= value <= 65535:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) <= 65535:
        return int(value)
    raise BadRecord(f"{key} {value!r} is not a port number")


def _protocol(value) -> str:
    if isinstance(value, str):
        name = value.strip().lower()
        if name.isdigit():
            name = tables.PROTOCOL_NAMES.get(int(name), name)
        elif not name:
            raise BadRecord("ip_proto is empty")
        else:
            name = tables.PROTOCOL_ALIASES.get(name, name)
        # A protocol name is a short word; it is written into rule descriptions.
        if len(name.encode("utf-8")) > MAX_SHORT or has_control(name):
            raise BadRecord(f"ip_proto '{clip(value, MAX_NAME)}' is not a protocol name")
        return name
    if type(value) is int:
        if not 0 <= value <= 255:
            raise BadRecord(f"ip_proto {clip(value, MAX_NAME)} is not a protocol number (0-255)")
        return tables.PROTOCOL_NAMES.get(value, str(value))
    raise BadRecord(f"ip_proto {clip(repr(value), MAX_NAME)} is not a protocol")


def _flags(value) -> int:
    if value is None:
        return 0
    if type(value) is int:
        bits = value
    elif isinstance(value, str) and value.isdigit():
        bits = int(value)
    elif isinstance(value, str) and value.lower().startswith("0x"):
        try:
            bits = int(value, 16)
        except ValueError:
            raise BadRecord(f"tcp_flags {value!r} is not a number") from None
    else:
        raise BadRecord(f"tcp_flags {value!r} is not a number")
    if not 0 <= bits <= 0xFFF:
        raise BadRecord(f"tcp_flags {value!r} is out of range")
    return bits


def _is_time(value) -> bool:
    """Set, and not pmacct's placeholder for a time the exporter did not send."""
    if not value:
        return False
    return not (type(value) is str and value.startswith(("0000-00-00", "1970-01-01 00:00:00")))


_PLACEHOLDERS = ("0000-00-00", "1970-01-01 00:00:00")
_ABSENT = object()
# The private part of an event (key "_"): what the detections need, computed once here,
# never written: (epoch start, TCP flag bits, source local, destination local, time
# resolution: 0 exact or 60 for pmacctd's bins, source ip, destination ip, source port,
# destination port (both None for ICMP), protocol, direction, packets, bytes, duration
# or None, ICMP type or None).
PRIVATE = "_"
_ICMP = tables.ICMP_PROTOCOLS
_SERVICES = tables.SERVICES
_PORT_PROTOCOLS = tables.PORT_PROTOCOLS


class Normalizer:
    """Turns pmacct records into normalised flow events (dicts, ready to serialise)."""

    def __init__(self, settings: NetflowSettings | None = None):
        self.settings = settings or NetflowSettings()
        self.addresses = AddressBook(self.settings.networks())
        self.clock = Clock()
        self._flag_names: dict[int, str] = {}
        self._protocols: dict = {}
        self._exporters: dict[str, str] = {}
        self._flag_texts: dict[str, tuple[int, str | None]] = {}
        self._durations: dict[float, float] = {}   # end - start -> rounded to the millisecond

    def normalize(self, record) -> dict:
        # One function on purpose: it runs for every flow (see bench/bench_netflow.py).
        if type(record) is not dict and not isinstance(record, dict):
            raise BadRecord("the line is not a JSON object")
        get = record.get
        src = get("ip_src")
        dst = get("ip_dst")
        if type(src) is not str or type(dst) is not str:
            if not isinstance(src, str) or not isinstance(dst, str):
                kind = get("event_type")
                if isinstance(kind, str) and kind in _MARKER_EVENTS:
                    raise BadRecord(f"a '{kind}' marker, not a flow")
                missing = "ip_src" if not isinstance(src, str) else "ip_dst"
                raise BadRecord(f"{missing} is missing; aggregate on src_host,dst_host in pmacct")
        addresses = self.addresses
        cache = addresses.cache
        src_scope = cache.get(src)
        if src_scope is None:
            src_scope = addresses.scope(src)
        dst_scope = cache.get(dst)
        if dst_scope is None:
            dst_scope = addresses.scope(dst)
        proto_value = get("ip_proto", _ABSENT)
        if proto_value is _ABSENT:
            proto_value = get("proto", "")
        kind = type(proto_value)
        protocol = self._protocols.get(proto_value) if kind is str or kind is int else None
        if protocol is None:
            protocol = _protocol(proto_value)
            if len(self._protocols) < 256 and (kind is str or kind is int):
                self._protocols[proto_value] = protocol
        # fast paths for what pmacct writes (ints); anything else goes through the checks
        sport = get("port_src")
        if type(sport) is not int or not 0 <= sport <= 65535:
            sport = _port(record, "port_src")
        dport = get("port_dst")
        if type(dport) is not int or not 0 <= dport <= 65535:
            dport = _port(record, "port_dst")
        bytes_ = get("bytes", 0)
        if type(bytes_) is not int or not 0 <= bytes_ <= MAX_COUNT:
            bytes_ = _count(record, "bytes")
        packets = get("packets", 0)
        if type(packets) is not int or not 0 <= packets <= MAX_COUNT:
            packets = _count(record, "packets")
        if bytes_ > packets * MAX_PACKET_BYTES:
            raise BadRecord(f"bytes {bytes_} for {packets} packets is more than {MAX_PACKET_BYTES} bytes a packet",
                            f"with more bytes than packets × 65,535")
        peer = get("peer_ip_src")
        nfacctd = "peer_ip_src" in record or "timestamp_start" in record

        start_value = get("timestamp_start")
        if start_value and not (type(start_value) is str and start_value.startswith(_PLACEHOLDERS)):
            start_key = "timestamp_start"
        else:
            start_key = None
            for key in ("stamp_inserted", "stamp_updated"):
                start_value = get(key)
                if start_value and not (type(start_value) is str and start_value.startswith(_PLACEHOLDERS)):
                    start_key = key
                    break
            if start_key is None:
                raise BadRecord("no timestamp_start, stamp_inserted or stamp_updated")
        clock = self.clock
        heads = clock.heads
        # Clock.parse's path for nfacctd's "2024-01-31 23:59:00.123456" (a minute seen before),
        # inlined for the start and end of every flow; everything else goes through parse()
        if type(start_value) is str and len(start_value) > 20 and start_value[19] == "." \
                and start_value[-1].isdigit() and (head := heads.get(start_value[:16])) is not None:
            try:
                start = float(start_value[17:])
            except ValueError:
                start = -1.0
            if 0 <= start < 61:
                start += head[0]
                start_text = head[1] + start_value[16:] + "Z"
            else:
                start, start_text = clock.parse(start_value, start_key)
        else:
            start, start_text = clock.parse(start_value, start_key)
        if start_key == "timestamp_start":
            end_value = get("timestamp_end")
            if end_value and not (type(end_value) is str and end_value.startswith(_PLACEHOLDERS)):
                if type(end_value) is str and len(end_value) > 20 and end_value[19] == "." \
                        and end_value[-1].isdigit() and (head := heads.get(end_value[:16])) is not None:
                    try:
                        end = float(end_value[17:])
                    except ValueError:
                        end = -1.0
                    if 0 <= end < 61:
                        end += head[0]
                        end_text = head[1] + end_value[16:] + "Z"
                    else:
                        end, end_text = clock.parse(end_value, "timestamp_end")
                else:
                    end, end_text = clock.parse(end_value, "timestamp_end")
                if end < start:
                    raise BadRecord(f"timestamp_end {end_value!r} is before timestamp_start {start_value!r}")
                # round() costs more than the rest of the record's time handling; durations
                # repeat (an exporter's timeouts, a client's requests): looked up first
                seconds = end - start
                duration = self._durations.get(seconds)
                if duration is None:
                    duration = round(seconds, 3)
                    if len(self._durations) >= 4096:
                        self._durations.clear()
                    self._durations[seconds] = duration
                event = {"start": start_text, "end": end_text, "duration": duration,
                         "type": "connection", "category": "network"}
            else:
                event = {"start": start_text, "type": "connection", "category": "network"}
            res = 0.0
        else:
            event = {"start": start_text, "type": "connection", "category": "network"}
            res = 60.0                              # pmacctd: the start of a one-minute bin

        is_src_internal = src_scope != EXTERNAL
        is_dst_internal = dst_scope != EXTERNAL
        flow = {"protocol": protocol,
                "direction": DIRECTIONS[(0 if is_src_internal else 2) + (0 if is_dst_internal else 1)]}
        flags = 0
        if protocol in _ICMP:
            source = {"ip": src}
            destination = {"ip": dst}
            # nfacctd: type*256+code in port_dst; pmacctd leaves both ports 0.
            if nfacctd or dport:
                code = dport or 0
                flow["icmp_type"] = code >> 8
                flow["icmp_code"] = code & 0xFF
            service = None
        else:
            source = {"ip": src} if sport is None else {"ip": src, "port": sport}
            destination = {"ip": dst} if dport is None else {"ip": dst, "port": dport}
            if protocol == "tcp":
                value = get("tcp_flags")
                # pmacct writes the flags as decimal text ("27"): text seen before -> (bits, names)
                known = self._flag_texts.get(value) if type(value) is str else None
                if known is not None:
                    flags, names = known
                else:
                    if type(value) is str and value.isdigit() and len(value) < 5:
                        flags = int(value)
                        if flags > 0xFFF:
                            raise BadRecord(f"tcp_flags {value!r} is out of range")
                    else:
                        flags = _flags(value)
                    names = None
                    if flags:
                        names = self._flag_names.get(flags)
                        if names is None:
                            names = self._flag_names[flags] = ",".join(tables.tcp_flag_names(flags))
                    if type(value) is str and len(self._flag_texts) < 4096:
                        self._flag_texts[value] = (flags, names)
                if flags:
                    flow["tcp_flags"] = names
            service = _SERVICES.get(dport) if dport is not None and protocol in _PORT_PROTOCOLS else None
        out = {"netflow": "true", "event": event, "source": source, "destination": destination, "flow": flow,
               "network": {"bytes": bytes_, "packets": packets}}
        if service is not None:
            out["service"] = {"name": service}
        if type(peer) is str and peer:
            exporter = self._exporters.get(peer)
            if exporter is None:
                exporter = clip(peer, MAX_NAME)
                if len(self._exporters) < 1024:
                    self._exporters[peer] = exporter
            out["observer"] = {"collector": "nfacctd", "exporter": exporter}
        else:
            out["observer"] = {"collector": "nfacctd" if nfacctd else "pmacctd"}
        out["anomaly"] = {"tags": []}
        # Static fields for stock active responses; only outside addresses in srcip, so
        # firewall-drop can never be pointed at one of our own hosts.
        if not is_src_internal:
            out["srcip"] = src
        out["dstip"] = dst
        if service is None and protocol in _ICMP:
            out[PRIVATE] = (start, 0, src_scope == LOCAL, dst_scope == LOCAL, res, src, dst, None, None, protocol,
                            flow["direction"], packets, bytes_, event.get("duration"), flow.get("icmp_type"))
        else:
            out[PRIVATE] = (start, flags, src_scope == LOCAL, dst_scope == LOCAL, res, src, dst, sport, dport, protocol,
                            flow["direction"], packets, bytes_, event.get("duration"), None)
        return out


def is_reply(event: dict) -> bool:
    """A server's answer rather than a connection attempt: from a service port to a higher
    client port, a TCP SYN+ACK without a client's bare SYN, or an ICMP echo reply."""
    flow = event["flow"]
    protocol = flow["protocol"]
    if protocol in tables.ICMP_PROTOCOLS:
        return flow.get("icmp_type") in (0, 129)
    sport = event["source"].get("port")
    dport = event["destination"].get("port")
    if sport is None or dport is None:
        return False
    if sport < tables.EPHEMERAL_PORT_START <= dport:
        return True
    if sport in tables.SERVICES and dport not in tables.SERVICES and dport >= tables.EPHEMERAL_PORT_START:
        return True
    return False


def public_view(event: dict) -> dict:
    """The event as written: without the detections' private keys."""
    return {k: v for k, v in event.items() if k[0] != "_"}
