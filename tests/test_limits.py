"""Wazuh's real limits on what we write: logcollector drops a line past ~64 KiB without a
word, and analysisd shows a rule's raw description template once its $(field)
expansion reaches 1024 bytes (bytes of UTF-8, not characters).

Every writer of a line logcollector reads is covered: anomalies.json from the wodle
(anomalies, suppressed anomalies, health) and from the real-time integration (rare
values, rates, rare events), netflow.json, and logs/active-responses.log. Descriptions
are expanded by the offline simulator (ruleset/engine.py), which counts bytes as
ParseRuleComment does.
"""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wazuh_anomaly.core import jsonio as fastjson
from wazuh_anomaly.emit.emitter import event_for, event_for_health, render
from wazuh_anomaly.core.eventtext import (DESCRIPTION_MAX_BYTES, FIELD_BYTES, LOGCOLLECTOR_LINE_BYTES, MAX_LINE_BYTES,
                                     clip, fit_line)
from wazuh_anomaly.core.findings import HEALTH_CHECKS, Anomaly, FeatureContribution, HealthEvent
from wazuh_anomaly.netflow.normalize import BadRecord, Normalizer
from wazuh_anomaly.netflow.stream import FlowPipeline
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.realtime import detectors
from wazuh_anomaly.realtime.events import RareFinding
from wazuh_anomaly.ruleset.check import check_ruleset, description_worst_bytes
from wazuh_anomaly.ruleset.engine import decode, expand_description
from wazuh_anomaly.ruleset.rulefile import read_rule_file

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2022, 1, 24, 3, 55, tzinfo=timezone.utc)
DETECTED = T0 + timedelta(minutes=6)
# Every rule template of every shipped rule file.
TEMPLATES = [(r.id, r.description) for f in sorted((REPO / "rules").glob("*.xml"))
             for r in read_rule_file(f).rules if r.description and "$(" in r.description]
WIDE = "\U0001D518"   # 4 bytes of UTF-8
# Four-byte characters, quotes and backslashes (longer once escaped), controls (removed).
NASTY = (WIDE + '"\\\x00\n\u00e9\u2028') * 20_000

# Arbitrary text from outside: any code point, lone surrogates and controls included.
texts = st.text(st.characters(codec=None, exclude_categories=()), max_size=300) | st.builds(
    lambda c, n: c * n, st.sampled_from([WIDE, "é", '"', "\\", "\x00", "$(", ")", "a"]), st.integers(0, 3000))


def expansions(line: str) -> list[tuple[int, str, str]]:
    """(rule id, template, expansion) of every shipped template for this line's fields."""
    decoded = decode(line)
    return [(rid, t, expand_description(t, decoded)) for rid, t in TEMPLATES]


def assert_within_limits(line: str) -> None:
    assert "\n" not in line
    assert len(line.encode("utf-8")) <= MAX_LINE_BYTES < LOGCOLLECTOR_LINE_BYTES
    assert isinstance(json.loads(line), dict)
    for rid, template, text in expansions(line):
        assert text != template, f"rule {rid} would show its raw template"
        assert len(text.encode("utf-8")) <= DESCRIPTION_MAX_BYTES, rid


# -- the lines ----------------------------------------------------------------------

def wodle_anomaly(text: str, *, kind: str = "timeseries", features: int = 5, suppressed: bool = False) -> Anomaly:
    feats = tuple(FeatureContribution(f"{text}{i}", 1e300, -1e300, 0.5, float("inf")) for i in range(features))
    a = Anomaly(scenario=text, detector=text, window_start=T0, window_end=T0 + timedelta(minutes=5),
                bucket_minutes=5, score=1e300, threshold=0.41, severity="critical", top_features=feats,
                model_version=text, entity_field=text, entity_value=text, description=text, kind=kind)
    if suppressed:
        a = dataclasses.replace(a, suppression_id=text, suppression_reason=text)
    return a


def wodle_lines(text: str) -> list[str]:
    lines = [render(event_for(wodle_anomaly(text), detected_at=DETECTED)),
             render(event_for(wodle_anomaly(text, suppressed=True), detected_at=DETECTED))]
    for field, value in (("data.srcip", "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255"), ("data.dstuser", text),
                         ("agent.name", text)):
        a = dataclasses.replace(wodle_anomaly(text), entity_field=field, entity_value=value)
        lines.append(render(event_for(a, detected_at=DETECTED)))
    lines += [render(event_for_health(HealthEvent(c, text, T0, scenario=text, severity="critical"))) for c in HEALTH_CHECKS]
    return lines


def _alert(text: str, **data) -> dict:
    return {"timestamp": "2022-01-24T03:55:00.000+0000", "id": text, "rule": {"id": text, "level": 10},
            "agent": {"id": text, "name": text}, "data": {"srcip": "203.0.113.45", **data}}


def realtime_lines(text: str) -> list[str]:
    """Findings of real detectors (new value, new combination) and a rare event and a rate."""
    text = "u" + text   # an empty key or value is no detector's event
    base = {"filter": {}, "new_key_learn_hours": 0, "max_keys": 1000, "max_values_per_key": 1000,
            "learn_days": 1, "learn_until": 0.0, "description": text}
    specs = [
        dict(base, name=text, type="new_value", key=["data.dstuser"], value=["data.srcip"], severity="critical"),
        dict(base, name=text, type="new_value", key=["data.dstuser", "agent.name"], value=["data.command", "data.srcip"],
             severity="high"),
    ]
    lines = []
    for spec in specs:
        det = detectors.build(spec)
        state: dict = {"learn_end": 1.0, "keys": {}}
        first = _alert(text, dstuser=text, command=text)
        det.observe(state, first, 0.5, force_learn=True)
        findings, _ = det.observe(state, _alert(text + "x", dstuser=text, command=text + "y", srcip=text), 10.0)
        assert findings, spec["type"]
        lines += [render(RareFinding(f, _alert(text)).to_event(DETECTED)) for f in findings]
    rare = {"detector": text, "type": "isolation_forest", "kind": "rare_event", "severity": text,
            "description": text, "key_fields": [text], "key": text, "value_fields": [text], "value": text,
            "at": T0.timestamp(), "score": 1e300, "threshold": 0.62, "what": text, "model_version": text,
            "alert_id": text}
    lines.append(render(RareFinding(rare, _alert(text)).to_event(DETECTED)))
    rate = dict(rare, kind="rare_value", type="frequency", window_start=T0.timestamp(),
                window_end=T0.timestamp() + 600, expected_low=1e300, expected_high=-1e300)
    lines.append(render(RareFinding(rate, _alert(text)).to_event(DETECTED)))
    return lines


# -- every rule description stays within 1024 bytes --------------------------------

def test_every_rule_description_expands_within_1024_bytes_for_the_longest_lines_we_write():
    lines = wodle_lines(NASTY) + realtime_lines(NASTY)
    for line in lines:
        assert_within_limits(line)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=texts)
def test_any_text_from_outside_gives_lines_within_wazuhs_limits(text):
    for line in wodle_lines(text) + realtime_lines(text):
        assert_within_limits(line)


def test_the_checker_adds_up_each_rules_longest_expansion_from_the_field_limits():
    worst = {rid: description_worst_bytes(t) for rid, t in TEMPLATES}
    assert max(worst.values()) <= DESCRIPTION_MAX_BYTES
    # and what it adds up is what a line can really carry: the longest lines come close
    longest = {}
    for line in wodle_lines(NASTY) + realtime_lines(NASTY):
        for rid, _t, text in expansions(line):
            longest[rid] = max(longest.get(rid, 0), len(text.encode("utf-8")))
    assert all(longest[rid] <= worst[rid] for rid in worst)


def test_a_rule_whose_description_could_pass_1024_bytes_is_an_error(tmp_path):
    (tmp_path / "wazuh_anomaly_x.xml").write_text(
        '<group name="anomaly,">\n'
        '  <rule id="117100" level="3">\n'
        '    <decoded_as>json</decoded_as>\n'
        '    <field name="integration" type="pcre2">^anomaly$</field>\n'
        '    <description>Anomaly: $(anomaly.summary) / $(anomaly.description)</description>\n'
        '    <options>no_full_log</options>\n'
        '  </rule>\n'
        '</group>\n')
    (problem,) = [p for p in check_ruleset([tmp_path], []) if "bytes" in p.message]
    assert problem.rule_id == 117100 and problem.severity == "error"
    assert f"can expand to {description_worst_bytes('Anomaly: $(anomaly.summary) / $(anomaly.description)')} bytes" in problem.message
    assert description_worst_bytes("Anomaly: $(anomaly.summary) / $(anomaly.description)") == 12 + 320 + 1024


def test_simulator_shows_the_raw_template_from_1024_bytes_on_as_analysisd_does():
    def line_with(value: str) -> str:
        return json.dumps({"integration": "anomaly", "anomaly": {"summary": value}}, ensure_ascii=False)
    template = "S: $(anomaly.summary)"
    fits = WIDE * ((DESCRIPTION_MAX_BYTES - 3) // 4)          # 3 + 1020 = 1023 bytes
    assert expand_description(template, decode(line_with(fits))) == "S: " + fits
    too_long = fits + "a"                                      # 1024 bytes
    assert expand_description(template, decode(line_with(too_long))) == template


# -- one line within the limit ------------------------------------------------------

def test_clip_counts_bytes_and_never_splits_a_character():
    assert clip(WIDE * 10, 12) == WIDE * 2 + "..."                 # 8 + 3 bytes; a third would not fit
    assert clip("é" * 10, 8) == "éé" + "..."
    assert clip("abc", 3) == "abc"


@settings(max_examples=200, deadline=None)
@given(text=texts, limit=st.integers(3, 600))
def test_clipped_text_is_one_line_of_valid_utf8_within_its_byte_limit(text, limit):
    out = clip(text, limit)
    raw = out.encode("utf-8")   # no lone surrogate left: this would raise
    assert len(raw) <= limit
    assert not any(ch in out for ch in "\x00\n\r\x7f")


def test_a_line_too_long_loses_the_explanations_tail_then_its_weakest_contributors_and_says_so():
    event = event_for(dataclasses.replace(wodle_anomaly("w" * 100, features=5), detector="mvad", kind="timeseries"),
                      detected_at=DETECTED)
    event["anomaly"]["description"] = "d" * 1000
    full = len(fastjson.dumps_strict(event).encode())
    line = fit_line(event, fastjson.dumps_strict, max_bytes=full - 1200)
    body = json.loads(line)["anomaly"]
    assert len(line.encode()) <= full - 1200
    assert body["truncated"] == "description,top_features"
    assert len(body["top_features"]) < 5 and body["top_features"][0]["name"] == "w" * 100 + "0"
    assert body["summary"] == event["anomaly"]["summary"]          # what the rules show is untouched
    assert event["anomaly"]["description"] == "d" * 1000            # the caller's event is not changed


def test_a_field_cut_to_its_limit_is_named_in_the_line():
    line = render(event_for(wodle_anomaly("ok", features=1, kind="k" * 40), detected_at=DETECTED))
    body = json.loads(line)["anomaly"]
    assert body["kind"] == "k" * 29 + "..." and body["truncated"] == "kind"
    plain = json.loads(render(event_for(wodle_anomaly("ok", features=1), detected_at=DETECTED)))["anomaly"]
    assert "truncated" not in plain


def test_every_field_a_rule_description_names_has_a_byte_limit():
    import re
    refs = {ref for _rid, t in TEMPLATES for ref in re.findall(r"\$\(([^)]*)\)", t)}
    assert refs <= set(FIELD_BYTES), sorted(refs - set(FIELD_BYTES))


# -- netflow.json ---------------------------------------------------------------

def flow(**over) -> dict:
    rec = {"ip_src": "203.0.113.45", "ip_dst": "10.0.0.5", "port_src": 40000, "port_dst": 22, "ip_proto": "tcp",
           "bytes": 100, "packets": 2, "timestamp_start": "2022-01-24 03:55:00.000000",
           "timestamp_end": "2022-01-24 03:55:01.000000", "peer_ip_src": "192.0.2.1"}
    rec.update(over)
    return rec


@settings(max_examples=150, deadline=None)
@given(src=texts, proto=texts | st.integers(-2**70, 2**70), peer=texts)
def test_any_flow_record_gives_a_line_within_the_limits_or_a_short_reason(src, proto, peer):
    pipeline = FlowPipeline(NetflowSettings(), detect=False)
    for rec in (flow(ip_src=src), flow(ip_proto=proto), flow(peer_ip_src=peer), flow(ip_dst=src)):
        out = pipeline.process([("flows.json:1", json.dumps(rec).encode())])
        for line in out.decode("utf-8").split("\n")[:-1]:   # logcollector splits at \n only
            assert_within_limits(line)
    assert all(len(r) < 200 for r in pipeline.stats.reasons)


def test_flow_with_a_huge_protocol_or_scoped_address_is_skipped_with_one_short_sentence():
    n = Normalizer(NetflowSettings())
    for rec, start in ((flow(ip_proto="x" * 70_000), "ip_proto 'xxx"), (flow(ip_src="fe80::1%" + "e" * 70_000), "'fe80::1%"),
                       (flow(ip_proto=2**40), "ip_proto 1099511627776 is not a protocol number")):
        with pytest.raises(BadRecord) as exc:
            n.normalize(rec)
        assert str(exc.value).startswith(start) and len(str(exc.value).encode()) < 200


def test_longest_flow_line_expands_every_netflow_description_within_1024_bytes():
    longest_v6 = "2001:db8:ffff:ffff:ffff:ffff:255.255.255.255"
    pipeline = FlowPipeline(NetflowSettings(), detect=False)
    out = pipeline.process([("f:1", json.dumps(flow(ip_src=longest_v6, ip_dst=longest_v6, ip_proto="p" * 32,
                                                     peer_ip_src=NASTY)).encode())])
    (line,) = out.decode().split("\n")[:-1]
    assert_within_limits(line)
    assert json.loads(line)["flow"]["protocol"] == "p" * 32


# -- logs/active-responses.log --------------------------------------------------

def test_response_log_line_of_a_huge_alert_stays_json_within_the_limit_and_says_it_was_cut(tmp_path):
    from wazuh_anomaly.realtime import response
    (tmp_path / "logs").mkdir()
    line = render(event_for(wodle_anomaly(NASTY), detected_at=DETECTED))
    alert = {"timestamp": "2022-01-24T04:00:00.000+0000", "id": "1642996800.1", "full_log": line + WIDE * 20_000,
             "rule": {"id": "117104", "level": 12, "description": "Anomaly (critical)"},
             "agent": {"id": "000", "name": "manager"}, "data": {**json.loads(line), "srcip": "203.0.113.45"}}
    message = json.dumps({"version": 1, "command": "add", "parameters": {"alert": alert, "extra_args": []}})
    assert len(message) > LOGCOLLECTOR_LINE_BYTES
    response.log(str(tmp_path), response.as_received(message + "\n"))
    (written,) = (tmp_path / "logs" / "active-responses.log").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(written.encode()) <= MAX_LINE_BYTES
    body = json.loads(written.split(f"{response.PROGRAM}: ", 1)[1])
    assert body["truncated"] == "parameters.alert"
    assert body["command"] == "add" and body["parameters"]["alert"]["rule"]["id"] == "117104"
    assert body["parameters"]["alert"]["data"]["srcip"] == "203.0.113.45"


def test_response_log_keeps_a_normal_message_as_received(tmp_path):
    from wazuh_anomaly.realtime import response
    message = json.dumps({"version": 1, "command": "add", "parameters": {"alert": {"rule": {"id": "1"}}}})
    assert response.as_received(message + "\n") == message


@settings(max_examples=50, deadline=None)
@given(text=texts)
def test_any_response_log_message_is_one_line_within_the_limit(tmp_path_factory, text):
    from wazuh_anomaly.realtime import response
    d = tmp_path_factory.mktemp("ar")
    (d / "logs").mkdir()
    response.log(str(d), f"delete: srcip {(text * 400)!r} is not an IP address; nothing to unblock")
    (written,) = (d / "logs" / "active-responses.log").read_bytes().split(b"\n")[:-1]
    assert len(written) <= MAX_LINE_BYTES


def test_a_scoped_or_overlong_address_is_no_static_srcip():
    from wazuh_anomaly.core.eventtext import entity_srcip
    assert entity_srcip("data.srcip", "2001:db8::1") == "2001:db8::1"
    assert entity_srcip("data.srcip", "2001:db8::1%" + "e" * 70_000) is None
    assert entity_srcip("data.srcip", "fe80::1%eth0") is None


def test_a_flow_event_past_the_line_limit_is_skipped_and_counted_not_written(monkeypatch):
    from wazuh_anomaly.netflow import stream
    monkeypatch.setattr(stream, "MAX_EVENT_BYTES", 100)
    pipeline = FlowPipeline(NetflowSettings(), detect=False)
    assert pipeline.process([("flows.json:7", json.dumps(flow()).encode())]) == b""
    assert pipeline.stats.skipped == 1 and pipeline.stats.records == 0
    assert pipeline.stats.sentence() == "skipped 1 record: 1 whose flow event would be longer than 100 bytes (first at flows.json:7)"
