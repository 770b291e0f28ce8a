"""The emitter: schema v1 events and the exactly-once, crash-safe AnomalyWriter."""
from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from wazuh_anomaly.emit.emitter import (
    EVENT_FIELDS,
    MAX_TOP_FEATURES,
    AnomalyWriter,
    event_for,
    event_for_health,
    render,
)
from wazuh_anomaly.core import jsonio as fastjson
from wazuh_anomaly.emit.escalation import Repeat
from wazuh_anomaly.core.eventtext import clip, fit_line, has_control, iso, parse_iso, stable_id
from wazuh_anomaly.core.findings import HEALTH_CHECKS, Anomaly, FeatureContribution, HealthEvent

T0 = datetime(2022, 1, 24, 3, 55, tzinfo=timezone.utc)
DETECTED = T0 + timedelta(minutes=6)


def anomaly(scenario="authentication_failures", severity="high", *, step=0, entity=("data.srcip", "10.0.0.5"),
            features=None, description="Failed logins per bucket", model_version="mvad-0.4.0") -> Anomaly:
    start = T0 + timedelta(minutes=5 * step)
    features = features if features is not None else (
        FeatureContribution("auth_failures", 143, 2, 0.8, 12.5),
        FeatureContribution("distinct_srcip", 9, 1, 0.2, 4.1),
    )
    return Anomaly(scenario=scenario, detector="mvad", window_start=start, window_end=start + timedelta(minutes=5),
                   bucket_minutes=5, score=0.7341234567, threshold=0.41, severity=severity,
                   top_features=tuple(features), model_version=model_version,
                   entity_field=entity[0] if entity else None, entity_value=entity[1] if entity else None,
                   description=description)


def flatten(obj: dict, parent: str = "") -> set[str]:
    """Field names as the Wazuh JSON decoder makes them (arrays stay one field)."""
    names = set()
    for key, value in obj.items():
        name = f"{parent}.{key}" if parent else key
        names |= flatten(value, name) if isinstance(value, dict) else {name}
    return names


# -- event shape ---------------------------------------------------------------

def test_anomaly_event_has_the_schema_v1_shape():
    event = event_for(anomaly(), detected_at=DETECTED)
    assert list(event) == ["integration", "anomaly", "srcip"]
    assert event["integration"] == "anomaly"
    body = event["anomaly"]
    assert body["schema"] == 1
    assert body["id"] == anomaly().id
    assert body["kind"] == "timeseries" and body["detector"] == "mvad"
    assert body["scenario"] == "authentication_failures" and body["severity"] == "high"
    assert body["score"] == 0.734123 and body["threshold"] == 0.41
    assert body["window"] == {"start": "2022-01-24T03:55:00.000+0000", "end": "2022-01-24T04:00:00.000+0000"}
    assert body["bucket_minutes"] == 5
    assert body["entity"] == {"field": "data.srcip", "value": "10.0.0.5"}
    assert body["top_feature"] == "auth_failures"
    assert body["top_features"][0] == {"name": "auth_failures", "actual": 143, "expected": 2,
                                       "contribution": 0.8, "deviation": 12.5}
    assert body["model_version"] == "mvad-0.4.0"
    assert body["description"] == "Failed logins per bucket"
    assert body["detected_at"] == "2022-01-24T04:01:00.000+0000"


def test_summary_reads_as_one_line_with_expected_values_and_entity():
    body = event_for(anomaly(entity=("agent.name", "web-01")), detected_at=DETECTED)["anomaly"]
    assert body["summary"] == "auth_failures=143 (expected 2), distinct_srcip=9 (expected 1) on agent web-01"


def test_event_without_entity_has_no_entity_and_no_static_fields():
    event = event_for(anomaly(entity=None), detected_at=DETECTED)
    assert "entity" not in event["anomaly"]
    assert "srcip" not in event and "dstuser" not in event


def test_event_never_has_a_top_level_timestamp():
    for e in (event_for(anomaly(), detected_at=DETECTED), event_for_health(HealthEvent("no_data", "x", T0))):
        assert "timestamp" not in e and "event_type" not in e


def test_top_features_are_capped_at_five():
    feats = [FeatureContribution(f"f{i}", i, 0, 0.1, 1.0) for i in range(12)]
    body = event_for(anomaly(features=feats), detected_at=DETECTED)["anomaly"]
    assert [f["name"] for f in body["top_features"]] == ["f0", "f1", "f2", "f3", "f4"]
    assert len(body["top_features"]) == MAX_TOP_FEATURES


def test_floats_keep_six_significant_digits_and_non_finite_become_null():
    feats = [FeatureContribution("x", 1234.56789, 0.000123456789, 1 / 3, float("nan"))]
    f = event_for(anomaly(features=feats), detected_at=DETECTED)["anomaly"]["top_features"][0]
    assert f["actual"] == 1234.57 and f["expected"] == 0.000123457 and f["contribution"] == 0.333333
    assert f["deviation"] is None
    assert "NaN" not in render(event_for(anomaly(features=feats), detected_at=DETECTED))


@pytest.mark.parametrize("field, value, srcip", [
    ("data.srcip", "10.0.0.5", "10.0.0.5"),
    ("srcip", "2001:db8::1", "2001:db8::1"),
    ("data.win.eventdata.ipAddress", "192.0.2.7", "192.0.2.7"),
    ("data.srcip", "not-an-ip", None),
    ("data.srcip", "10.0.0.300", None),
    ("agent.ip", "10.0.0.9", None),       # never block our own agents
    ("data.dstip", "10.0.0.9", None),
    ("agent.name", "web-01", None),
])
def test_srcip_only_for_valid_source_ip_entities(field, value, srcip):
    event = event_for(anomaly(entity=(field, value)), detected_at=DETECTED)
    assert event.get("srcip") == srcip


@pytest.mark.parametrize("field, value, dstuser", [
    ("data.dstuser", "alice", "alice"),
    ("dstuser", "root", "root"),
    ("data.srcuser", "bob", "bob"),
    ("data.win.eventdata.targetUserName", "Administrator", "Administrator"),
    ("data.srcip", "10.0.0.5", None),
    ("agent.name", "web-01", None),
    ("data.dstuser", "x" * 500, None),
])
def test_dstuser_only_for_user_entities(field, value, dstuser):
    event = event_for(anomaly(entity=(field, value)), detected_at=DETECTED)
    assert event.get("dstuser") == dstuser


def test_health_event_shape_omits_scenario_when_none():
    h = HealthEvent("source_unreadable", "Cannot read alerts.json; fix permissions.", T0, severity="high")
    assert event_for_health(h) == {"integration": "anomaly", "anomaly": {
        "schema": 1, "id": h.id, "kind": "health", "health": "source_unreadable", "severity": "high",
        "message": "Cannot read alerts.json; fix permissions.", "detected_at": "2022-01-24T03:55:00.000+0000"}}
    with_scenario = event_for_health(HealthEvent("training_failed", "m", T0, scenario="web_attacks"))
    assert with_scenario["anomaly"]["scenario"] == "web_attacks"


def test_event_fields_name_every_field_an_event_can_carry():
    full = event_for(anomaly(entity=("data.dstuser", "alice")), detected_at=DETECTED)
    ip = event_for(anomaly(), detected_at=DETECTED)
    suppressed = event_for(dataclasses.replace(anomaly(), suppression_id="abc", suppression_reason="scan"),
                           detected_at=DETECTED)
    escalated = event_for(anomaly(), detected_at=DETECTED, repeat=Repeat(entity=3, scenario=4))
    health = [event_for_health(HealthEvent(c, "m", T0, scenario="s")) for c in HEALTH_CHECKS]
    # a line shortened to fit Wazuh's limits names what was cut
    shortened = json.loads(fit_line(full, fastjson.dumps_strict, max_bytes=len(render(full).encode()) - 1))
    seen = flatten(full) | flatten(ip) | flatten(suppressed) | flatten(escalated) | \
        set().union(*(flatten(h) for h in health))
    assert seen | flatten(shortened) == EVENT_FIELDS


def test_every_line_is_one_small_json_object_even_with_huge_inputs():
    huge = "A\u00e9\x00\n" * 100_000
    feats = [FeatureContribution(huge, 1e300, -1e300, 0.5, float("inf")) for _ in range(1000)]
    events = [
        event_for(anomaly(scenario=huge, features=feats, entity=(huge, huge), description=huge,
                          model_version=huge), detected_at=DETECTED),
        event_for_health(HealthEvent("config_invalid", huge, T0, scenario=huge)),
    ]
    for e in events:
        line = render(e)
        assert "\n" not in line
        assert len(line.encode("utf-8")) < 16 * 1024
        parsed = json.loads(line)
        assert parsed["integration"] == "anomaly"
        assert "\\u0000" not in line


@pytest.mark.parametrize("text", ["plain", "", "a\x00b", "\n\r\t", "x\x1f\x7f\x01y\nz\x00", "\x7f" * 600,
                                  "é\u2028\u200b\ud800 bad surrogate", "tab\there " * 60, "\x1fend\x1f"])
def test_clipping_without_re_is_the_regex_substitution(text):
    # eventtext.clip avoids `re` (the integration's import time): same result as the regex it replaced
    import re

    expected = re.sub(r"[\x00-\x1f\x7f]+", " ", text.encode("utf-8", "replace").decode("utf-8"))
    for limit in (5, 128, 480):   # bytes of UTF-8
        raw = expected.encode("utf-8")
        want = expected if len(raw) <= limit else raw[: limit - 3].decode("utf-8", "ignore") + "..."
        assert clip(text, limit) == want
    assert has_control(text) == bool(re.search(r"[\x00-\x1f\x7f]", text))


def test_parse_iso_reads_back_what_iso_writes():
    for when in (T0, DETECTED + timedelta(milliseconds=250), datetime(2024, 3, 1, 23, 59, 59, 999000, timezone.utc)):
        assert parse_iso(iso(when)) == when
    assert parse_iso("2022-01-24T04:55:00.000+0100") == T0                  # another zone, same instant
    assert parse_iso("") is None and parse_iso(None) is None
    for bad in ("yesterday", "2022-01-24T03:55:00.000"):   # not a timestamp; no zone
        with pytest.raises(ValueError):
            parse_iso(bad)


def test_sha256_ids_are_hashlibs():
    import hashlib

    parts = ("rare", "new_user_for_agent", "001\x1fweb", None, 3)
    text = "\x1f".join("" if p is None else str(p) for p in parts)
    assert stable_id(*parts) == hashlib.sha256(text.encode()).hexdigest()[:20]


# -- the writer -------------------------------------------------------------------

def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_writer_creates_the_file_0640_and_writes_one_line_per_finding(tmp_path):
    out = tmp_path / "logs" / "anomaly" / "anomalies.json"
    findings = [anomaly(step=i) for i in range(3)] + [HealthEvent("no_data", "No alerts.", T0)]
    result = AnomalyWriter(out, tmp_path / "state").write(findings, DETECTED)
    assert (result.written, result.duplicates) == (4, 0)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640
    assert [e["anomaly"]["id"] for e in read_lines(out)] == [f.id for f in findings]


def test_rewriting_the_same_findings_writes_nothing(tmp_path):
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    findings = [anomaly(step=i) for i in range(5)]
    AnomalyWriter(out, state).write(findings, DETECTED)
    again = AnomalyWriter(out, state).write(findings + [anomaly(step=9)], DETECTED)
    assert (again.written, again.duplicates) == (1, 5)
    assert len(read_lines(out)) == 6


def test_same_id_twice_in_one_batch_is_written_once(tmp_path):
    result = AnomalyWriter(tmp_path / "a.json", tmp_path / "s").write([anomaly(), anomaly()], DETECTED)
    assert (result.written, result.duplicates) == (1, 1)


def test_run_after_crash_between_append_and_state_save_emits_no_duplicates(tmp_path):
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    AnomalyWriter(out, state).write([anomaly(step=0)], DETECTED)
    crashed = [anomaly(step=1), anomaly(step=2)]

    def append_then_die():
        writer = AnomalyWriter(out, state)
        writer._lock()  # released when the process dies
        writer._append([json.dumps(event_for(a, detected_at=DETECTED)) for a in crashed])
        os._exit(1)  # killed before the state save

    child = multiprocessing.get_context("fork").Process(target=append_then_die)
    child.start()
    child.join()
    assert child.exitcode == 1 and len(read_lines(out)) == 3

    result = AnomalyWriter(out, state).write(crashed + [anomaly(step=3)], DETECTED)
    assert (result.written, result.duplicates) == (1, 2)
    ids = [e["anomaly"]["id"] for e in read_lines(out)]
    assert len(ids) == len(set(ids)) == 4


def test_after_rotation_old_ids_come_from_the_store_and_new_lines_from_the_new_file(tmp_path):
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    AnomalyWriter(out, state).write([anomaly(step=0)], DETECTED)
    out.rename(tmp_path / "anomalies.json.1")                  # logrotate: new inode
    # a writer crashed right after the rotation: its line is in the new file only
    out.write_text(json.dumps(event_for(anomaly(step=7), detected_at=DETECTED)) + "\n")
    result = AnomalyWriter(out, state).write([anomaly(step=0), anomaly(step=7), anomaly(step=8)], DETECTED)
    assert (result.written, result.duplicates) == (1, 2)
    assert [e["anomaly"]["id"] for e in read_lines(out)] == [anomaly(step=7).id, anomaly(step=8).id]


def test_ids_are_forgotten_after_35_days(tmp_path):
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    old = anomaly(step=0)
    AnomalyWriter(out, state).write([old], DETECTED)
    later = DETECTED + timedelta(days=36)
    AnomalyWriter(out, state).write([], later)
    saved = json.loads((state / AnomalyWriter.STATE_NAME).read_text())
    assert old.id not in saved["ids"]
    AnomalyWriter(out, state).write([], DETECTED + timedelta(days=1))
    assert not list(state.glob(".*.tmp")), "no temporary state file is left behind"


def _write_many(out: str, state: str, worker: int, rounds: int) -> None:
    writer = AnomalyWriter(Path(out), Path(state))
    big = "x" * 100
    for r in range(rounds):
        batch = [anomaly(scenario=f"s{worker}", step=r * 20 + i, description=big * 4) for i in range(20)]
        writer.write(batch, DETECTED)


def test_concurrent_writers_never_interleave_partial_lines(tmp_path):
    out, state = tmp_path / "anomalies.json", tmp_path / "state"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_write_many, args=(str(out), str(state), w, 25)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert all(p.exitcode == 0 for p in procs)
    raw = out.read_bytes()
    assert raw.endswith(b"\n")
    events = [json.loads(line) for line in raw.decode().splitlines()]   # every line parses
    ids = [e["anomaly"]["id"] for e in events]
    assert len(ids) == len(set(ids)) == 2 * 25 * 20
