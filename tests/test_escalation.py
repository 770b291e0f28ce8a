"""Escalation is a function of the anomalies and their own timestamps: the anomaly log
counts repeats from event time and writes them into the line, and the rules only map
fields, so the alerts do not depend on the order or time the manager reads the lines."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from wazuh_anomaly.emit.emitter import AnomalyWriter, event_for, render
from wazuh_anomaly.emit.escalation import series_of_event
from wazuh_anomaly.core.findings import SEVERITIES, Anomaly, FeatureContribution, HealthEvent
from wazuh_anomaly.ruleset.cases import SCENARIO_RULES
from wazuh_anomaly.ruleset.engine import RuleEngine
from wazuh_anomaly.ruleset.locations import ANOMALIES_REL, manager_file
from wazuh_anomaly.ruleset.logtest import request
from wazuh_anomaly.ruleset.rulefile import load_order, read_rule_file

REPO = Path(__file__).resolve().parents[1]
ANOMALIES_FILE = manager_file(ANOMALIES_REL)   # the rules only read our own file on the manager
RULES = REPO / "rules" / "wazuh_anomaly_rules.xml"
AR_SNIPPET = REPO / "wazuh" / "ossec.conf.d" / "active-response-anomaly.xml.in"
T0 = datetime(2024, 3, 3, tzinfo=timezone.utc)
BUCKET = timedelta(minutes=5)
ENTITIES = {"authentication_failures": ("data.srcip", ["203.0.113.45", "203.0.113.46", "198.51.100.7"]),
            "privilege_use": ("data.dstuser", ["www-data", "root"]),
            "rule_diversity": ("agent.name", ["web-01", "db-01", "intranet-server"]),
            "dns_tunnelling": ("agent.name", ["dns-01"])}


def anomaly(scenario: str = "authentication_failures", step: int = 0, *, severity: str = "high",
            entity: str | None = "203.0.113.45", suppressed: bool = False) -> Anomaly:
    start = T0 + step * BUCKET
    field = ENTITIES.get(scenario, ("data.srcip", []))[0] if entity else None
    return Anomaly(scenario, "seasonal", start, start + BUCKET, 5, 0.8, 0.4, severity,
                   (FeatureContribution("auth_failures", 143, 2, 1.0, 12.5),), "v1",
                   entity_field=field, entity_value=entity,
                   suppression_id="5f3a9c2e1b" if suppressed else None,
                   suppression_reason="maintenance" if suppressed else None)


def written(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def write_in_runs(tmp: Path, batches: list[list[Anomaly]], name: str = "a") -> list[dict]:
    """The anomalies written by successive runs (one batch each), as lines."""
    log = tmp / name / "anomalies.json"
    writer = AnomalyWriter(log, tmp / name / "state")
    for i, batch in enumerate(batches):
        writer.write(batch, T0 + timedelta(days=1, minutes=i))
    return written(log)


def by_id(events: list[dict]) -> dict[str, tuple]:
    """What escalation put into each line: id -> (repeat, escalated)."""
    return {e["anomaly"]["id"]: (json.dumps(e["anomaly"].get("repeat")), e["anomaly"].get("escalated"))
            for e in events}


# -- what the anomaly log writes --------------------------------------------------------

def test_the_third_anomaly_of_a_source_within_an_hour_of_event_time_is_escalated(tmp_path):
    events = write_in_runs(tmp_path, [[anomaly(step=0)], [anomaly(step=1)], [anomaly(step=11)], [anomaly(step=24)]])
    assert [e["anomaly"]["repeat"] for e in events] == [
        {"entity": 1, "scenario": 1}, {"entity": 2, "scenario": 2}, {"entity": 3, "scenario": 3},
        {"entity": 1, "scenario": 1}]                      # step 24: two hours later, the hour is empty
    assert [e["anomaly"].get("escalated") for e in events] == [None, None, "true", None]


def test_an_hour_boundary_is_exclusive(tmp_path):
    events = write_in_runs(tmp_path, [[anomaly(step=0), anomaly(step=1), anomaly(step=12)]])
    assert events[2]["anomaly"]["repeat"] == {"entity": 2, "scenario": 2}   # step 0 is exactly 60 min before


def test_three_sources_of_one_scenario_within_an_hour_escalate_the_scenario(tmp_path):
    batch = [anomaly(step=i, entity=ip) for i, ip in enumerate(ENTITIES["authentication_failures"][1])]
    events = write_in_runs(tmp_path, [batch])
    assert events[2]["anomaly"]["repeat"] == {"entity": 1, "scenario": 3}
    assert events[2]["anomaly"]["escalated"] == "true"


def test_a_replayed_anomaly_is_neither_written_nor_counted_twice(tmp_path):
    first, second = anomaly(step=0), anomaly(step=1)
    events = write_in_runs(tmp_path, [[first], [first, second], [first, second], [anomaly(step=2)]])
    assert len(events) == 3
    assert [e["anomaly"]["repeat"]["entity"] for e in events] == [1, 2, 3]


def test_suppressed_anomalies_are_never_counted_nor_escalated(tmp_path):
    batch = [anomaly(step=i, suppressed=True) for i in range(3)] + [anomaly(step=3)]
    events = write_in_runs(tmp_path, [batch])
    assert all("repeat" not in e["anomaly"] and "escalated" not in e["anomaly"] for e in events[:3])
    assert events[3]["anomaly"]["repeat"] == {"entity": 1, "scenario": 1}


def test_health_events_are_never_counted(tmp_path):
    health = [HealthEvent("no_data", "no alerts", T0 + i * BUCKET) for i in range(3)]
    events = write_in_runs(tmp_path, [health[:1], health[1:], [anomaly(step=2)]])
    assert events[-1]["anomaly"]["repeat"] == {"entity": 1, "scenario": 1}
    assert all("repeat" not in e["anomaly"] for e in events if e["anomaly"]["kind"] == "health")


def test_a_backfill_of_an_older_window_never_changes_a_line_already_written(tmp_path):
    later = write_in_runs(tmp_path, [[anomaly(step=5), anomaly(step=6)], [anomaly(step=4), anomaly(step=3)]])
    assert [e["anomaly"]["window"]["start"][11:16] for e in later] == ["00:25", "00:30", "00:20", "00:15"]
    # 00:30 was written with two in its hour; the backfilled 00:20 and 00:15 count only what is before them.
    assert [e["anomaly"]["repeat"]["entity"] for e in later] == [1, 2, 2, 1]


def test_a_crash_between_append_and_state_save_still_counts_the_appended_lines(tmp_path):
    log, state = tmp_path / "anomalies.json", tmp_path / "state"
    writer = AnomalyWriter(log, state)
    writer.write([anomaly(step=0)], T0)
    saved = (state / "emitted-ids.json").read_bytes()
    writer.write([anomaly(step=1)], T0)
    (state / "emitted-ids.json").write_bytes(saved)          # the state of before the second append
    writer.write([anomaly(step=1), anomaly(step=2)], T0)
    events = written(log)
    assert len(events) == 3 and events[2]["anomaly"]["escalated"] == "true"


def test_a_state_without_history_is_rebuilt_from_the_anomalies_file(tmp_path):
    log, state = tmp_path / "anomalies.json", tmp_path / "state"
    writer = AnomalyWriter(log, state)
    writer.write([anomaly(step=0), anomaly(step=1)], T0)
    path = state / "emitted-ids.json"
    old = json.loads(path.read_text())
    del old["series"]                                          # as written before escalation was counted
    path.write_text(json.dumps(old))
    writer.write([anomaly(step=2)], T0)
    assert written(log)[2]["anomaly"]["escalated"] == "true"


def test_the_writer_reports_the_repeats_so_the_shipped_document_says_what_the_line_says(tmp_path):
    writer = AnomalyWriter(tmp_path / "anomalies.json", tmp_path / "state")
    batch = [anomaly(step=i) for i in range(3)]
    result = writer.write(batch, T0)
    assert [result.repeats[a.id].entity for a in batch] == [1, 2, 3]
    shipped = event_for(dataclasses.replace(batch[2], repeat=result.repeats[batch[2].id]), detected_at=T0)
    assert shipped["anomaly"]["escalated"] == "true"
    again = writer.write(batch, T0)                            # duplicates: same repeats, nothing written
    assert again.written == 0 and again.repeats == result.repeats


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 60), st.sampled_from(["a", "b", None])), min_size=1, max_size=25),
       cuts=st.lists(st.integers(0, 25), max_size=6), seed=st.integers(0, 2**32 - 1))
def test_how_runs_are_cut_and_the_order_within_a_run_never_change_a_line(tmp_path_factory, steps, cuts, seed):
    """Any anomalies, written at once or by several runs in window order, each run's
    batch in any order, give the same lines."""
    anomalies = sorted({anomaly(step=s, entity=e) for s, e in steps}, key=lambda a: a.window_start)
    tmp = tmp_path_factory.mktemp("cut")
    at_once = by_id(write_in_runs(tmp, [anomalies], "once"))
    bounds = sorted({0, len(anomalies), *(c for c in cuts if c < len(anomalies))})
    batches = []
    for lo, hi in zip(bounds, bounds[1:]):
        # a run covers whole buckets: cut only between different window starts
        batches.append(anomalies[lo:hi])
    merged: list[list[Anomaly]] = []
    for batch in batches:
        if merged and merged[-1] and batch and merged[-1][-1].window_start == batch[0].window_start:
            merged[-1].extend(batch)
        else:
            merged.append(list(batch))
    rng = random.Random(seed)
    for batch in merged:
        rng.shuffle(batch)
    assert by_id(write_in_runs(tmp, merged, "runs")) == at_once


# -- the alerts: a function of the lines, whatever their order ------------------------------

def day_of_anomalies(seed: int = 3) -> list[list[Anomaly]]:
    """A day of 5-minute runs: anomalies in bursts and alone, for shipped scenarios with and
    without entities and a scenario of one's own, some suppressed; one batch per run."""
    rng = random.Random(seed)
    runs: list[list[Anomaly]] = [[] for _ in range(288)]
    scenarios = list(SCENARIO_RULES) + ["dns_tunnelling"]
    for _ in range(40):
        scenario = rng.choice(scenarios)
        field, values = ENTITIES.get(scenario, (None, [None]))
        entity = rng.choice(values)
        start = rng.randrange(0, 280)
        for k in range(rng.choice([1, 1, 2, 3, 4, 6])):
            step = min(287, start + k * rng.choice([1, 1, 2, 5]))
            runs[step].append(anomaly(scenario, step, severity=rng.choice(SEVERITIES), entity=entity,
                                      suppressed=rng.random() < 0.1))
    for step in (100, 101, 103):           # one escalation of one's own scenario for sure
        runs[step].append(anomaly("dns_tunnelling", step, severity="medium", entity="dns-01"))
    return [list({a.id: a for a in run}.values()) for run in runs]


@pytest.fixture(scope="module")
def day_lines(tmp_path_factory) -> list[str]:
    tmp = tmp_path_factory.mktemp("day")
    events = write_in_runs(tmp, day_of_anomalies())
    return [render(e) for e in events]


def simulate(lines: list[str]) -> dict[str, tuple[int, int]]:
    """id -> (rule, level), the lines arriving at once (one second apart) in one session."""
    session = RuleEngine(load_order([REPO / "rules"])).session()
    out = {}
    for i, line in enumerate(lines):
        alert = session.process(line, now=1_709_424_000.0 + i, location=ANOMALIES_FILE)
        out[json.loads(line)["anomaly"]["id"]] = (alert.rule_id, alert.level)
    return out


def test_the_day_holds_escalated_suppressed_and_plain_anomalies(day_lines):
    bodies = [json.loads(x)["anomaly"] for x in day_lines]
    assert len(bodies) > 60
    assert sum(b.get("escalated") == "true" for b in bodies) >= 10
    assert any(b.get("suppressed") == "true" for b in bodies)
    assert sum("escalated" not in b for b in bodies) >= 20


def test_the_same_anomalies_in_20_random_orders_raise_the_same_alerts_in_the_simulator(day_lines):
    reference = simulate(day_lines)
    assert {rule for rule, _ in reference.values()} >= {117114, 117107, 117108}
    for seed in range(20):
        shuffled = list(day_lines)
        random.Random(seed).shuffle(shuffled)
        assert simulate(shuffled) == reference, f"order {seed} gave other alerts"


def test_every_escalated_line_raises_level_13_and_no_other_does(day_lines):
    alerts = simulate(day_lines)
    for line in day_lines:
        body = json.loads(line)["anomaly"]
        assert (alerts[body["id"]][1] == 13) == (body.get("escalated") == "true"), line


@pytest.mark.parametrize("scenario", list(SCENARIO_RULES))
def test_an_escalated_alert_keeps_the_scenario_rule_block_group_and_mitre(tmp_path, scenario):
    field, values = ENTITIES.get(scenario, (None, [None]))
    events = write_in_runs(tmp_path, [[anomaly(scenario, i, severity="critical", entity=values[0])
                                       for i in range(3)]])
    rules = {r.id: r for r in read_rule_file(RULES).rules}
    session = RuleEngine([RULES]).session()
    alerts = [session.process(render(e), now=1_709_424_000.0, location=ANOMALIES_FILE) for e in events]
    first = SCENARIO_RULES[scenario]
    assert [a.rule_id for a in alerts] == [first + 3, first + 3, first + 4]
    escalated, critical = alerts[2], alerts[0]
    assert escalated.level == 13 and escalated.mitre == critical.mitre == list(rules[first].mitre)
    assert set(critical.groups) <= set(escalated.groups) and scenario in escalated.groups
    assert "anomaly_escalation" in escalated.groups
    assert re.search(r"^Anomaly \(escalated, critical\): .* - 3 anomalies of this scenario within an hour of event time, "
                     r"3 of them for this entity - ", escalated.description)


def test_the_third_critical_authentication_failure_raises_a_rule_the_active_response_runs_on(tmp_path):
    rules_id = re.search(r"<rules_id>([\d,]+)</rules_id>", AR_SNIPPET.read_text()).group(1).split(",")
    events = write_in_runs(tmp_path, [[anomaly(step=i, severity="critical") for i in range(3)]])
    session = RuleEngine([RULES]).session()
    fired = [session.process(render(e), now=1_709_424_000.0, location=ANOMALIES_FILE).rule_id for e in events]
    assert fired == [117113, 117113, 117114]
    assert all(str(rule) in rules_id for rule in fired)


def test_series_of_an_event_ignores_lines_that_are_not_counted():
    assert series_of_event({"anomaly": {"kind": "health"}}) is None
    assert series_of_event({"anomaly": {"kind": "timeseries", "scenario": "x", "window": {"start": "bad"}}}) is None
    assert series_of_event([]) is None
    line = event_for(anomaly(), detected_at=T0)
    assert series_of_event(line) == ("authentication_failures", "data.srcip=203.0.113.45", T0.timestamp())


# -- the real engine, when one is at hand --------------------------------------------------

LOGTEST_SOCKET = os.environ.get("WAZUH_ANOMALY_LOGTEST_SOCKET")


def through_logtest(lines: list[str]) -> dict[str, tuple[int, int]]:
    """id -> (rule, level) from a real wazuh-analysisd, all lines in one logtest session."""
    token, out = None, {}
    for line in lines:
        params = {"event": line, "log_format": "json", "location": ANOMALIES_FILE}
        if token:
            params["token"] = token
        data = request(Path(LOGTEST_SOCKET), "log_processing", params)
        token = data.get("token", token)
        rule = (data.get("output") or {}).get("rule") or {}
        out[json.loads(line)["anomaly"]["id"]] = (int(rule.get("id", 0)), int(rule.get("level", -1)))
    if token:
        request(Path(LOGTEST_SOCKET), "remove_session", {"token": token})
    return out


@pytest.mark.skipif(not LOGTEST_SOCKET, reason="set WAZUH_ANOMALY_LOGTEST_SOCKET to a wazuh-analysisd logtest "
                                               "socket loaded with rules/*.xml")
def test_the_real_engine_gives_the_simulators_alerts_for_20_random_orders(day_lines):
    reference = simulate(day_lines)
    for seed in range(20):
        shuffled = list(day_lines)
        random.Random(seed).shuffle(shuffled)
        assert through_logtest(shuffled) == reference, f"order {seed} gave other alerts in wazuh-analysisd"


JSON = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(data=JSON)
def test_any_damaged_history_in_the_state_file_loads_without_a_traceback(data):
    from wazuh_anomaly.emit.escalation import RepeatHistory
    history = RepeatHistory(data)
    history.add("x", "s", "", 0.0)
    assert history.count("s", "", 0.0).scenario >= 1
    json.dumps(history.to_json())


def test_a_damaged_state_file_still_writes_and_counts(tmp_path):
    log, state = tmp_path / "anomalies.json", tmp_path / "state"
    writer = AnomalyWriter(log, state)
    writer.write([anomaly(step=0), anomaly(step=1)], T0)
    path = state / "emitted-ids.json"
    raw = json.loads(path.read_text())
    raw["series"]["authentication_failures"].append(["not a time", None])
    path.write_text(json.dumps(raw))
    writer.write([anomaly(step=2)], T0)
    assert written(log)[2]["anomaly"]["escalated"] == "true"
