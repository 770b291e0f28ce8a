"""The rule tests of `tests/ruleset/wazuh_anomaly_rules.ini`,
made from what the real emitter writes, so rules and emitter cannot drift apart.

Every rule of `rules/wazuh_anomaly_rules.xml` has a section: each shipped scenario at
each severity and escalated, the generic tiers (a scenario of your own), every health
check. An escalated line carries its repeats as the anomaly log counts them from event
time (escalation.py), so each section is one line: the alert does not depend on the
lines before it. Three fallback
rules can only be reached by events the current emitter never writes (a severity or a
health check from a newer detector, a health event without its check); those lines
are emitter output with one value changed, and their comment says so.
"""
from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta, timezone

from ..emit.emitter import event_for, event_for_health, render
from ..emit.escalation import repeats_of
from ..core.findings import HEALTH_CHECKS, SEVERITIES, Anomaly, FeatureContribution, HealthEvent
from .inifile import CaseSpec, render_ini
from .locations import ANOMALIES_REL, NETFLOW_REL, forged, manager_file

RULES_FILE_NAME = "wazuh_anomaly_rules.xml"
INI_FILE_NAME = "wazuh_anomaly_rules.ini"

LEVEL_OF_SEVERITY = {"low": 5, "medium": 7, "high": 10, "critical": 12}

# scenario -> first id of its block of 5 (rule for low; +1 medium, +2 high, +3 critical, +4 escalated)
SCENARIO_RULES = {
    "authentication_failures": 117110,
    "web_attacks": 117115,
    "privilege_use": 117120,
    "alert_volume": 117125,
    "file_integrity": 117130,
    "rule_diversity": 117135,
    "silence": 117140,
    "flow_baseline": 117010,
}
GENERIC_TIER_RULES = {"low": 117102, "medium": 117103, "high": 117104, "critical": 117105}
GENERIC_ESCALATED_RULE = 117107
LOGIN_BURST_RULE = 117190   # low, medium, high, critical, escalated
DROP_RULE = 117195
ESCALATED_LEVEL = 13
HEALTH_RULES = {
    "source_unreadable": (117302, 10),
    "training_failed": (117303, 7),
    "scenario_failed": (117304, 7),
    "config_invalid": (117305, 7),
    "model_stale": (117306, 5),
    "no_data": (117307, 5),
    "malformed_input": (117308, 4),
    "insufficient_history": (117309, 3),
    "model_drift": (117310, 5),
    "shipping_failed": (117390, 5),
    "shipping_rejected": (117391, 7),
    "spool_full": (117392, 10),
}
SUPPRESSED_RULE = 117108

# What each shipped scenario's anomalies look like (features, entity): realistic shapes
# taken from the scenarios' definitions, values chosen to read well in a dashboard.
_SHAPES = {
    "authentication_failures": (
        [("auth_failures", 143, 2, 0.71, 38.4), ("distinct_srcip", 9, 1, 0.22, 11.0),
         ("distinct_dstuser", 14, 2, 0.07, 6.2)],
        ("data.srcip", "203.0.113.45"),
        "Failed logins per bucket, split by source address",
    ),
    "web_attacks": (
        [("web_attack_alerts", 212, 3, 0.64, 25.1), ("http_400_errors", 1830, 40, 0.36, 17.9)],
        None,
        "Web attack and scanner alerts per bucket",
    ),
    "privilege_use": (
        [("sudo_commands", 37, 1, 0.58, 14.2), ("su_sessions", 6, 0, 0.42, 9.5)],
        ("data.dstuser", "www-data"),
        "sudo, su and privilege changes per bucket, split by user",
    ),
    "alert_volume": (
        [("alerts", 4210, 350, 0.81, 12.7), ("max_rule_level", 12, 5, 0.19, 4.4)],
        ("agent.name", "web-01"),
        "All alerts and their highest level per bucket, split by agent",
    ),
    "file_integrity": (
        [("fim_modified", 96, 1, 0.77, 30.2), ("fim_permissions_changed", 12, 0, 0.23, 8.1)],
        ("agent.name", "db-02"),
        "File integrity changes per bucket, split by agent",
    ),
    "rule_diversity": (
        [("distinct_rule_ids", 27, 4, 0.88, 16.3), ("max_rule_level", 13, 5, 0.12, 5.0)],
        ("agent.name", "intranet-server"),
        "Distinct kinds of alerts per bucket, split by agent",
    ),
    "silence": (
        [("alerts", 0, 41, 0.7, -3.1), ("syslog", 0, 12, 0.3, -2.4)],
        ("agent.name", "db-01"),
        "An agent or one of its log types went quiet while it normally sends",
    ),
    "flow_baseline": (
        [("bytes_out", 8.4e9, 3.1e8, 0.83, 27.0), ("distinct_destinations", 412, 95, 0.17, 6.1)],
        None,
        "NetFlow aggregates of the whole network per bucket (bytes and flows out, fan-out, DNS, inbound)",
    ),
}

WINDOW_START = datetime(2022, 1, 24, 3, 55, tzinfo=timezone.utc)
BUCKET = timedelta(minutes=5)
DETECTION_DELAY = timedelta(minutes=1)

HEADER = f"""Copyright (C) the wazuh-anomaly authors; GPL-3.0-or-later.

Rule tests for rules/{RULES_FILE_NAME}, in Wazuh's ruleset/testing format.
Generated from the real emitter by scripts/update-rule-cases.py; do not edit:
tests/test_ruleset.py fails when this file and the generator differ.
Run on a manager: copy the rule file to etc/rules/, then `wazuh-anomaly logtest FILE`.
Several `log 1 pass` lines in one section run in one session and only the last one is
checked; no rule here needs that (escalation is in the line itself). `location` is where
the lines come from (our extension of the format): the rules only match the manager's own
anomalies.json, so Wazuh's runtests.py, which sends no location, cannot run this file.
The `log 1 fail` sections are forged lines (from an agent, a syslog sender, another file)
that must raise no alert."""


def _anomaly(scenario: str, severity: str, *, step: int = 0, entity: tuple[str, str] | None = "default",
             kind: str = "timeseries") -> Anomaly:
    features, default_entity, description = _SHAPES.get(
        scenario, ([("dns_queries", 5400, 300, 1.0, 21.0)], None, "DNS queries per bucket"))
    if entity == "default":
        entity = default_entity
    start = WINDOW_START + step * BUCKET
    return Anomaly(
        scenario=scenario, detector="silence" if scenario == "silence" else "mvad", window_start=start, window_end=start + BUCKET,
        bucket_minutes=5, score=0.734 + 0.01 * step, threshold=0.41, severity=severity,
        top_features=tuple(FeatureContribution(*f) for f in features),
        model_version="mvad-0.4.0/2022-01-23T00:00:00Z",
        entity_field=entity[0] if entity else None, entity_value=entity[1] if entity else None,
        kind=kind, description=description,
    )


def _led_by(anomaly: Anomaly, feature: str, actual: float, expected: float, title: str) -> Anomaly:
    """The anomaly with `feature` as its leading feature (rising or falling) and its title."""
    lead = FeatureContribution(feature, actual, expected, 0.8, (actual - expected) / 2)
    return dataclasses.replace(anomaly, top_features=(lead,) + anomaly.top_features[1:], title=title)


def _logins(anomaly: Anomaly) -> Anomaly:
    return _led_by(anomaly, "auth_successes", 64, 3, "a burst of successful logins")


def _quiet(anomaly: Anomaly) -> Anomaly:
    return _led_by(anomaly, anomaly.top_features[0].name, 0, 14,
                   f"{anomaly.top_features[0].name} far below its usual level")


def _suppressed(anomaly: Anomaly) -> Anomaly:
    return dataclasses.replace(anomaly, suppression_id="5f3a9c2e1b",
                               suppression_reason="weekly vulnerability scan by the security team")


def _line(anomaly: Anomaly) -> str:
    return render(event_for(anomaly, detected_at=anomaly.window_end + DETECTION_DELAY))


def _written(anomalies: list[Anomaly]) -> str:
    """The line of the last anomaly as the anomaly log writes it after the others, with its
    repeats counted from event time (escalation.py)."""
    events = [event_for(a, detected_at=a.window_end + DETECTION_DELAY) for a in anomalies]
    repeat = repeats_of(events)[-1]
    last = anomalies[-1]
    return render(event_for(last, detected_at=last.window_end + DETECTION_DELAY, repeat=repeat))


_HEALTH_MESSAGES = {
    "training_failed": "Scenario authentication_failures: training failed (the loss did not converge); check var/anomaly/state/train.log and retrain with `wazuh-anomaly train`.",
    "insufficient_history": "Scenario web_attacks has 2 days of history; it needs 7 before a model can be trained.",
    "source_unreadable": "Cannot read /var/ossec/logs/alerts/alerts.json (permission denied); give the wazuh group read access.",
    "model_stale": "The model of scenario alert_volume is 45 days old (limit 30); retrain with `wazuh-anomaly train`.",
    "no_data": "No alerts at all between 03:55 and 04:00 UTC; check that wazuh-analysisd is writing alerts.json.",
    "scenario_failed": "Scenario privilege_use failed while scoring (feature 'sudo_commands' missing); check etc/anomaly/scenarios/privilege_use.yaml.",
    "malformed_input": "Skipped 3 malformed lines in /var/ossec/logs/alerts/alerts.json (first at line 1882).",
    "config_invalid": "etc/anomaly/scenarios/dns.yaml line 4: 'bucket_minutes' must be a whole number of minutes.",
    "model_drift": "scenario rule_diversity: model 20220124T000900Z-588277bd no longer fits recent activity (seasonal: KS 0.10 (limit 0.30), 9.0x the training share above its 99th percentile (limit 5x) over the last 288 buckets: DRIFT); if the change is legitimate retrain with 'wazuh-anomaly train --scenario rule_diversity', if a retrain made it worse use 'wazuh-anomaly models rollback --scenario rule_diversity'.",
    "shipping_failed": "12 anomalies wait in /var/ossec/var/anomaly/spool for the indexer: The indexer https://indexer-1:9200 is unreachable (shipping anomalies); check that it is running.",
    "shipping_rejected": "the indexer refused 2 anomalies for wazuh-anomaly-web-attacks (mapper_parsing_exception: failed to parse field [anomaly.features.web_attack_alerts]); they are kept in /var/ossec/var/anomaly/spool/rejected.",
    "spool_full": "the shipping spool /var/ossec/var/anomaly/spool passed shipping.spool_max_mb (100 MB): the 40 oldest anomalies were not shipped (they are still in anomalies.json).",
}


def _health_line(check: str) -> str:
    scenario = {"training_failed": "authentication_failures", "insufficient_history": "web_attacks",
                "model_stale": "alert_volume", "scenario_failed": "privilege_use",
                "model_drift": "rule_diversity"}.get(check)
    severity = "high" if check == "source_unreadable" else "medium"
    event = HealthEvent(check=check, message=_HEALTH_MESSAGES[check], at=WINDOW_START + DETECTION_DELAY,
                        scenario=scenario, severity=severity)
    return render(event_for_health(event))


def _edited(line: str, path: tuple[str, ...], value) -> str:
    """Emitter output with one value changed (or removed when value is None)."""
    event = copy.deepcopy(json.loads(line))
    target = event
    for key in path[:-1]:
        target = target[key]
    if value is None:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return render(event)


def build_cases() -> list[CaseSpec]:
    """Every section of the .ini file, in rule-id order."""
    cases: list[CaseSpec] = []
    kind_unknown = _anomaly("authentication_failures", "high", kind="forecast")
    cases.append(CaseSpec(
        "Anomaly event of a kind without rules is decoded but not alerted", (_line(kind_unknown),), 117100, 0))
    cases.append(CaseSpec(
        "Own scenario with a severity this ruleset does not know",
        (_edited(_line(_anomaly("dns_tunnelling", "high")), ("anomaly", "severity"), "informational"),),
        117101, 3,
        comment="Not emitter output as is: the severity stands for a newer detector's (fallback rule 117101)."))
    for severity in SEVERITIES:
        cases.append(CaseSpec(
            f"Own scenario dns_tunnelling, severity {severity}",
            (_line(_anomaly("dns_tunnelling", severity)),),
            GENERIC_TIER_RULES[severity], LEVEL_OF_SEVERITY[severity]))
    for scenario, first in SCENARIO_RULES.items():
        for offset, severity in enumerate(SEVERITIES):
            cases.append(CaseSpec(
                f"{scenario}, severity {severity}", (_line(_anomaly(scenario, severity)),),
                first + offset, LEVEL_OF_SEVERITY[severity]))
    # Escalation, written into the line by the anomaly log: each case is the last line only.
    for scenario, first in SCENARIO_RULES.items():
        cases.append(CaseSpec(
            f"{scenario}, third anomaly within an hour is escalated",
            (_written([_anomaly(scenario, sev, step=i) for i, sev in enumerate(("low", "medium", "low"))]),),
            first + 4, ESCALATED_LEVEL))
    # The technique follows the leading feature and its direction (117190-117199).
    for offset, severity in enumerate(SEVERITIES):
        cases.append(CaseSpec(
            f"authentication_failures led by a burst of successful logins, severity {severity}: T1078, not T1110",
            (_line(_logins(_anomaly("authentication_failures", severity))),),
            LOGIN_BURST_RULE + offset, LEVEL_OF_SEVERITY[severity]))
    cases.append(CaseSpec(
        "Third authentication_failures anomaly led by successful logins is escalated with T1078",
        (_written([_logins(_anomaly("authentication_failures", sev, step=i))
                   for i, sev in enumerate(("low", "medium", "low"))]),),
        LOGIN_BURST_RULE + 4, ESCALATED_LEVEL))
    for offset, severity in enumerate(SEVERITIES):
        cases.append(CaseSpec(
            f"rule_diversity led by a drop, severity {severity}: no technique",
            (_line(_quiet(_anomaly("rule_diversity", severity))),), DROP_RULE + offset, LEVEL_OF_SEVERITY[severity]))
    cases.append(CaseSpec(
        "Third web_attacks anomaly led by a drop is escalated without a technique",
        (_written([_quiet(_anomaly("web_attacks", sev, step=i)) for i, sev in enumerate(("low", "medium", "low"))]),),
        DROP_RULE + 4, ESCALATED_LEVEL))
    cases.append(CaseSpec(
        "Own scenario dns_tunnelling, third anomaly within an hour is escalated",
        (_written([_anomaly("dns_tunnelling", sev, step=i) for i, sev in enumerate(("high", "medium", "high"))]),),
        GENERIC_ESCALATED_RULE, ESCALATED_LEVEL))
    cases.append(CaseSpec(
        "Third critical authentication_failures anomaly from one source keeps T1110 and the response rule",
        (_written([_anomaly("authentication_failures", "critical", step=i) for i in range(3)]),),
        SCENARIO_RULES["authentication_failures"] + 4, ESCALATED_LEVEL))
    cases.append(CaseSpec(
        "Third rule_diversity anomaly within an hour, each on another agent, is escalated",
        (_written([_anomaly("rule_diversity", "medium", step=i, entity=("agent.name", f"web-0{i}"))
                   for i in range(3)]),),
        SCENARIO_RULES["rule_diversity"] + 4, ESCALATED_LEVEL))
    cases.append(CaseSpec(
        "Three anomalies of different scenarios do not escalate",
        (_written([_anomaly("web_attacks", "medium", step=0), _anomaly("file_integrity", "medium", step=1),
                   _anomaly("privilege_use", "high", step=2)]),),
        117122, 10))
    cases.append(CaseSpec(
        "Two anomalies of one scenario do not escalate yet",
        (_written([_anomaly("rule_diversity", "high", step=0), _anomaly("rule_diversity", "high", step=1)]),),
        117137, 10))
    cases.append(CaseSpec(
        "Three anomalies of one scenario an hour apart do not escalate",
        (_written([_anomaly("web_attacks", "high", step=12 * i) for i in range(3)]),),
        117117, 10))
    # Suppressed anomalies: level 0 whatever the scenario and severity, and never escalating.
    cases.append(CaseSpec(
        "Suppressed critical anomaly of a shipped scenario does not alert",
        (_line(_suppressed(_anomaly("authentication_failures", "critical"))),), SUPPRESSED_RULE, 0))
    cases.append(CaseSpec(
        "Suppressed anomaly of an own scenario does not alert",
        (_line(_suppressed(_anomaly("dns_tunnelling", "high"))),), SUPPRESSED_RULE, 0))
    cases.append(CaseSpec(
        "Three suppressed anomalies of one scenario and entity do not escalate",
        (_written([_suppressed(_anomaly("authentication_failures", "high", step=i)) for i in range(3)]),),
        SUPPRESSED_RULE, 0))
    cases.append(CaseSpec(
        "Suppressed anomalies are not counted by the escalation",
        (_written([_suppressed(_anomaly("web_attacks", "high", step=0)),
                   _suppressed(_anomaly("web_attacks", "high", step=1)),
                   _anomaly("web_attacks", "medium", step=2)]),),
        117116, 7))
    cases.append(CaseSpec(
        "Health event without its check name", (_edited(_health_line("no_data"), ("anomaly", "health"), None),),
        117300, 0,
        comment="Not emitter output as is: the health check name is removed (base rule 117300)."))
    cases.append(CaseSpec(
        "Health check this ruleset does not know yet",
        (_edited(_health_line("no_data"), ("anomaly", "health"), "spool_backlog"),), 117301, 5,
        comment="Not emitter output as is: the check name stands for a newer detector's (fallback rule 117301)."))
    for check in HEALTH_CHECKS:
        rule, level = HEALTH_RULES[check]
        cases.append(CaseSpec(f"Health: {check}", (_health_line(check),), rule, level))
    genuine = manager_file(ANOMALIES_REL)
    cases = [dataclasses.replace(c, location=genuine) for c in cases]
    # Forged lines: the critical anomaly that runs the active response, an escalation,
    # a flow baseline anomaly and a health alarm, each from where an attacker could write.
    by_name = {c.name: c for c in cases}
    cases += forged(by_name["authentication_failures, severity critical"], ANOMALIES_REL,
                    other_file="/var/log/syslog")
    cases += forged(by_name["Third critical authentication_failures anomaly from one source keeps T1110 and the response rule"],
                    ANOMALIES_REL)
    cases += forged(by_name["flow_baseline, severity critical"], ANOMALIES_REL,
                    other_file=manager_file(NETFLOW_REL))
    cases += forged(by_name["Health: source_unreadable"], ANOMALIES_REL)
    return sorted(cases, key=lambda c: c.rule)


def render_cases() -> str:
    """The full text of tests/ruleset/wazuh_anomaly_rules.ini."""
    return render_ini(build_cases(), HEADER)
