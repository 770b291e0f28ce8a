"""Anomalies and health events as schema v1 JSON lines in `logs/anomaly/anomalies.json`.

The manager reads that file with a `<localfile>` `json` block; the stock `json` decoder
flattens each line into `anomaly.*` fields and the rules 117100-117349 raise the alert
(DESIGN.md, WAZUH.md section 3). One JSON object per line, compact, far below the
~64 KiB line limit of logcollector.

Never add a top-level `timestamp` or `event_type` key: the indexer maps `data.timestamp`
as a date, and the stock Suricata root rule 86600 claims any JSON event carrying both.
"""
from __future__ import annotations

from datetime import datetime

from .. import SCHEMA_VERSION
from .anomalylog import AnomalyLog, render  # noqa: F401 (render: re-exported for the ruleset and CLI)
from .escalation import Repeat, series_of_event
from ..core.eventtext import (INTEGRATION, MAX_DESCRIPTION, MAX_MESSAGE, MAX_NAME, MAX_SUMMARY, MAX_VALUE, clip,
                        entity_dstuser, entity_phrase, entity_srcip, iso, num, plain)
from ..core.findings import Anomaly, FeatureContribution, HealthEvent

# Anomalies with more features are cut to the strongest ones; the rest is in the model.
MAX_TOP_FEATURES = 5
# Features named in the one-line summary an analyst reads in the dashboard.
SUMMARY_FEATURES = 3

# Every dotted field an event can carry, named as the Wazuh JSON decoder names it
# (nested keys joined with dots; arrays stay one field holding their JSON text).
EVENT_FIELDS: frozenset[str] = frozenset({
    "integration",
    "anomaly.schema",
    "anomaly.id",
    "anomaly.kind",
    "anomaly.detector",
    "anomaly.scenario",
    "anomaly.severity",
    "anomaly.score",
    "anomaly.threshold",
    "anomaly.window.start",
    "anomaly.window.end",
    "anomaly.bucket_minutes",
    "anomaly.entity.field",
    "anomaly.entity.value",
    "anomaly.top_feature",
    "anomaly.direction",   # up | down: which way the top feature moved (rules pick text and MITRE by it)
    "anomaly.title",       # what happened, in words, by feature and direction
    "anomaly.summary",
    "anomaly.top_features",
    "anomaly.model_version",
    "anomaly.description",
    "anomaly.detected_at",
    "anomaly.health",
    "anomaly.message",
    "anomaly.suppressed",
    "anomaly.suppression.id",
    "anomaly.suppression.reason",
    "anomaly.truncated",  # what fit_line cut to keep the line within Wazuh's limits
    "anomaly.repeat.entity",
    "anomaly.repeat.scenario",
    "anomaly.escalated",
    # top-level keys the decoder puts into Wazuh's static fields
    "srcip",
    "dstuser",
})


def summary_of(anomaly: Anomaly) -> str:
    """One line an analyst reads: 'auth_failures=143 (expected 2), ... on agent web-01'."""
    parts = [
        f"{clip(f.name, MAX_NAME)}={plain(f.actual)} (expected {plain(f.expected)})"
        for f in anomaly.top_features[:SUMMARY_FEATURES]
    ]
    text = ", ".join(parts) if parts else f"score {plain(anomaly.score)} above {plain(anomaly.threshold)}"
    if anomaly.entity_field and anomaly.entity_value:
        text += entity_phrase(clip(anomaly.entity_field, MAX_NAME), clip(anomaly.entity_value, MAX_VALUE))
    return clip(text, MAX_SUMMARY)


def direction_of(f: FeatureContribution) -> str:
    return "down" if f.actual < f.expected else "up"


def title_of(anomaly: Anomaly) -> str:
    """What happened, in words: the scenario's text for its leading feature and direction,
    else that feature's name and direction, else the scenario's description."""
    if anomaly.title:
        return anomaly.title
    if anomaly.top_features:
        top = anomaly.top_features[0]
        return f"{top.name} far {'below' if direction_of(top) == 'down' else 'above'} its usual level"
    return anomaly.description or f"unusual activity in {anomaly.scenario}"


def _feature(f: FeatureContribution) -> dict:
    return {
        "name": clip(f.name, MAX_NAME),
        "actual": num(f.actual),
        "expected": num(f.expected),
        "contribution": num(f.contribution),
        "deviation": num(f.deviation),
    }


def event_for(anomaly: Anomaly, *, detected_at: datetime, repeat: Repeat | None = None) -> dict:
    """The schema v1 event of one anomaly (keys in a stable order); `repeat`, computed by
    the anomaly log from event time (escalation.py), adds `repeat` and `escalated`."""
    body: dict = {
        "schema": SCHEMA_VERSION,
        "id": anomaly.id,
        "kind": clip(anomaly.kind, MAX_NAME),
        "detector": clip(anomaly.detector, MAX_NAME),
        "scenario": clip(anomaly.scenario, MAX_NAME),
        "severity": anomaly.severity,
        "score": num(anomaly.score),
        "threshold": num(anomaly.threshold),
        "window": {"start": iso(anomaly.window_start), "end": iso(anomaly.window_end)},
        "bucket_minutes": int(anomaly.bucket_minutes),
    }
    if anomaly.entity_field and anomaly.entity_value:
        body["entity"] = {"field": clip(anomaly.entity_field, MAX_NAME),
                          "value": clip(anomaly.entity_value, MAX_VALUE)}
    top = anomaly.top_features[:MAX_TOP_FEATURES]
    if top:
        body["top_feature"] = clip(top[0].name, MAX_NAME)
        body["direction"] = direction_of(top[0])
    body["title"] = clip(title_of(anomaly), MAX_DESCRIPTION)
    body["summary"] = summary_of(anomaly)
    body["top_features"] = [_feature(f) for f in top]
    body["model_version"] = clip(anomaly.model_version, MAX_NAME)
    if anomaly.description:
        body["description"] = clip(anomaly.description, MAX_DESCRIPTION)
    repeat = repeat if repeat is not None else anomaly.repeat
    if repeat is not None and not anomaly.suppressed:
        body["repeat"] = {"entity": repeat.entity, "scenario": repeat.scenario}
        if repeat.escalated:
            body["escalated"] = "true"   # rules 117107 and the 5th id of each scenario block
    body["detected_at"] = iso(detected_at)
    if anomaly.suppressed:
        # Still written, so it can be searched; rule 117108 (level 0) keeps it from alerting.
        body["suppressed"] = "true"
        body["suppression"] = {"id": clip(anomaly.suppression_id, MAX_NAME),
                               "reason": clip(anomaly.suppression_reason or "", MAX_MESSAGE)}

    event: dict = {"integration": INTEGRATION, "anomaly": body}
    srcip = entity_srcip(anomaly.entity_field, anomaly.entity_value)
    if srcip:
        event["srcip"] = srcip
    dstuser = entity_dstuser(anomaly.entity_field, anomaly.entity_value)
    if dstuser:
        event["dstuser"] = dstuser
    return event


def event_for_health(h: HealthEvent) -> dict:
    """The schema v1 event of one health finding about the detector itself."""
    body: dict = {
        "schema": SCHEMA_VERSION,
        "id": h.id,
        "kind": "health",
        "health": h.check,
        "severity": h.severity,
    }
    if h.scenario is not None:
        body["scenario"] = clip(h.scenario, MAX_NAME)
    body["message"] = clip(h.message, MAX_MESSAGE)
    body["detected_at"] = iso(h.at)
    return {"integration": INTEGRATION, "anomaly": body}


def line_for(finding: Anomaly | HealthEvent, detected_at: datetime, repeat: Repeat | None = None) -> str:
    to_event = getattr(finding, "to_event", None)
    if to_event is not None:  # a real-time finding (realtime/events.py) renders itself
        return render(to_event(detected_at))
    if isinstance(finding, HealthEvent):
        return render(event_for_health(finding))
    return render(event_for(finding, detected_at=detected_at, repeat=repeat))


def _window_time(finding: Anomaly | HealthEvent) -> datetime:
    return finding.at if isinstance(finding, HealthEvent) else finding.window_start


class AnomalyWriter(AnomalyLog):
    """`anomalylog.AnomalyLog` for the wodle's anomalies and health events (and any
    finding that renders itself)."""

    def line_for(self, finding, detected_at: datetime, repeat: Repeat | None = None) -> str:
        return line_for(finding, detected_at, repeat)

    def window_time(self, finding) -> datetime:
        return _window_time(finding)

    def series_of(self, finding) -> tuple[str, str, float] | None:
        # From the event as written (clipped names), like the recovery from the file.
        if not isinstance(finding, Anomaly):
            return None
        return series_of_event(event_for(finding, detected_at=finding.window_end))
