"""The shipped rules, their checker, the .ini cases and the offline analysisd simulator."""
from __future__ import annotations

import re
import textwrap
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from wazuh_anomaly.emit.emitter import event_for, event_for_health
from wazuh_anomaly.emit.escalation import repeats_of
from wazuh_anomaly.core.findings import HEALTH_CHECKS, Anomaly, FeatureContribution, HealthEvent
from wazuh_anomaly.ruleset import SimulatedAlert, explain, explain_all
from wazuh_anomaly.ruleset.cases import GENERIC_ESCALATED_RULE, GENERIC_TIER_RULES, SCENARIO_RULES, render_cases
from wazuh_anomaly.ruleset.check import check_ruleset, format_problems
from wazuh_anomaly.ruleset.engine import RuleEngine, decode, expand_description
from wazuh_anomaly.ruleset.inifile import read_ini
from wazuh_anomaly.ruleset.rulefile import read_rule_file

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules" / "wazuh_anomaly_rules.xml"
INI = REPO / "tests" / "ruleset" / "wazuh_anomaly_rules.ini"
T0 = datetime(2022, 1, 24, 3, 55, tzinfo=timezone.utc)


def anomaly(scenario="authentication_failures", severity="high", *, step=0, entity=("data.srcip", "10.0.0.5")):
    start = T0 + timedelta(minutes=5 * step)
    return Anomaly(scenario, "mvad", start, start + timedelta(minutes=5), 5, 0.73, 0.41, severity,
                   (FeatureContribution("auth_failures", 143, 2, 0.8, 12.5),), "v1",
                   entity_field=entity[0] if entity else None, entity_value=entity[1] if entity else None)


# -- the shipped rule file ----------------------------------------------------------

def test_shipped_rules_pass_the_check():
    problems = check_ruleset([REPO / "rules"], [REPO / "decoders"])
    assert problems == [], format_problems(problems)


def _manager_with_our_rules(root: Path) -> Path:
    """A default manager layout (stock files from tests/data/manager) with our rule files
    where install.sh puts them."""
    import shutil
    prefix = root / "ossec"
    shutil.copytree(REPO / "tests" / "data" / "manager", prefix, ignore=shutil.ignore_patterns("*.md"))
    for f in (REPO / "rules").glob("*.xml"):
        shutil.copyfile(f, prefix / "etc" / "rules" / f.name)
    return prefix


def test_ruleset_check_of_an_installed_manager_judges_each_of_our_files_once_and_no_stock_file(tmp_path):
    import subprocess
    import sys
    prefix = _manager_with_our_rules(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "ruleset", "check"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    ours = sorted(str(prefix / "etc" / "rules" / f.name) for f in (REPO / "rules").glob("*.xml"))
    assert lines[0] == f"checked {len(ours)} file(s): {', '.join(ours)}"
    assert lines[1].startswith("not checked (not wazuh-anomaly's, loaded only for rule ids and parents): 5 file(s): ")
    assert "local_rules.xml" in lines[1] and "local_decoder.xml" in lines[1]
    assert lines[-1] == "ruleset check: no problems found"


def test_ruleset_check_of_an_installed_manager_still_reports_our_own_mistakes(tmp_path):
    from wazuh_anomaly.core.paths import Layout
    from wazuh_anomaly.ruleset.jobs import ruleset_check
    prefix = _manager_with_our_rules(tmp_path)
    ours = prefix / "etc" / "rules" / "wazuh_anomaly_rules.xml"
    ours.write_text(ours.read_text().replace('<rule id="117101"', '<rule id="117100"', 1))
    text, code = ruleset_check(layout=Layout(prefix))
    assert code == 1
    assert "duplicate id 117100" in text and "local_rules.xml:" not in text


def test_ruleset_check_of_a_manager_without_our_files_says_to_install_them(tmp_path):
    import shutil
    from wazuh_anomaly.core.errors import WazuhAnomalyError
    from wazuh_anomaly.core.paths import Layout
    from wazuh_anomaly.ruleset.jobs import ruleset_check
    shutil.copytree(REPO / "tests" / "data" / "manager", tmp_path / "ossec")
    with pytest.raises(WazuhAnomalyError, match=r"No rule files of wazuh-anomaly in .*install them with install.sh"):
        ruleset_check(layout=Layout(tmp_path / "ossec"))


def test_every_rule_uses_pcre2_fields_and_alerting_rules_drop_the_full_log():
    for rule in read_rule_file(RULES).rules:
        assert all(f.type == "pcre2" for f in rule.fields), rule.id
        if rule.level > 0:
            assert "no_full_log" in rule.options, rule.id


def test_generic_tiers_exclude_exactly_the_shipped_scenarios():
    rules = {r.id: r for r in read_rule_file(RULES).rules}
    shipped = {re.fullmatch(r"\^(\w+)\$", next(f.pattern for f in rules[i].fields if f.name == "anomaly.scenario")).group(1)
               for i in SCENARIO_RULES.values()}
    assert shipped == set(SCENARIO_RULES)
    for rid in [*GENERIC_TIER_RULES.values(), GENERIC_ESCALATED_RULE]:
        negated = next(f for f in rules[rid].fields if f.name == "anomaly.scenario")
        assert negated.negate
        assert set(re.fullmatch(r"\^\(\?:(.*)\)\$", negated.pattern).group(1).split("|")) == shipped


def test_every_health_check_has_its_own_rule():
    rules = read_rule_file(RULES).rules
    named = {f.pattern.strip("^$") for r in rules for f in r.fields if f.name == "anomaly.health" and not f.negate}
    assert named == set(HEALTH_CHECKS)


# -- the .ini cases ------------------------------------------------------------------

def test_committed_ini_equals_the_freshly_generated_one():
    assert INI.read_text(encoding="utf-8") == render_cases(), \
        "rules or emitter changed: run scripts/update-rule-cases.py and review the diff"


def test_every_rule_id_has_a_case():
    rule_ids = {r.id for r in read_rule_file(RULES).rules}
    case_ids = {int(s.rule) for s in read_ini(INI) if s.rule}
    assert rule_ids - case_ids == set()


SECTIONS = read_ini(INI)


@pytest.mark.parametrize("section", SECTIONS, ids=[s.name for s in SECTIONS])
def test_every_case_fires_its_rule_and_level_in_the_simulator(section):
    engine = RuleEngine([RULES])
    for run in section.runs:
        session = engine.session()
        alerts = [session.process(line, now=1_643_000_000.0 + i, location=section.location)
                  for i, line in enumerate(run.lines)]
        last = alerts[-1]
        if not run.expect_match:   # a forged line: no rule of ours at all
            assert [a.rule_id for a in alerts] == [None] * len(alerts)
            continue
        assert (str(last.rule_id), str(last.level), last.decoder) == (section.rule, section.alert, section.decoder)
        assert "$(" not in (last.description or "")


def test_genuine_cases_come_from_the_managers_anomalies_file_and_forged_ones_from_elsewhere():
    genuine = {s.location for s in SECTIONS if s.runs[0].expect_match}
    forged = {s.location for s in SECTIONS if not s.runs[0].expect_match}
    assert genuine == {"/var/ossec/logs/anomaly/anomalies.json"}
    assert forged == {"[003] (web-01) any->/var/ossec/logs/anomaly/anomalies.json", "192.0.2.7",
                      "/var/log/syslog", "/var/ossec/logs/anomaly/netflow.json"}
    forged_rules = {s.rule for s in SECTIONS if not s.runs[0].expect_match}
    assert forged_rules >= {"117113", "117114", "117013", "117302"}


def test_the_base_rule_is_bound_to_the_managers_anomalies_file():
    base = next(r for r in read_rule_file(RULES).rules if r.id == 117100)
    assert (base.location.type, base.location.pattern) == ("pcre2", r"^/var/ossec/logs/anomaly/anomalies\.json$")
    assert all(r.location is None for r in read_rule_file(RULES).rules if r.id != 117100)


def test_every_case_is_one_line_because_no_alert_depends_on_the_lines_before():
    assert all(len(r.lines) == 1 for s in SECTIONS for r in s.runs)
    escalated = {s.rule for s in SECTIONS if '"escalated":"true"' in s.runs[0].lines[0]}
    assert escalated == {str(first + 4) for first in SCENARIO_RULES.values()} | {"117107", "117194", "117199"}


def test_no_shipped_rule_counts_events_by_arrival_time():
    for path in sorted((REPO / "rules").glob("*.xml")):
        for rule in read_rule_file(path).rules:
            assert rule.frequency is None and rule.if_matched_sid is None and rule.if_matched_group is None, \
                f"{path.name} rule {rule.id} counts events as wazuh-analysisd receives them"


def test_ini_reader_joins_repeated_log_keys_into_one_run_and_reads_fail_runs(tmp_path):
    ini = tmp_path / "t.ini"
    ini.write_text(textwrap.dedent("""\
        ; comment
        [seq]
        log 1 pass = {"a":"1"}
        log 1 pass = {"a":"2"}
        log 2 fail = {"a":"3"}
        rule = 1
        alert = 2
        decoder = json
    """))
    (section,) = read_ini(ini)
    assert [(r.name, r.lines, r.expect_match) for r in section.runs] == [
        ("log 1 pass", ('{"a":"1"}', '{"a":"2"}'), True), ("log 2 fail", ('{"a":"3"}',), False)]
    assert section.location == ""


def test_ini_reader_reads_where_a_sections_lines_come_from(tmp_path):
    ini = tmp_path / "t.ini"
    ini.write_text('[agent]\nlog 1 fail = {"a":"1"}\nrule = 1\nalert = 2\ndecoder = json\n'
                   'location = [003] (web-01) any->/var/ossec/logs/anomaly/anomalies.json\n')
    (section,) = read_ini(ini)
    assert section.location == "[003] (web-01) any->/var/ossec/logs/anomaly/anomalies.json"


# -- explain(): the alert an anomaly would raise ---------------------------------------

def test_explain_shows_the_scenario_alert_with_entity_and_mitre():
    alert = explain(event_for(anomaly(), detected_at=T0 + timedelta(minutes=6)))
    assert isinstance(alert, SimulatedAlert)
    assert (alert.rule_id, alert.level) == (117112, 10)
    assert alert.description == ("Anomaly (high): auth_failures far above its usual level"
                                 " - auth_failures=143 (expected 2) from 10.0.0.5")
    assert alert.mitre == ["T1110"] and "authentication_failures" in alert.groups


def test_a_burst_of_successful_logins_is_valid_accounts_not_brute_force():
    burst = replace(anomaly(), top_features=(FeatureContribution("auth_successes", 60, 2, 0.9, 29.0),),
                    title="a burst of successful logins")
    alert = explain(event_for(burst, detected_at=T0 + timedelta(minutes=6)))
    assert (alert.rule_id, alert.level, alert.mitre) == (117192, 10, ["T1078"])
    assert alert.description.startswith("Anomaly (high): a burst of successful logins - auth_successes=60")


def test_a_feature_that_went_quiet_carries_no_intrusion_technique():
    quiet = replace(anomaly(), scenario="rule_diversity",
                    top_features=(FeatureContribution("distinct_rules", 0, 12, 0.9, -6.0),))
    alert = explain(event_for(quiet, detected_at=T0 + timedelta(minutes=6)))
    assert (alert.rule_id, alert.level, alert.mitre) == (117197, 10, [])
    assert "distinct_rules far below its usual level" in alert.description
    assert alert.static == {"srcip": "10.0.0.5"}
    assert "simulated" in str(alert) and "not wazuh-analysisd" in str(alert)


def test_explain_all_shows_escalation_written_into_the_third_line_within_an_hour_only():
    def written(steps):
        anomalies = [anomaly(step=s, severity="low") for s in steps]
        events = [event_for(a, detected_at=a.window_end) for a in anomalies]
        return [event_for(a, detected_at=a.window_end, repeat=r) for a, r in zip(anomalies, repeats_of(events))]

    assert [a.rule_id for a in explain_all(written([0, 1, 2]))] == [117110, 117110, 117114]
    assert [a.rule_id for a in explain_all(written([0, 12, 24]))] == [117110, 117110, 117110]   # an hour apart
    # The line decides, not the session: the third line alone is escalated too.
    assert explain(written([0, 1, 2])[2]).rule_id == 117114


def test_explain_health_event_uses_the_message():
    h = HealthEvent("source_unreadable", "Cannot read /var/ossec/logs/alerts/alerts.json.", T0, severity="high")
    alert = explain(event_for_health(h))
    assert (alert.rule_id, alert.level) == (117302, 10)
    assert alert.description == "Anomaly detector cannot read its alert source: Cannot read /var/ossec/logs/alerts/alerts.json."


# -- the simulator's decoding ----------------------------------------------------------

def test_decoding_turns_values_into_strings_like_the_json_decoder():
    ev = decode('{"a":5,"b":0.5,"c":1.0,"d":3000000000,"e":true,"f":null,"g":[1,"x"],"h":{"i":"j"},'
                '"srcip":"10.0.0.1","user":"alice","a":"dup"} trailing')
    fields = dict(ev.fields[:1])
    assert ev.decoder == "json"
    assert fields["a"] == "5" and ev.find("A") == "5"     # first duplicate wins, case-insensitive
    assert ev.find("b") == "0.500000" and ev.find("c") == "1"
    assert ev.find("d") == "3000000000.000000"            # beyond cJSON's int: printed with %f
    assert ev.find("e") == "true" and ev.find("f") == "null"
    assert ev.find("g") == '[1, "x"]' and ev.find("h.i") == "j"
    assert ev.static == {"srcip": "10.0.0.1", "dstuser": "alice"}
    assert ev.find("srcip") is None


def test_lines_that_are_not_json_objects_get_no_decoder_or_no_fields():
    assert decode("Jan 1 host sshd[1]: hello").decoder is None
    broken = decode('{"a": ')
    assert broken.decoder == "json" and broken.fields == []


def test_description_falls_back_to_the_template_beyond_1024_bytes():
    ev = decode('{"a":"' + "x" * 2000 + '","b":"short"}')
    assert expand_description("B=$(b) $(missing).", ev) == "B=short ."
    assert expand_description("A=$(a)", ev) == "A=$(a)"


# -- the simulator's rule tree and correlation --------------------------------------------

def write_rules(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


BASE = """\
<group name="t,">
  <rule id="117100" level="0">
    <decoded_as>json</decoded_as>
    <field name="k" type="pcre2">^v$</field>
    <description>base</description>
  </rule>
</group>
"""


def test_siblings_are_tried_level_zero_first_then_by_descending_level(tmp_path):
    rules = write_rules(tmp_path, "r.xml", BASE + """\
    <group name="t,">
      <rule id="117101" level="3"><if_sid>117100</if_sid><description>three</description></rule>
      <rule id="117102" level="9"><if_sid>117100</if_sid><description>nine</description></rule>
      <rule id="117103" level="0"><if_sid>117100</if_sid><field name="z" type="pcre2">.</field><description>zero</description></rule>
    </group>
    """)
    session = RuleEngine([rules]).session()
    assert session.process('{"k":"v"}').rule_id == 117102
    assert session.process('{"k":"v","z":"1"}').rule_id == 117103


def test_frequency_fires_on_the_nth_event_then_starts_counting_again(tmp_path):
    rules = write_rules(tmp_path, "r.xml", BASE + """\
    <group name="t,counted,">
      <rule id="117101" level="5"><if_sid>117100</if_sid><description>one</description></rule>
    </group>
    <group name="t,">
      <rule id="117106" level="10" frequency="3" timeframe="60">
        <if_matched_group>counted</if_matched_group>
        <same_field>s</same_field>
        <description>many $(s)</description>
      </rule>
    </group>
    """)
    session = RuleEngine([rules]).session()
    fired = [session.process('{"k":"v","s":"a"}', now=t).rule_id for t in range(7)]
    assert fired == [117101, 117101, 117106, 117101, 117101, 117106, 117101]
    other = RuleEngine([rules]).session()
    mixed = [other.process(f'{{"k":"v","s":"{s}"}}', now=i).rule_id for i, s in enumerate("abab")]
    assert 117106 not in mixed                           # same_field: only equal values count
    late = RuleEngine([rules]).session()
    assert [late.process('{"k":"v","s":"a"}', now=t).rule_id for t in (0, 100, 200)] == [117101] * 3


def test_if_matched_group_only_counts_rules_loaded_before_it(tmp_path):
    rules = write_rules(tmp_path, "r.xml", BASE + """\
    <group name="t,">
      <rule id="117106" level="10" frequency="2" timeframe="60">
        <if_matched_group>counted</if_matched_group>
        <description>many</description>
      </rule>
    </group>
    <group name="t,counted,">
      <rule id="117101" level="5"><if_sid>117100</if_sid><description>one</description></rule>
    </group>
    """)
    engine = RuleEngine([rules])
    session = engine.session()
    assert [session.process('{"k":"v"}', now=t).rule_id for t in range(3)] == [117101] * 3
    problems = check_ruleset([tmp_path], [], project_ranges=())
    assert any("loaded after it (117101)" in p.message for p in problems)


# -- the checker -------------------------------------------------------------------------

def messages(tmp_path: Path, **kw) -> str:
    return "\n".join(str(p) for p in check_ruleset([tmp_path], [], **kw))


def test_checker_names_file_line_rule_and_fix_for_each_problem(tmp_path):
    write_rules(tmp_path, "bad.xml", """\
    <!-- header -->
    <group name="anomaly,">
      <rule id="117100" level="0">
        <decoded_as>json</decoded_as>
        <field name="integration" type="pcre2">^anomaly$</field>
        <description>base</description>
      </rule>
      <rule id="117100" level="3">
        <if_sid>117100</if_sid>
        <description>dup</description>
      </rule>
      <rule id="99999" level="17">
        <if_sid>117100</if_sid>
        <field name="srcip" type="pcre2">^1</field>
        <description>x</description>
      </rule>
      <rule id="117150" level="3" frequency="1" timeframe="123456">
        <if_matched_sid>117100</if_matched_sid>
        <field name="anomaly.nope" type="pcre2">(</field>
        <field name="anomaly.kind">[a-z]+</field>
        <mitre><id>TA0001</id></mitre>
      </rule>
      <rule id="117151" level="3">
        <if_sid>117199</if_sid>
        <description>Broken &amp; $(anomaly.bogus)</description>
        <options>no_fullog</options>
      </rule>
    </group>
    """)
    text = messages(tmp_path)
    expected = [
        (8, "117100", "duplicate id 117100"),
        (12, "99999", "outside the custom range"),
        (12, "99999", "level '17' must be a number from 0 to 16"),
        (14, "99999", "is a static field"),
        (17, "117150", "frequency 1 must be between 2 and 9999"),
        (17, "117150", "timeframe '123456' must be an integer of at most 5 digits"),
        (17, "117150", "no <description>"),
        (17, "117150", "if_matched_sid 117100 has level 0"),
        (19, "117150", "not a field of anomaly events"),
        (19, "117150", "does not compile"),
        (20, "117150", "is a literal in OS_Regex"),
        (17, "117150", "MITRE id 'TA0001'"),
        (23, "117151", "if_sid 117199 is not loaded before this rule"),
        (23, "117151", "no parent of if_sid exists yet"),
        (23, "117151", "$(anomaly.bogus)"),
        (23, "117151", "option 'no_fullog'"),
        (25, None, "entity &amp;"),
    ]
    for line, rid, fragment in expected:
        rule = f" rule {rid}:" if rid else ""
        assert any(f"bad.xml:{line}:" in row and rule in row and fragment in row for row in text.splitlines()), \
            (line, rid, fragment, text)


def test_checker_resolves_parents_by_file_name_order_across_directories(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    write_rules(b, "0100-base.xml", BASE)
    write_rules(a, "0200-child.xml", """\
    <group name="t,">
      <rule id="117101" level="3"><if_sid>117100</if_sid><description>child</description></rule>
    </group>
    """)
    assert check_ruleset([a, b], [], event_rule_ranges=(), project_ranges=()) == []
    (b / "0100-base.xml").rename(b / "0300-base.xml")
    assert any("if_sid 117100 is not loaded before" in p.message
               for p in check_ruleset([a, b], [], event_rule_ranges=(), project_ranges=()))


def test_checker_refuses_a_rule_of_ours_that_any_agent_or_syslog_sender_could_reach(tmp_path):
    write_rules(tmp_path, "trust.xml", """\
    <group name="anomaly,">
      <rule id="117100" level="0">
        <decoded_as>json</decoded_as>
        <field name="integration" type="pcre2">^anomaly$</field>
        <description>unbound base</description>
      </rule>
      <rule id="117000" level="0">
        <decoded_as>json</decoded_as>
        <location type="pcre2">/var/ossec/logs/anomaly/netflow\\.json</location>
        <description>unanchored</description>
      </rule>
      <rule id="117001" level="0">
        <decoded_as>json</decoded_as>
        <location type="pcre2">^/a$</location>
        <location type="pcre2">^/b$</location>
        <description>two locations</description>
      </rule>
      <rule id="117101" level="3">
        <if_sid>117100</if_sid>
        <description>a child: reached only through its parent</description>
      </rule>
    </group>
    """)
    problems = check_ruleset([tmp_path], [], event_rule_ranges=())
    by_rule = {(p.rule_id, p.line): p.message for p in problems}
    assert "no parent and no <location>" in by_rule[(117100, 2)] and "any agent or syslog sender" in by_rule[(117100, 2)]
    assert "must be anchored" in by_rule[(117000, 9)]
    assert any(p.rule_id == 117001 and "more than one <location>" in p.message for p in problems)
    assert all(p.rule_id != 117101 for p in problems)
    assert all(p.severity == "error" for p in problems)


def test_checker_reports_xml_that_does_not_parse(tmp_path):
    write_rules(tmp_path, "x.xml", '<group name="t,">\n  <rule id="117100" level="0">\n</group>\n')
    (problem,) = check_ruleset([tmp_path], [])
    assert "x.xml:3" in problem.message and "not well-formed XML" in problem.message


def test_checker_warns_when_group_names_would_be_glued_together(tmp_path):
    write_rules(tmp_path, "g.xml", """\
    <group name="anomaly">
      <rule id="117100" level="0">
        <decoded_as>json</decoded_as>
        <location type="pcre2">^/var/ossec/logs/anomaly/anomalies\\.json$</location>
        <group>extra,</group>
        <description>base</description>
      </rule>
    </group>
    """)
    (problem,) = check_ruleset([tmp_path], [])
    assert problem.severity == "warning" and "'anomalyextra,'" in problem.message


def test_top_level_user_is_dstuser_from_4_14_1_and_a_dynamic_field_before():
    assert decode('{"user":"bob"}').static == {"dstuser": "bob"}
    older = decode('{"user":"bob"}', user_alias=False)
    assert older.static == {} and older.find("user") == "bob"
