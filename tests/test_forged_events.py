"""Anyone can write a JSON line that looks like ours: an agent (a <localfile> on the agent)
or a remote syslog sender. Our rules only match lines the manager's own logcollector read
from our own files, so a forged line gives no alert, whatever it says (docs/security.md).

Through the offline simulator of wazuh-analysisd (its <location> handling follows
OS_CleanMSG and OS_CheckIfRuleMatch); tests/test_logtest.py sends the same cases through
the logtest socket protocol, tests/test_install.py checks the rendered, installed rules.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.paths import PREFIX_ENV
from wazuh_anomaly.ruleset.engine import RuleEngine, event_location
from wazuh_anomaly.ruleset.inifile import read_ini
from wazuh_anomaly.ruleset.locations import (
    ANOMALIES_REL, NETFLOW_REL, SYSLOG_SENDER, agent_location, file_pattern, manager_file, pcre2_literal)
from wazuh_anomaly.ruleset.rulefile import load_order, read_rule_file

REPO = Path(__file__).resolve().parents[1]
ALL_RULES = load_order([REPO / "rules"])
INI_FILES = sorted((REPO / "tests" / "ruleset").glob("*.ini"))
ANOMALIES = manager_file(ANOMALIES_REL)
NETFLOW = manager_file(NETFLOW_REL)
ENGINE = RuleEngine(ALL_RULES)
SECTIONS = [s for ini in INI_FILES for s in read_ini(ini)]


def _run(section, run, location=None):
    session = ENGINE.session()
    return [session.process(line, now=1_643_000_000.0 + i, location=location or section.location)
            for i, line in enumerate(run.lines)]


# -- the generated cases ---------------------------------------------------------------

@pytest.mark.parametrize("section", SECTIONS, ids=[f"{s.file.stem}: {s.name}" for s in SECTIONS])
def test_genuine_lines_alert_and_forged_lines_give_no_alert_at_all(section):
    for run in section.runs:
        alerts = _run(section, run)
        if run.expect_match:
            last = alerts[-1]
            assert (str(last.rule_id), str(last.level), last.decoder) == (section.rule, section.alert, section.decoder)
        else:
            assert [a.rule_id for a in alerts] == [None] * len(alerts), "a forged line matched one of our rules"
            assert alerts[-1].decoder == "json"   # decoded like any JSON line, just never matched


@pytest.mark.parametrize("ini", INI_FILES, ids=[p.stem for p in INI_FILES])
def test_every_rule_family_has_forged_cases_from_an_agent_and_a_syslog_sender(ini):
    sections = read_ini(ini)
    genuine = {s.location for s in sections if all(r.expect_match for r in s.runs)}
    forged = [s for s in sections if not any(r.expect_match for r in s.runs)]
    assert len(genuine) == 1 and genuine <= {ANOMALIES, NETFLOW}
    (path,) = genuine
    assert any(s.location == agent_location(path) for s in forged)
    assert any(s.location == SYSLOG_SENDER for s in forged)
    # the forged lines are the genuine ones: only where they come from differs
    by_lines = {tuple(r.lines): s for s in sections for r in s.runs if r.expect_match}
    for s in forged:
        assert tuple(s.runs[0].lines) in by_lines, s.name
        assert int(s.rule) >= 117000 and int(s.alert) >= 9   # the forgeries that matter: high levels, responses


def test_every_rule_of_ours_hangs_under_a_base_bound_to_one_of_our_files():
    # Root rules are tried on every event; everything else is reached through them.
    roots = {node.rule.id: node.rule for node in ENGINE.roots}
    assert set(roots) == {117000, 117100}
    assert roots[117100].location.type == "pcre2" and roots[117100].location.pattern == file_pattern(ANOMALIES)
    assert roots[117000].location.type == "pcre2" and roots[117000].location.pattern == file_pattern(NETFLOW)
    assert not ENGINE.skipped
    every_rule = {r.id for path in ALL_RULES for r in read_rule_file(path).rules}
    assert set(ENGINE.rules) == every_rule


# -- any agent, any sender ---------------------------------------------------------------

def _genuine(rule: str, path: str):
    section = next(s for s in SECTIONS if s.rule == rule and s.location == path and s.runs[0].expect_match)
    return section, section.runs[0]


# Wazuh agent names (OS_IsValidName): 2-128 of letters, digits, "-", "_", "."; not "." first.
agent_names = st.from_regex(r"\A[A-Za-z0-9_-][A-Za-z0-9._-]{1,40}\Z")
agent_ips = st.one_of(st.just("any"), st.ip_addresses().map(str),
                      st.ip_addresses(v=4).map(lambda a: f"{a}/24"))
agent_paths = st.one_of(st.sampled_from([ANOMALIES, NETFLOW, "/var/log/syslog", "C:\\anomalies.json"]),
                        st.text(min_size=0, max_size=60))
CRITICAL = [("117113", ANOMALIES), ("117302", ANOMALIES), ("117240", ANOMALIES), ("117280", ANOMALIES),
            ("117013", ANOMALIES), ("117008", NETFLOW)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from(CRITICAL), agent_id=st.from_regex(r"\A[0-9]{3,5}\Z"), name=agent_names,
       ip=agent_ips, path=agent_paths)
def test_forged_agent_line_gives_no_alert_whatever_the_agent_and_path(which, agent_id, name, ip, path):
    section, run = _genuine(*which)
    alerts = _run(section, run, agent_location(path, (agent_id, name, ip)))
    assert [a.rule_id for a in alerts] == [None] * len(alerts)


@settings(max_examples=100, deadline=None)
@given(which=st.sampled_from(CRITICAL), sender=st.one_of(st.ip_addresses().map(str), st.text(max_size=40)))
def test_forged_syslog_line_gives_no_alert_whatever_the_sender(which, sender):
    section, run = _genuine(*which)
    if event_location(sender or "x") in (ANOMALIES, NETFLOW):
        return  # not a sender's address: the manager's own file
    alerts = _run(section, run, sender or "x")
    assert [a.rule_id for a in alerts] == [None] * len(alerts)


@settings(max_examples=100, deadline=None)
@given(which=st.sampled_from(CRITICAL),
       path=st.one_of(st.from_regex(r"\A/[ -~]{0,60}\Z"),
                      st.sampled_from(["/var/ossec/logs/anomaly/anomalies.json.1", "/var/ossec/logs/anomaly/anomaliesXjson",
                                       "/var/ossec/logs/anomaly/netflow.json.gz", "/VAR/OSSEC/logs/anomaly/anomalies.json",
                                       "x/var/ossec/logs/anomaly/anomalies.json", "/var/ossec/logs/anomaly/"])))
def test_a_line_from_any_other_file_of_the_manager_gives_no_alert(which, path):
    section, run = _genuine(*which)
    if path == section.location:
        return
    alerts = _run(section, run, path)
    assert [a.rule_id for a in alerts] == [None] * len(alerts)


def test_the_families_do_not_accept_each_others_file():
    anomaly_section, anomaly_run = _genuine("117113", ANOMALIES)
    flow_section, flow_run = _genuine("117008", NETFLOW)
    assert _run(anomaly_section, anomaly_run, NETFLOW)[-1].rule_id is None
    assert _run(flow_section, flow_run, ANOMALIES)[-1].rule_id is None
    assert _run(anomaly_section, anomaly_run)[-1].rule_id == 117113
    assert _run(flow_section, flow_run)[-1].rule_id == 117008


# -- how analysisd sees a location ----------------------------------------------------------

def test_an_agent_location_loses_its_id_like_os_cleanmsg_does():
    assert event_location("[003] (web-01) any->/var/ossec/logs/anomaly/anomalies.json") == \
        "(web-01) any->/var/ossec/logs/anomaly/anomalies.json"
    assert event_location("192.0.2.7") == "192.0.2.7"
    assert event_location("/var/ossec/logs/anomaly/anomalies.json") == "/var/ossec/logs/anomaly/anomalies.json"
    assert event_location("[003]") == ""


def test_location_is_os_match_by_default_and_honours_type_and_negate(tmp_path):
    rules = tmp_path / "r.xml"
    rules.write_text(
        '<group name="t,">\n'
        '  <rule id="100001" level="3"><decoded_as>json</decoded_as><location>^/Var/Log/A.json$</location>'
        '<field name="k" type="pcre2">^1$</field><description>a</description></rule>\n'
        '  <rule id="100002" level="4"><decoded_as>json</decoded_as><location type="pcre2">^/b\\.json$</location>'
        '<field name="k" type="pcre2">^2$</field><description>b</description></rule>\n'
        '  <rule id="100003" level="5"><decoded_as>json</decoded_as><location negate="yes">->/</location>'
        '<field name="k" type="pcre2">^3$</field><description>c</description></rule>\n'
        '</group>\n')
    session = RuleEngine([rules]).session()
    # OS_Match: case-insensitive, "." is a literal dot
    assert session.process('{"k":"1"}', location="/var/log/a.json").rule_id == 100001
    assert session.process('{"k":"1"}', location="/var/log/aXjson").rule_id is None
    assert session.process('{"k":"2"}', location="/b.json").rule_id == 100002
    assert session.process('{"k":"2"}', location="/bXjson").rule_id is None
    assert session.process('{"k":"3"}', location="10.0.0.1").rule_id == 100003
    assert session.process('{"k":"3"}', location="[001] (a) any->/x").rule_id is None
    # without a location, wazuh-logtest says "stdin"
    assert session.process('{"k":"2"}').rule_id is None


# -- a custom setup that moved our file ----------------------------------------------------

def _installed(prefix: Path) -> Path:
    """A manager prefix with our rules as install.sh renders them for it, and no scenario yet."""
    (prefix / "etc/anomaly/scenarios").mkdir(parents=True)
    (prefix / "etc/rules").mkdir(parents=True)
    for path in ALL_RULES:
        text = path.read_text().replace("^/var/ossec/logs/anomaly/", f"^{pcre2_literal(str(prefix))}/logs/anomaly/")
        (prefix / "etc/rules" / path.name).write_text(text)
    return prefix


def test_validate_says_when_the_installed_rules_would_not_accept_the_moved_anomalies_file(tmp_path, capsys, monkeypatch):
    prefix = _installed(tmp_path / "ossec")
    monkeypatch.setenv(PREFIX_ENV, str(prefix))   # main() sets it; put the old value back afterwards
    assert main(["--prefix", str(prefix), "validate"]) == 0
    (prefix / "etc/anomaly/config.yaml").write_text("output:\n  anomalies_file: /srv/anomaly/anomalies.json\n")
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "validate"]) == 2
    (error,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert f"{prefix}/etc/rules/wazuh_anomaly_rules.xml: rule 117100 only accepts" in error
    assert "/srv/anomaly/anomalies.json (output.anomalies_file in etc/anomaly/config.yaml)" in error
    assert "docs/security.md" in error


def test_validate_says_when_the_netflow_output_is_not_the_file_the_rules_accept(tmp_path, capsys, monkeypatch):
    prefix = _installed(tmp_path / "ossec")
    monkeypatch.setenv(PREFIX_ENV, str(prefix))
    (prefix / "etc/anomaly/netflow.yaml").write_text("output_file: /data/flows/netflow.json\n")
    assert main(["--prefix", str(prefix), "validate"]) == 2
    (error,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert "rule 117000 only accepts" in error and "/data/flows/netflow.json (output_file in etc/anomaly/netflow.yaml)" in error
