"""Rules 117000-117009 and 117040: their generated .ini cases, and real pmacct data through
the offline simulator (wazuh-anomaly's model of wazuh-analysisd, not Wazuh itself)."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta

import orjson
import pytest

from conftest import REPO, SHARED_DATA, need_shared_data
from rulecases.netflow_cases import INI_FILE_NAME, RULES_FILE_NAME, render_cases
from wazuh_anomaly.netflow.detect import TAGS
from wazuh_anomaly.netflow.normalize import Normalizer
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.netflow.stream import FlowPipeline
from wazuh_anomaly.ruleset.check import check_ruleset, format_problems
from wazuh_anomaly.ruleset.engine import RuleEngine
from wazuh_anomaly.ruleset.inifile import read_ini
from wazuh_anomaly.ruleset.rulefile import load_order, read_rule_file

RULES = REPO / "rules" / RULES_FILE_NAME
INI = REPO / "tests" / "ruleset" / INI_FILE_NAME
ALL_RULES = load_order([REPO / "rules"])
NETFLOW_FILE = "/var/ossec/logs/anomaly/netflow.json"   # the manager's own file: the only location 117000 accepts


def test_netflow_rules_pass_the_check_and_load_before_the_anomaly_rules():
    problems = check_ruleset([REPO / "rules"], [REPO / "decoders"])
    assert problems == [], format_problems(problems)
    assert [p.name for p in ALL_RULES].index(RULES_FILE_NAME) == 0


def test_every_tag_has_a_rule_and_every_rule_is_pcre2_without_full_log():
    rules = read_rule_file(RULES).rules
    matched = {f.pattern.strip('"') for r in rules for f in r.fields if f.name == "anomaly.tags"}
    assert matched == set(TAGS)
    for rule in rules:
        assert all(f.type == "pcre2" for f in rule.fields), rule.id
        assert "netflow" in rule.group and "network_anomaly" in rule.group
        if rule.level > 0:
            assert "no_full_log" in rule.options and rule.mitre, rule.id


def test_committed_netflow_ini_equals_the_freshly_generated_one():
    assert INI.read_text(encoding="utf-8") == render_cases(), \
        "generator, normaliser or rules changed: run scripts/update-rule-cases.py and review the diff"


def test_every_netflow_rule_id_has_a_case():
    assert {r.id for r in read_rule_file(RULES).rules} - {int(s.rule) for s in read_ini(INI)} == set()


SECTIONS = read_ini(INI)


@pytest.mark.parametrize("section", SECTIONS, ids=[s.name for s in SECTIONS])
def test_every_netflow_case_fires_its_rule_and_level_in_the_simulator(section):
    engine = RuleEngine(ALL_RULES)
    for run in section.runs:
        session = engine.session()
        alerts = [session.process(line, now=1_772_445_600.0 + i, location=section.location)
                  for i, line in enumerate(run.lines)]
        last = alerts[-1]
        if not run.expect_match:   # a forged line: no rule of ours at all
            assert [a.rule_id for a in alerts] == [None] * len(alerts)
            continue
        assert (str(last.rule_id), str(last.level), last.decoder) == (section.rule, section.alert, section.decoder)
        assert "$(" not in (last.description or "")


def test_forged_flow_lines_from_an_agent_or_a_syslog_sender_are_cases_that_must_not_match():
    forged = [s for s in SECTIONS if not s.runs[0].expect_match]
    assert {s.location for s in forged} == {"[003] (web-01) any->" + NETFLOW_FILE, "192.0.2.7",
                                            "/var/ossec/logs/anomaly/anomalies.json"}
    assert {s.rule for s in forged} == {"117008", "117009"}
    assert {s.location for s in SECTIONS if s.runs[0].expect_match} == {NETFLOW_FILE}


def test_a_single_syn_tagged_port_scan_raises_117001_at_level_9():
    event = Normalizer().normalize({"ip_src": "192.168.56.30", "ip_dst": "192.168.56.28", "port_src": 51515,
                                    "port_dst": 47775, "ip_proto": "tcp", "tcp_flags": "2", "packets": 1,
                                    "bytes": 44, "stamp_inserted": "2026-03-02 10:00:00"})
    event["anomaly"]["tags"].append("possible_port_scan")
    line = orjson.dumps({k: v for k, v in event.items() if not k.startswith("_")}).decode()
    alert = RuleEngine(ALL_RULES).session().process(line, now=1_772_445_600.0, location=NETFLOW_FILE)
    assert (alert.rule_id, alert.level, alert.mitre) == (117001, 9, ["T1046"])
    assert alert.description == "NetFlow: possible port scan from 192.168.56.30 to 192.168.56.28 (tcp)."


def _alerts_for(name: str) -> list:
    pipeline = FlowPipeline(NetflowSettings())
    session = RuleEngine(ALL_RULES).session()
    alerts = []
    for i, line in enumerate((SHARED_DATA / "pmacct" / name).read_text().splitlines()):
        event = pipeline.event(json.loads(line))
        alerts.append((event, session.process(orjson.dumps(event).decode(), now=1_772_445_600.0 + i,
                                              location=NETFLOW_FILE)))
    return alerts


def test_real_icmp_sweep_raises_port_scan_alerts_then_the_escalation():
    need_shared_data("pmacct/test12-icmp-portscan.json")
    fired = [(a.rule_id, a.level) for e, a in _alerts_for("test12-icmp-portscan.json") if a.rule_id != 117000]
    assert set(fired) == {(117001, 9), (117009, 12)}
    assert fired[:4] == [(117001, 9)] * 4 and fired[4] == (117009, 12)


def test_real_ssh_brute_force_raises_117040_with_the_attacker_in_srcip():
    need_shared_data("pmacct/malicious-ssh-bruteforce.json")
    alerts = [(e, a) for e, a in _alerts_for("malicious-ssh-bruteforce.json") if a.rule_id != 117000]
    assert alerts and {(a.rule_id, a.level) for _, a in alerts} == {(117040, 10)}
    assert {a.static.get("srcip") for _, a in alerts} == {"147.32.80.40"}
    assert all(a.mitre == ["T1110"] for _, a in alerts)


# -- the port-scan escalation 117009: decided from flow time, written into the line ------------

def _scan_lines(records: list[dict], pipeline: FlowPipeline | None = None) -> list[str]:
    pipeline = pipeline or FlowPipeline(NetflowSettings())
    return [orjson.dumps(pipeline.event(r)).decode() for r in records]


def _fired(lines: list[str]) -> list[tuple[int, int]]:
    session = RuleEngine(ALL_RULES).session()
    return [(a.rule_id, a.level) for i, line in enumerate(lines)
            for a in [session.process(line, now=1_772_445_600.0 + i, location=NETFLOW_FILE)]]


def test_port_scan_flows_in_20_random_orders_raise_the_same_alerts():
    from wazuh_anomaly.netflow.generate import raw_records
    lines = _scan_lines(raw_records("port_scan", 12) + raw_records("icmp_sweep", 8))
    reference = dict(zip(lines, _fired(lines)))
    assert list(reference.values()).count((117009, 12)) >= 10
    for seed in range(20):
        shuffled = list(lines)
        random.Random(seed).shuffle(shuffled)
        assert dict(zip(shuffled, _fired(shuffled))) == reference, f"order {seed} gave other alerts"


def _shifted(records: list[dict], minutes: float) -> list[dict]:
    out = []
    for r in records:
        shifted = dict(r)
        for key in ("timestamp_start", "timestamp_end"):
            when = datetime.strptime(r[key], "%Y-%m-%d %H:%M:%S.%f") + timedelta(minutes=minutes)
            shifted[key] = when.strftime("%Y-%m-%d %H:%M:%S.%f")
        out.append(shifted)
    return out


def test_port_scan_bursts_further_apart_than_the_window_never_escalate_even_when_read_at_once():
    from wazuh_anomaly.netflow.generate import raw_records
    burst = raw_records("port_scan", 4)                  # four tagged probes each
    lines = _scan_lines([r for b in range(3) for r in _shifted(burst, 11 * b)])
    fired = _fired(lines)                                 # all read within seconds
    assert fired.count((117001, 9)) == 12 and (117009, 12) not in fired
    close = _scan_lines([r for b in range(3) for r in _shifted(burst, 4 * b)])
    assert (117009, 12) in _fired(close)


def test_a_scan_split_across_two_normaliser_runs_escalates_at_the_same_flow():
    from wazuh_anomaly.netflow.generate import raw_records
    records = raw_records("port_scan", 12)
    at_once = _scan_lines(records)
    first = FlowPipeline(NetflowSettings())
    head = _scan_lines(records[:20], first)
    state = json.loads(json.dumps(first.detector.to_json()))   # saved and loaded between runs
    tail = _scan_lines(records[20:], FlowPipeline(NetflowSettings(), state))
    assert head + tail == at_once
    assert any('"escalated":"true"' in line for line in tail)
