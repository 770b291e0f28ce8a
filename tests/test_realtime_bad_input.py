"""The real-time integration never stops on bad input: an alert of an odd shape is one
sentence in integrations.log, a damaged state file is moved aside and reported, learned
values are bounded (issue 12)."""
from __future__ import annotations

import json

import pytest

from test_realtime_integration import anomalies, integration, prefix, sudo_alert  # noqa: F401 (fixture)

ODD_ALERTS = [
    {"rule": "not an object", "id": "1.1"},
    {"rule": {"groups": 5, "id": "5402"}, "data": "text", "agent": 27},
    {"rule": {"groups": ["sudo", {"a": 1}], "id": "5402", "level": "x"}, "agent": "intranet",
     "data": {"srcuser": ["phopkins", {"x": 1}], "dstuser": [["root"]], "command": {"x": 1}}},
    {"timestamp": 5, "data": [], "agent": {"id": [1]}, "rule": {"groups": [["sudo"]], "id": {"a": 1}}},
    {"rule": {"groups": ["syscheck"], "id": "550"}, "syscheck": {"path": ["a"], "event": {"x": 1}, "audit": 3}},
    {"rule": {"groups": ["sudo"], "id": "5402", "level": 1e308}, "agent": ["x"],
     "data": {"srcuser": "u", "dstuser": "root", "command": "/bin/x", "srcip": {"a": 1}}},
]


@pytest.mark.parametrize("odd", ODD_ALERTS, ids=range(len(ODD_ALERTS)))
def test_an_alert_of_an_odd_shape_is_at_most_one_sentence_never_a_traceback(prefix, tmp_path, odd):
    done = integration(prefix, odd, tmp_path)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) <= 1, done.stderr
    # the next, normal alert is handled as ever
    assert integration(prefix, sudo_alert("/usr/bin/id"), tmp_path, name="b").returncode == 0


def test_odd_shapes_after_learning_still_give_findings_without_a_traceback(prefix, tmp_path):
    assert integration(prefix, sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000"), tmp_path).returncode == 0
    state = prefix / "var/anomaly/realtime/state/new_sudo_command_for_user.json"
    doc = json.loads(state.read_text())
    doc["learn_end"] = doc["started"] + 1
    state.write_text(json.dumps(doc))
    odd = sudo_alert("/bin/cat /etc/shadow")
    odd.update(agent="intranet", rule=dict(odd["rule"], id={"x": 1}))
    odd["data"]["srcip"] = ["10.0.0.1"]
    done = integration(prefix, odd, tmp_path, name="c")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [e["anomaly"]["observed"]["value"] for e in anomalies(prefix)
            if e["anomaly"]["scenario"] == "new_sudo_command_for_user"] == ["/bin/cat /etc/shadow"]


@pytest.mark.parametrize("damage", [lambda raw: raw[: len(raw) // 2], lambda raw: b"\x00" * 40,
                                    lambda raw: b"[1, 2]", lambda raw: b'{"keys": [1], "started": "x"}'],
                         ids=["cut", "zeroed", "not-an-object", "wrong-types"])
def test_a_damaged_detector_state_is_moved_aside_reported_and_relearned(prefix, tmp_path, damage):
    assert integration(prefix, sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000"), tmp_path).returncode == 0
    state = prefix / "var/anomaly/realtime/state/new_sudo_command_for_user.json"
    state.write_bytes(damage(state.read_bytes()))
    done = integration(prefix, sudo_alert("/usr/bin/id", "2022-01-01T00:01:00.000+0000"), tmp_path, name="b")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    (aside,) = state.parent.glob("new_sudo_command_for_user.json.corrupt-*")
    assert json.loads(state.read_text())["keys"]                   # learning again
    log = (prefix / "logs/integrations.log").read_text()
    assert str(aside) in log
    health = [e["anomaly"] for e in anomalies(prefix) if e["anomaly"]["kind"] == "health"]
    assert [h["health"] for h in health] == ["malformed_input"] and str(aside) in health[0]["message"]


# -- bounded learned values, far-future timestamps ---------------------------------------

def test_learned_values_are_bounded_in_length_and_number_and_the_drops_are_counted(monkeypatch):
    from test_realtime_detectors import T0, alert, spec
    from wazuh_anomaly.realtime import detectors
    det = detectors.build(spec(value="data.command", max_keys=100, max_values_per_key=100, learn_days=1))
    state: dict = {}
    huge = "/bin/sh -c " + "A" * 60_000
    det.observe(state, alert(command=huge), T0)
    det.observe(state, alert(command=huge + "B"), T0 + 1)       # differs only past the kept part
    stored = state["keys"]["1"]["values"]
    assert len(stored) == 2 and all(len(v) <= detectors.MAX_VALUE_CHARS for v in stored)
    det.observe(state, alert(command=huge), T0 + 2)             # compares exactly: already known
    assert len(state["keys"]["1"]["values"]) == 2
    monkeypatch.setattr(detectors, "MAX_VALUES", 5)
    for i in range(10):
        det.observe(state, alert(agent=str(i), command=f"/bin/c{i}"), T0 + 3)
    assert sum(len(e["values"]) for e in state["keys"].values()) == 5
    assert state["dropped_values"] == 7
    assert len(json.dumps(state)) < 2_000


def test_an_alert_stamped_far_in_the_future_is_counted_and_poisons_no_state(tmp_path):
    from test_realtime_detectors import alert, spec
    from wazuh_anomaly.realtime.engine import INPUT_STATE, RealtimeEngine
    from wazuh_anomaly.realtime.store import StateStore
    cfg = {"detectors": [spec(learn_days=1)], "models": []}
    engine = RealtimeEngine(cfg, str(tmp_path / "models"))
    with StateStore(str(tmp_path)) as store:
        for stamp in ("9999-12-31T23:59:59.000+0000", "2099-01-01T00:00:00Z"):
            assert engine.process(store, dict(alert(), id="1.5", timestamp=stamp)) == []
        assert store.get("d") == {}
        assert store.get(INPUT_STATE) == {"future_timestamp": 2}
    assert len(engine.problems) == 2 and "alert 1.5 skipped (future_timestamp)" in engine.problems[0]


# -- addresses that reach a firewall command ----------------------------------------------

SCOPED = ["2606:4700::1111%eth0", "2606:4700::1111%1", "2606:4700::1111%25eth0"]


@pytest.mark.parametrize("srcip", SCOPED + [["203.0.113.45"], {"ip": "203.0.113.45"}, 3405803821, " ", "203.0.113.45/32"])
def test_an_address_with_a_zone_or_of_another_type_is_never_blocked(srcip):
    from test_realtime_response import CFG, anomaly_alert
    from wazuh_anomaly.realtime import response
    address, why = response.decide(anomaly_alert(srcip), CFG, own=[])
    assert address is None and "not an IP address" in why


@pytest.mark.parametrize("srcip, canonical", [("2606:4700:0000::1111", "2606:4700::1111"), ("2606:4700::ABCD", "2606:4700::abcd"),
                                              (" 203.0.113.45 ", "203.0.113.45"), ("::ffff:203.0.113.45", "203.0.113.45")])
def test_only_the_canonical_form_of_an_address_reaches_a_firewall_command(srcip, canonical):
    from test_realtime_response import CFG, anomaly_alert
    from wazuh_anomaly.realtime import response
    assert response.decide(anomaly_alert(srcip), CFG, own=[])[0] == canonical


@pytest.mark.parametrize("address", SCOPED + ["2606:4700:0::1111", "203.0.113.45 ", "203.0.113.45; reboot", ""])
def test_the_firewall_commands_refuse_anything_but_a_canonical_address(address):
    from wazuh_anomaly.realtime import response
    for fw in ("nftables", "iptables"):
        with pytest.raises(ValueError):
            response.block_commands(address, fw)
        with pytest.raises(ValueError):
            response.unblock_commands(address, fw)


def test_a_delete_for_a_scoped_address_runs_no_command(tmp_path):
    import io

    from test_realtime_response import anomaly_alert, execd_message
    from wazuh_anomaly.realtime import response
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    (tmp_path / "etc/anomaly/active-response.yaml").write_text("firewall: nftables\n")
    ran = []
    code = response.main(["--prefix", str(tmp_path)], stdin=io.StringIO(execd_message("delete", anomaly_alert(SCOPED[0]))),
                         stdout=io.StringIO(), runner=lambda argv, **kw: ran.append(argv))
    assert code == 1 and ran == []
    assert "is not an IP address; nothing to unblock" in (tmp_path / "logs/active-responses.log").read_text()


@pytest.mark.parametrize("alert", [{"rule": "x", "data": {"integration": "anomaly", "srcip": "2606:4700::1%eth0"}},
                                   {"rule": {"id": {"a": 1}}, "data": ["x"]}, {"data": {"srcip": {"a": 1}}}])
def test_an_odd_alert_from_execd_is_one_log_line_and_runs_no_command(tmp_path, alert):
    import io

    from test_realtime_response import execd_message
    from wazuh_anomaly.realtime import response
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    (tmp_path / "etc/anomaly/active-response.yaml").write_text("firewall: nftables\n")
    import subprocess
    ran = []

    def runner(argv, **kw):     # lists no address of this host; records every other command
        if argv[1:] != ["-j", "addr", "show"]:
            ran.append(argv)
        return subprocess.CompletedProcess(argv, 0, "[]", "")
    for command in ("add", "delete"):
        assert response.main(["--prefix", str(tmp_path)], stdin=io.StringIO(execd_message(command, alert)),
                             stdout=io.StringIO(), runner=runner) in (0, 1)
    assert ran == []
    assert len((tmp_path / "logs/active-responses.log").read_text().splitlines()) == 4   # message + decision, twice


def test_an_alert_waits_a_bounded_time_for_a_stuck_state_lock_and_says_so(prefix, tmp_path, monkeypatch):
    import fcntl
    import os
    import time

    from wazuh_anomaly.realtime import integration as rt
    assert integration(prefix, sudo_alert("/usr/bin/id"), tmp_path).returncode == 0
    monkeypatch.setattr(rt, "STATE_LOCK_TIMEOUT_SECONDS", 0.3)
    alert_file = tmp_path / "b.alert"
    alert_file.write_text(json.dumps(sudo_alert("/usr/bin/id")))
    holder = os.open(prefix / "var/anomaly/realtime/state.lock", os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)
        started = time.monotonic()
        assert rt.main(["--prefix", str(prefix), str(alert_file), "", "", "", ""]) == 1
        assert time.monotonic() - started < 5
    finally:
        os.close(holder)
    last = (prefix / "logs/integrations.log").read_text().splitlines()[-1]
    assert "state.lock: the real-time state lock was held by another process for more than 0.3 s" in last
    assert "realtime learn" in last and "fuser" in last
