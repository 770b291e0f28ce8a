"""Lookup tables of the NetFlow path: IP protocol names, service names by port, TCP
flags, and the port sets the flow detections use. Plain data, no I/O."""
from __future__ import annotations

# IANA protocol numbers pmacct may report as numbers (nfacctd) or names (pmacctd).
PROTOCOL_NAMES = {
    1: "icmp", 2: "igmp", 4: "ipip", 6: "tcp", 17: "udp", 41: "ipv6", 47: "gre", 50: "esp",
    51: "ah", 58: "icmpv6", 89: "ospf", 103: "pim", 112: "vrrp", 132: "sctp",
}
# pmacctd spells some names its own way ("ipv6-icmp" from getprotobynumber on some systems).
PROTOCOL_ALIASES = {"ipv6-icmp": "icmpv6", "icmp6": "icmpv6", "ipv6icmp": "icmpv6"}
KNOWN_PROTOCOLS = frozenset(PROTOCOL_NAMES.values())
ICMP_PROTOCOLS = frozenset({"icmp", "icmpv6"})
PORT_PROTOCOLS = frozenset({"tcp", "udp", "sctp"})

# Service names by destination port (IANA / /etc/services), for `service.name`.
SERVICES = {
    20: "ftp-data", 21: "ftp", 22: "ssh", 23: "telnet", 25: "smtp", 53: "dns", 67: "dhcp",
    68: "dhcp", 69: "tftp", 80: "http", 88: "kerberos", 110: "pop3", 111: "rpcbind",
    123: "ntp", 135: "msrpc", 137: "netbios-ns", 138: "netbios-dgm", 139: "netbios-ssn",
    143: "imap", 161: "snmp", 162: "snmptrap", 179: "bgp", 389: "ldap", 443: "https",
    445: "smb", 465: "smtps", 500: "isakmp", 514: "syslog", 515: "printer", 587: "submission",
    636: "ldaps", 853: "dns-over-tls", 873: "rsync", 902: "vmware-auth", 993: "imaps",
    995: "pop3s", 1080: "socks", 1194: "openvpn", 1433: "mssql", 1521: "oracle",
    1723: "pptp", 1883: "mqtt", 2049: "nfs", 2375: "docker", 2376: "docker-tls",
    3128: "squid", 3306: "mysql", 3389: "rdp", 4444: "metasploit", 5060: "sip",
    5432: "postgresql", 5900: "vnc", 5985: "winrm", 5986: "winrm-https", 6379: "redis",
    6443: "kubernetes-api", 8080: "http-alt", 8443: "https-alt", 9200: "elasticsearch",
    11211: "memcached", 27017: "mongodb",
}

# TCP flag bits as pmacct reports them (the OR of every packet's flags in the flow).
TCP_FLAGS = ((0x01, "FIN"), (0x02, "SYN"), (0x04, "RST"), (0x08, "PSH"), (0x10, "ACK"),
             (0x20, "URG"), (0x40, "ECE"), (0x80, "CWR"))
SYN, ACK, RST = 0x02, 0x10, 0x04

# Remote administration and databases: lateral movement when one internal host reaches another.
LATERAL_MOVEMENT_PORTS = (22, 445, 3389, 5985, 5986, 1433, 3306)
# Services that should never be reachable from outside.
SENSITIVE_INBOUND_PORTS = (22, 23, 135, 139, 445, 1433, 1521, 2375, 3306, 3389, 5432, 5900,
                           5985, 5986, 6379, 9200, 11211, 27017)
# Destination ports ordinary clients use to reach the internet; anything else is unusual.
USUAL_OUTBOUND_PORTS = (20, 21, 22, 25, 53, 80, 110, 123, 143, 443, 465, 587, 853, 993, 995,
                        1194, 3478, 5228, 8080, 8443)
DNS_PORTS = (53, 853)
# Services that take a password: many new connections from one source are a guessing attack.
# 902 is VMware's authentication daemon (the Stratosphere SSH brute-force capture targets it).
BRUTE_FORCE_PORTS = (21, 22, 23, 25, 110, 143, 389, 445, 465, 587, 636, 902, 993, 995, 1433,
                     1521, 3306, 3389, 5432, 5900, 5985, 5986)
# Periodic by design: never beaconing (DNS, NTP, DHCP, SNMP traps, syslog).
BEACONING_IGNORED_PORTS = (53, 67, 68, 123, 161, 162, 514)

# Lower than this, a port is a service port; a flow from a service port to a higher
# port is a server's reply, not a connection attempt.
EPHEMERAL_PORT_START = 1024


def tcp_flag_names(bits: int) -> list[str]:
    return [name for bit, name in TCP_FLAGS if bits & bit]


def service_name(port: int | None) -> str | None:
    return SERVICES.get(port) if port is not None else None
