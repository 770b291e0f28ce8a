"""Property-based tests (hypothesis) over everything that comes from outside: alert
shapes, state files, collector lines. No exception escapes, and every rejected input is
counted and reported (issue 12). Deterministic (derandomize) and bounded, for CI."""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import REPO
from wazuh_anomaly.core import jsonio as fastjson
from wazuh_anomaly.core.config import load_scenarios
from wazuh_anomaly.features.aggregate import FeatureAggregator
from wazuh_anomaly.core.fileio import take_damaged
from wazuh_anomaly.sources.alerts_file import AlertsFileSource, ReadCursor, SourceStats

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SCENARIOS, _ = load_scenarios(REPO / "wazuh/etc/anomaly/scenarios")
START = 1_706_745_600.0           # 2024-02-01T00:00:00Z, aligned to every bucket size
END = START + 86400.0

# Any JSON value, including what Wazuh never writes but a decoder or a forged log can.
SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12)
           | st.sampled_from(["authentication_failed", "sudo", "syscheck", "web", "10.0.0.1", "root", "1e999",
                              "nan", "-", ""]))
# The shapes that broke scoring before (an object or a list inside a list, numbers past a
# double, numbers as text), drawn often; then anything.
NASTY = st.sampled_from([[{"a": 1}, "sudo"], [["authentication_failed"]], {"authentication_failed": True}, [None, 1.5],
                         2 ** 70, -(2 ** 70), 1e308, float("nan"), float("inf"), "12", "1e999", "", [], {}, True]
                        ).map(copy.deepcopy)    # a drawn object is filled in by _put: never share one
VALUES = NASTY | st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                              | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=8)


def _fields() -> list[str]:
    """Every dotted field a shipped scenario reads."""
    names = {"timestamp", "rule.groups", "rule.id", "rule.level", "agent.name", "agent.id", "data.srcip"}
    for s in SCENARIOS:
        if s.entity:
            names.add(s.entity.field)
        for f in s.features:
            if f.field:
                names.add(f.field)
            names.update(c.field for c in f.filter)
    return sorted(names)


FIELDS = [f for f in _fields() if f != "timestamp"]
# What a JSON alert line can hold (NaN and infinities are not JSON: such lines are bad_json).
ALERT_VALUES = VALUES.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v))


def _put(alert: dict, dotted: str, value) -> None:
    node = alert
    parts = dotted.split(".")
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value


@st.composite
def alerts(draw) -> dict:
    """A real-looking alert, some of whose fields hold any JSON value."""
    second = draw(st.integers(min_value=0, max_value=86399))
    minute, sec = divmod(second, 60)
    hour, minute = divmod(minute, 60)
    alert = {"timestamp": f"2024-02-01T{hour:02d}:{minute:02d}:{sec:02d}.000+0000",
             "rule": {"level": 5, "id": "5716", "groups": ["syslog", "sshd", "authentication_failed"]},
             "agent": {"id": "001", "name": "web-01"}, "data": {"srcip": "10.0.0.9", "dstuser": "alice"},
             "location": "/var/log/auth.log", "id": "1706745600.1"}
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=6, unique=True)):
        _put(alert, name, draw(ALERT_VALUES))
    return alert


LINES = st.one_of(alerts().map(lambda a: json.dumps(a).encode()),      # NaN/Infinity: not JSON for orjson
                  st.binary(max_size=80).map(lambda b: b.replace(b"\n", b" ")),
                  VALUES.map(lambda v: json.dumps(v).encode()))


# -- alert shapes through the alerts-file source and every shipped scenario -----------------

@PROPERTY
@given(st.lists(LINES, min_size=1, max_size=25))
def test_any_alert_line_is_aggregated_by_every_scenario_or_counted_as_skipped(lines):
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "alerts.json").write_bytes(b"".join(line + b"\n" for line in lines))
        stats = SourceStats()
        aggregators = [FeatureAggregator(s, START, END) for s in SCENARIOS if s.source != "flows"]
        for ts, alert in AlertsFileSource(Path(tmp)).read(START, END, stats=stats):
            for agg in aggregators:
                agg.add(ts, alert)          # must tolerate any JSON shape: no guard here
        for agg in aggregators:
            agg.frames()
            agg.vocabulary_after()
    assert stats.lines == len(lines)
    assert stats.lines == stats.alerts + stats.outside_range + stats.skipped_total
    if stats.skipped_total:
        assert stats.describe().count(":") >= 1 and "alerts.json:" in stats.describe()


# -- state files: random bytes and truncations for every state reader ----------------------

def _real_states() -> dict[str, bytes]:
    """One well-formed file per reader, to cut and corrupt."""
    return {
        "scenario": json.dumps({"name": "x", "watermark": START, "context": {"=web-01": [[1.0, 2.0], [0.0, 3.0]]},
                                "last_run": START, "last_error": None, "last_anomalies": 1, "total_anomalies": 4,
                                "vocabulary": {"users": {"=web-01": {"alice": 3}}},
                                "last_train_attempt": START}).encode(),
        "detector": json.dumps({"started": START, "findings": 2, "keys": {"27": {"since": START, "values": ["/bin/id"]},
                                                                          "28": {"since": START, "lo": 1.0, "hi": 5.0}}}).encode(),
        "ids": json.dumps({"version": 1, "ids": {"ab12": START}, "file": {"inode": 12, "size": 3456}}).encode(),
        "cursor": json.dumps({"version": 1, "resume_from": START, "files": {"1:2": {"offset": 10, "head": "64:ab"}}}).encode(),
        "netflow": json.dumps({"version": 1, "input": "/x", "file": {"id": "1:2", "offset": 10, "line": 2, "head": "4:ab"},
                               "detector": None}).encode(),
    }


def _damaged(draw_kind, raw: bytes, cut: int, junk: bytes) -> bytes:
    return {"cut": raw[:cut], "junk": junk, "cut+junk": raw[:cut] + junk,
            "json": junk.decode("latin-1").encode()}[draw_kind]


STATE_BYTES = st.tuples(st.sampled_from(["cut", "junk", "cut+junk"]), st.integers(min_value=0, max_value=400),
                        st.binary(max_size=40))
STATE_JSON = VALUES.map(lambda v: json.dumps(v).encode())
NETFLOW_DETECTOR = st.fixed_dictionaries({"version": st.just(1)}, optional={
    k: VALUES | st.dictionaries(st.text(max_size=4), VALUES, max_size=2)
    for k in ("scan_ports", "scan_hosts", "brute", "outbound", "dns", "dos", "beacons")})
STATE_JSON_SHAPED = st.dictionaries(st.sampled_from(["watermark", "context", "vocabulary", "last_anomalies", "keys",
                                                     "started", "findings", "ids", "file", "files", "resume_from",
                                                     "version", "detector", "offset", "line", "head", "pending"]),
                                    VALUES, max_size=5).map(lambda d: json.dumps(d).encode())


@st.composite
def _real_with_odd_values(draw, kind: str) -> bytes:
    """A well-formed state file of `kind` with some values swapped for any JSON value."""
    doc = json.loads(_real_states()[kind])
    for key in draw(st.lists(st.sampled_from(sorted(doc)), max_size=3, unique=True)):
        doc[key] = draw(VALUES)
    if kind == "detector" and isinstance(doc.get("keys"), dict) and doc["keys"]:
        entry = doc["keys"]["27"] = dict(doc["keys"].get("27") or {}, since=START)
        for key in draw(st.lists(st.sampled_from(["values", "full", "lo", "hi", "reported", "w", "c", "n",
                                                  "fired"]), max_size=2, unique=True)):
            entry[key] = draw(VALUES)
    return json.dumps(doc).encode()


def _state_cases(kind: str = "scenario"):
    return st.one_of(_real_with_odd_values(kind).map(lambda b: ("raw", b)),STATE_BYTES.map(lambda t: ("bytes", t)), STATE_JSON.map(lambda b: ("raw", b)),
                     STATE_JSON_SHAPED.map(lambda b: ("raw", b)),
                     NETFLOW_DETECTOR.map(lambda d: ("raw", json.dumps({"version": 1, "detector": d}).encode())))


def _content(kind: str, case) -> bytes:
    tag, value = case
    if tag == "raw":
        return value
    how, cut, junk = value
    return _damaged(how, _real_states()[kind], cut, junk)


@PROPERTY
@given(_state_cases("scenario"))
def test_a_scenario_state_file_of_any_bytes_loads_or_is_set_aside(case):
    from wazuh_anomaly.core.state import ScenarioState
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "scenarios" / "x.json"
        path.parent.mkdir()
        path.write_bytes(_content("scenario", case))
        take_damaged()
        state = ScenarioState.load(Path(tmp), "x")
        if take_damaged():
            assert not path.exists() and list(path.parent.glob("x.json.corrupt-*"))
        if state.watermark is not None:
            # what scoring does with a loaded state must work too
            state.context_frame("web-01", ["a", "b"], 3, 300)
            FeatureAggregator(SCENARIOS[0], START, START + 3600, vocabulary=state.vocabulary).frames()
        state.save(Path(tmp))


@PROPERTY
@given(_state_cases("detector"), alerts())
def test_a_detector_state_file_of_any_bytes_is_used_or_set_aside_and_the_alert_handled(case, alert):
    from wazuh_anomaly.realtime import config as rt_config
    from wazuh_anomaly.realtime.engine import RealtimeEngine
    from wazuh_anomaly.realtime.store import StateStore
    cfg = rt_config.load_yaml(str(REPO / "wazuh/etc/anomaly/realtime.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        engine = RealtimeEngine(cfg, os.path.join(tmp, "models"))
        os.makedirs(os.path.join(tmp, "state"))
        for det in engine.detectors:
            Path(tmp, "state", f"{det.name}.json").write_bytes(_content("detector", case))
        take_damaged()
        with StateStore(tmp) as store:
            engine.process(store, alert)
        damaged = take_damaged()
        assert not [p for p in engine.problems if "bad_alert" in p], engine.problems
        if damaged:
            assert len(list(Path(tmp, "state").glob("*.corrupt-*"))) == len(damaged)


@PROPERTY
@given(_state_cases("ids"))
def test_an_id_store_of_any_bytes_is_read_or_set_aside_and_each_id_still_written_once(case):
    from datetime import datetime, timezone

    from wazuh_anomaly.emit.emitter import AnomalyWriter
    from wazuh_anomaly.core.findings import HealthEvent
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        state.mkdir()
        (state / AnomalyWriter.STATE_NAME).write_bytes(_content("ids", case))
        now = datetime(2024, 2, 1, tzinfo=timezone.utc)
        event = HealthEvent(check="no_data", message="m", at=now)
        take_damaged()
        first = AnomalyWriter(Path(tmp) / "a.json", state).write([event], now)
        again = AnomalyWriter(Path(tmp) / "a.json", state).write([event], now)
        take_damaged()
    assert (first.written, again.written, again.duplicates) == (1, 0, 1)


@PROPERTY
@given(_state_cases("cursor"))
def test_a_read_cursor_of_any_shape_resumes_or_rereads(case):
    try:
        data = fastjson.loads(_content("cursor", case))
    except ValueError:
        data = None
    cursor = ReadCursor.from_dict(data)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "alerts.json").write_bytes(b'{"timestamp":"2024-02-01T00:00:01.000+0000","rule":{}}\n')
        got = list(AlertsFileSource(Path(tmp)).read(START, END, cursor=cursor))
    assert len(got) in (0, 1)
    json.dumps(cursor.to_dict())


@PROPERTY
@given(_state_cases("netflow"))
def test_a_netflow_state_file_of_any_bytes_resumes_or_restarts(case):
    from wazuh_anomaly.netflow.settings import NetflowSettings
    from wazuh_anomaly.netflow.stream import FileOutput, normalize_file
    with tempfile.TemporaryDirectory() as tmp:
        flows = Path(tmp) / "flows.json"
        flows.write_bytes(_FLOW + b"\n")
        out = Path(tmp) / "out.json"
        state_file = Path(tmp) / "state" / "flows.json"
        state_file.parent.mkdir()
        state_file.write_bytes(_content("netflow", case))
        take_damaged()
        stats = normalize_file(flows, FileOutput(out), NetflowSettings(), state_file=state_file)
        take_damaged()
        assert stats.skipped == 0
        assert out.read_bytes().count(b"\n") <= 1


# -- collector lines through the netflow normaliser ------------------------------------------

_FLOW = json.dumps({"event_type": "purge", "ip_src": "10.0.0.5", "ip_dst": "203.0.113.9", "port_src": 50000,
                    "port_dst": 443, "ip_proto": "tcp", "tcp_flags": "24", "packets": 10, "bytes": 5000,
                    "timestamp_start": "2024-02-01 00:00:00.000000", "timestamp_end": "2024-02-01 00:00:05.000000",
                    "stamp_inserted": "2024-02-01 00:00:00", "stamp_updated": "2024-02-01 00:01:01"}).encode()
FLOW_KEYS = list(json.loads(_FLOW)) + ["peer_ip_src", "iface_in", "tos", "sampling_rate", "writer_id"]


@st.composite
def collector_lines(draw) -> bytes:
    kind = draw(st.sampled_from(["record", "record", "bytes", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80)).replace(b"\n", b" ")
    if kind == "json":
        return json.dumps(draw(VALUES)).encode()
    record = json.loads(_FLOW)
    for key in draw(st.lists(st.sampled_from(FLOW_KEYS), max_size=5, unique=True)):
        record[key] = draw(VALUES)
    return json.dumps(record).encode()


@PROPERTY
@given(st.lists(collector_lines(), min_size=1, max_size=20))
def test_any_collector_line_is_normalised_or_counted_as_a_bad_line(lines):
    from wazuh_anomaly.netflow.settings import NetflowSettings
    from wazuh_anomaly.netflow.stream import FlowPipeline
    pipeline = FlowPipeline(NetflowSettings())
    out = pipeline.process((f"flows.json:{i + 1}", line) for i, line in enumerate(lines))
    written = [json.loads(x) for x in out.split(b"\n") if x]
    stats = pipeline.stats
    blank = sum(1 for line in lines if not line.strip())
    assert stats.records == len(written)
    assert stats.records + stats.skipped + blank == len(lines)


# -- alerts through the real-time integration -------------------------------------------------

@PROPERTY
@given(st.lists(alerts(), min_size=1, max_size=6))
def test_any_alert_goes_through_every_realtime_detector_and_its_findings_render(batch):
    from datetime import datetime, timezone

    from wazuh_anomaly.emit.anomalylog import render
    from wazuh_anomaly.realtime import config as rt_config
    from wazuh_anomaly.realtime.engine import RealtimeEngine
    from wazuh_anomaly.realtime.store import StateStore
    cfg = rt_config.load_yaml(str(REPO / "wazuh/etc/anomaly/realtime.yaml"))
    for d in cfg["detectors"]:
        d["learn_days"] = 0.0
        d["new_key_learn_hours"] = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        engine = RealtimeEngine(cfg, os.path.join(tmp, "models"))
        with StateStore(tmp) as store:
            engine.process(store, batch[0], force_learn=True)
            for alert in batch:
                for finding in engine.process(store, alert):
                    render(finding.to_event(datetime(2024, 2, 2, tzinfo=timezone.utc)))
    assert engine.problems == []
