"""The scoring run end to end on a sandbox prefix: training when history allows, scoring
new buckets, crash safety, bad input, health events, locking, bounded catch-up."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import sandbox_runner
from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.ops.runner import Runner, parse_time
from wazuh_anomaly.sources.sample import lay_out_alerts
from wazuh_anomaly.core.state import RunLock

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
SCENARIO = textwrap.dedent("""\
    name: auth_test
    description: Failed logins per agent (test)
    bucket_minutes: 5
    entity: {field: agent.name, top: 5}
    features:
      - {name: failures, aggregation: count, filter: {rule.groups: [authentication_failed]}}
      - {name: users, aggregation: distinct, field: data.dstuser, filter: {rule.groups: [authentication_failed]}}
    detectors: [seasonal]
    training: {lookback_days: 3, min_history_hours: 24}
    """)


def alert(ts: datetime, agent: str, user: str = "alice", groups=("authentication_failed",)) -> dict:
    return {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}+0000",
            "rule": {"level": 5, "id": "5716", "groups": list(groups), "description": "sshd: authentication failed."},
            "agent": {"id": "001", "name": agent}, "data": {"dstuser": user, "srcip": "10.0.0.9"},
            "location": "/var/log/auth.log", "decoder": {"name": "sshd"}}


def normal_alerts(days: float, seed: int = 1) -> list[dict]:
    """A few failed logins per bucket on two agents, with a daily cycle."""
    rng = np.random.default_rng(seed)
    out = []
    for bucket in range(int(days * 288)):
        t0 = START + timedelta(minutes=5 * bucket)
        for agent in ("web-01", "db-01"):
            lam = 1.5 + np.sin(2 * np.pi * t0.hour / 24)
            for k in range(rng.poisson(lam)):
                out.append(alert(t0 + timedelta(seconds=int(rng.integers(0, 300))), agent,
                                 user=f"user{rng.integers(0, 3)}"))
    out.sort(key=lambda a: a["timestamp"])
    return out


def burst(at: datetime, agent: str = "web-01", n: int = 80) -> list[dict]:
    return [alert(at + timedelta(seconds=2 * i), agent, user=f"u{i}") for i in range(n)]


def write_alerts(prefix: Path, alerts: list[dict], extra_lines: dict[str, list[bytes]] | None = None) -> None:
    """Lay alerts out as a manager does: dated files and alerts.json linked to the last."""
    by_day: dict[str, list[bytes]] = {}
    for a in alerts:
        by_day.setdefault(a["timestamp"][:10], []).append(json.dumps(a).encode() + b"\n")
    for day, lines in (extra_lines or {}).items():
        by_day.setdefault(day, []).extend(lines)
    lay_out_alerts(prefix / "logs" / "alerts", by_day)


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    scenarios = tmp_path / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "auth_test.yaml").write_text(SCENARIO)
    return tmp_path


def runner(prefix: Path, now: datetime) -> Runner:
    return sandbox_runner(prefix, now.timestamp(), strict=False)


def lines(prefix: Path) -> list[dict]:
    path = prefix / "logs" / "anomaly" / "anomalies.json"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_first_run_without_enough_history_says_how_much_is_missing(prefix):
    write_alerts(prefix, normal_alerts(0.25))
    report = runner(prefix, START + timedelta(hours=6, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "waiting"
    health = [e["anomaly"] for e in lines(prefix) if e["anomaly"]["kind"] == "health"]
    assert [h["health"] for h in health] == ["insufficient_history"]
    assert "needs 24.0 h" in health[0]["message"] and "has 6.0 h" in health[0]["message"]
    assert not (prefix / "var" / "anomaly" / "models" / "auth_test").exists()


def test_first_run_trains_then_later_runs_score_only_new_buckets(prefix):
    history = normal_alerts(2)
    spike_at = START + timedelta(days=2, hours=1, minutes=10)
    write_alerts(prefix, history)
    first = runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert first.scenarios["auth_test"].status == "trained"
    assert (prefix / "var" / "anomaly" / "models" / "auth_test" / "current").exists()

    write_alerts(prefix, history + normal_alerts(2.1, seed=2)[len(history):] + burst(spike_at))
    second = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    scored = second.scenarios["auth_test"]
    assert scored.status == "scored" and scored.buckets == 24
    found = [e for e in lines(prefix) if e["anomaly"]["kind"] == "timeseries"]
    assert [(e["anomaly"]["window"]["start"], e["anomaly"]["entity"]["value"]) for e in found] == [
        ("2024-03-03T01:10:00.000+0000", "web-01")]
    top = {f["name"]: f for f in found[0]["anomaly"]["top_features"]}
    assert top["failures"]["actual"] >= 80 and top["failures"]["expected"] <= 3
    assert top["users"]["actual"] >= 80


def test_rescoring_the_same_buckets_emits_nothing_new(prefix):
    write_alerts(prefix, normal_alerts(2) + burst(START + timedelta(days=1, hours=3)))
    r = runner(prefix, START + timedelta(days=2, minutes=3))
    r.train(start=START.timestamp(), end=(START + timedelta(days=1)).timestamp())
    first = r.detect(START.timestamp() + 86400, START.timestamp() + 2 * 86400)
    second = r.detect(START.timestamp() + 86400, START.timestamp() + 2 * 86400)
    assert first.written >= 1 and second.written == 0
    assert second.duplicates == first.written
    ids = [e["anomaly"]["id"] for e in lines(prefix)]
    assert len(ids) == len(set(ids))


def _anomaly_windows(prefix: Path) -> list[tuple[str, str]]:
    return sorted((e["anomaly"]["window"]["start"], e["anomaly"]["entity"]["value"]) for e in lines(prefix)
                  if e["anomaly"]["kind"] == "timeseries")


def test_a_run_killed_half_way_then_run_again_emits_no_duplicates_and_leaves_no_gaps(prefix, tmp_path_factory):
    history = normal_alerts(2)
    bursts = burst(START + timedelta(days=2, minutes=20)) + burst(START + timedelta(days=2, hours=1), "db-01")
    write_alerts(prefix, history + normal_alerts(2.1, seed=3)[len(history):] + bursts)
    train_now = START + timedelta(days=2, minutes=3)
    later = START + timedelta(days=2, hours=2, minutes=3)
    runner(prefix, train_now).run()

    # The reference: an identical prefix whose run is never interrupted.
    reference = tmp_path_factory.mktemp("reference")
    subprocess.run(["cp", "-a", f"{prefix}/.", str(reference)], check=True)
    runner(reference, later).run()
    expected = _anomaly_windows(reference)
    assert len(expected) == 2

    # Killed after the anomalies were appended but before the watermark was saved.
    code = textwrap.dedent(f"""
        import os, sys
        from wazuh_anomaly.core.state import ScenarioState
        ScenarioState.save = lambda self, state_dir: os._exit(9)
        from wazuh_anomaly.cli import main
        main(["--prefix", {str(prefix)!r}, "-q", "run", "--now", {later.isoformat()!r}])
        """)
    killed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert killed.returncode == 9
    assert _anomaly_windows(prefix) == expected            # written before the kill

    assert main(["--prefix", str(prefix), "-q", "run", "--now", later.isoformat()]) == 0
    assert _anomaly_windows(prefix) == expected            # no duplicate, no gap
    state = json.loads((prefix / "var/anomaly/state/scenarios/auth_test.json").read_text())
    assert state["watermark"] == parse_time("2024-03-03T02:00:00Z")


def test_malformed_alert_lines_are_counted_and_skipped(prefix):
    bad = [b"{not json\n", b"[1, 2]\n", b"\xff\xfe garbage\n", b'{"no": "timestamp"}\n', b"x" * 70000 + b"\n"]
    day = (START + timedelta(days=1)).strftime("%Y-%m-%d")
    write_alerts(prefix, normal_alerts(2), extra_lines={day: bad})
    report = runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "trained"
    health = [e["anomaly"] for e in lines(prefix) if e["anomaly"]["kind"] == "health"]
    malformed = [h for h in health if h["health"] == "malformed_input"]
    assert len(malformed) == 1
    message = malformed[0]["message"]
    assert "skipped 5 malformed lines" in message
    for reason in ("1 bad_json", "1 not_object", "1 invalid_utf8", "1 no_timestamp", "1 line_too_long"):
        assert reason in message
    assert "ossec-alerts-02.json:" in message


def test_a_missing_alerts_directory_is_a_health_event_and_one_clear_sentence(prefix, capsys):
    assert main(["--prefix", str(prefix), "run", "--now", "2024-03-03T00:03:00Z"]) == 0
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    # The run's summary (stdout; the wodle keeps it in its log file) says it, once.
    assert (out + err).count(f"The alerts directory {prefix / 'logs' / 'alerts'} does not exist") == 1
    health = [e["anomaly"] for e in lines(prefix)]
    assert [h["health"] for h in health] == ["source_unreadable"]
    assert health[0]["severity"] == "high"


def test_an_overlapping_run_is_skipped_while_the_lock_is_held(prefix, capsys):
    write_alerts(prefix, normal_alerts(2))
    with RunLock(Layout(prefix).run_lock):
        assert main(["--prefix", str(prefix), "run", "--now", "2024-03-03T00:03:00Z"]) == 0
    assert "this run is skipped" in capsys.readouterr().err
    assert lines(prefix) == []


def test_a_broken_scenario_file_does_not_stop_the_others(prefix):
    (prefix / "etc/anomaly/scenarios/broken.yaml").write_text("name: broken\nfeatures: [\n")
    write_alerts(prefix, normal_alerts(2))
    report = runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "trained"
    health = [e["anomaly"] for e in lines(prefix) if e["anomaly"]["kind"] == "health"]
    assert [h["health"] for h in health] == ["config_invalid"]
    assert "broken.yaml" in health[0]["message"]


def test_a_model_writable_by_others_is_refused_and_reported(prefix):
    write_alerts(prefix, normal_alerts(2))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    model_dir = next(p for p in (prefix / "var/anomaly/models/auth_test").iterdir() if p.is_dir())
    os.chmod(model_dir / "seasonal.json", 0o666)
    r = runner(prefix, START + timedelta(days=2, hours=1))
    row = r.status()[0]
    assert row["model"] is None and "writable by group or others" in row["last_error"]


def test_catch_up_after_downtime_is_bounded(prefix):
    (prefix / "etc/anomaly/config.yaml").write_text("run:\n  max_catchup_buckets: 12\n")
    write_alerts(prefix, normal_alerts(3))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    report = runner(prefix, START + timedelta(days=2, hours=10, minutes=3)).run()
    assert report.scenarios["auth_test"].buckets == 12
    assert "backlog" in report.scenarios["auth_test"].message


def test_runs_one_bucket_at_a_time_find_the_same_anomalies_as_one_backfill(prefix, tmp_path_factory):
    """The persisted context makes incremental scoring equal to scoring a range at once."""
    spec = SCENARIO.replace("detectors: [seasonal]", "detectors: [mvad, seasonal]\n"
                            "mvad: {sliding_window: 16, epochs: 3, windows_per_epoch: 256, min_steps: 10}")
    (prefix / "etc/anomaly/scenarios/auth_test.yaml").write_text(spec)
    history = normal_alerts(2)
    write_alerts(prefix, history + normal_alerts(2.1, seed=5)[len(history):] +
                 burst(START + timedelta(days=2, minutes=40)))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    other = tmp_path_factory.mktemp("backfill")
    subprocess.run(["cp", "-a", f"{prefix}/.", str(other)], check=True)

    for step in range(1, 13):
        runner(prefix, START + timedelta(days=2, minutes=5 * step + 3)).run()
    incremental = [(e["anomaly"]["window"]["start"], e["anomaly"]["entity"]["value"], e["anomaly"]["score"])
                   for e in lines(prefix) if e["anomaly"]["kind"] == "timeseries"]
    runner(other, START + timedelta(days=2, hours=1, minutes=3)).detect(
        (START + timedelta(days=2)).timestamp(), (START + timedelta(days=2, hours=1)).timestamp())
    backfill = [(e["anomaly"]["window"]["start"], e["anomaly"]["entity"]["value"], e["anomaly"]["score"])
                for e in lines(other) if e["anomaly"]["kind"] == "timeseries"]
    assert incremental and sorted(incremental) == sorted(backfill)


def test_status_shows_model_age_watermark_and_lag(prefix, capsys):
    write_alerts(prefix, normal_alerts(2))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert main(["--prefix", str(prefix), "status", "--json", "--now", "2024-03-03T01:00:00Z"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["scenario"] == "auth_test" and rows[0]["model"]
    assert rows[0]["last_scored_bucket_end"] == "2024-03-03 00:00 UTC"
    assert rows[0]["lag_minutes"] == 60.0


def test_training_and_scoring_write_nothing_under_home_or_the_working_directory(prefix, tmp_path_factory):
    """The library's side effects (checkpoints, telemetry, caches) stay out of the manager."""
    spec = SCENARIO.replace("detectors: [seasonal]", "detectors: [mvad, seasonal]\n"
                            "mvad: {sliding_window: 16, epochs: 2, windows_per_epoch: 128, min_steps: 4}")
    (prefix / "etc/anomaly/scenarios/auth_test.yaml").write_text(spec)
    write_alerts(prefix, normal_alerts(2.1))
    home, cwd = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("cwd")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW", "DO_NOT_TRACK", "TQDM", "XDG", "MPL"))}
    env["HOME"] = str(home)
    for now in ("2024-03-03T00:03:00Z", "2024-03-03T00:33:00Z"):
        subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "-q", "run", "--now", now],
                       cwd=cwd, env=env, check=True, capture_output=True)
    assert (prefix / "var/anomaly/models/auth_test/current").exists()
    assert sorted(p.name for p in home.rglob("*")) == []
    assert sorted(p.name for p in cwd.rglob("*")) == []


def test_a_failed_training_is_shown_by_status(prefix):
    spec = SCENARIO.replace("detectors: [seasonal]", "detectors: [mvad]\n"
                            "mvad: {sliding_window: 16, epochs: 1, windows_per_epoch: 64, min_steps: 1000}")
    (prefix / "etc/anomaly/scenarios/auth_test.yaml").write_text(spec)
    write_alerts(prefix, normal_alerts(2))
    r = runner(prefix, START + timedelta(days=2, minutes=3))
    report = r.run()
    assert report.scenarios["auth_test"].status == "failed"
    assert "optimiser steps" in r.status()[0]["last_error"]
    assert [e["anomaly"]["health"] for e in lines(prefix)] == ["training_failed"]


def test_sample_data_refuses_a_managers_real_alerts(prefix, capsys):
    write_alerts(prefix, normal_alerts(0.1))
    before = (prefix / "logs/alerts/alerts.json").read_bytes()
    assert main(["--prefix", str(prefix), "sample-data"]) == 2
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (prefix / "logs/alerts/alerts.json").read_bytes() == before


def test_sample_data_needs_an_explicit_prefix(monkeypatch, capsys):
    monkeypatch.delenv("WAZUH_ANOMALY_PREFIX", raising=False)
    assert main(["sample-data"]) == 2
    assert "--prefix" in capsys.readouterr().err


def test_a_retrain_never_skips_unscored_buckets(prefix):
    """Scoring continues from the last scored bucket with the new model."""
    history = normal_alerts(2)
    spike = START + timedelta(days=2, hours=1, minutes=10)
    write_alerts(prefix, history + normal_alerts(2.2, seed=4)[len(history):] + burst(spike))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    # A retrain up to well past the burst, before any run scored those buckets.
    r = runner(prefix, START + timedelta(days=2, hours=3, minutes=3))
    r.train()
    report = r.run()
    assert report.scenarios["auth_test"].buckets == 36
    assert ("2024-03-03T01:10:00.000+0000", "web-01") in _anomaly_windows(prefix)


def test_a_lost_state_file_resumes_scoring_where_training_ended(prefix):
    history = normal_alerts(2)
    write_alerts(prefix, history + normal_alerts(2.1, seed=6)[len(history):] +
                 burst(START + timedelta(days=2, minutes=30)))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    (prefix / "var/anomaly/state/scenarios/auth_test.json").unlink()
    report = runner(prefix, START + timedelta(days=2, hours=1, minutes=3)).run()
    assert report.scenarios["auth_test"].buckets == 12
    assert ("2024-03-03T00:30:00.000+0000", "web-01") in _anomaly_windows(prefix)


def test_no_data_is_not_raised_while_alerts_flow_during_warm_up(prefix):
    write_alerts(prefix, normal_alerts(1.0))
    for hours in (7, 8, 9):    # past no_data_hours since the first run, still no model
        runner(prefix, START + timedelta(hours=hours, minutes=3)).run()
    runner(prefix, START + timedelta(hours=20, minutes=3)).run()
    assert "no_data" not in [e["anomaly"].get("health") for e in lines(prefix)]


def test_a_damaged_state_file_is_rebuilt_not_a_traceback(prefix):
    write_alerts(prefix, normal_alerts(2))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    (prefix / "var/anomaly/state/run.json").write_text("{not json")
    (prefix / "var/anomaly/state/scenarios/auth_test.json").write_text("\x00garbage")
    assert main(["--prefix", str(prefix), "-q", "run", "--now", "2024-03-03T00:33:00Z"]) == 0
    state = json.loads((prefix / "var/anomaly/state/scenarios/auth_test.json").read_text())
    assert state["watermark"] == parse_time("2024-03-03T00:30:00Z")


def test_detect_of_an_old_range_run_twice_writes_nothing_the_second_time(prefix):
    write_alerts(prefix, normal_alerts(2) + burst(START + timedelta(days=1, hours=3)))
    r = runner(prefix, START + timedelta(days=90))      # the range is three months old
    r.train(start=START.timestamp(), end=(START + timedelta(days=1)).timestamp())
    first = r.detect(START.timestamp() + 86400, START.timestamp() + 2 * 86400)
    second = runner(prefix, START + timedelta(days=91)).detect(START.timestamp() + 86400,
                                                               START.timestamp() + 2 * 86400)
    assert first.written >= 1 and second.written == 0


def test_detect_never_scores_an_incomplete_bucket(prefix):
    write_alerts(prefix, normal_alerts(2.1))
    r = runner(prefix, START + timedelta(days=2, minutes=33))
    r.train(start=START.timestamp(), end=(START + timedelta(days=2)).timestamp())
    report = r.detect((START + timedelta(days=2)).timestamp(), (START + timedelta(days=3)).timestamp())
    assert report.scenarios["auth_test"].buckets == 6     # up to 00:30; 00:30-00:35 is not over yet


def test_bad_times_on_the_command_line_are_one_sentence(prefix, capsys):
    assert main(["--prefix", str(prefix), "detect", "--from", "", "--to", "2024-03-02"]) == 2
    err = capsys.readouterr().err
    assert "is not a date or time" in err and "Traceback" not in err


def test_show_lists_the_newest_anomalies_with_the_rule_each_raises(prefix, capsys):
    history = normal_alerts(2)
    write_alerts(prefix, history + normal_alerts(2.1, seed=8)[len(history):] +
                 burst(START + timedelta(days=2, minutes=20)) + burst(START + timedelta(days=2, minutes=50), "db-01"))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    runner(prefix, START + timedelta(days=2, hours=1, minutes=3)).run()
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "show", "--last", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("2024-03-03T00:50 auth_test") and "db-01" in out[0]
    assert out[1].startswith("  -> rule 11710") and "(level " in out[1]     # a scenario of our own: generic tiers
    assert out[2].startswith("(1 of 2 lines;") and "simulated" in out[2]


def test_train_without_any_scenario_file_trains_nothing_and_does_not_fail(tmp_path):
    (tmp_path / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    write_alerts(tmp_path, normal_alerts(0.5))
    assert main(["--prefix", str(tmp_path), "train"]) == 0
    assert not (tmp_path / "var" / "anomaly" / "models").exists() or \
        not any((tmp_path / "var" / "anomaly" / "models").iterdir())


def test_alerts_that_stop_for_longer_than_no_data_hours_raise_no_data_once(prefix):
    write_alerts(prefix, normal_alerts(1.0))
    runner(prefix, START + timedelta(hours=23, minutes=3)).run()      # alerts still arriving
    quiet = START + timedelta(days=1, hours=7, minutes=3)            # the last alert was 7 hours ago
    runner(prefix, quiet).run()
    runner(prefix, quiet + timedelta(minutes=5)).run()              # same hour: not repeated
    events = [e["anomaly"] for e in lines(prefix) if e["anomaly"].get("health") == "no_data"]
    assert len(events) == 1
    assert events[0]["message"].startswith(f"no alert in {prefix / 'logs' / 'alerts'} for 7")
    assert "<jsonout_output>yes</jsonout_output>" in events[0]["message"]


def test_a_day_of_catch_up_in_one_run_writes_and_raises_what_288_five_minute_runs_do(prefix, tmp_path_factory):
    """Escalation is counted from event time: the same anomalies, the same lines, the same alerts,
    whether a day is scored by 288 runs five minutes apart or by one run after a day of downtime."""
    from wazuh_anomaly.ruleset import explain_all

    day = START + timedelta(days=2)
    history = normal_alerts(2)
    later = [a for a in normal_alerts(3, seed=5) if a["timestamp"] >= day.strftime("%Y-%m-%d")]
    bursts = [burst(day + timedelta(hours=1, minutes=m)) for m in (0, 5, 10, 40)]          # web-01 repeats
    bursts += [burst(day + timedelta(hours=9, minutes=m), agent) for m, agent in ((0, "db-01"), (20, "web-01"))]
    bursts += [burst(day + timedelta(hours=9, minutes=35), "db-01"), burst(day + timedelta(hours=15), "db-01")]
    write_alerts(prefix, history + later + [a for b in bursts for a in b])
    runner(prefix, day + timedelta(minutes=3)).run()                                        # trains
    other = tmp_path_factory.mktemp("catch-up")
    subprocess.run(["cp", "-a", f"{prefix}/.", str(other)], check=True)

    for step in range(1, 289):
        runner(prefix, day + timedelta(minutes=5 * step + 3)).run()
    runner(other, day + timedelta(days=1, minutes=3)).run()

    def scored(where):
        events = [e for e in lines(where) if e["anomaly"]["kind"] == "timeseries"]
        return events, [{k: v for k, v in e["anomaly"].items() if k != "detected_at"} for e in events]

    live_events, live = scored(prefix)
    catch_up_events, catch_up = scored(other)
    assert live == catch_up
    assert sum(a.get("escalated") == "true" for a in live) >= 2
    # Live lines reach the manager five minutes apart, the catch-up's all at once: same alerts.
    assert [(a.rule_id, a.level) for a in explain_all(live_events)] == \
        [(a.rule_id, a.level) for a in explain_all(catch_up_events)]
