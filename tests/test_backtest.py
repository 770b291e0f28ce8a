"""Backtest: train on one range, score a later one, and say what would have alerted.

On the bundled AIT-ADS data (train 2022-01-21..23, score 2022-01-24, alert_volume +
rule_diversity) the backtest must reproduce the acceptance result of the core issue
(tests/test_acceptance_ait.py): every attack phase up to the privilege escalation caught
within minutes of its start (the network scans at their end), few false alarms, the
service stop and the DNS exfiltration missed. Every number the backtest reports (delays,
false alarms, bucket precision and recall) is checked against an oracle: the same number
computed here, independently, from the labels file and the anomalies' emitted events.
The seasonal detector trains in seconds, so its backtest runs in the fast suite; MVAD's
is marked slow.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import AIT_LABELS, REPO
from wazuh_anomaly.cli import app as cli
from wazuh_anomaly.ops.backtest import (BacktestError, TimeRange, backtest, bucket_precision_recall, load_labels,
                                    parse_range)
from wazuh_anomaly.core.config import load_config, load_scenarios
from wazuh_anomaly.ops.evaluation import Phase
from wazuh_anomaly.core.findings import Anomaly
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.sources.sample import SAMPLE_LABELS, install_sample_alerts

SCENARIOS = ["alert_volume", "rule_diversity"]
TRAIN = "2022-01-21..2022-01-24"
TEST = "2022-01-24..2022-01-25"
CAUGHT = {"network_scans", "service_scans", "dirb", "wpscan", "webshell", "cracking", "reverse_shell",
          "privilege_escalation"}
MISSED = {"service_stop", "dnsteal"}
# The acceptance bounds (tests/test_acceptance_ait.py): each phase flagged within 5 minutes
# of its start, the network scans (55 minutes of scanning) by the bucket after their end;
# at most 5 flagged buckets outside every phase on the test day.
MAX_DELAY_MINUTES = {**{p: 5 for p in CAUGHT}, "network_scans": 60}
MAX_FALSE_ALARM_BUCKETS = 5
FIVE_MINUTES = timedelta(minutes=5)


def _utc(text: str) -> datetime:
    """A labels-file time ('...Z') or an emitted event's ('....000+0000')."""
    if text.endswith("Z"):
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z")


@dataclass
class Oracle:
    """What the backtest must report, computed without wazuh_anomaly's evaluation code:
    phases from the labels JSON, anomaly windows from the events the backtest emits, and
    every 5-minute bucket of the test day walked one by one."""

    delays: dict[str, int]          # caught phase -> minutes from its start to the end of its first flagged window
    missed: set[str]
    false_alarms: int               # anomalies overlapping no phase
    false_alarm_buckets: int        # their distinct windows
    flagged: int                    # buckets of the day an anomaly overlaps
    labelled: int                   # buckets of the day a phase overlaps
    hits: int                       # both


def oracle(alerts, test_day: str) -> Oracle:
    day = datetime.strptime(test_day, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    phases = {name: (_utc(p["start"]), _utc(p["end"]))
              for name, p in json.loads(AIT_LABELS.read_text())["attack_phases"].items()
              if day <= _utc(p["start"]) < day + timedelta(days=1)}
    windows = [(_utc(r.event["anomaly"]["window"]["start"]), _utc(r.event["anomaly"]["window"]["end"]))
               for r in alerts]

    def overlap(a, b) -> bool:
        return a[0] < b[1] and b[0] < a[1]
    delays = {}
    for name, phase in phases.items():
        ends = [w[1] for w in windows if overlap(w, phase)]
        if ends:
            delays[name] = round((min(ends) - phase[0]).total_seconds() / 60)
    outside = [w for w in windows if not any(overlap(w, p) for p in phases.values())]
    buckets = [(day + i * FIVE_MINUTES, day + (i + 1) * FIVE_MINUTES) for i in range(288)]
    flagged = {b for b in buckets if any(overlap(b, w) for w in windows)}
    labelled = {b for b in buckets if any(overlap(b, p) for p in phases.values())}
    return Oracle(delays, set(phases) - set(delays), len(outside), len({w[0] for w in outside}),
                  len(flagged), len(labelled), len(flagged & labelled))


def make_prefix(root: Path) -> Path:
    scenarios = root / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    for name in SCENARIOS:
        shutil.copy(REPO / "wazuh/etc/anomaly/scenarios" / f"{name}.yaml", scenarios)
    install_sample_alerts(root / "logs" / "alerts")
    return root


def run_backtest(prefix: Path, detector: str | None, **kwargs):
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors
    return backtest(load_config(layout), scenarios, SCENARIOS, parse_range(TRAIN, "--train"),
                    parse_range(TEST, "--test"), phases=load_labels(AIT_LABELS), detector=detector, **kwargs)


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    return make_prefix(tmp_path_factory.mktemp("prefix"))


@pytest.fixture(scope="module")
def seasonal(prefix):
    result = run_backtest(prefix, "seasonal")
    print("\n" + result.table())
    return result


def assert_core_acceptance_result(result, variant: str) -> None:
    v = result.variants[variant]
    expected = oracle(v.alerts, TEST[:10])
    rows = {r["phase"]: r for r in result.phase_rows(variant)}
    # the acceptance result
    assert set(expected.delays) == CAUGHT and expected.missed == MISSED, result.table()
    assert all(expected.delays[p] <= MAX_DELAY_MINUTES[p] for p in CAUGHT), expected.delays
    assert expected.false_alarm_buckets <= MAX_FALSE_ALARM_BUCKETS, result.table()
    # what the backtest reports, against the oracle
    assert {p for p, r in rows.items() if r["caught"]} == CAUGHT
    assert {p: round(rows[p]["delay_seconds"] / 60) for p in CAUGHT} == expected.delays, result.table()
    assert all(rows[p]["delay_seconds"] is None for p in MISSED)
    assert (v.evaluation.false_alarm_buckets, v.evaluation.false_alarms) == (expected.false_alarm_buckets,
                                                                             expected.false_alarms), result.table()
    assert result.false_alarms_per_day(variant) == pytest.approx(expected.false_alarms / 1.0)
    assert (v.flagged_buckets, v.hit_buckets, v.labelled_buckets) == (expected.flagged, expected.hits,
                                                                      expected.labelled)
    assert v.precision == pytest.approx(expected.hits / expected.flagged)
    assert v.recall == pytest.approx(expected.hits / expected.labelled)


# --------------------------------------------------------------------------- real data

def test_seasonal_backtest_reproduces_the_core_acceptance_result(seasonal):
    assert list(seasonal.variants) == ["seasonal"]
    assert_core_acceptance_result(seasonal, "seasonal")


def test_the_table_lists_every_phase_with_caught_delay_and_rule(seasonal):
    expected = oracle(seasonal.variants["seasonal"].alerts, TEST[:10])
    table = seasonal.table()
    lines = {line.split()[0]: line for line in table.splitlines() if line.strip()}
    for phase in CAUGHT:
        assert lines[phase].split()[2:5] == ["yes", str(expected.delays[phase]), "min"], lines[phase]
    for phase in MISSED:
        assert lines[phase].split()[2:4] == ["no", "-"]
    n = len(seasonal.variants["seasonal"].alerts)
    assert f"seasonal: {n} anomalies in {expected.flagged} buckets" in table
    assert (f"false alarms outside every phase: {expected.false_alarms} anomalies in {expected.false_alarm_buckets} "
            f"buckets, {expected.false_alarms:.1f} per day") in table
    assert (f"bucket precision {100 * expected.hits / expected.flagged:.0f}% ({expected.hits} of {expected.flagged} "
            f"flagged buckets in a phase), recall {100 * expected.hits / expected.labelled:.0f}% ({expected.hits} of "
            f"{expected.labelled} labelled buckets flagged)") in table


def test_every_anomaly_is_shown_with_the_rule_and_level_it_would_raise(seasonal):
    alerts = seasonal.variants["seasonal"].alerts
    assert alerts and all(117100 <= a.rule_id <= 117199 and a.level > 0 for a in alerts)
    flood = [a for a in alerts if a.anomaly.entity_value == "intranet_server"
             and a.anomaly.scenario == "alert_volume" and a.anomaly.window_start.strftime("%H:%M") == "03:55"]
    order = ("low", "medium", "high", "critical")
    # Severity is the tail probability (docs/budget.md): the flood is at least 100 times
    # rarer than the alert threshold, whatever the other scenarios' tails make of theirs.
    assert len(flood) == 1 and order.index(flood[0].anomaly.severity) >= order.index("high")
    assert flood[0].level >= 10
    # Escalated anomalies (decided from event time) raise their scenario's own escalated
    # rule, the fifth of its block, at level 13.
    escalated = [a for a in alerts if a.event["anomaly"].get("escalated") == "true"]
    assert escalated and all(a.level == 13 and (a.rule_id - 117110) % 5 == 4 for a in escalated)
    rows = {r["phase"]: r for r in seasonal.phase_rows("seasonal")}
    assert rows["wpscan"]["level"] == 13 and rows["wpscan"]["rule_id"] in {a.rule_id for a in escalated}


def test_the_json_output_carries_the_same_numbers(seasonal):
    data = json.loads(json.dumps(seasonal.to_json()))
    v = data["variants"]["seasonal"]
    expected = oracle(seasonal.variants["seasonal"].alerts, TEST[:10])
    assert (v["false_alarm_buckets"], v["false_alarms"]) == (expected.false_alarm_buckets, expected.false_alarms)
    assert v["anomalies"] == len(v["alerts"]) == len(seasonal.variants["seasonal"].alerts) > 0
    assert (v["flagged_buckets"], v["hit_buckets"], v["labelled_buckets"]) == (expected.flagged, expected.hits,
                                                                               expected.labelled)
    assert {p["phase"] for p in v["phases"] if p["caught"]} == CAUGHT
    assert data["test"] == {"start": "2022-01-24T00:00:00Z", "end": "2022-01-25T00:00:00Z", "days": 1.0}
    assert all(a["rule_id"] and a["event"]["anomaly"]["id"] for a in v["alerts"])


def test_the_production_models_state_and_anomalies_file_are_never_touched(seasonal, prefix):
    layout = Layout(prefix)
    assert not layout.models_dir.exists() and not layout.state_dir.exists()
    assert not layout.anomalies_file.exists() and not layout.run_lock.exists()


def test_a_kept_models_directory_holds_the_trained_models(prefix, tmp_path):
    result = run_backtest(prefix, "seasonal", models_dir=tmp_path / "models")
    for name in SCENARIOS:
        assert (tmp_path / "models" / name / "current").read_text().strip() == result.series[name].model_version


@pytest.mark.slow
def test_mvad_and_seasonal_side_by_side_both_reproduce_the_core_acceptance_result(prefix):
    result = run_backtest(prefix, "both")
    print("\n" + result.table())
    assert list(result.variants) == ["seasonal", "mvad"]
    for variant in result.variants:
        assert_core_acceptance_result(result, variant)
    assert "seasonal" in result.table().splitlines()[4] and "mvad" in result.table().splitlines()[4]


# --------------------------------------------------------------------------- inputs

def test_a_range_is_from_dot_dot_to_in_utc():
    r = parse_range("2022-01-21..2022-01-24T12:00", "--train")
    assert (r.start, r.end) == (datetime(2022, 1, 21, tzinfo=timezone.utc).timestamp(),
                                datetime(2022, 1, 24, 12, tzinfo=timezone.utc).timestamp())
    assert r.days == 3.5


@pytest.mark.parametrize("text, says", [
    ("2022-01-21", "is not a range; write FROM..TO"),
    ("2022-01-24..2022-01-21", "ends before it starts"),
    ("2022-01-21..tomorrow", "--test: 'tomorrow' is not a date or time"),
    ("..2022-01-21", "is not a range"),
])
def test_a_bad_range_is_one_sentence_naming_the_option(text, says):
    with pytest.raises(BacktestError, match=says):
        parse_range(text, "--test")


def test_labels_from_a_csv_with_header_and_comments(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("start,end,label\n# the red team's notes\n"
                    "2024-03-02T10:00:00Z,2024-03-02T10:20:00Z,ssh brute force\n\n"
                    "2024-03-01T09:00:00Z, 2024-03-01T09:05:00Z ,scan\n")
    phases = load_labels(path)
    assert [p.label for p in phases] == ["scan", "ssh brute force"]
    assert phases[0].end - phases[0].start == 300


@pytest.mark.parametrize("line, says", [
    ("2024-03-01T09:00:00Z,2024-03-01T09:05:00Z", "labels.csv:2: expected start,end,label"),
    ("2024-03-01T09:00:00Z,soon,scan", "labels.csv:2: .* is not an ISO 8601 time"),
    ("2024-03-01T09:05:00Z,2024-03-01T09:00:00Z,scan", "labels.csv:2: phase 'scan' ends"),
])
def test_a_bad_label_line_names_file_and_line(tmp_path, line, says):
    path = tmp_path / "labels.csv"
    path.write_text(f"2024-03-01T08:00:00Z,2024-03-01T08:05:00Z,ok\n{line}\n")
    with pytest.raises(BacktestError, match=says):
        load_labels(path)


def test_labels_from_the_ait_labels_json_are_its_attack_phases():
    phases = load_labels(SAMPLE_LABELS)
    written = json.loads(SAMPLE_LABELS.read_text())["attack_phases"]
    assert [p.label for p in phases] == list(written)
    assert [(p.start, p.end) for p in phases] == [(_utc(w["start"]).timestamp(), _utc(w["end"]).timestamp())
                                                  for w in written.values()]


def test_a_json_label_file_without_attack_phases_is_refused(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"phases": []}')
    with pytest.raises(BacktestError, match="needs an 'attack_phases' mapping"):
        load_labels(path)


def _anomaly(start: str, minutes: int = 5) -> Anomaly:
    t = datetime.fromisoformat(start).replace(tzinfo=timezone.utc)
    return Anomaly(scenario="s", detector="seasonal", window_start=t, window_end=t + timedelta(minutes=minutes),
                   bucket_minutes=minutes, score=2.0, threshold=1.0, severity="low", top_features=(),
                   model_version="v")


def test_bucket_precision_and_recall_count_five_minute_buckets():
    day = TimeRange(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp(),
                    datetime(2024, 3, 2, tzinfo=timezone.utc).timestamp())
    phase = Phase("attack", day.start + 3600 + 60, day.start + 3600 + 20 * 60)   # 01:01-01:20: 4 buckets
    flagged = [_anomaly("2024-03-01T01:00"), _anomaly("2024-03-01T01:05"), _anomaly("2024-03-01T01:05"),
               _anomaly("2024-03-01T07:00")]
    precision, recall, n_flagged, n_labelled, hits = bucket_precision_recall(flagged, [phase], day, 300)
    assert (n_flagged, n_labelled, hits) == (3, 4, 2)
    assert precision == pytest.approx(2 / 3) and recall == pytest.approx(2 / 4)
    assert bucket_precision_recall([], [phase], day, 300)[:2] == (None, 0.0)


def _config(prefix: Path):
    layout = Layout(prefix)
    scenarios, _ = load_scenarios(layout.scenarios_dir)
    return load_config(layout), scenarios


@pytest.mark.parametrize("names, train, test, kwargs, says", [
    (["nope"], TRAIN, TEST, {}, "no scenario named 'nope'"),
    ([], TRAIN, TEST, {}, "name the scenario"),
    (SCENARIOS, "2022-01-21..2022-01-25", TEST, {}, "overlaps the training range"),
    (SCENARIOS, TRAIN, "2099-01-01..2099-01-02", {}, "the test range .* reaches into the future"),
    (SCENARIOS, "2022-01-21..2099-01-01", "2020-01-01..2020-01-02", {}, "the training range .* reaches into the future"),
    (SCENARIOS, TRAIN, TEST, {"detector": "lstm"}, "--detector 'lstm' is not one of"),
    (SCENARIOS, "2022-01-23T20:00..2022-01-24", TEST, {"detector": "seasonal"},
     "needs 24.0 h of alert history to train and has 4.0 h; widen --train"),
])
def test_a_backtest_that_cannot_run_says_why_in_one_sentence(prefix, names, train, test, kwargs, says):
    config, scenarios = _config(prefix)
    with pytest.raises(BacktestError, match=says):
        backtest(config, scenarios, names, parse_range(train, "--train"), parse_range(test, "--test"), **kwargs)


def test_on_a_labelled_quiet_day_every_anomaly_is_a_false_alarm(prefix):
    config, scenarios = _config(prefix)
    result = backtest(config, scenarios, ["alert_volume"], parse_range("2022-01-21..2022-01-23", "--train"),
                      parse_range("2022-01-23..2022-01-24", "--test"), phases=load_labels(AIT_LABELS),
                      detector="seasonal")
    v = result.variants["seasonal"]
    assert result.phases == [] and v.evaluation.phases == []
    assert v.evaluation.false_alarms == len(v.alerts) == len(v.outside_phases(result.phases))
    assert result.false_alarms_per_day("seasonal") == len(v.alerts)
    assert "no labelled phase falls in the test range: every anomaly is a false alarm" in result.table()


def test_the_production_models_directory_is_refused_as_the_backtest_models_directory(prefix):
    config, scenarios = _config(prefix)
    with pytest.raises(BacktestError, match="is the production models directory"):
        backtest(config, scenarios, SCENARIOS, parse_range(TRAIN, "--train"), parse_range(TEST, "--test"),
                 models_dir=config.models_dir)


def test_the_command_prints_the_table_and_errors_as_one_line(prefix, capsys):
    base = ["--prefix", str(prefix), "backtest", "--scenario", "alert_volume", "--train", TRAIN, "--test", TEST,
            "--detector", "seasonal"]
    assert cli.main(base + ["--labels", str(AIT_LABELS), "--report", str(prefix / "report")]) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert f"report: {prefix / 'report' / 'index.html'}" in captured.err
    assert 'src="alert_volume-intranet_server.png"' in (prefix / "report" / "index.html").read_text()
    assert out.splitlines()[3].split()[:3] == ["phase", "UTC", "seasonal"]
    assert "wpscan" in out and "false alarms outside every phase" in out
    assert cli.main(base + ["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["variants"]["seasonal"]["phases"] == []
    bad = prefix / "bad.csv"
    bad.write_text("2022-01-24T03:00Z,2022-01-24T04:00Z,attack\n2022-01-24T05:00Z\n")
    assert cli.main(base + ["--labels", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"wazuh-anomaly: {bad}:2: expected start,end,label (3 fields, a label that is not empty), "
                   f"found 1 field(s): '2022-01-24T05:00Z'."]
