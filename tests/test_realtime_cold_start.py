"""Real-time detection on what a real manager has: few events, few days.

- A first-seen detector that saw nothing while learning (no sudo in the learn week)
  judges the first matching alert, the first escalation, instead of starting to learn
  then; a detector added later still learns on its own first.
- The rare-command model trains on the real scenario's 24 command events (AIT-ADS
  russellmitchell, bundled) and flags the privilege escalation's `sudo /bin/bash`.
- A model that cannot be trained says in `realtime status` exactly why.
- Training keeps the events' small vectors, never the alerts (a uniform sample beyond a cap).
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from conftest import REPO
from wazuh_anomaly.realtime import config, jobs
from wazuh_anomaly.realtime import train as rt_train
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime.fields import alert_time
from wazuh_anomaly.realtime.integration import Paths
from wazuh_anomaly.realtime.store import StateStore
from wazuh_anomaly.sources.sample import SAMPLE_ALERTS

T0 = 1_700_000_000.0
DAY = 86400.0
SHIPPED = REPO / "wazuh" / "etc" / "anomaly" / "realtime.yaml"


def _stamp(t: float) -> str:
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(t))


def login(t: float, agent: str = "1") -> dict:
    return {"timestamp": _stamp(t), "rule": {"id": "5501", "level": 3, "groups": ["pam", "authentication_success"]},
            "agent": {"id": agent, "name": f"h{agent}"}, "data": {"dstuser": "alice", "srcip": "10.0.0.5"}}


def sudo(t: float, command: str = "/bin/bash", agent: str = "1") -> dict:
    return {"timestamp": _stamp(t), "rule": {"id": "5402", "level": 3, "groups": ["syslog", "sudo"]},
            "agent": {"id": agent, "name": f"h{agent}"},
            "data": {"srcuser": "www-data", "dstuser": "root", "command": command}}


def prefix_with(tmp_path: Path, realtime_yaml: str | None = None) -> Path:
    (tmp_path / "etc" / "anomaly").mkdir(parents=True)
    target = tmp_path / "etc" / "anomaly" / "realtime.yaml"
    if realtime_yaml is None:
        shutil.copy(SHIPPED, target)
    else:
        target.write_text(realtime_yaml)
    return tmp_path


def engine_of(prefix: Path) -> RealtimeEngine:
    paths = Paths(str(prefix))
    return RealtimeEngine(config.load(paths.config, paths.cache), paths.models)


def week_without_sudo() -> list[dict]:
    return [login(T0 + i * 3600) for i in range(8 * 24)]


def test_a_detector_that_saw_nothing_while_learning_reports_the_first_escalation(tmp_path):
    prefix = prefix_with(tmp_path)
    engine = engine_of(prefix)
    with StateStore(str(prefix / "var" / "anomaly" / "realtime")) as store:
        for alert in week_without_sudo():                        # 8 days: the learn week is over
            assert engine.process(store, alert, now=alert_time(alert)) == []
        found = engine.process(store, sudo(T0 + 8 * DAY + 60), now=T0 + 8 * DAY + 60)
    assert {f.data["detector"] for f in found} >= {"new_sudo_command_for_user", "new_privilege_pair"}


def test_after_learning_from_history_without_sudo_the_first_sudo_is_judged(tmp_path):
    prefix = prefix_with(tmp_path)
    history = tmp_path / "history.json"
    history.write_text("".join(json.dumps(a) + "\n" for a in week_without_sudo()))
    text, code = jobs.learn(str(prefix), files=[str(history)])
    assert code == 0
    assert "new_sudo_command_for_user (new_value): detecting since" in text
    assert "(no matching alert yet; the first one is judged)" in text
    with StateStore(str(prefix / "var" / "anomaly" / "realtime")) as store:
        found = engine_of(prefix).process(store, sudo(T0 + 8 * DAY + 60), now=T0 + 8 * DAY + 60)
    assert "new_sudo_command_for_user" in {f.data["detector"] for f in found}


def test_a_detector_added_after_the_learn_week_learns_on_its_own_first(tmp_path):
    prefix = prefix_with(tmp_path, "learn_days: 7\ndetectors:\n  logins: {type: new_value, key: agent.id, value: data.srcip}\n")
    base = str(prefix / "var" / "anomaly" / "realtime")
    with StateStore(base) as store:
        for alert in week_without_sudo():
            engine_of(prefix).process(store, alert, now=alert_time(alert))
    (prefix / "etc" / "anomaly" / "realtime.yaml").write_text(
        "learn_days: 7\ndetectors:\n  logins: {type: new_value, key: agent.id, value: data.srcip}\n"
        "  sudo_commands: {type: new_value, key: data.srcuser, value: data.command, filter: {groups: [sudo]}}\n")
    with StateStore(base) as store:
        engine = engine_of(prefix)
        assert engine.process(store, sudo(T0 + 8 * DAY), now=T0 + 8 * DAY) == []             # learning
        assert engine.process(store, sudo(T0 + 9 * DAY, "/bin/ls"), now=T0 + 9 * DAY) == []  # still learning
        later = engine.process(store, sudo(T0 + 16 * DAY, "/usr/bin/nc"), now=T0 + 16 * DAY)
    assert [f.data["value"] for f in later] == ["/usr/bin/nc"]


def test_the_command_model_trains_on_the_real_scenarios_few_commands_and_flags_the_privilege_escalation(tmp_path):
    prefix = prefix_with(tmp_path)
    with gzip.open(SAMPLE_ALERTS, "rt") as fh:
        lines = fh.readlines()
    history = tmp_path / "before-the-attack.json"
    history.write_text("".join(line for line in lines if line[14:24] < "2022-01-24"))
    text, code = jobs.train(str(prefix), files=[str(history)])
    assert "command_rare: trained on 24 command events" in text
    assert code == 1 and "fim_rare_change: not trained: model fim_rare_change: 0 file integrity events" in text
    engine = engine_of(prefix)
    flagged = []
    with StateStore(str(tmp_path / "state")) as store:
        for line in lines:
            if line[14:24] == "2022-01-24":
                alert = json.loads(line)
                flagged += [(alert["timestamp"][11:19], f.data["value"]) for f in engine.process(store, alert, now=1.7e9)
                            if f.data["detector"] == "command_rare"]
    # The labelled privilege escalation is 04:37:39-04:38:13.
    assert flagged == [("04:37:58", "/bin/bash"), ("04:38:06", "/bin/bash")]


def test_status_says_exactly_why_a_model_is_not_trained(tmp_path, capsys):
    prefix = prefix_with(tmp_path)
    (prefix / "logs" / "alerts").mkdir(parents=True)
    now = T0 + 8 * DAY
    (prefix / "logs" / "alerts" / "alerts.json").write_text("".join(json.dumps(a) + "\n" for a in week_without_sudo()))
    outcomes = {name: outcome for name, outcome, _ in jobs.scheduled_train(str(prefix), now)}
    assert outcomes == {"fim_rare_change": "insufficient_history", "command_rare": "insufficient_history"}
    text, _ = jobs.status(str(prefix))
    assert ("fim_rare_change (rare fim events): not trained: model fim_rare_change: 0 file integrity events "
            "(syscheck alerts with syscheck.path) in the last 30 days of the manager's alerts (2023-10-23T22:13:20Z "
            "to 2023-11-22T22:13:20Z), it needs 10; no agent reports them (enable syscheck, or leave the model off) "
            "(tried 2023-11-22T22:13:20Z)") in text
    from wazuh_anomaly.cli import app as cli
    assert cli.main(["--prefix", str(prefix), "status"]) == 0
    shown = capsys.readouterr().out
    assert "realtime model command_rare (rare command events): not trained: model command_rare: 0 command events" in shown


def test_training_keeps_small_vectors_and_a_uniform_sample_beyond_the_cap(monkeypatch):
    monkeypatch.setattr(rt_train, "MAX_TRAINING_ROWS", 100)
    spec = config.parse({"models": {"m": {"target": "command"}}}, "x")["models"][0]
    rows = rt_train.TrainingRows(spec, since=T0)
    for i in range(1000):
        rows.add(sudo(T0 + i, f"/usr/bin/tool{i}"), T0 + i)
    rows.add(sudo(T0 - 1, "/too/old"), T0 - 1)
    assert rows.seen == 1000 and len(rows.rows) == 100
    assert all(isinstance(r, dict) for r in rows.rows)
    doc = rt_train.fit(spec, rows.rows)
    assert doc["training_events"] == 100 and "known" in doc
