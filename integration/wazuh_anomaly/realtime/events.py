"""Real-time findings as schema v1 lines of anomalies.json (kinds `rare_value`, `rare_event`).

Same envelope as the wodle's anomalies (`integration: anomaly`, `anomaly.*`, the static
`srcip`/`dstuser`), written through the same `anomalylog.AnomalyLog`, plus what a
first-seen finding needs: the key it was learned for (`anomaly.entity.*`), the value
seen (`anomaly.observed.*`), what was expected, and the alert that carried it
(`anomaly.alert.*`). Rules 117200-117299 match `anomaly.kind` and `anomaly.scenario`
(the detector's name) and name key and value in their descriptions.
"""
from __future__ import annotations

from datetime import datetime, timezone

from .. import SCHEMA_VERSION
from ..core.eventtext import INTEGRATION, MAX_DESCRIPTION, MAX_NAME, MAX_SUMMARY, MAX_VALUE, clip, entity_dstuser, \
    entity_srcip, iso, num, plain, stable_id
from ..core.eventtext import RARE_EVENT_FIELDS  # noqa: F401  (the ruleset checker's list, kept in the core)
from .fields import first


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, tz=timezone.utc)


class RareFinding:
    """One real-time finding, ready for `AnomalyLog.write` (it renders itself)."""

    __slots__ = ("data", "alert")

    def __init__(self, data: dict, alert: dict):
        self.data = data
        self.alert = alert

    @property
    def id(self) -> str:
        d = self.data
        if d["kind"] == "rare_event":
            return stable_id("rare_event", d["detector"], d.get("alert_id") or d["value"], d["key"])
        if d["type"] == "frequency":
            return stable_id("rare", d["detector"], d["key"], d["window_start"], d["what"])
        return stable_id("rare", d["detector"], d["key"], d["value"])

    @property
    def window_start(self) -> datetime:
        return _utc(self.data.get("window_start", self.data["at"]))

    @property
    def detector_label(self) -> str:
        d = self.data
        if d["kind"] == "rare_event":
            return d["type"]
        if d["type"] == "new_value" and len(d["value_fields"]) > 1:
            return "new_combination"
        return d["type"]

    def summary(self) -> str:
        d = self.data
        value_field = "+".join(d["value_fields"])
        key_field = "+".join(d["key_fields"])
        value = d["value"].replace("\x1f", ", ")
        text = f"{d['what']} {value_field}={value}"
        if key_field:
            text += f" for {key_field}={d['key'].replace(chr(31), ', ')}"
        if "expected_low" in d:
            text += f" (learned {plain(d['expected_low'])}..{plain(d['expected_high'])})"
        elif "known" in d:
            text += f" ({d['known']} known before)"
        elif d["kind"] == "rare_event":
            text += f" (rarity {plain(d['score'])} above {plain(d['threshold'])})"
        return clip(text, MAX_SUMMARY)

    def to_event(self, detected_at: datetime) -> dict:
        d = self.data
        start = self.window_start
        end = _utc(d.get("window_end", d.get("window_start", d["at"])))
        body: dict = {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "kind": d["kind"],
            "detector": self.detector_label,
            "scenario": clip(d["detector"], MAX_NAME),
            "severity": d["severity"],
            "score": num(d.get("score")),
            "threshold": num(d.get("threshold")),
            "window": {"start": iso(start), "end": iso(end)},
            "bucket_minutes": int(round((end - start).total_seconds() / 60)),
        }
        key_field = "+".join(d["key_fields"])
        if key_field:
            body["entity"] = {"field": clip(key_field, MAX_NAME), "value": clip(d["key"].replace("\x1f", ", "), MAX_VALUE)}
        else:  # a detector without a key learns over all alerts; rule descriptions still name "the key"
            body["entity"] = {"field": "none", "value": "all alerts"}
        value_field = "+".join(d["value_fields"])
        body["observed"] = {"field": clip(value_field, MAX_NAME), "value": clip(d["value"].replace("\x1f", ", "), MAX_VALUE)}
        if "expected_low" in d:
            body["expected"] = f"{plain(d['expected_low'])}..{plain(d['expected_high'])}"
        body["summary"] = self.summary()
        if d.get("description"):
            body["description"] = clip(d["description"], MAX_DESCRIPTION)
        version = d.get("model_version")
        if not version:
            version = f"{d['type']}/learning-since-{iso(_utc(d['since']))}" if d.get("since") is not None else d["type"]
        body["model_version"] = clip(version, MAX_NAME)
        alert = self.alert
        source = {}
        ident, rule_id = first(alert, "id"), first(alert, "rule.id")
        agent_id, agent_name = first(alert, "agent.id"), first(alert, "agent.name")
        if ident is not None:
            source["id"] = clip(ident, MAX_NAME)
        if rule_id is not None:
            source["rule_id"] = clip(rule_id, MAX_NAME)
        if agent_id is not None or agent_name is not None:
            source["agent"] = clip(f"{agent_name or ''} ({agent_id or ''})", MAX_NAME)
        alert_ip = entity_srcip("data.srcip", first(alert, "data.srcip") or "")
        if alert_ip:
            source["srcip"] = alert_ip
        if source:
            body["alert"] = source
        body["detected_at"] = iso(detected_at)
        event: dict = {"integration": INTEGRATION, "anomaly": body}
        srcip = None
        dstuser = None
        for fields, joined in ((d["value_fields"], d["value"]), (d["key_fields"], d["key"])):
            if len(fields) == 1:
                srcip = srcip or entity_srcip(fields[0], joined)
                dstuser = dstuser or entity_dstuser(fields[0], joined)
        srcip = srcip or alert_ip
        if srcip:
            event["srcip"] = srcip
        if dstuser:
            event["dstuser"] = dstuser
        return event
