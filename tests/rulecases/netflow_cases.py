"""The rule tests of tests/ruleset/wazuh_anomaly_netflow_rules.ini, made from the
generator's events (real normaliser and detector output), so the rules, the
normaliser and the detections cannot drift apart. scripts/update-rule-cases.py (in the
source checkout) updates the file; tests/test_netflow_rules.py fails when it is stale."""
from __future__ import annotations

import dataclasses

import orjson

from wazuh_anomaly.ruleset.inifile import CaseSpec, render_ini
from wazuh_anomaly.ruleset.locations import ANOMALIES_REL, NETFLOW_REL, forged, manager_file
from wazuh_anomaly.netflow.generate import tagged_events

RULES_FILE_NAME = "wazuh_anomaly_netflow_rules.xml"
INI_FILE_NAME = "wazuh_anomaly_netflow_rules.ini"

# generator scenario -> (rule, level, section name)
SCENARIO_CASES = (
    ("port_scan", 117001, 9, "SYN probe from 192.168.56.30 to 192.168.56.28:47775 tagged possible_port_scan"),
    ("icmp_sweep", 117001, 9, "ICMP echo sweep of 192.168.56.0/24 tagged possible_port_scan"),
    ("high_outbound", 117002, 10, "Internal host sending over 500 MB an hour outside"),
    ("beaconing", 117003, 10, "Connections every 5 minutes to one outside host and port"),
    ("lateral_movement", 117004, 8, "Internal host reaching SMB, RDP, SSH, WinRM, MSSQL or MySQL of another"),
    ("dns", 117005, 8, "Over 300 DNS flows in 5 minutes from one host"),
    ("external_inbound", 117006, 8, "Outside host reaching RDP on an internal host"),
    ("unusual_outbound", 117007, 5, "Internal host reaching port 4444 outside"),
    ("dos", 117008, 12, "Over 100000 packets a minute to one host"),
    ("brute_force", 117040, 10, "Over 20 SSH connections in 5 minutes from one outside host"),
)

HEADER = f"""Copyright (C) the wazuh-anomaly authors; GPL-3.0-or-later.

Rule tests for rules/{RULES_FILE_NAME}, in Wazuh's ruleset/testing format.
Generated from `wazuh-anomaly netflow generate` (the real normaliser and flow detections)
by scripts/update-rule-cases.py; do not edit: tests/test_netflow_rules.py fails
when this file and the generator differ.
Several `log 1 pass` lines in one section run in one session and only the last one is
checked; no rule here needs that (the escalation 117009 is in the flow line itself).
`location` is where the lines come from
(our extension of the format): the rules only match the manager's own netflow.json (and
the sensor agents install.sh --netflow-sensor names), so run it with
`wazuh-anomaly logtest`, not Wazuh's runtests.py. The `log 1 fail` sections are forged
lines that must raise no alert."""


def _line(event: dict) -> str:
    return orjson.dumps(event).decode()


def build_cases() -> list[CaseSpec]:
    cases = [CaseSpec("Flow without a tag is decoded but not alerted",
                      (_line(tagged_events("random_traffic", 1)[-1]),), 117000, 0,
                      comment="Random (Poisson) connections to one host and port: no beaconing tag.")]
    for scenario, rule, level, name in SCENARIO_CASES:
        cases.append(CaseSpec(name, (_line(tagged_events(scenario, 1)[-1]),), rule, level))
    scans = [_line(e) for e in tagged_events("port_scan", 5)]
    cases.append(CaseSpec("The fifth port-scan flow from one source within ten minutes of flow time escalates",
                          (scans[4],), 117009, 12))
    cases.append(CaseSpec("The fourth port-scan flow from one source does not escalate yet",
                          (scans[3],), 117001, 9))
    cases = [dataclasses.replace(c, location=manager_file(NETFLOW_REL)) for c in cases]
    # Forged: the highest flow alert, the escalation, and a flow in the anomalies file.
    by_name = {c.name: c for c in cases}
    cases += forged(by_name["Over 100000 packets a minute to one host"], NETFLOW_REL,
                    other_file=manager_file(ANOMALIES_REL))
    cases += forged(by_name["The fifth port-scan flow from one source within ten minutes of flow time escalates"],
                    NETFLOW_REL)
    return sorted(cases, key=lambda c: c.rule)


def render_cases() -> str:
    return render_ini(build_cases(), HEADER)
