"""The first-seen detectors and their configuration, as a specification."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.realtime import config, schema
from wazuh_anomaly.realtime import detectors
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime.fields import parse_time, values
from wazuh_anomaly.realtime.store import StateStore

T0 = 1_700_000_000.0
DAY = 86400.0


def spec(**kw) -> dict:
    raw = {"type": "new_value", "key": "agent.id", "value": "rule.id"}
    raw.update(kw)
    return config.parse({"detectors": {"d": raw}}, "realtime.yaml")["detectors"][0]


def alert(rule="5501", agent="1", level=3, groups=("pam",), **data) -> dict:
    return {"rule": {"id": rule, "level": level, "groups": list(groups)}, "agent": {"id": agent, "name": f"h{agent}"},
            "data": data}


def run(det, state, a, t):
    findings, _ = det.observe(state, a, t)
    return findings


# ----------------------------------------------------------------- configuration

def test_shipped_config_is_valid_and_names_every_type():
    cfg = config.load_yaml(str(REPO / "wazuh/etc/anomaly/realtime.yaml"))
    assert {d["type"] for d in cfg["detectors"]} == set(schema.DETECTOR_TYPES)
    assert {m["target"] for m in cfg["models"]} == set(schema.MODEL_TARGETS)
    assert any(len(d["value"]) > 1 for d in cfg["detectors"]), "a new-combination detector is shipped"


@pytest.mark.parametrize("raw, message", [
    ({"detectors": {"d": {"type": "first_seen", "value": "rule.id"}}}, "key 'detectors.d.type' must be one of new_value"),
    ({"detectors": {"d": {"type": "new_value"}}}, "key 'detectors.d.value' is required"),
    ({"detectors": {"d": {"type": "new_value", "value": "rule.id", "severity": "urgent"}}}, "key 'detectors.d.severity' must be one of"),
    ({"detectors": {"d": {"type": "new_value", "value": "rule id"}}}, "not a dotted alert field"),
    ({"detectors": {"d": {"type": "new_value", "value": "x", "learn_until": "tomorrow"}}}, "must be an ISO 8601 time"),
    ({"detectors": {"d": {"type": "value_range", "value": ["a", "b"]}}}, "exactly one numeric field"),
    ({"detectors": {"d": {"type": "new_value", "value": "x", "filter": {"group": ["sudo"]}}}}, "key 'detectors.d.filter.group' is not a shorthand (did you mean 'groups'?"),
    ({"max_keys": 0}, "key 'max_keys' must be at least 1"),
    ({"detector": {}}, "key 'detector' is not a known setting (did you mean 'detectors'?)"),
    ({"models": {"m": {"target": "dns"}}}, "key 'models.m.target' must be 'fim' or 'command'"),
])
def test_config_errors_are_one_sentence_naming_file_and_key(raw, message):
    with pytest.raises(ConfigError) as exc:
        config.parse(raw, "/var/ossec/etc/anomaly/realtime.yaml")
    text = str(exc.value)
    assert text.startswith("/var/ossec/etc/anomaly/realtime.yaml: ") and message in text
    assert "\n" not in text


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "realtime.yaml"
    path.write_text("detectors:\n  d: [unclosed\n")
    with pytest.raises(ConfigError, match=r"invalid YAML at line \d+; fix the syntax"):
        config.load_yaml(str(path))


def test_config_cache_follows_the_yaml_file(tmp_path):
    path, cache = tmp_path / "realtime.yaml", tmp_path / "config.json"
    path.write_text("detectors: {a: {type: new_value, value: rule.id}}\n")
    assert [d["name"] for d in config.load(str(path), str(cache))["detectors"]] == ["a"]
    assert cache.exists()
    path.write_text("detectors: {b: {type: new_value, value: rule.id}}\n")
    assert [d["name"] for d in config.load(str(path), str(cache))["detectors"]] == ["b"]


# ----------------------------------------------------------------- fields and time

def test_fields_read_nested_lists_and_numbers():
    a = {"rule": {"groups": ["sshd", "recon"], "level": 6}, "data": {"audit": {"auid": 1000}}}
    assert values(a, "rule.groups") == ["sshd", "recon"]
    assert values(a, "rule.level") == ["6"] and values(a, "data.audit.auid") == ["1000"]
    assert values(a, "data.missing") == [] and values(a, "rule.level.x") == []


@pytest.mark.parametrize("text, epoch", [
    ("2022-01-24T03:57:12.345+0000", 1642996632.345),
    ("2022-01-17T09:44:35.000000Z", 1642412675.0),
    ("2020-03-04T13:55:05.224939+01:00", 1583326505.224939),
    ("2024-02-29T00:00:00-0530", 1709185800.0),
])
def test_wazuh_timestamps_parse_without_datetime(text, epoch):
    assert parse_time(text) == pytest.approx(epoch)


def test_a_timestamp_without_zone_is_refused():
    assert parse_time("2022-01-24T03:57:12") is None and parse_time("yesterday") is None


# ----------------------------------------------------------------- new value

def test_new_value_is_silent_while_learning_then_reports_each_new_value_once():
    det = detectors.build(spec(learn_days=1))
    state: dict = {}
    assert run(det, state, alert("5501"), T0) == []
    assert run(det, state, alert("5715"), T0 + 100) == []          # still learning
    assert run(det, state, alert("5501"), T0 + DAY + 1) == []      # known
    (f,) = run(det, state, alert("5706"), T0 + DAY + 2)
    assert (f["detector"], f["key"], f["value"], f["known"], f["kind"]) == ("d", "1", "5706", 2, "rare_value")
    assert run(det, state, alert("5706"), T0 + DAY + 3) == []      # learned once reported


def test_learn_until_fixes_the_end_of_learn_mode():
    det = detectors.build(spec(learn_until="2023-11-14T22:15:00Z"))
    state: dict = {}
    assert run(det, state, alert("1"), T0 - 1000) == []
    assert run(det, state, alert("2"), T0 + 99) == []   # 22:14:59
    assert run(det, state, alert("3"), T0 + 101) != []


def test_new_combination_reports_a_new_pair_of_known_values():
    det = detectors.build(spec(value=["data.srcuser", "data.dstuser"], learn_days=0.5))
    state: dict = {}
    run(det, state, alert(srcuser="alice", dstuser="root"), T0)
    run(det, state, alert(srcuser="bob", dstuser="www"), T0)
    (f,) = run(det, state, alert(srcuser="bob", dstuser="root"), T0 + DAY)
    assert f["what"] == "new combination" and f["value"] == "bob\x1froot"


def test_filters_and_ignore_lists_keep_other_alerts_out():
    det = detectors.build(spec(value="data.dstuser", filter={"groups": ["authentication_success"],
                                                             "data.dstuser": {"not": ["backup"], "not_prefix": ["svc-"]}},
                               learn_days=0))
    state: dict = {"started": T0 - 1}
    ok = ("authentication_success",)
    assert run(det, state, alert(groups=("pam",), dstuser="eve"), T0) == []
    assert run(det, state, alert(groups=ok, dstuser="backup"), T0) == []
    assert run(det, state, alert(groups=ok, dstuser="svc-web"), T0) == []
    assert len(run(det, state, alert(groups=ok, dstuser="eve"), T0)) == 1


def test_a_key_at_the_value_cap_stops_reporting():
    det = detectors.build(spec(max_values_per_key=3, learn_days=0))
    state: dict = {"started": T0 - 1}
    reported = [bool(run(det, state, alert(str(r)), T0)) for r in range(6)]
    assert reported == [True, True, True, False, False, False]
    assert state["keys"]["1"]["full"] is True and len(state["keys"]["1"]["values"]) == 3


def test_keys_beyond_the_cap_are_counted_not_tracked():
    det = detectors.build(spec(max_keys=2, learn_days=1))
    state: dict = {}
    for agent in ("1", "2", "3", "4"):
        run(det, state, alert(agent=agent), T0)
    assert sorted(state["keys"]) == ["1", "2"] and state["dropped_keys"] == 2


def test_a_new_key_can_learn_on_its_own_before_it_reports():
    det = detectors.build(spec(learn_days=0, new_key_learn_hours=1))
    state: dict = {"started": T0 - 1}
    assert run(det, state, alert("1", agent="9"), T0) == []
    assert run(det, state, alert("2", agent="9"), T0 + 1800) == []
    assert run(det, state, alert("3", agent="9"), T0 + 3601) != []


# ----------------------------------------------------------------- range and frequency

def test_value_out_of_the_learned_range_is_reported_above_and_below():
    det = detectors.build(spec(type="value_range", value="rule.level", learn_days=1, margin=0.1))
    state: dict = {}
    for level in (3, 5, 7):
        run(det, state, alert(level=level), T0)
    assert run(det, state, alert(level=7), T0 + DAY) == []
    (high,) = run(det, state, alert(level=12), T0 + DAY)
    (low,) = run(det, state, alert(level=1), T0 + DAY)
    assert high["what"].startswith("value above") and low["what"].startswith("value below")
    assert (high["expected_low"], high["expected_high"]) == (3, 7)


def test_frequency_above_the_learned_band_is_reported_once_per_window():
    det = detectors.build(spec(type="frequency", value=[], window_minutes=10, tolerance=0.5, min_windows=3, learn_days=1))
    state: dict = {}
    width = 600
    for w in range(6):                                    # learning: 2 to 4 alerts per window
        for i in range(2 + w % 3):
            run(det, state, alert(), T0 - T0 % width + w * width + i)
    start = T0 - T0 % width + DAY + 600
    found = [f for i in range(12) for f in run(det, state, alert(), start + i)]
    assert len(found) == 1 and found[0]["value"] == "7"   # 4 * 1.5 = 6 is the top of the band
    assert found[0]["window_end"] - found[0]["window_start"] == width


def test_frequency_below_the_band_is_reported_when_the_window_closes():
    det = detectors.build(spec(type="frequency", value=[], window_minutes=10, tolerance=0.5, min_windows=2, learn_days=0.1))
    state: dict = {}
    base = T0 - T0 % 600
    for w in range(3):
        for i in range(10):
            run(det, state, alert(), base + w * 600 + i)
    day = base + DAY
    run(det, state, alert(), day)                         # a quiet window: 1 alert
    (f,) = run(det, state, alert(), day + 600)            # it closes when the next one starts
    assert f["what"].endswith("below the learned band") and f["value"] == "1"


# ----------------------------------------------------------------- persistence

def test_what_was_learned_survives_a_restart(tmp_path):
    cfg = config.parse({"learn_days": 1, "detectors": {"d": {"type": "new_value", "key": "agent.id", "value": "rule.id"}}}, "x")
    a_old = dict(alert("5501"), timestamp="2023-11-14T22:13:20.000+0000")
    a_new = dict(alert("5706"), timestamp="2023-11-16T22:13:20.000+0000")
    with StateStore(str(tmp_path)) as store:
        RealtimeEngine(cfg, str(tmp_path / "models")).process(store, a_old)
    # a new process (as integratord starts one per alert) restores the learned values
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    (tmp_path / "alerts.json").write_text(json.dumps([dict(a_old, timestamp=a_new["timestamp"]), a_new]))
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO / 'integration')!r})
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime.store import StateStore
cfg = json.load(open({str(tmp_path / 'cfg.json')!r}))
old, new = json.load(open({str(tmp_path / 'alerts.json')!r}))
with StateStore({str(tmp_path)!r}) as store:
    e = RealtimeEngine(cfg, 'models')
    print(len(e.process(store, old)), [f.data['value'] for f in e.process(store, new)])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "['5706']"]


def test_a_damaged_state_file_relearns_instead_of_failing(tmp_path):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "d.json").write_text("{not json")
    cfg = config.parse({"detectors": {"d": {"type": "new_value", "value": "rule.id"}}}, "x")
    with StateStore(str(tmp_path)) as store:
        assert RealtimeEngine(cfg, "m").process(store, alert(), now=T0) == []
    assert json.loads((tmp_path / "state" / "d.json").read_text())["keys"][""]["values"] == ["5501"]


def test_our_own_anomaly_alerts_never_feed_back_into_the_detectors(tmp_path):
    cfg = config.parse({"detectors": {"d": {"type": "new_value", "key": "agent.id", "value": "rule.id"}}}, "x")
    own = {"rule": {"id": "117210", "level": 6, "groups": ["anomaly", "anomaly_realtime"]}, "agent": {"id": "000"},
           "data": {"integration": "anomaly"}}
    with StateStore(str(tmp_path)) as store:
        assert RealtimeEngine(cfg, "m").process(store, own, now=T0) == []
        assert store.get("d") == {}


def test_state_directories_stay_group_writable_whatever_the_umask(tmp_path):
    import os
    import stat
    old = os.umask(0o022)
    try:
        with StateStore(str(tmp_path / "realtime")):
            pass
    finally:
        os.umask(old)
    for d in (tmp_path / "realtime", tmp_path / "realtime" / "state"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o2770, d


def test_a_detector_without_a_key_still_names_one_in_its_event():
    from datetime import datetime, timezone
    from wazuh_anomaly.realtime.events import RareFinding
    det = detectors.build(spec(key=[], learn_days=0))
    (f,) = run(det, {"started": T0 - 1}, alert("5706"), T0)
    event = RareFinding(f, alert("5706")).to_event(datetime.now(timezone.utc))
    assert event["anomaly"]["entity"] == {"field": "none", "value": "all alerts"}
    assert event["anomaly"]["observed"] == {"field": "rule.id", "value": "5706"}


# ----------------------------------------------------------------- one schema, one filter language

def test_every_problem_of_realtime_yaml_is_reported_together_one_sentence_each():
    raw = {"max_keys": 0, "detectors": {"d": {"type": "new_value"}, "Bad": {"type": "new_value", "value": "x"},
                                        "e": {"type": "new_value", "value": "x", "filter": {"min_level": 7}}},
           "models": {"m": {"target": "dns", "trees": 0}}}
    with pytest.raises(ConfigError) as exc:
        config.parse(raw, "/etc/realtime.yaml")
    problems = exc.value.problems
    assert str(exc.value) == "\n".join(problems)
    assert all(p.startswith("/etc/realtime.yaml: key '") and p.endswith(".") and "\n" not in p for p in problems)
    named = sorted(p.split("'")[1] for p in problems)
    assert named == ["detectors.Bad", "detectors.d.value", "detectors.e.filter.min_level", "max_keys",
                     "models.m.target", "models.m.trees"], problems
    (old,) = [p for p in problems if "min_level" in p]
    assert "write level: {min: ...}" in old


def test_random_yaml_structures_give_config_error_sentences_never_a_traceback():
    from hypothesis import HealthCheck, given, settings, strategies as st
    keys = st.sampled_from(["detectors", "models", "type", "value", "key", "filter", "groups", "level", "not",
                            "learn_until", "max_keys", "target", "trees", "d", "m"]) | st.text(max_size=6)
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
                          max_leaves=20)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(values)
    def check(data):
        for parse in (config.parse, schema.parse_active_response):
            try:
                parse(data, "/etc/realtime.yaml")
            except ConfigError as exc:
                assert all(p.startswith("/etc/realtime.yaml: ") and p.endswith(".") and "\n" not in p
                           for p in exc.problems), exc.problems

    check()


def test_a_filter_means_the_same_in_a_scenario_and_in_a_realtime_detector():
    """One filter language: the same mapping selects the same alerts in both places."""
    from hypothesis import HealthCheck, given, settings, strategies as st
    from wazuh_anomaly.core.config import parse_scenario
    from wazuh_anomaly.core.filters import compile_filter
    flt = {"groups": ["sudo", "su"], "level": {"min": 3, "max": 10}, "data.dstuser": {"not": ["root"]},
           "data.command": {"not_prefix": ["/usr/lib/"]}, "agent.id": {"exists": True}}
    scenario_filter = compile_filter(parse_scenario(
        {"name": "s", "description": "d", "features": [{"name": "f", "filter": flt}]}, "s.yaml").features[0].filter)
    realtime_spec = spec(filter=flt)
    texts = st.sampled_from(["sudo", "su", "pam", "root", "bob", "/usr/lib/x", "/bin/sh", "3", "10", "11"])
    field = st.none() | texts | st.integers(0, 15) | st.lists(texts, max_size=3)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(groups=field, level=field, user=field, command=field, agent=field)
    def check(groups, level, user, command, agent):
        a = {"rule": {"groups": groups, "level": level}, "data": {"dstuser": user, "command": command},
             "agent": {"id": agent}}
        a = json.loads(json.dumps(a))
        assert detectors.matches(realtime_spec["filter"], a) == scenario_filter(a)

    check()
