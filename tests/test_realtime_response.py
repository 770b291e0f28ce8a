"""active-response/bin/anomaly-response: the 4.2+ execd protocol end to end, the firewall
commands (in a network namespace when the machine allows it), and the never-block list."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import REPO
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.realtime.schema import parse_active_response
from wazuh_anomaly.realtime import response

ENV = {**os.environ, "PYTHONPATH": str(REPO / "integration")}
LOG_LINE = re.compile(r"^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} active-response/bin/anomaly-response: .+$")


def anomaly_alert(srcip="203.0.113.45", severity="critical", rule="117240") -> dict:
    """An alert as analysisd writes it for one of our events (json decoder fields under data)."""
    return {"timestamp": "2022-01-24T04:00:01.000+0000", "rule": {"id": rule, "level": 12},
            "agent": {"id": "000", "name": "manager"},
            "data": {"integration": "anomaly", "srcip": srcip,
                     "anomaly": {"kind": "rare_value", "severity": severity, "scenario": "new_srcip_for_user"}}}


def execd_message(command: str, alert: dict) -> str:
    return json.dumps({"version": 1, "origin": {"name": "node01", "module": "wazuh-execd"}, "command": command,
                       "parameters": {"extra_args": [], "alert": alert,
                                      "program": "active-response/bin/anomaly-response"}}) + "\n"


CFG = response._checked(parse_active_response({"never_block": ["198.51.100.7", "2001:db8:dead::/48"]}, "x"), "x")


# ----------------------------------------------------------------- the never-block list

@pytest.mark.parametrize("srcip", ["10.1.2.3", "172.20.0.9", "192.168.128.4", "100.64.1.1", "127.0.0.1", "169.254.3.3",
                                   "::1", "fe80::1", "fd12:3456::1", "::ffff:10.0.0.1", "0.0.0.0", "224.0.0.1",
                                   "198.51.100.7", "2001:db8:dead::5"])
def test_internal_networks_and_critical_hosts_are_never_blocked(srcip):
    address, why = response.decide(anomaly_alert(srcip), CFG, own=[])
    assert address is None and "never-block" in why


def test_the_managers_own_addresses_are_never_blocked():
    import ipaddress
    address, why = response.decide(anomaly_alert("203.0.113.10"), CFG, own=[ipaddress.ip_address("203.0.113.10")])
    assert address is None and "address of this manager" in why


def test_an_alert_from_an_agent_never_reaches_the_firewall():
    """Defence in depth behind the rules' <location>: our events come from the manager (agent 000)."""
    for agent in ({"id": "003", "name": "web-01"}, {"name": "manager"}, "000", None):
        alert = dict(anomaly_alert(), agent=agent)
        address, why = response.decide(alert, CFG, own=[])
        assert address is None and "refusing to act on it" in why
    assert response.decide(anomaly_alert(), CFG, own=[])[0] == "203.0.113.45"


@pytest.mark.parametrize("alert, reason", [
    (anomaly_alert(severity="high"), "below min_severity critical"),
    (anomaly_alert(srcip=""), "no srcip"),
    (anomaly_alert(srcip="not-an-ip"), "not an IP address"),
    ({"rule": {"id": "5710"}, "data": {"srcip": "203.0.113.45"}}, "not a wazuh-anomaly event"),
])
def test_an_add_below_the_bar_is_refused(alert, reason):
    address, why = response.decide(alert, CFG, own=[])
    assert address is None and reason in why


@pytest.mark.parametrize("srcip", ["203.0.113.45", "2001:4860:4860::8888", "::ffff:203.0.113.45"])
def test_a_public_source_of_a_critical_anomaly_is_blocked(srcip):
    address, _ = response.decide(anomaly_alert(srcip), CFG, own=[])
    assert address in ("203.0.113.45", "2001:4860:4860::8888")


def test_min_severity_is_configurable_and_bad_config_is_one_sentence(tmp_path):
    path = tmp_path / "active-response.yaml"
    path.write_text("min_severity: high\nnever_block: [192.0.2.0/24]\n")
    cfg = response.load_config(str(path))
    assert response.decide(anomaly_alert(severity="high"), cfg, own=[])[0] == "203.0.113.45"
    assert response.decide(anomaly_alert("192.0.2.9"), cfg, own=[])[0] is None
    path.write_text("never_block: [my-laptop]\n")
    with pytest.raises(ConfigError, match="key 'never_block' holds 'my-laptop', which is not an address or CIDR network"):
        response.load_config(str(path))


# ----------------------------------------------------------------- exact firewall argv

def test_nftables_commands_use_one_table_with_a_set_per_family():
    v4 = response.block_commands("203.0.113.45", "nftables")
    assert v4[0] == ["nft", "add", "table", "inet", "wazuh_anomaly"]
    assert ["nft", "add", "chain", "inet", "wazuh_anomaly", "input",
            "{ type filter hook input priority -10; policy accept; }"] in v4
    assert ["nft", "add", "rule", "inet", "wazuh_anomaly", "input", "ip6", "saddr", "@blocked6", "drop"] in v4
    assert v4[-1] == ["nft", "add", "element", "inet", "wazuh_anomaly", "blocked4", "{ 203.0.113.45 }"]
    assert response.block_commands("2001:db8::1", "nftables")[-1][-2:] == ["blocked6", "{ 2001:db8::1 }"]
    assert response.unblock_commands("203.0.113.45", "nftables") == [
        ["nft", "delete", "element", "inet", "wazuh_anomaly", "blocked4", "{ 203.0.113.45 }"]]


def test_iptables_commands_block_input_and_forward_per_family():
    assert response.block_commands("203.0.113.45", "iptables") == [
        ["iptables", "-I", "INPUT", "-s", "203.0.113.45", "-j", "DROP"],
        ["iptables", "-I", "FORWARD", "-s", "203.0.113.45", "-j", "DROP"]]
    assert response.unblock_commands("2001:db8::1", "iptables") == [
        ["ip6tables", "-D", "INPUT", "-s", "2001:db8::1", "-j", "DROP"],
        ["ip6tables", "-D", "FORWARD", "-s", "2001:db8::1", "-j", "DROP"]]


# ----------------------------------------------------------------- end to end against an execd peer

def can_use_netns() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("nft") or not shutil.which("iptables"):
        return False
    name = f"wa-probe-{uuid.uuid4().hex[:6]}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        return False
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return True


needs_netns = pytest.mark.skipif(not can_use_netns(),
                                 reason="needs root, ip netns, nft and iptables (.ci/run installs nftables and iptables)")


@pytest.fixture
def netns():
    name = f"wa-test-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "del", name], check=True)


@pytest.fixture
def prefix(tmp_path) -> Path:
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    (tmp_path / "etc/anomaly/active-response.yaml").write_text("never_block: [198.51.100.7]\n")
    return tmp_path


class Execd:
    """Plays wazuh-execd: spawns the real script, writes the message, answers check_keys."""

    def __init__(self, prefix: Path, netns: str | None):
        self.prefix, self.netns = prefix, netns

    def run(self, command: str, alert: dict, answer: str | None = "continue") -> tuple[int, list[dict]]:
        argv = [sys.executable, "-m", "wazuh_anomaly.realtime.response", "--prefix", str(self.prefix)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV)
        proc.stdin.write(execd_message(command, alert))
        proc.stdin.flush()
        received = []
        if command == "add":
            line = proc.stdout.readline()          # execd reads one line after writing the add
            if line:
                received.append(json.loads(line))
                if answer is not None:
                    proc.stdin.write(json.dumps({"version": 1, "origin": {"name": "node01", "module": "wazuh-execd"},
                                                 "command": answer, "parameters": {}}) + "\n")
                    proc.stdin.flush()
        proc.stdin.close()
        rest = proc.stdout.read()
        assert rest == "", f"unexpected output after the protocol: {rest!r}"
        return proc.wait(timeout=30), received

    def ns(self, *argv: str) -> str:
        return subprocess.run(["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, check=True).stdout


def all_log_lines(prefix: Path) -> list[str]:
    return (prefix / "logs/active-responses.log").read_text().splitlines()


def log_lines(prefix: Path) -> list[str]:
    """The decisions (the messages received, logged as Wazuh's scripts do, left out)."""
    return [line for line in all_log_lines(prefix) if not line.split(": ", 1)[1].startswith("{")]


def test_the_message_received_is_logged_first_as_wazuhs_own_scripts_do(prefix):
    Execd(prefix, None).run("add", anomaly_alert(severity="low"))
    first, decision = all_log_lines(prefix)
    assert LOG_LINE.match(first) and json.loads(first.split(": ", 1)[1])["command"] == "add"
    assert "below min_severity" in decision


@needs_netns
@pytest.mark.parametrize("srcip, family_set", [("203.0.113.45", "blocked4"), ("2001:4860:4860::8888", "blocked6")])
def test_execd_add_check_keys_continue_blocks_abort_refreshes_delete_unblocks_nftables(prefix, netns, srcip, family_set):
    execd = Execd(prefix, netns)
    code, received = execd.run("add", anomaly_alert(srcip))
    assert code == 0
    assert received == [{"version": 1, "origin": {"name": "anomaly-response", "module": "active-response"},
                         "command": "check_keys", "parameters": {"keys": [srcip]}}]
    assert srcip in execd.ns("nft", "list", "set", "inet", "wazuh_anomaly", family_set)
    ruleset = execd.ns("nft", "list", "table", "inet", "wazuh_anomaly")
    assert ruleset.count("ip saddr @blocked4 drop") == 2       # input and forward, once each

    code, received = execd.run("add", anomaly_alert(srcip), answer="abort")   # the key is active
    assert code == 0 and received[0]["command"] == "check_keys"
    assert execd.ns("nft", "list", "table", "inet", "wazuh_anomaly").count("ip saddr @blocked4 drop") == 2

    other = "203.0.113.99" if family_set == "blocked4" else "2001:4860:4860::8844"
    assert execd.run("add", anomaly_alert(other))[0] == 0          # a second address: same rules, one more element
    table = execd.ns("nft", "list", "table", "inet", "wazuh_anomaly")
    assert table.count("ip saddr @blocked4 drop") == 2 and table.count("ip6 saddr @blocked6 drop") == 2

    code, received = execd.run("delete", anomaly_alert(srcip))
    assert code == 0 and received == []
    assert other in execd.ns("nft", "list", "set", "inet", "wazuh_anomaly", family_set)
    assert srcip not in execd.ns("nft", "list", "set", "inet", "wazuh_anomaly", family_set)
    logged = log_lines(prefix)
    assert all(LOG_LINE.match(line) for line in all_log_lines(prefix))
    assert [line.split(": ", 1)[1] for line in logged] == [
        f"add (rule 117240, severity critical): blocked {srcip} with nftables",
        f"add (rule 117240): {srcip} is already blocked; wazuh-execd refreshed its timeout",
        f"add (rule 117240, severity critical): blocked {other} with nftables",
        f"delete (rule 117240): unblocked {srcip} (nftables)"]


@needs_netns
def test_execd_add_and_delete_with_iptables(prefix, netns):
    (prefix / "etc/anomaly/active-response.yaml").write_text("firewall: iptables\n")
    execd = Execd(prefix, netns)
    assert execd.run("add", anomaly_alert("203.0.113.46"))[0] == 0
    assert "-A INPUT -s 203.0.113.46/32 -j DROP" in execd.ns("iptables", "-S", "INPUT")
    assert "-A FORWARD -s 203.0.113.46/32 -j DROP" in execd.ns("iptables", "-S", "FORWARD")
    assert execd.run("add", anomaly_alert("2001:db8:1::9"))[0] == 0
    assert "-A INPUT -s 2001:db8:1::9/128 -j DROP" in execd.ns("ip6tables", "-S", "INPUT")
    assert execd.run("delete", anomaly_alert("203.0.113.46"))[0] == 0
    assert "203.0.113.46" not in execd.ns("iptables", "-S")


@needs_netns
@pytest.mark.parametrize("srcip, reason", [("192.168.128.4", "never-block list (192.168.0.0/16)"),
                                           ("198.51.100.7", "never-block list (198.51.100.7/32)"),
                                           ("fd00::7", "never-block list (fc00::/7)")])
def test_execd_add_of_a_protected_address_gets_no_check_keys_and_nothing_runs(prefix, netns, srcip, reason):
    execd = Execd(prefix, netns)
    code, received = execd.run("add", anomaly_alert(srcip))
    assert code == 0 and received == []            # no check_keys: execd adds no timer, sends no delete
    assert execd.ns("nft", "list", "ruleset").strip() == ""
    (line,) = log_lines(prefix)
    assert LOG_LINE.match(line) and reason in line and "add refused (rule 117240)" in line


def test_execd_add_below_the_severity_floor_runs_nothing(prefix):
    # no namespace needed: nothing may run, so nothing can touch this host's firewall
    code, received = Execd(prefix, None).run("add", anomaly_alert(severity="medium"))
    assert code == 0 and received == []
    assert "severity medium is below min_severity critical; not blocked" in log_lines(prefix)[0]


def test_input_that_is_not_the_json_protocol_is_logged_and_refused(prefix):
    proc = subprocess.run([sys.executable, "-m", "wazuh_anomaly.realtime.response", "--prefix", str(prefix)],
                          input="add - 203.0.113.45 1234.5 117240\n", capture_output=True, text=True, env=ENV)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "invalid input from wazuh-execd (not the 4.2+ JSON protocol)" in log_lines(prefix)[0]
