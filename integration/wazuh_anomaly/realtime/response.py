"""`active-response/bin/anomaly-response`: blocks the source address of a critical
anomaly with nftables or iptables, guarded by a never-block list.

Wazuh 4.2+ protocol (WAZUH.md section 6): wazuh-execd writes one JSON line
({"command": "add"|"delete", "parameters": {"alert": {...}, "extra_args": [...]}}) on
stdin. For `add` the script answers one `check_keys` line with the address as key and
waits for execd's `continue` (block it) or `abort` (already blocked: execd refreshed
its timer); after the timeout execd runs the script again with `delete`.

An `add` is refused, and nothing is run, when the alert has no valid source address,
is not a wazuh-anomaly event, is below `min_severity`, or its address is in the
never-block list: the internal networks (RFC 1918, CGNAT, loopback, link-local, ULA,
multicast, unspecified), every address of this manager, and the configured critical
hosts. The message received and every decision are lines in logs/active-responses.log,
in the format of Wazuh's own scripts ("YYYY/MM/DD HH:MM:SS active-response/bin/anomaly-response: ...").
Firewall commands are argv lists, never shell strings.

Config: etc/anomaly/active-response.yaml (min_severity, never_block, firewall,
internal_networks).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time

from ..core.errors import ConfigError, UnsafePath
from ..core.eventtext import MAX_LINE_BYTES, MAX_NAME, MAX_SUMMARY, clip
from ..core.fileio import open_append

NAME = "anomaly-response"
PROGRAM = f"active-response/bin/{NAME}"
SEVERITIES = ("low", "medium", "high", "critical")
# Never blocked, whatever the alert says (overridable only by listing them yourself).
INTERNAL_NETWORKS = (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",      # RFC 1918
    "100.64.0.0/10",                                      # carrier-grade NAT (RFC 6598)
    "127.0.0.0/8", "::1/128",                             # loopback
    "169.254.0.0/16", "fe80::/10",                        # link-local
    "fc00::/7",                                           # unique local (ULA)
    "0.0.0.0/8", "::/128",                                # unspecified / this network
    "224.0.0.0/4", "ff00::/8", "255.255.255.255/32",      # multicast, broadcast
)
NFT_TABLE = "wazuh_anomaly"
# What one message may take in logs/active-responses.log, which logcollector reads.
LOG_MESSAGE_BYTES = MAX_LINE_BYTES - 200


# ----------------------------------------------------------------------------- config

def load_config(path: str) -> dict:
    """The active-response settings; a missing file means the safe defaults. The file is
    checked by the one configuration schema (realtime/schema.py)."""
    from .schema import parse_active_response
    try:
        import yaml
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh)
    except FileNotFoundError:
        raw = {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc}); fix it or remove it to use the defaults.") from None
    return _checked(parse_active_response(raw, path), path)


def _networks(path: str, key: str, items) -> list:
    if not isinstance(items, list):
        raise ConfigError(f"{path}: key '{key}' must be a list of addresses or CIDR networks.")
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ConfigError(f"{path}: key '{key}' holds '{item}', which is not an address or CIDR network.") from None
    return out


def _checked(cfg: dict, path: str) -> dict:
    internal = list(INTERNAL_NETWORKS) if cfg["internal_networks"] == "default" else cfg["internal_networks"]
    cfg["never_block_networks"] = _networks(path, "internal_networks", internal) + _networks(path, "never_block", cfg["never_block"])
    return cfg


# ----------------------------------------------------------------------------- decisions

def own_addresses(runner=subprocess.run) -> list:
    """Every address of this host's interfaces (`ip -j addr show`); never blocked."""
    ip = shutil.which("ip") or "/usr/sbin/ip"
    done = runner([ip, "-j", "addr", "show"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"'ip -j addr show' failed: {done.stderr.strip()}")
    out = []
    for link in json.loads(done.stdout or "[]"):
        for info in link.get("addr_info") or ():
            try:
                out.append(ipaddress.ip_address(info["local"]))
            except (KeyError, ValueError):
                continue
    return out


def canonical_address(raw):
    """The address in `raw` (an IPv4-mapped IPv6 address as IPv4), or None: only a string
    holding one plain address, without an IPv6 zone or scope ('%eth0') and without a
    prefix length. Only `str()` of what this returns ever reaches a firewall command."""
    if not isinstance(raw, str):
        return None
    text = raw.strip()
    if not text or len(text) > 45 or "%" in text:
        return None
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if getattr(address, "scope_id", None):
        return None
    if address.version == 6 and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address


def _firewall_address(address: str) -> str:
    """`address` if it is exactly the canonical text of an address, else ValueError: the
    last check before an argv (a zone or stray text must never reach nft or iptables)."""
    parsed = canonical_address(address)
    if parsed is None or str(parsed) != address:
        raise ValueError(f"{address!r} is not the canonical text of an IP address; no firewall command is built")
    return address


def source_address(alert: dict) -> str | None:
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    return data.get("srcip") or alert.get("srcip")


def anomaly_severity(alert: dict) -> str | None:
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    anomaly = data.get("anomaly")
    if isinstance(anomaly, dict):
        return anomaly.get("severity")
    return data.get("anomaly.severity")


def decide(alert: dict, cfg: dict, own: list) -> tuple[str | None, str]:
    """(address to block, why) or (None, why not)."""
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    if data.get("integration") != "anomaly":
        return None, "not a wazuh-anomaly event (data.integration is not 'anomaly'); refusing to act on it"
    agent = alert.get("agent") if isinstance(alert.get("agent"), dict) else {}
    if agent.get("id") != "000":
        # Our events come from files on the manager (agent 000); the rules are bound to those
        # files, and this second check keeps an agent's line from ever reaching the firewall.
        return None, (f"the alert came from agent {str(agent.get('id'))[:20]!r}, not from this manager's own "
                      f"anomalies file; refusing to act on it")
    raw = source_address(alert)
    if not raw:
        return None, "the alert carries no srcip; nothing to block"
    address = canonical_address(raw)
    if address is None:
        return None, f"srcip {str(raw)[:100]!r} is not an IP address (one plain address, no zone); nothing blocked"
    severity = anomaly_severity(alert)
    if severity not in SEVERITIES:
        return None, f"{address}: severity {severity!r} unknown; nothing blocked"
    if SEVERITIES.index(severity) < SEVERITIES.index(cfg["min_severity"]):
        return None, f"{address}: severity {severity} is below min_severity {cfg['min_severity']}; not blocked"
    for net in cfg["never_block_networks"]:
        if address.version == net.version and address in net:
            return None, f"{address} is in the never-block list ({net}); not blocked"
    if address in own:
        return None, f"{address} is an address of this manager; not blocked"
    return str(address), f"severity {severity}"


# ----------------------------------------------------------------------------- firewall

def backend(cfg: dict) -> str:
    if cfg["firewall"] != "auto":
        return cfg["firewall"]
    return "nftables" if shutil.which("nft") else "iptables"


def block_commands(address: str, fw: str, *, existing: str = "") -> list[list[str]]:
    """The argv lists that block `address` (nftables: a set per family in our own table)."""
    v6 = ":" in _firewall_address(address)
    if fw == "nftables":
        setname = "blocked6" if v6 else "blocked4"
        cmds = [["nft", "add", "table", "inet", NFT_TABLE],
                ["nft", "add", "set", "inet", NFT_TABLE, "blocked4", "{ type ipv4_addr; }"],
                ["nft", "add", "set", "inet", NFT_TABLE, "blocked6", "{ type ipv6_addr; }"]]
        for chain, hook in (("input", "input"), ("forward", "forward")):
            cmds.append(["nft", "add", "chain", "inet", NFT_TABLE, chain,
                         f"{{ type filter hook {hook} priority -10; policy accept; }}"])
            if f"chain {chain}" not in existing or "@blocked4" not in existing.split(f"chain {chain}", 1)[1].split("}", 1)[0]:
                cmds.append(["nft", "add", "rule", "inet", NFT_TABLE, chain, "ip", "saddr", "@blocked4", "drop"])
                cmds.append(["nft", "add", "rule", "inet", NFT_TABLE, chain, "ip6", "saddr", "@blocked6", "drop"])
        cmds.append(["nft", "add", "element", "inet", NFT_TABLE, setname, f"{{ {address} }}"])
        return cmds
    tool = "ip6tables" if v6 else "iptables"
    return [[tool, "-I", chain, "-s", address, "-j", "DROP"] for chain in ("INPUT", "FORWARD")]


def unblock_commands(address: str, fw: str) -> list[list[str]]:
    v6 = ":" in _firewall_address(address)
    if fw == "nftables":
        return [["nft", "delete", "element", "inet", NFT_TABLE, "blocked6" if v6 else "blocked4", f"{{ {address} }}"]]
    tool = "ip6tables" if v6 else "iptables"
    return [[tool, "-D", chain, "-s", address, "-j", "DROP"] for chain in ("INPUT", "FORWARD")]


def _run(argv: list[str], runner) -> subprocess.CompletedProcess:
    exe = shutil.which(argv[0]) or argv[0]
    return runner([exe, *argv[1:]], capture_output=True, text=True, timeout=30)


def apply_block(address: str, fw: str, runner=subprocess.run) -> tuple[bool, str]:
    _firewall_address(address)
    existing = ""
    if fw == "nftables":
        listed = _run(["nft", "list", "table", "inet", NFT_TABLE], runner)
        existing = listed.stdout if listed.returncode == 0 else ""
    else:
        tool = "ip6tables" if ":" in address else "iptables"
        if _run([tool, "-C", "INPUT", "-s", address, "-j", "DROP"], runner).returncode == 0:
            return True, f"{address} was already blocked by {tool}"
    for argv in block_commands(address, fw, existing=existing):
        done = _run(argv, runner)
        if done.returncode != 0:
            return False, f"'{' '.join(argv)}' failed: {done.stderr.strip()[:200]}"
    return True, f"blocked {address} with {fw}"


def apply_unblock(address: str, fw: str, runner=subprocess.run) -> tuple[bool, str]:
    _firewall_address(address)
    failures = []
    for argv in unblock_commands(address, fw):
        done = _run(argv, runner)
        if done.returncode != 0:
            failures.append(done.stderr.strip()[:200])
    if failures:
        return False, f"unblocking {address} with {fw} failed: {'; '.join(failures)}"
    return True, f"unblocked {address} ({fw})"


# ----------------------------------------------------------------------------- protocol

def log(prefix: str, message: str) -> None:
    """One line in logs/active-responses.log, as Wazuh's own scripts write it, never
    longer than logcollector reads (a longer one would vanish): a message past the
    limit is cut and ends with '...'; control characters (a newline in an error) become spaces."""
    message = clip(message, LOG_MESSAGE_BYTES)
    line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {PROGRAM}: {message}\n"
    path = os.path.join(prefix, "logs", "active-responses.log")
    try:
        # logs/ belongs to the wazuh user and this runs as root: never append through a planted link
        fd = open_append(path, 0o660)
    except UnsafePath as exc:
        sys.stderr.write(line)
        sys.stderr.write(f"{time.strftime('%Y/%m/%d %H:%M:%S')} {PROGRAM}: {exc}\n")
        return
    except OSError:
        sys.stderr.write(line)
        return
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def as_received(line: str) -> str:
    """The execd message for the log, within LOG_MESSAGE_BYTES and still JSON: a message
    too long (the alert carries our whole line twice, as full_log and as data) keeps
    what identifies the alert, and says so in `"truncated": "parameters.alert"`."""
    text = line.strip()
    if len(text.encode("utf-8")) <= LOG_MESSAGE_BYTES:
        return text
    try:
        request = json.loads(text)
        alert = request["parameters"]["alert"]
        rule = alert.get("rule") if isinstance(alert.get("rule"), dict) else {}
        agent = alert.get("agent") if isinstance(alert.get("agent"), dict) else {}
    except (ValueError, KeyError, TypeError, AttributeError):
        return clip(text, LOG_MESSAGE_BYTES)
    data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
    body = data.get("anomaly") if isinstance(data.get("anomaly"), dict) else {}
    def cut(value, limit: int):
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else clip(value, limit)

    short = {"timestamp": cut(alert.get("timestamp", ""), MAX_NAME), "id": cut(alert.get("id", ""), MAX_NAME),
             "rule": {k: cut(rule[k], MAX_SUMMARY) for k in ("id", "level", "description") if k in rule},
             "agent": {k: cut(agent[k], MAX_NAME) for k in ("id", "name") if k in agent},
             "data": {"srcip": cut(source_address(alert) or "", MAX_NAME),
                      "anomaly": {k: cut(body[k], MAX_NAME) for k in ("id", "kind", "scenario", "severity") if k in body}}}
    slim = {k: v for k, v in request.items() if k != "parameters"}
    params = request["parameters"] if isinstance(request["parameters"], dict) else {}
    slim["parameters"] = {k: v for k, v in params.items() if k != "alert"}
    slim["parameters"]["alert"] = short
    slim["truncated"] = "parameters.alert"
    out = json.dumps(slim, ensure_ascii=False)
    return out if len(out.encode("utf-8")) <= LOG_MESSAGE_BYTES else clip(text, LOG_MESSAGE_BYTES)


def _message(command: str, keys: list[str] | None = None) -> str:
    body = {"version": 1, "origin": {"name": NAME, "module": "active-response"}, "command": command,
            "parameters": {"keys": keys or []}}
    return json.dumps(body) + "\n"


def main(argv: list[str] | None = None, stdin=None, stdout=None, runner=subprocess.run) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = os.environ.get("WAZUH_ANOMALY_PREFIX") or "/var/ossec"
    if len(args) >= 2 and args[0] == "--prefix":
        prefix = args[1]
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    line = stdin.readline()
    try:
        request = json.loads(line)
        command = request["command"]
        alert = request["parameters"]["alert"]
        if not isinstance(alert, dict):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        log(prefix, f"invalid input from wazuh-execd (not the 4.2+ JSON protocol): {line[:200]!r}")
        return 1
    # Like Wazuh's own scripts: the message as received (the stock ar_log_json decoder reads it).
    log(prefix, as_received(line))
    rule = alert.get("rule")
    rule = str(rule.get("id", "?"))[:20] if isinstance(rule, dict) else "?"
    try:
        cfg = load_config(os.path.join(prefix, "etc", "anomaly", "active-response.yaml"))
    except ConfigError as exc:
        log(prefix, f"{command} refused: {exc}")
        return 1
    fw = backend(cfg)
    if command == "delete":
        raw = source_address(alert)
        parsed = canonical_address(raw)
        if parsed is None:
            log(prefix, f"delete: srcip {str(raw)[:100]!r} is not an IP address; nothing to unblock")
            return 1
        address = str(parsed)
        ok, what = apply_unblock(address, fw, runner)
        log(prefix, f"delete (rule {rule}): {what}")
        return 0 if ok else 1
    if command != "add":
        log(prefix, f"unknown command {command!r}; expected add or delete")
        return 1
    try:
        own = own_addresses(runner)
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError) as exc:
        # Without our own addresses we cannot prove we are not blocking ourselves: fail closed.
        log(prefix, f"add refused (rule {rule}): cannot list this manager's addresses ({exc})")
        return 1
    address, why = decide(alert, cfg, own)
    if address is None:
        log(prefix, f"add refused (rule {rule}): {why}")
        return 0
    stdout.write(_message("check_keys", [address]))
    stdout.flush()
    answer = stdin.readline()
    try:
        reply = json.loads(answer).get("command")
    except (ValueError, AttributeError):
        reply = None
    if reply == "abort":
        log(prefix, f"add (rule {rule}): {address} is already blocked; wazuh-execd refreshed its timeout")
        return 0
    if reply != "continue":
        log(prefix, f"add (rule {rule}): no continue from wazuh-execd ({answer.strip()[:100]!r}); nothing blocked")
        return 1
    ok, what = apply_block(address, fw, runner)
    log(prefix, f"add (rule {rule}, {why}): {what}" if ok else f"add (rule {rule}): {what}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
