"""NetFlow settings: `etc/anomaly/netflow.yaml` (every key optional), with the internal
networks also settable through the environment (`WAZUH_ANOMALY_INTERNAL_NETWORKS`,
comma-separated CIDRs, IPv4 and IPv6). Every value has its default here and nowhere else."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from ..core.config import ABSENT, read_yaml_file, YamlReader
from ..core.errors import ConfigError
from ..core.paths import Layout
from . import tables

INTERNAL_NETWORKS_ENV = "WAZUH_ANOMALY_INTERNAL_NETWORKS"
# RFC 1918, carrier-grade NAT, loopback, link-local, and their IPv6 counterparts (ULA, link-local).
DEFAULT_INTERNAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                             "127.0.0.0/8", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10")


@dataclass(frozen=True)
class Thresholds:
    """When each flow detection tags a flow. Windows are in seconds of flow time."""

    port_scan_window: int = 300
    port_scan_ports: int = 15          # distinct destination ports on one host
    port_scan_hosts: int = 10          # distinct destination hosts (any port, ICMP included)
    port_scan_repeat: int = 5          # port-scan flows from one source that escalate (rule 117009) ...
    port_scan_repeat_window: int = 600  # ... within this window
    brute_force_window: int = 300
    brute_force_connections: int = 20  # new connections from one source to one service
    high_outbound_window: int = 3600
    high_outbound_bytes: int = 500_000_000
    beaconing_min_connections: int = 17  # 16 intervals: random traffic never looks regular
    beaconing_max_jitter: float = 0.2  # std/mean of the intervals; ±10 % jitter is < 0.1, random traffic near 1
    beaconing_min_interval: float = 0.5
    dns_window: int = 300
    dns_flows: int = 300               # DNS flows from one source
    dns_bytes: int = 5_000_000         # or DNS bytes from one source (tunnelling)
    dos_window: int = 60
    dos_packets: int = 100_000         # packets to one destination
    max_tracked: int = 50_000          # keys kept per detection; the oldest are dropped beyond


@dataclass(frozen=True)
class NetflowSettings:
    internal_networks: tuple[str, ...] = DEFAULT_INTERNAL_NETWORKS
    thresholds: Thresholds = Thresholds()
    lateral_movement_ports: tuple[int, ...] = tables.LATERAL_MOVEMENT_PORTS
    sensitive_inbound_ports: tuple[int, ...] = tables.SENSITIVE_INBOUND_PORTS
    usual_outbound_ports: tuple[int, ...] = tables.USUAL_OUTBOUND_PORTS
    beaconing_ignored_ports: tuple[int, ...] = tables.BEACONING_IGNORED_PORTS
    brute_force_ports: tuple[int, ...] = tables.BRUTE_FORCE_PORTS
    input_file: str = ""               # pmacct JSON lines (print plugin or nfacctd)
    output_file: str = ""              # default <prefix>/logs/anomaly/netflow.json
    config_file: Path | None = field(default=None, compare=False)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.internal_networks]


def _parse_networks(values, where: str) -> tuple[str, ...]:
    out = []
    for value in values:
        text = str(value).strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise ConfigError(f"{where}: '{text}' is not a network such as 10.0.0.0/8 or fd00::/8.") from None
    if not out:
        raise ConfigError(f"{where}: lists no network; name at least one, such as 10.0.0.0/8.")
    return tuple(out)


def _ports(r: YamlReader, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    values = r.get(name, list, list(default))
    if not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535 for p in values):
        raise r.fail(name, "must be a list of port numbers from 0 to 65535")
    return tuple(values)


def load_netflow_settings(layout: Layout, path: Path | None = None, *,
                          internal_networks: str | None = None) -> NetflowSettings:
    """The settings file (missing: all defaults), then the environment, then the command line."""
    file = path or layout.etc_dir / "netflow.yaml"
    data = read_yaml_file(file, missing_ok=path is None)
    found = data is not ABSENT
    r = YamlReader(data if found else {}, file)
    nets = r.get("internal_networks", list)
    settings = NetflowSettings(config_file=file if found else None)
    if nets is not None:
        settings = replace(settings, internal_networks=_parse_networks(nets, f"{file}: key 'internal_networks'"))
    t = r.sub("thresholds")
    values = {}
    for f in fields(Thresholds):
        kind = float if isinstance(f.default, float) else int
        value = t.get(f.name, kind, f.default)
        if value <= 0:
            raise t.fail(f.name, f"must be more than zero, not {value}")
        values[f.name] = value
    t.done()
    settings = replace(
        settings, thresholds=Thresholds(**values),
        lateral_movement_ports=_ports(r, "lateral_movement_ports", settings.lateral_movement_ports),
        sensitive_inbound_ports=_ports(r, "sensitive_inbound_ports", settings.sensitive_inbound_ports),
        usual_outbound_ports=_ports(r, "usual_outbound_ports", settings.usual_outbound_ports),
        beaconing_ignored_ports=_ports(r, "beaconing_ignored_ports", settings.beaconing_ignored_ports),
        brute_force_ports=_ports(r, "brute_force_ports", settings.brute_force_ports),
        input_file=r.get("input_file", str, ""),
        output_file=r.get("output_file", str, ""),
    )
    r.done()
    env = os.environ.get(INTERNAL_NETWORKS_ENV)
    if env:
        settings = replace(settings, internal_networks=_parse_networks(env.split(","), f"${INTERNAL_NETWORKS_ENV}"))
    if internal_networks:
        settings = replace(settings, internal_networks=_parse_networks(internal_networks.split(","),
                                                                       "--internal-networks"))
    return settings


def default_output_file(layout: Layout) -> Path:
    return layout.logs_dir / "netflow.json"
