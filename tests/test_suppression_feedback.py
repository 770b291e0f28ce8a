"""Suppression and feedback: what an admin silences is still written, flagged and mapped to
the level-0 rule 117108; verdicts are validated against the written anomalies, stored
atomically, and false positives and suppressed periods are left out of the next training."""
from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from test_runner import START, burst, lines, normal_alerts, prefix, runner, write_alerts  # noqa: F401 (fixture)
from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.config import parse_scenario
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.ops.feedback import load_feedback, record_feedback
from wazuh_anomaly.core.findings import Anomaly, FeatureContribution
from wazuh_anomaly.ops.lifecycle import Exclusion, exclude_from_training, training_exclusions
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.ruleset import explain_all
from wazuh_anomaly.ops.suppression import load_suppressions, new_suppression, parse_every

SPIKE = START + timedelta(days=2, hours=1, minutes=10)     # a Sunday (2024-03-03) 01:10 UTC


def anomaly(at: datetime, entity="web-01", lead="failures", scenario="auth_test") -> Anomaly:
    return Anomaly(scenario=scenario, detector="seasonal", window_start=at, window_end=at + timedelta(minutes=5),
                   bucket_minutes=5, score=9.0, threshold=3.0, severity="high",
                   top_features=(FeatureContribution(lead, 80, 2, 0.9, 20.0),), model_version="v1",
                   entity_field="agent.name", entity_value=entity)


# --------------------------------------------------------------------------- matching

def test_a_recurring_window_covers_its_days_and_hours_only():
    assert parse_every("mon-fri 22:00-23:30") == ((0, 1, 2, 3, 4), 22 * 60, 23 * 60 + 30)
    assert parse_every("sat-mon 01:00-02:00")[0] == (0, 5, 6)
    s = new_suppression(reason="backups", every="sun 01:00-02:00")
    assert s.matches(anomaly(SPIKE))                                  # Sunday 01:10
    assert not s.matches(anomaly(SPIKE + timedelta(hours=1)))          # Sunday 02:10
    assert not s.matches(anomaly(SPIKE + timedelta(days=1)))           # Monday 01:10
    assert s.matches(anomaly(SPIKE + timedelta(days=7)))               # next Sunday


def test_a_window_past_midnight_belongs_to_the_day_it_starts():
    s = new_suppression(reason="night batch", every="sat 23:00-01:00")
    assert s.matches(anomaly(datetime(2024, 3, 2, 23, 30, tzinfo=timezone.utc)))   # Saturday night
    assert s.matches(anomaly(datetime(2024, 3, 3, 0, 30, tzinfo=timezone.utc)))    # its Sunday tail
    assert not s.matches(anomaly(datetime(2024, 3, 3, 23, 30, tzinfo=timezone.utc)))


def test_scenario_entity_feature_and_expiry_narrow_a_suppression():
    window = dict(start=SPIKE - timedelta(hours=1), end=SPIKE + timedelta(hours=1))
    assert new_suppression(reason="r", scenario="auth_test", **window).matches(anomaly(SPIKE))
    assert not new_suppression(reason="r", scenario="other", **window).matches(anomaly(SPIKE))
    assert not new_suppression(reason="r", entity="db-01", **window).matches(anomaly(SPIKE))
    assert new_suppression(reason="r", feature="failures", **window).matches(anomaly(SPIKE))
    assert not new_suppression(reason="r", feature="users", **window).matches(anomaly(SPIKE))
    expiring = new_suppression(reason="r", every="daily 00:00-23:59", expires=SPIKE,
                               now=SPIKE - timedelta(days=1))
    assert expiring.matches(anomaly(SPIKE - timedelta(hours=1)))
    assert not expiring.matches(anomaly(SPIKE + timedelta(minutes=5)))


def test_a_suppression_matches_an_event_read_back_from_anomalies_json():
    from wazuh_anomaly.emit.emitter import event_for
    event = json.loads(json.dumps(event_for(anomaly(SPIKE), detected_at=SPIKE)))
    s = new_suppression(reason="r", scenario="auth_test", entity="web-01", feature="failures",
                        start=SPIKE, end=SPIKE + timedelta(minutes=5))
    assert s.matches(event)
    assert not s.matches(event_for(anomaly(SPIKE, entity="db-01"), detected_at=SPIKE))


@pytest.mark.parametrize("kwargs, words", [
    (dict(reason=" "), "--reason is required"),
    (dict(reason="r"), "needs a time"),
    (dict(reason="r", every="sunday 1-2"), "is not a recurring window"),
    (dict(reason="r", every="sun 25:00-26:00"), "not a time of day"),
    (dict(reason="r", every="sun,funday 01:00-02:00"), "'funday' is not a day"),
    (dict(reason="r", start=SPIKE, end=SPIKE), "must be after --from"),
    (dict(reason="r", every="sun 01:00-02:00", expires=START), "is in the past"),
])
def test_a_bad_suppression_is_one_sentence_naming_the_option(kwargs, words):
    with pytest.raises(ConfigError, match=words):
        new_suppression(now=START + timedelta(days=1), **kwargs)


# --------------------------------------------------------------------------- the run and the rules

def test_a_suppressed_anomaly_is_written_with_its_reason_and_raises_no_alert(prefix, capsys):
    history = normal_alerts(2)
    write_alerts(prefix, history)
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert main(["--prefix", str(prefix), "suppress", "add", "--scenario", "auth_test", "--entity", "web-01",
                 "--every", "sun 01:00-01:30", "--reason", "weekly password audit"]) == 0
    added = capsys.readouterr().out
    assert added.startswith("added suppression ") and "every sun 01:00-01:30 UTC" in added

    spikes = burst(SPIKE) + burst(SPIKE + timedelta(minutes=5)) + burst(SPIKE + timedelta(minutes=10)) + \
        burst(SPIKE + timedelta(minutes=40))
    write_alerts(prefix, history + normal_alerts(2.1, seed=2)[len(history):] + spikes)
    runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    events = [e for e in lines(prefix) if e["anomaly"]["kind"] == "timeseries"]
    flagged = {e["anomaly"]["window"]["start"][11:16]: e["anomaly"].get("suppressed") for e in events}
    assert flagged == {"01:10": "true", "01:15": "true", "01:20": "true", "01:50": None}
    assert events[0]["anomaly"]["suppression"]["reason"] == "weekly password audit"
    alerts = explain_all(events)
    assert [(a.rule_id, a.level) for a in alerts[:3]] == [(117108, 0)] * 3
    # Three suppressed anomalies in a row never escalate; the unsuppressed one alerts normally.
    assert "escalated" not in events[3]["anomaly"] and events[3]["anomaly"]["repeat"]["entity"] == 1
    assert alerts[3].rule_id != 117107 and alerts[3].level >= 5


def test_suppress_list_and_remove_on_the_command_line(prefix, capsys):
    assert main(["--prefix", str(prefix), "suppress", "add", "--from", "2024-03-03T01:00", "--to",
                 "2024-03-03T02:00", "--reason", "pentest", "--expires", "2099-01-01"]) == 0
    ident = capsys.readouterr().out.split()[2].rstrip(":")
    assert main(["--prefix", str(prefix), "suppress", "list"]) == 0
    listed = capsys.readouterr().out
    assert listed.startswith(ident) and "every scenario; 2024-03-03 01:00 .. 2024-03-03 02:00 UTC" in listed
    assert "expires 2099-01-01" in listed and "reason: pentest" in listed
    assert main(["--prefix", str(prefix), "suppress", "remove", "nope"]) == 2
    assert "no suppression with id 'nope'" in capsys.readouterr().err
    assert main(["--prefix", str(prefix), "suppress", "remove", ident]) == 0
    assert load_suppressions(Layout(prefix)) == []
    assert main(["--prefix", str(prefix), "suppress", "add", "--scenario", "auth_test", "--feature", "nope",
                 "--every", "daily 01:00-02:00", "--reason", "x"]) == 2
    assert "has no feature 'nope'; its features: failures, users" in capsys.readouterr().err


# --------------------------------------------------------------------------- feedback

def _scored_with_a_burst(prefix):
    history = normal_alerts(2)
    write_alerts(prefix, history)
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    write_alerts(prefix, history + normal_alerts(2.1, seed=2)[len(history):] + burst(SPIKE))
    runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    return next(e["anomaly"] for e in lines(prefix) if e["anomaly"]["kind"] == "timeseries")


def test_feedback_needs_an_id_that_was_written(prefix, capsys):
    found = _scored_with_a_burst(prefix)
    assert main(["--prefix", str(prefix), "feedback", "0123456789abcdef0123", "false-positive"]) == 2
    assert "no anomaly with id '0123456789abcdef0123'" in capsys.readouterr().err
    assert main(["--prefix", str(prefix), "feedback", found["id"], "false-positive", "--note", "load test"]) == 0
    assert "left out of the next training" in capsys.readouterr().out
    fb = load_feedback(Layout(prefix))[found["id"]]
    assert (fb.verdict, fb.note, fb.scenario, fb.entity) == ("false-positive", "load test", "auth_test", "web-01")
    assert fb.window_start == SPIKE and fb.window_end == SPIKE + timedelta(minutes=5)
    stored = json.loads((prefix / "var/anomaly/state/feedback.json").read_text())
    assert list(stored["feedback"]) == [found["id"]]
    # A later verdict replaces the earlier one.
    assert main(["--prefix", str(prefix), "feedback", found["id"], "true-positive"]) == 0
    assert load_feedback(Layout(prefix))[found["id"]].verdict == "true-positive"
    assert main(["--prefix", str(prefix), "feedback", "--list"]) == 0
    assert f"{found['id']} true-positive: auth_test agent.name=web-01 2024-03-03 01:10" in capsys.readouterr().out


def test_feedback_finds_an_anomaly_in_a_rotated_compressed_file(prefix):
    found = _scored_with_a_burst(prefix)
    current = prefix / "logs/anomaly/anomalies.json"
    with open(current, "rb") as src, gzip.open(current.with_name("anomalies.json.1.gz"), "wb") as dst:
        shutil.copyfileobj(src, dst)
    current.write_text("")
    fb = record_feedback(Layout(prefix), current, found["id"], "false-positive")
    stored = load_feedback(Layout(prefix))[found["id"]]
    assert (stored.scenario, stored.window_start, stored.verdict) == ("auth_test", SPIKE, "false-positive")


# --------------------------------------------------------------------------- training exclusions

def test_excluded_buckets_become_the_seasonal_median_and_the_series_stays_contiguous(seasonal_frame):
    scenario = parse_scenario({"name": "t", "description": "t", "bucket_minutes": 5,
                               "features": [{"name": n} for n in seasonal_frame.columns]}, "t.yaml")
    frame = seasonal_frame.copy()
    at = pd.Timestamp("2024-03-02T10:00Z")
    frame.loc[at:at + pd.Timedelta(minutes=25)] = 500.0
    x = Exclusion(at.timestamp(), (at + pd.Timedelta(minutes=30)).timestamp(), None, "suppression s1")
    cleaned, n = exclude_from_training(scenario, {None: frame}, [x])
    out = cleaned[None]
    assert n == 6 and out.index.equals(frame.index)
    assert out.to_numpy().max() < 50
    ten_oclock = seasonal_frame[(seasonal_frame.index.hour == 10)]
    assert np.allclose(out.loc[at].to_numpy(), np.median(ten_oclock.to_numpy(), axis=0), atol=1.0)
    # Untouched buckets stay as they were.
    assert out.drop(out.loc[at:at + pd.Timedelta(minutes=25)].index).equals(
        frame.drop(frame.loc[at:at + pd.Timedelta(minutes=25)].index))
    # An exclusion for another entity leaves this one alone.
    same, none = exclude_from_training(scenario, {"web-01": frame}, [dataclasses.replace(x, entity="db-01")])
    assert none == 0 and same["web-01"].equals(frame)


def test_a_false_positive_and_a_suppressed_period_are_left_out_of_the_next_training(prefix, capsys):
    found = _scored_with_a_burst(prefix)
    assert main(["--prefix", str(prefix), "feedback", found["id"], "false-positive"]) == 0
    assert main(["--prefix", str(prefix), "suppress", "add", "--scenario", "auth_test",
                 "--every", "sat 03:00-04:00", "--reason", "maintenance"]) == 0
    r = runner(prefix, START + timedelta(days=2, hours=2, minutes=3))
    spans = training_exclusions(r.config, r.scenarios[0], START.timestamp(), r.now)
    assert sorted(x.why.split()[0] for x in spans) == ["false", "suppression"]
    report = r.train(start=START.timestamp(), end=(START + timedelta(days=2, hours=2)).timestamp())
    assert report.scenarios["auth_test"].status == "trained"
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "models", "show", "--scenario", "auth_test", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    # One 5-minute bucket of web-01, and the Saturday hour (12 buckets) of each of the two agents.
    assert meta["excluded_buckets"] == 1 + 2 * 12
    assert len(meta["exclusions"]) == 2


def test_the_wodles_scheduled_retrain_leaves_out_false_positives_too(prefix, capsys):
    spec = prefix / "etc/anomaly/scenarios/auth_test.yaml"
    spec.write_text(spec.read_text().replace("min_history_hours: 24}", "min_history_hours: 24, retrain_every_days: 0.1}"))
    found = _scored_with_a_burst(prefix)
    assert main(["--prefix", str(prefix), "feedback", found["id"], "false-positive"]) == 0
    # 0.1 days after the first model: the wodle's next run retrains before it scores.
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=33)).run()
    assert report.scenarios["auth_test"].status == "scored"
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "models", "list", "--json"]) == 0
    versions = json.loads(capsys.readouterr().out)["auth_test"]
    assert len(versions) == 2 and versions[-1]["current"] and versions[-1]["excluded_buckets"] == 1
