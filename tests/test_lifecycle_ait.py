"""Model lifecycle on real data (AIT-ADS russellmitchell, shared/data/ait-ads): a model trained
on 2022-01-21..22, retrained with the 23rd included, a shifted period that drifts, and a
rollback that restores the first model's scores exactly.

The shifted period is the real 2022-01-23 copied to 2022-01-24 with every alert ten times
(as after a logging change): the same agents and rules, ten times the volume. Measured
(docs/operations.md, "Models and their lifecycle"): an ordinary next day stays far below both drift limits, the
shifted day exceeds the tail limit.
"""
from __future__ import annotations

import gzip
import json
import os
from datetime import timedelta
from pathlib import Path

import orjson
import pytest

from conftest import AIT_ALERTS, REPO
from wazuh_anomaly.cli.app import main
from wazuh_anomaly.core.config import load_config, load_scenarios
from wazuh_anomaly.ops.lifecycle import current_version, list_models
from wazuh_anomaly.pipeline.scores import drift_of, recent_scores
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.ops.runner import Runner, parse_time
from wazuh_anomaly.sources.sample import _shift, lay_out_alerts

pytestmark = pytest.mark.slow

SCENARIO = "alert_volume"
SMALL_MVAD = "mvad: {epochs: 3, windows_per_epoch: 256, min_steps: 10}\n"
TRAINING = "training: {lookback_days: 3, min_history_hours: 24, retrain_every_days: 1.5}\n"


def _sandbox(root: Path) -> Path:
    scenarios = root / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    text = (REPO / "wazuh/etc/anomaly/scenarios" / f"{SCENARIO}.yaml").read_text()
    (scenarios / f"{SCENARIO}.yaml").write_text(text + SMALL_MVAD + TRAINING)
    by_day: dict[str, list[bytes]] = {}
    with gzip.open(AIT_ALERTS, "rb") as handle:
        for line in handle:
            alert = orjson.loads(line)
            day = alert["timestamp"][:10]
            if day in ("2022-01-21", "2022-01-22", "2022-01-23"):
                by_day.setdefault(day, []).append(orjson.dumps(alert) + b"\n")
            if day == "2022-01-23":
                for k in range(10):   # the shifted period: the same day, ten times the volume
                    copy = dict(alert, timestamp=_shift(alert["timestamp"], timedelta(days=1, milliseconds=k)))
                    by_day.setdefault("2022-01-24", []).append(orjson.dumps(copy) + b"\n")
    lay_out_alerts(root / "logs" / "alerts", by_day)
    return root


def _runner(prefix: Path, now: str) -> Runner:
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors
    return Runner(load_config(layout), scenarios, now=parse_time(now))


def _scores_of_day_23(prefix: Path) -> tuple[list, list]:
    report = _runner(prefix, "2022-01-25T00:10:00Z").detect(parse_time("2022-01-23"), parse_time("2022-01-24"),
                                                             write=False)
    r = report.scenarios[SCENARIO]
    anomalies = [(a.window_start, a.entity_value, a.severity, round(a.score, 9)) for a in r.anomalies]
    return anomalies, sorted(r.scores["mvad"])


def _health(prefix: Path) -> list[str]:
    path = prefix / "logs/anomaly/anomalies.json"
    if not path.exists():   # nothing written yet: no anomaly within the budget, no health event
        return []
    return [e["anomaly"]["health"] for e in map(json.loads, path.read_text().splitlines())
            if e["anomaly"]["kind"] == "health"]


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory):
    prefix = _sandbox(tmp_path_factory.mktemp("lifecycle"))
    models = prefix / "var/anomaly/models"
    steps = {}
    # 1. The wodle's first run trains on the two days there are.
    first = _runner(prefix, "2022-01-23T00:03:00Z").run()
    assert first.scenarios[SCENARIO].status == "trained", first.lines()
    steps["v1"] = current_version(models, SCENARIO)
    # 2. The next day is scored by the wodle: an ordinary day, no drift.
    second = _runner(prefix, "2022-01-24T00:08:00Z").run()
    assert second.scenarios[SCENARIO].status == "scored" and second.scenarios[SCENARIO].buckets == 288
    steps["normal_day_health"] = _health(prefix)
    steps["normal_day_status"] = _runner(prefix, "2022-01-24T00:08:00Z").status()[0]
    steps["v1_scores"] = _scores_of_day_23(prefix)
    # 3. Retrain with the 23rd included.
    assert main(["--prefix", str(prefix), "-q", "train", "--from", "2022-01-21", "--to", "2022-01-24",
                 "--now", "2022-01-24T00:09:00Z"]) == 0
    steps["v2"] = current_version(models, SCENARIO)
    steps["v2_scores"] = _scores_of_day_23(prefix)
    # 4. The shifted period is scored by the wodle with the new model.
    third = _runner(prefix, "2022-01-25T00:08:00Z").run()
    assert third.scenarios[SCENARIO].status == "scored", third.lines()
    steps["shifted_health"] = _health(prefix)
    steps["shifted_status"] = _runner(prefix, "2022-01-25T00:08:00Z").status()[0]
    return prefix, steps


def test_an_ordinary_next_day_does_not_drift(lifecycle):
    _, steps = lifecycle
    assert steps["normal_day_health"] == []
    status = steps["normal_day_status"]
    assert "model_health" not in status
    assert status["drift"].count(": ok") == 2, status["drift"]


def test_a_retrain_adds_a_version_and_keeps_the_old_one(lifecycle):
    prefix, steps = lifecycle
    rows = list_models(prefix / "var/anomaly/models", SCENARIO)
    assert [r["version"] for r in rows] == [steps["v1"], steps["v2"]]
    assert [r["current"] for r in rows] == [False, True]
    assert rows[0]["trained_to"].startswith("2022-01-23T00:00") and rows[1]["trained_to"].startswith("2022-01-24T00:00")
    assert steps["v1_scores"] != steps["v2_scores"]


def test_the_shifted_period_is_reported_as_drift_and_shown_by_status(lifecycle):
    _, steps = lifecycle
    assert steps["shifted_health"] == ["model_drift"]
    status = steps["shifted_status"]
    assert status["model_health"] == "drifted" and "DRIFT" in status["drift"]


def test_rollback_restores_the_previous_models_scores_exactly(lifecycle, capsys):
    prefix, steps = lifecycle
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "models", "rollback", "--scenario", SCENARIO]) == 0
    out = capsys.readouterr().out
    assert f"switched from {steps['v2']} to {steps['v1']}" in out
    assert current_version(prefix / "var/anomaly/models", SCENARIO) == steps["v1"]
    assert _scores_of_day_23(prefix) == steps["v1_scores"]
    status = _runner(prefix, "2022-01-25T00:10:00Z").status()[0]
    assert status["model"] == steps["v1"] and status["rolled_back"].startswith(f"from {steps['v2']}")
    # The drift of the newer model is not carried over to the rolled-back one.
    assert "model_health" not in status
    # Rolled back just now: the 1.5-day retrain schedule starts again instead of undoing it.
    run = _runner(prefix, "2022-01-25T00:13:00Z").run()
    assert run.scenarios[SCENARIO].status != "trained"
    assert current_version(prefix / "var/anomaly/models", SCENARIO) == steps["v1"]
    # And forward again, by name.
    assert main(["--prefix", str(prefix), "models", "rollback", "--scenario", SCENARIO, "--version", steps["v2"]]) == 0
    assert current_version(prefix / "var/anomaly/models", SCENARIO) == steps["v2"]


def test_rollback_refuses_an_untrusted_or_unfitting_version(lifecycle, capsys):
    prefix, steps = lifecycle
    models = prefix / "var/anomaly/models"
    before = current_version(models, SCENARIO)
    other = steps["v1"] if before == steps["v2"] else steps["v2"]
    meta = models / SCENARIO / other / "meta.json"
    os.chmod(meta, 0o660)
    try:
        assert main(["--prefix", str(prefix), "models", "rollback", "--scenario", SCENARIO, "--version", other]) == 2
        assert "is writable by group or others" in capsys.readouterr().err
    finally:
        os.chmod(meta, 0o640)
    spec = prefix / f"etc/anomaly/scenarios/{SCENARIO}.yaml"
    text = spec.read_text()
    spec.write_text(text.replace("  - name: ids_alerts\n    aggregation: count\n    filter:\n      rule.groups: [ids, suricata]\n", ""))
    try:
        assert main(["--prefix", str(prefix), "models", "rollback", "--scenario", SCENARIO, "--version", other]) == 2
        assert "trained on features" in capsys.readouterr().err
    finally:
        spec.write_text(text)
    assert main(["--prefix", str(prefix), "models", "rollback", "--scenario", SCENARIO, "--version", "nope"]) == 2
    assert "no version 'nope'" in capsys.readouterr().err
    assert current_version(models, SCENARIO) == before


def test_models_list_and_show_tell_what_each_version_was_trained_on(lifecycle, capsys):
    prefix, steps = lifecycle
    capsys.readouterr()
    assert main(["--prefix", str(prefix), "models", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{SCENARIO}: 2 version(s) kept (run.keep_models 5)"
    assert any(line.startswith(f" * ") for line in out[1:]) and all("2022-01-21T00:00 .." in l for l in out[1:])
    assert main(["--prefix", str(prefix), "models", "show", "--scenario", SCENARIO, "--version", steps["v1"]]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith(f"{SCENARIO} {steps['v1']}") and "mvad threshold:" in shown
    assert "trained to: 2022-01-23T00:00:00.000+0000" in shown
