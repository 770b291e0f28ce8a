"""NetFlow settings: `etc/anomaly/netflow.yaml` (every key optional), with the internal
networks also settable through the environment (`WAZUH_ANOMALY_INTERNAL_NETWORKS`,
comma-separated CIDRs, IPv4 and IPv6). Every value has its default here and nowhere else;
the file is checked by the one configuration schema (core/schema.py), so a mistake is one
sentence naming the file and the key, all of a file's mistakes at once."""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, Optional

from pydantic import BeforeValidator, Field

from ..core.errors import ConfigError
from ..core.paths import Layout
from ..core.schema import ABSENT, Float, Int, Str, doc, problem, read_yaml_file, section, validate
from . import tables

INTERNAL_NETWORKS_ENV = "WAZUH_ANOMALY_INTERNAL_NETWORKS"
# RFC 1918, carrier-grade NAT, loopback, link-local, and their IPv6 counterparts (ULA, link-local).
DEFAULT_INTERNAL_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                             "127.0.0.0/8", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10")


@section
class Thresholds:
    """When each flow detection tags a flow. Windows are in seconds of flow time."""

    port_scan_window: Int = doc("port scan: window in seconds", 300, gt=0)
    port_scan_ports: Int = doc("distinct destination ports probed on one host", 15, gt=0)
    port_scan_hosts: Int = doc("distinct destination hosts probed (any port, ICMP included)", 10, gt=0)
    port_scan_repeat: Int = doc("port-scan flows from one source that escalate (rule 117009) ...", 5, gt=0)
    port_scan_repeat_window: Int = doc("... within this window (seconds)", 600, gt=0)
    brute_force_window: Int = doc("brute force: window in seconds", 300, gt=0)
    brute_force_connections: Int = doc("new connections from one source to one login service", 20, gt=0)
    high_outbound_window: Int = doc("high outbound volume: window in seconds", 3600, gt=0)
    high_outbound_bytes: Int = doc("bytes sent out by one internal host within the window", 500_000_000, gt=0)
    beaconing_min_connections: Int = doc("beaconing: connections needed before the intervals are judged "
                                         "(16 intervals: random traffic never looks regular)", 17, gt=0)
    beaconing_max_jitter: Float = doc("standard deviation / mean of the intervals; a +-10 % jitter is below 0.1, "
                                      "random traffic near 1", 0.2, gt=0)
    beaconing_min_interval: Float = doc("shorter mean intervals (seconds) are not beaconing", 0.5, gt=0)
    dns_window: Int = doc("DNS volume: window in seconds", 300, gt=0)
    dns_flows: Int = doc("DNS flows from one source", 300, gt=0)
    dns_bytes: Int = doc("or DNS bytes from one source (tunnelling)", 5_000_000, gt=0)
    dos_window: Int = doc("denial of service: window in seconds", 60, gt=0)
    dos_packets: Int = doc("packets to one destination", 100_000, gt=0)
    max_tracked: Int = doc("keys kept per detection; the oldest are dropped beyond", 50_000, gt=0)


def _networks(value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise problem("must be a list of networks such as [10.0.0.0/8, fd00::/8]")
    return parse_networks([str(v) for v in value])


def parse_networks(values: list[str]) -> tuple[str, ...]:
    """CIDR networks (IPv4 and IPv6) in their normal form; ValueError naming a bad one."""
    out = []
    for value in values:
        text = value.strip()
        if not text:
            continue
        try:
            out.append(str(ipaddress.ip_network(text, strict=False)))
        except ValueError:
            raise problem(f"has '{text}', which is not a network such as 10.0.0.0/8 or fd00::/8") from None
    if not out:
        raise problem("lists no network; name at least one, such as 10.0.0.0/8")
    return tuple(out)


def _ports(value: Any) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(p, int) and not isinstance(p, bool) and 0 <= p <= 65535 for p in value):
        raise problem("must be a list of port numbers from 0 to 65535")
    return tuple(value)


Networks = Annotated[tuple[str, ...], BeforeValidator(_networks)]
Ports = Annotated[tuple[int, ...], BeforeValidator(_ports)]


@section
class NetflowSettings:
    internal_networks: Networks = doc("your own networks (IPv4 and IPv6): they decide flow.direction; "
                                      f"${INTERNAL_NETWORKS_ENV} and --internal-networks override them",
                                      DEFAULT_INTERNAL_NETWORKS)
    thresholds: Thresholds = doc("when each flow detection tags a flow", default_factory=Thresholds)
    lateral_movement_ports: Ports = doc("internal-to-internal connections to these ports are lateral movement",
                                        tables.LATERAL_MOVEMENT_PORTS)
    sensitive_inbound_ports: Ports = doc("inbound connections from outside to these ports are tagged",
                                         tables.SENSITIVE_INBOUND_PORTS)
    usual_outbound_ports: Ports = doc("outbound connections to other ports are unusual", tables.USUAL_OUTBOUND_PORTS)
    beaconing_ignored_ports: Ports = doc("never judged for beaconing (DNS, DHCP, NTP, SNMP, syslog)",
                                         tables.BEACONING_IGNORED_PORTS)
    brute_force_ports: Ports = doc("login services watched for brute force", tables.BRUTE_FORCE_PORTS)
    input_file: Str = doc("the pmacct JSON lines file to read (print plugin or nfacctd print_output_file)", "")
    output_file: Str = doc("where normalised events are appended (default <prefix>/logs/anomaly/netflow.json)", "")
    config_file: Annotated[Optional[Path], Field(description="the file the settings were read from",
                                                 json_schema_extra={"internal": True})] = \
        dataclasses.field(default=None, compare=False)

    def networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n, strict=False) for n in self.internal_networks]


def _override(where: str, text: str) -> tuple[str, ...]:
    try:
        return parse_networks(text.split(","))
    except Exception as exc:  # noqa: BLE001 - the schema's complaint, as one sentence naming the variable
        message = getattr(exc, "context", None) or {}
        raise ConfigError(f"{where}: {message.get('message', exc)}.") from None


def load_netflow_settings(layout: Layout, path: Path | None = None, *,
                          internal_networks: str | None = None) -> NetflowSettings:
    """The settings file (missing: all defaults), then the environment, then the command line."""
    file = path or layout.etc_dir / "netflow.yaml"
    data = read_yaml_file(file, missing_ok=path is None)
    found = data is not ABSENT
    settings = validate(NetflowSettings, data if found else {}, file,
                        internal={"config_file": file if found else None})
    env = os.environ.get(INTERNAL_NETWORKS_ENV)
    if env:
        settings = dataclasses.replace(settings, internal_networks=_override(f"${INTERNAL_NETWORKS_ENV}", env))
    if internal_networks:
        settings = dataclasses.replace(settings, internal_networks=_override("--internal-networks",
                                                                             internal_networks))
    return settings


def default_output_file(layout: Layout) -> Path:
    return layout.logs_dir / "netflow.json"
