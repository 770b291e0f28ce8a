"""Rare-event models: IsolationForest trained with scikit-learn, exported as JSON, scored
in pure Python exactly as scikit-learn scores it; model files are trusted input."""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, SHARED_DATA
from wazuh_anomaly.core.errors import ModelError
from wazuh_anomaly.realtime import config
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime.rarity import RareEventModel, extract, vector
from wazuh_anomaly.realtime.train import fit, save, training_rows

ENV = {**os.environ, "PYTHONPATH": str(REPO / "integration")}


def fim(path, event="modified", user="www-data", agent="20"):
    return {"rule": {"id": "550", "level": 7, "groups": ["ossec", "syscheck"]}, "agent": {"id": agent},
            "syscheck": {"path": path, "event": event, "uname_after": user, "mode": "realtime"}}


def web_server_history(n=400, seed=3):
    """A web server's usual FIM changes: uploads and cache files by www-data, a few config edits by root."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.6:
            out.append(fim(f"/var/www/html/wp-content/uploads/2022/01/img{rng.randint(1, 500)}.jpg", "added"))
        elif r < 0.9:
            out.append(fim(f"/var/www/html/wp-content/cache/page{rng.randint(1, 50)}.html"))
        else:
            out.append(fim(rng.choice(["/etc/hosts", "/etc/resolv.conf"]), user="root"))
    return out


def model_spec(**kw):
    raw = {"target": "fim", "trees": 40, "sample_size": 128, "min_training_events": 20, **kw}
    return config.parse({"models": {"fim_rare_change": raw}}, "realtime.yaml")["models"][0]


def test_pure_python_scores_equal_scikit_learn_score_samples():
    from sklearn.ensemble import IsolationForest
    spec = model_spec()
    rows = training_rows(spec, web_server_history())
    doc = fit(spec, rows, seed=11)
    model = RareEventModel(json.loads(json.dumps(doc)))       # through JSON, as from the file
    X = np.zeros((len(rows), spec["dimensions"]))
    for i, row in enumerate(rows):
        for j, v in row.items():
            X[i, j] = v
    forest = IsolationForest(n_estimators=40, max_samples=128, random_state=11).fit(X)
    probes = rows[:50] + [vector(extract("fim", a)[1], 64) for a in
                          (fim("/etc/systemd/system/backdoor.service", "added", "root"), fim("/usr/bin/sudo", user="root"))]
    Xp = np.zeros((len(probes), 64))
    for i, row in enumerate(probes):
        for j, v in row.items():
            Xp[i, j] = v
    ours = [model.score_vector(p) for p in probes]
    theirs = -forest.score_samples(Xp)
    assert ours == pytest.approx(theirs.tolist(), abs=1e-5)


def test_an_unusual_file_change_scores_above_the_threshold_and_usual_ones_below():
    spec = model_spec()
    model = RareEventModel(fit(spec, training_rows(spec, web_server_history())))
    usual = [model.score_tokens(extract("fim", a)[1]) for a in web_server_history(50, seed=99)]
    backdoor = model.score_tokens(extract("fim", fim("/etc/systemd/system/backdoor.service", "added", "root"))[1])
    assert backdoor > model.threshold
    assert sum(s > model.threshold for s in usual) <= 2


def test_ignore_lists_skip_users_and_path_prefixes():
    assert extract("fim", fim("/tmp/x"), ignore_path_prefixes=["/tmp/"]) is None
    assert extract("fim", fim("/etc/x", user="backup"), ignore_users=["backup"]) is None
    assert extract("command", {"data": {"command": "/usr/bin/rsync -a", "srcuser": "backup"}}, ignore_users=["backup"]) is None
    assert extract("fim", {"rule": {}}) is None


def test_too_little_history_is_one_clear_error():
    with pytest.raises(ModelError, match=r"3 file integrity events \(syscheck alerts with syscheck.path\) in the history, "
                                         r"it needs 20; learn from a longer range"):
        fit(model_spec(), training_rows(model_spec(), web_server_history(3)))


def test_model_files_are_json_and_refused_when_others_could_write_them(tmp_path):
    spec = model_spec()
    path = save(fit(spec, training_rows(spec, web_server_history())), str(tmp_path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"
    assert json.loads(open(path, "rb").read())["format"] == "wazuh-anomaly-iforest"
    cfg = {"detectors": [], "models": [spec]}
    assert RealtimeEngine(cfg, str(tmp_path)).model(spec) is not None
    os.chmod(path, 0o664)
    engine = RealtimeEngine(cfg, str(tmp_path))
    assert engine.model(spec) is None
    assert "writable by group or others" in engine.problems[0]


def test_scoring_a_fim_alert_in_the_integration_path_needs_no_numpy(tmp_path):
    spec = model_spec()
    save(fit(spec, training_rows(spec, web_server_history())), str(tmp_path / "models"))
    (tmp_path / "cfg.json").write_text(json.dumps({"detectors": [], "models": [spec]}))
    (tmp_path / "alert.json").write_text(json.dumps(fim("/etc/systemd/system/backdoor.service", "added", "root")))
    code = f"""
import json, sys
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime.store import StateStore
with StateStore({str(tmp_path)!r}) as store:
    found = RealtimeEngine(json.load(open({str(tmp_path / 'cfg.json')!r})), {str(tmp_path / 'models')!r}).process(
        store, json.load(open({str(tmp_path / 'alert.json')!r})), now=1.7e9)
print([f.data['value'] for f in found], 'numpy' in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.strip() == "['/etc/systemd/system/backdoor.service'] False"


def test_real_alerts_too_few_command_events_refuse_training_with_the_default_minimum(tmp_path):
    """The 100 no-attack lines hold 6 command events (4 apparmor_parser, 2 sudo tail): too few
    for an IsolationForest to mean anything, and the shipped minimum (10) says so."""
    no_attack = SHARED_DATA / "wazuh-alerts" / "wazuh_no_attack_lines.json"
    if not no_attack.exists():
        pytest.skip("real alerts not found")
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    shutil.copy(REPO / "wazuh/etc/anomaly/realtime.yaml", tmp_path / "etc/anomaly/realtime.yaml")
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(tmp_path), "realtime", "train",
                           "--alerts", str(no_attack)], capture_output=True, text=True, env=ENV)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (f"command_rare: not trained: model command_rare: 6 command events (audit EXECVE alerts with data.audit.exe "
            f"or .command, sudo alerts with data.command) in {no_attack}, it needs 10") in done.stdout
    assert not (tmp_path / "var/anomaly/realtime/models/command_rare.json").exists()


def test_real_alerts_command_events_score_alike_in_pure_python_and_scikit_learn(tmp_path):
    from sklearn.ensemble import IsolationForest
    attack = SHARED_DATA / "wazuh-alerts" / "wazuh_attack_lines.json"
    no_attack = SHARED_DATA / "wazuh-alerts" / "wazuh_no_attack_lines.json"
    if not attack.exists():
        pytest.skip("real alerts not found")
    spec = config.parse({"models": {"command_rare": {"target": "command", "min_training_events": 5, "trees": 30,
                                                     "sample_size": 64}}}, "x")["models"][0]
    history = [json.loads(line) for line in no_attack.read_text().splitlines()]
    rows = training_rows(spec, history)
    model = RareEventModel(fit(spec, rows, seed=5))
    probes = rows + training_rows(spec, [json.loads(line) for line in attack.read_text().splitlines()])
    assert len(probes) == 6 + 3     # the attack's sudo commands: list, ls -laR /root/, cat /etc/shadow

    def dense(rs):
        X = np.zeros((len(rs), spec["dimensions"]))
        for i, row in enumerate(rs):
            for j, v in row.items():
                X[i, j] = v
        return X
    forest = IsolationForest(n_estimators=30, max_samples=len(rows), random_state=5).fit(dense(rows))
    assert [model.score_vector(p) for p in probes] == pytest.approx((-forest.score_samples(dense(probes))).tolist(), abs=1e-5)


def manager_with_fim_history(prefix, realtime_yaml: str) -> float:
    """A sandbox manager whose alerts.json holds 60 web-server FIM alerts of the last hour."""
    import time
    (prefix / "etc/anomaly/scenarios").mkdir(parents=True)
    (prefix / "logs/alerts").mkdir(parents=True)
    shutil.copy(REPO / "wazuh/etc/anomaly/config.yaml", prefix / "etc/anomaly/config.yaml")
    shutil.copy(REPO / "wazuh/etc/anomaly/scenarios/alert_volume.yaml", prefix / "etc/anomaly/scenarios/")
    (prefix / "etc/anomaly/realtime.yaml").write_text(realtime_yaml)
    now = time.time()
    with open(prefix / "logs/alerts/alerts.json", "w") as fh:
        for i, alert in enumerate(web_server_history(60)):
            alert["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(now - 3600 + i * 30))
            fh.write(json.dumps(alert) + "\n")
    return now


def test_wazuh_anomaly_train_also_trains_the_realtime_models_on_the_managers_alerts(tmp_path):
    manager_with_fim_history(tmp_path, "detectors: {}\nmodels:\n  fim_rare_change: {target: fim, min_training_events: 20}\n")
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(tmp_path), "train"],
                          capture_output=True, text=True, env=ENV, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "realtime fim_rare_change: trained on 60 fim events" in done.stdout
    assert (tmp_path / "var/anomaly/realtime/models/fim_rare_change.json").is_file()


def test_the_wodle_trains_rare_event_models_when_due_and_retries_the_untrainable_a_day_later(tmp_path):
    now = manager_with_fim_history(tmp_path, (
        "detectors: {}\nmodels:\n  fim_rare_change: {target: fim, min_training_events: 20, retrain_every_days: 7}\n"
        "  command_rare: {target: command}\n  never_from_the_wodle: {target: fim, retrain_every_days: 0}\n"))
    models = tmp_path / "var/anomaly/realtime/models"
    schedule = tmp_path / "var/anomaly/realtime/training-failures.json"
    launcher = tmp_path / "integrations/custom-anomaly"

    def run():
        done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(tmp_path), "run"],
                              capture_output=True, text=True, env=ENV, timeout=600)
        assert done.returncode == 0, done.stderr
        lines = (tmp_path / "logs/anomaly/anomalies.json").read_text().splitlines()
        return [json.loads(line)["anomaly"] for line in lines]

    run()                                  # the real-time path is not installed (no --realtime): nothing trained
    assert not models.exists()
    launcher.parent.mkdir()
    launcher.write_text("#!/bin/sh\n")
    events = run()
    assert RareEventModel.from_bytes((models / "fim_rare_change.json").read_bytes()).doc["training_events"] == 60
    assert not (models / "never_from_the_wodle.json").exists()
    (short,) = [e for e in events if e.get("scenario") == "command_rare"]
    assert short["health"] == "insufficient_history"
    assert short["message"].startswith("real-time model command_rare: 0 command events (audit EXECVE alerts with "
                                       "data.audit.exe or .command, sudo alerts with data.command) in the last 30 days "
                                       "of the manager's alerts (")
    assert "), it needs 10; no agent reports them (enable auditd EXECVE rules or sudo logging)" in short["message"]
    assert short["message"].endswith("; the wodle tries again in a day.") and short["message"].count(". ") == 0
    attempts = json.loads(schedule.read_text())
    assert set(attempts) == {"command_rare"}          # only what failed waits a day
    trained_at = (models / "fim_rare_change.json").stat().st_mtime

    run()                                                  # minutes later: nothing is due
    assert json.loads(schedule.read_text()) == attempts
    assert (models / "fim_rare_change.json").stat().st_mtime == trained_at

    week_ago = now - 8 * 86400                             # a week later, and a day after the failed attempt
    os.utime(models / "fim_rare_change.json", (week_ago, week_ago))
    schedule.write_text(json.dumps({"command_rare": now - 2 * 86400}))
    run()
    assert (models / "fim_rare_change.json").stat().st_mtime > week_ago + 86400
    assert json.loads(schedule.read_text())["command_rare"] > now - 60
