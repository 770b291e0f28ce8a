"""Bad input never stops the product: one odd alert is counted and skipped for the
scenario it concerns, the others go on, and `status` and a health event say which file
and line (issue 12)."""
from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from test_runner import START, alert, lines, normal_alerts, prefix, runner, write_alerts  # noqa: F401 (fixture)
from wazuh_anomaly.cli.app import main

# Shapes a Wazuh alert field may take that the scenarios do not expect.
ODD_GROUPS = [
    [{"nested": "object"}, "authentication_failed"],     # an object inside a list field
    [["authentication_failed"]],                        # a list inside a list
    {"authentication_failed": True},                    # an object where a list is expected
]


def _health(prefix, check: str) -> list[dict]:
    return [e["anomaly"] for e in lines(prefix) if e["anomaly"].get("health") == check]


@pytest.mark.parametrize("groups", ODD_GROUPS)
def test_one_alert_with_an_odd_shape_never_stops_scoring(prefix, groups):
    history = normal_alerts(2.1)
    odd = alert(START + timedelta(days=2, minutes=20), "web-01")
    odd["rule"]["groups"] = groups
    odd["data"]["dstuser"] = [{"name": "alice"}, 1e308, "bob"]
    write_alerts(prefix, normal_alerts(2))
    assert runner(prefix, START + timedelta(days=2, minutes=3)).run().scenarios["auth_test"].status == "trained"
    write_alerts(prefix, history + [odd])
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    scored = report.scenarios["auth_test"]
    assert scored.status == "scored" and scored.buckets == 24
    assert not _health(prefix, "scenario_failed")


def test_an_alert_that_breaks_a_scenario_is_counted_with_its_file_and_line_and_shown_by_status(prefix, capsys,
                                                                                             monkeypatch):
    write_alerts(prefix, normal_alerts(2))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    odd = alert(START + timedelta(days=2, minutes=20), "web-01")
    odd["rule"]["groups"] = ["authentication_failed", {"nested": "object"}]
    write_alerts(prefix, normal_alerts(2.1) + [odd])
    # whatever an accessor still gets wrong one day, it costs one alert, not the run
    from wazuh_anomaly.features import aggregate as features
    original = features.FeatureAggregator.add

    def fragile(self, ts, alert):
        if isinstance(alert.get("rule", {}).get("groups", [None])[-1], dict):
            raise TypeError("unhashable type: 'dict'")
        return original(self, ts, alert)
    monkeypatch.setattr(features.FeatureAggregator, "add", fragile)
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "scored"
    (event,) = _health(prefix, "malformed_input")
    assert "1 bad_alert" in event["message"]
    assert "ossec-alerts-03.json:" in event["message"] and "auth_test" in event["message"]
    assert main(["--prefix", str(prefix), "status", "--now", "2024-03-03T02:03:00Z"]) == 0
    out = capsys.readouterr().out
    assert "1 bad_alert" in out and "ossec-alerts-03.json:" in out


def test_a_field_of_an_unusable_type_is_counted_for_that_field_only(prefix):
    write_alerts(prefix, normal_alerts(2))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    odd = alert(START + timedelta(days=2, minutes=20), "web-01")
    odd["data"]["dstuser"] = {"name": "alice"}         # the `users` feature cannot count an object
    write_alerts(prefix, normal_alerts(2.1) + [odd])
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "scored"
    (event,) = _health(prefix, "malformed_input")
    assert "1 unusable_value" in event["message"]
    assert "data.dstuser" in event["message"] and "ossec-alerts-03.json:" in event["message"]


def test_alerts_stamped_far_in_the_future_are_counted_not_silently_dropped(prefix):
    future = alert(START, "web-01")
    far = time.gmtime(time.time() + 3 * 86400)
    future["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", far)
    y9999 = dict(alert(START, "web-01"), timestamp="9999-12-31T23:59:59.000+0000")
    day = (START + timedelta(days=1)).strftime("%Y-%m-%d")
    write_alerts(prefix, normal_alerts(2), extra_lines={day: [json.dumps(future).encode() + b"\n",
                                                              json.dumps(y9999).encode() + b"\n"]})
    report = runner(prefix, START + timedelta(days=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "trained"
    (event,) = _health(prefix, "malformed_input")
    assert "2 future_timestamp" in event["message"]
    assert report.stats.skipped["future_timestamp"] == 2 and "ossec-alerts-02.json:" in event["message"]


# -- anomalies.json -------------------------------------------------------------------

def _anomaly(step: int):
    from test_emitter import anomaly
    return anomaly(step=step)


def test_a_line_torn_by_a_crash_mid_write_never_swallows_the_next_anomaly(tmp_path):
    from test_emitter import DETECTED
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    AnomalyWriter(out, state).write([_anomaly(0)], DETECTED)
    whole = out.read_bytes()
    out.write_bytes(whole + b'{"integration":"anomaly","anomaly":{"schema":1,"id":"torn')   # the crash
    result = AnomalyWriter(out, state).write([_anomaly(1)], DETECTED)
    assert result.written == 1
    raw = out.read_bytes().split(b"\n")
    assert raw[-1] == b"" and raw[1].endswith(b'"id":"torn')
    assert json.loads(raw[2])["anomaly"]["id"] == _anomaly(1).id      # its own line, whole


def test_a_torn_last_line_and_a_lost_id_store_still_write_each_id_once(tmp_path):
    from test_emitter import DETECTED
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    AnomalyWriter(out, state).write([_anomaly(0), _anomaly(1)], DETECTED)
    out.write_bytes(out.read_bytes() + b'{"integration":"anomaly","anom')
    (state / AnomalyWriter.STATE_NAME).unlink()
    result = AnomalyWriter(out, state).write([_anomaly(0), _anomaly(1), _anomaly(2)], DETECTED)
    assert (result.written, result.duplicates) == (1, 2)


def test_a_damaged_id_store_is_moved_aside_and_rebuilt_from_the_file(tmp_path):
    from test_emitter import DETECTED
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    from wazuh_anomaly.core.fileio import take_damaged
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    AnomalyWriter(out, state).write([_anomaly(0)], DETECTED)
    store = state / AnomalyWriter.STATE_NAME
    store.write_bytes(store.read_bytes()[:20])
    take_damaged()
    result = AnomalyWriter(out, state).write([_anomaly(0), _anomaly(1)], DETECTED)
    assert (result.written, result.duplicates) == (1, 1)
    (aside,) = state.glob(AnomalyWriter.STATE_NAME + ".corrupt-*")
    (said,) = take_damaged()
    assert str(aside) in said and "moved to" in said


def test_a_stuck_lock_holder_is_a_clear_error_after_the_timeout_not_a_hang(tmp_path):
    import fcntl
    import os

    from test_emitter import DETECTED
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    from wazuh_anomaly.core.errors import LockTimeout
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    writer = AnomalyWriter(out, state)
    writer.LOCK_TIMEOUT_SECONDS = 0.3
    holder = os.open(str(out) + ".lock", os.O_RDWR | os.O_CREAT)
    try:
        # flock locks belong to the open file: a second open in this process is another holder
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        with pytest.raises(LockTimeout, match=r"anomalies.json.lock: the anomalies-file lock was held .*fuser"):
            writer.write([_anomaly(0)], DETECTED)
        assert time.monotonic() - started < 5
    finally:
        os.close(holder)
    assert writer.write([_anomaly(0)], DETECTED).written == 1


# -- state files ------------------------------------------------------------------------

SCENARIO_STATE = "var/anomaly/state/scenarios/auth_test.json"


@pytest.mark.parametrize("damage", [
    lambda raw: raw[: len(raw) // 2],                                          # cut by a crash or a full disk
    lambda raw: b"\x00" * 64,                                                  # zeroed blocks after a power cut
    lambda raw: json.dumps({"watermark": "yesterday", "last_anomalies": [1]}).encode(),   # JSON, wrong types
    lambda raw: json.dumps({**json.loads(raw), "context": {"=web-01": [["a", None]]}}).encode(),
    lambda raw: json.dumps({**json.loads(raw), "vocabulary": {"users": {"": [1, 2]}}}).encode(),
], ids=["cut", "zeroed", "wrong-types", "bad-context", "bad-vocabulary"])
def test_a_damaged_scenario_state_is_moved_aside_reported_and_scoring_goes_on(prefix, damage):
    write_alerts(prefix, normal_alerts(2.1))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    runner(prefix, START + timedelta(days=2, minutes=33)).run()
    state = prefix / SCENARIO_STATE
    state.write_bytes(damage(state.read_bytes()))
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "scored"
    (aside,) = state.parent.glob("auth_test.json.corrupt-*")
    messages = [h["message"] for h in _health(prefix, "malformed_input")]
    assert any(str(aside) in m and "moved to" in m for m in messages), messages
    assert json.loads(state.read_text())["watermark"] is not None      # rewritten whole by the run


@pytest.mark.parametrize("content", [b'{"version": "V", "scores": [1, 2]}', b'{"version": "V", "scores": {"mvad": [[1]]}}',
                                     b'[1, 2]', b'{"version": "V", "scores": {"mvad": {"a": 1}}}'])
def test_a_damaged_drift_state_is_moved_aside_and_never_costs_the_scores(prefix, content):
    write_alerts(prefix, normal_alerts(2.1))
    runner(prefix, START + timedelta(days=2, minutes=3)).run()
    drift = prefix / "var/anomaly/state/drift/auth_test.json"
    drift.parent.mkdir(parents=True, exist_ok=True)
    version = (prefix / "var/anomaly/models/auth_test/current").read_text().strip()
    drift.write_bytes(content.replace(b'"V"', json.dumps(version).encode()))
    report = runner(prefix, START + timedelta(days=2, hours=2, minutes=3)).run()
    assert report.scenarios["auth_test"].status == "scored"
    assert not _health(prefix, "scenario_failed")
    assert main(["--prefix", str(prefix), "status", "--now", "2024-03-03T02:03:00Z"]) == 0


def test_a_cursor_with_a_negative_offset_rereads_the_file_instead_of_failing(tmp_path):
    import os

    from wazuh_anomaly.sources.alerts_file import AlertsFileSource, ReadCursor, head_fingerprint
    (tmp_path / "alerts.json").write_bytes(b'{"timestamp":"2024-02-01T00:00:01.000+0000","rule":{}}\n')
    st = os.stat(tmp_path / "alerts.json")
    fd = os.open(tmp_path / "alerts.json", os.O_RDONLY)
    head = head_fingerprint(fd, 64)
    os.close(fd)
    cursor = ReadCursor.from_dict({"version": 1, "resume_from": 0.0,
                                   "files": {f"{st.st_dev}:{st.st_ino}": {"offset": -5, "head": head}}})
    got = list(AlertsFileSource(tmp_path).read(1_706_745_600.0, 1_706_832_000.0, cursor=cursor))
    assert len(got) == 1


def test_a_flow_event_stamped_far_in_the_future_is_counted_with_its_line(tmp_path):
    from wazuh_anomaly.sources.alerts_file import SourceStats
    from wazuh_anomaly.netflow.flows_source import FlowsFileSource
    flows = tmp_path / "netflow.json"
    flows.write_text(json.dumps({"event": {"start": "2024-02-01T00:00:05Z"}}) + "\n"
                     + json.dumps({"event": {"start": "2999-01-01T00:00:00Z"}}) + "\n")
    stats = SourceStats()
    source = FlowsFileSource(flows)
    got = list(source.read(1_706_745_600.0, 1_706_832_000.0, stats=stats))
    assert len(got) == 1 and source.position() == f"{flows}:1"
    assert stats.skipped == {"future_timestamp": 1} and stats.examples["future_timestamp"].startswith(f"{flows}:2")
