"""Traffic for the NetFlow tests: packets built with scapy, written to a pcap, and turned
into flow records by the REAL collectors of pmacct 1.7.7:

- `pmacctd(pcap)`: pmacctd reads the capture (`-I`), print plugin, one-minute bins
  (`stamp_inserted`), as in wazuh/etc/anomaly/netflow/pmacctd.conf.example;
- `nfacctd(pcap)`: pmacctd's nfprobe plugin exports IPFIX over UDP to a local nfacctd,
  print plugin (`timestamp_start`/`timestamp_end`), as in nfacctd.conf.example.

Both write JSON lines to files, read back here. `need_pmacct()` skips a test with a
reason when the binaries are absent (CI installs Debian's pmacct package).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

START = 1772445600.0      # 2026-03-02 10:00:00 UTC


def need_pmacct() -> None:
    missing = [b for b in ("pmacctd", "nfacctd") if shutil.which(b) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt-get install pmacct); "
                    "the traffic tests feed pcaps through the real collectors")


# -- packets ---------------------------------------------------------------------------

# A packet is (time, bytes); scapy builds each distinct packet once (it is slow: ~100 µs a
# packet), so an hour of traffic is written in a second.
_BUILT: dict[tuple, bytes] = {}


def _build(kind: str, src: str, dst: str, sport: int, dport: int, flags: str, payload: bytes) -> bytes:
    key = (kind, src, dst, sport, dport, flags, payload)
    data = _BUILT.get(key)
    if data is None:
        from scapy.all import IP, TCP, UDP, Ether, IPv6, Raw
        l3 = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        l4 = TCP(sport=sport, dport=dport, flags=flags) if kind == "tcp" else UDP(sport=sport, dport=dport)
        packet = Ether() / l3 / l4
        if payload:
            packet = packet / Raw(payload)
        data = _BUILT[key] = bytes(packet)
    return data


def tcp(t, src, dst, sport, dport, flags, payload=b""):
    return (t, _build("tcp", src, dst, sport, dport, flags, payload))


def udp(t, src, dst, sport, dport, payload=b"x" * 40):
    return (t, _build("udp", src, dst, sport, dport, "", payload))


def connection(t: float, client: str, server: str, sport: int, dport: int, *, exchanges: int = 2,
               gap: float = 0.2, close: bool = True) -> list:
    """A TCP connection: handshake, `exchanges` request/answer pairs `gap` s apart, and
    (if `close`) the FIN exchange right after."""
    out = [tcp(t, client, server, sport, dport, "S"), tcp(t + 0.001, server, client, dport, sport, "SA"),
           tcp(t + 0.002, client, server, sport, dport, "A")]
    at = t + 0.002
    for _ in range(exchanges):
        at += gap
        out.append(tcp(at, client, server, sport, dport, "PA", b"q" * 60))
        out.append(tcp(at + 0.001, server, client, dport, sport, "PA", b"a" * 200))
    if close:
        at += 0.01
        out += [tcp(at, client, server, sport, dport, "FA"), tcp(at + 0.001, server, client, dport, sport, "FA"),
                tcp(at + 0.002, client, server, sport, dport, "A")]
    return out


def syn_probe(t: float, scanner: str, target: str, sport: int, dport: int, retransmissions: int) -> list:
    """An unanswered SYN and its retransmissions (1 s, 2 s, 4 s ... later)."""
    out, at, wait = [], t, 1.0
    for _ in range(retransmissions + 1):
        out.append(tcp(at, scanner, target, sport, dport, "S"))
        at += wait
        wait *= 2
    return out


def write_pcap(path: Path, packets: list) -> Path:
    """A classic pcap file (Ethernet, microsecond times) of (time, bytes) packets, in time order."""
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for t, data in sorted(packets, key=lambda p: p[0]):
            sec = int(t)
            fh.write(struct.pack("<IIII", sec, int(round((t - sec) * 1e6)) % 1000000, len(data), len(data)))
            fh.write(data)
    return path


# -- scenarios -------------------------------------------------------------------------

def jittered(period: float, count: int, rng: random.Random, jitter: float = 0.1, start: float = 0.0) -> list[float]:
    """A C2 implant's sleep: each interval `period` ± `jitter` (uniform)."""
    out, at = [], start
    for _ in range(count):
        out.append(at)
        at += period * (1 + rng.uniform(-jitter, jitter))
    return out


def poisson(mean_gap: float, duration: float, rng: random.Random, start: float = 0.0) -> list[float]:
    out, at = [], start + rng.expovariate(1 / mean_gap)
    while at < start + duration:
        out.append(at)
        at += rng.expovariate(1 / mean_gap)
    return out


def beacon_packets(times: list[float], client: str, server: str, dport: int, first_sport: int = 40000) -> list:
    return [p for i, t in enumerate(times)
            for p in connection(START + t, client, server, first_sport + i % 20000, dport, exchanges=1, gap=0.05)]


# -- collectors ------------------------------------------------------------------------

def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _udp_socket(port: int) -> tuple[int, int] | None:
    """(receive queue bytes, drops) of the local UDP socket bound to 127.0.0.1:`port`, None
    while nothing is bound there (read from /proc/net/udp: no timing guess)."""
    try:
        rows = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    wanted = f"0100007F:{port:04X}"
    for row in rows:
        cols = row.split()
        if len(cols) > 12 and cols[1] == wanted:
            return int(cols[4].split(":")[1], 16), int(cols[12])
    return None


def _wait_for(what: str, ready, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        time.sleep(0.05)


def _config(path: Path, lines: dict) -> Path:
    path.write_text("".join(f"{k}: {v}\n" for k, v in lines.items()))
    return path


def _records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pmacctd(pcap: Path, work: Path, *, tcpflags: bool = True) -> list[dict]:
    """pmacctd's print plugin over the capture, one-minute bins."""
    out = work / f"{pcap.stem}.pmacctd.json"
    out.unlink(missing_ok=True)
    conf = _config(work / f"{pcap.stem}.pmacctd.conf", {
        "daemonize": "false",
        "aggregate": "src_host, dst_host, src_port, dst_port, proto" + (", tcpflags" if tcpflags else ""),
        "plugins": "print", "print_output": "json", "print_output_file": str(out),
        "print_output_file_append": "true", "print_refresh_time": 60, "print_history": "1m",
        "print_history_roundoff": "m", "timestamps_utc": "true"})
    # At the end of a capture pmacctd stops its print plugin at once: on a loaded machine
    # what the plugin had not yet taken from the core's buffer is never printed. Every IP
    # packet of the capture is counted in some record, so an incomplete output is known for
    # certain (not guessed from timing) and the capture is read again.
    expected = _ip_packets(pcap)
    for _ in range(5):
        out.unlink(missing_ok=True)
        done = subprocess.run(["pmacctd", "-f", str(conf), "-I", str(pcap)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        records = _records(out)
        if sum(int(r.get("packets", 0)) for r in records) == expected:
            return records
    raise AssertionError(f"pmacctd printed {sum(int(r.get('packets', 0)) for r in records)} of the {expected} "
                         f"IP packets of {pcap} in 5 runs")


def _ip_packets(pcap: Path) -> int:
    """The IPv4 and IPv6 packets of a classic Ethernet pcap (what pmacctd accounts)."""
    data, at, count = pcap.read_bytes(), 24, 0
    while at + 16 <= len(data):
        length = struct.unpack_from("<I", data, at + 8)[0]
        frame = data[at + 16:at + 16 + length]
        count += frame[12:14] in (b"\x08\x00", b"\x86\xdd")
        at += 16 + length
    return count


def nfacctd(pcap: Path, work: Path) -> list[dict]:
    """pmacctd's nfprobe exports IPFIX to a local nfacctd, whose print plugin writes the flows."""
    out = work / f"{pcap.stem}.nfacctd.json"
    out.unlink(missing_ok=True)
    port = _free_udp_port()
    collector_conf = _config(work / f"{pcap.stem}.nfacctd.conf", {
        "daemonize": "false", "nfacctd_ip": "127.0.0.1", "nfacctd_port": port,
        "nfacctd_pipe_size": 4194304,   # the socket buffer: the probe exports a whole capture at once
        "aggregate": "peer_src_ip, src_host, dst_host, src_port, dst_port, proto, tcpflags, timestamp_start, timestamp_end",
        "plugins": "print", "print_output": "json", "print_output_file": str(out),
        "print_output_file_append": "true", "print_refresh_time": 1, "timestamps_utc": "true"})
    probe_conf = _config(work / f"{pcap.stem}.nfprobe.conf", {
        "daemonize": "false", "plugins": "nfprobe", "nfprobe_receiver": f"127.0.0.1:{port}",
        "nfprobe_version": 10, "timestamps_utc": "true"})
    log = (work / f"{pcap.stem}.nfacctd.log").open("w")
    collector = subprocess.Popen(["nfacctd", "-f", str(collector_conf)], stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    try:
        # listening: its socket is bound (or it died: then its log says why)
        _wait_for("nfacctd listening", lambda: collector.poll() is not None or _udp_socket(port) is not None)
        assert collector.poll() is None, (work / f"{pcap.stem}.nfacctd.log").read_text()[-2000:]
        done = subprocess.run(["pmacctd", "-f", str(probe_conf), "-I", str(pcap)],
                              capture_output=True, text=True, timeout=300)
        # At the end of a capture pmacctd stops its nfprobe plugin; on a loaded machine the
        # core may see the plugin gone before it exits itself and return 1 ("no more plugins
        # active"), after the plugin has exported every flow. What was exported is checked
        # by the callers; any other failure is one.
        finished = "Shutting down on user request" in done.stderr and "no more plugins active" in done.stderr
        assert done.returncode == 0 or finished, done.stderr[-2000:]
        # every exported datagram taken off the socket (however slow a loaded machine is);
        # SIGINT below then purges the print plugin's cache into the file
        _wait_for("nfacctd reading every datagram", lambda: (_udp_socket(port) or (0, 0))[0] == 0)
        socket_state = _udp_socket(port)
        assert socket_state is None or socket_state[1] == 0, f"the kernel dropped {socket_state[1]} IPFIX datagrams"
        time.sleep(1.2)                      # one print refresh (print_refresh_time: 1) for the core's pipe
    finally:
        collector.send_signal(signal.SIGINT)   # purges the print cache and ends its plugin
        try:
            collector.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(collector.pid, signal.SIGKILL)   # its session only: the collector and its plugin
        collector.wait()
        log.close()
    return _records(out)


COLLECTORS = {"pmacctd": pmacctd, "nfacctd": nfacctd}
