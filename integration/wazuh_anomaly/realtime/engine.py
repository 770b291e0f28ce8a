"""Runs the configured detectors and rare-event models over alerts (one at a time)."""
from __future__ import annotations

import os
import time

from ..errors import ModelError
from . import detectors as _detectors
from .fields import alert_time
from .rarity import RareEventModel, extract


def _finding(data: dict, alert: dict):
    from .events import RareFinding  # rendering is only imported when there is something to write
    return RareFinding(data, alert)


class RealtimeEngine:
    """The detectors and models of one configuration, with their state in a StateStore."""

    def __init__(self, config: dict, models_dir: str, *, only: list[str] | None = None):
        self.config = config
        self.models_dir = models_dir
        chosen = (lambda name: only is None or name in only)
        self.detectors = [_detectors.build(d) for d in config["detectors"] if d["enabled"] and chosen(d["name"])]
        self.model_specs = [m for m in config["models"] if m["enabled"] and chosen(m["name"])]
        self._models: dict[str, RareEventModel | None] = {}
        self.problems: list[str] = []

    def model(self, spec: dict) -> RareEventModel | None:
        """The trained model of a spec (read once, refused when someone else could have written it)."""
        name = spec["name"]
        if name not in self._models:
            path = os.path.join(self.models_dir, f"{name}.json")
            if not os.path.exists(path):
                self._models[name] = None  # not trained yet: `wazuh-anomaly realtime train`
            else:
                from ..trust import read_trusted  # pathlib: only when there is a model to read
                try:
                    self._models[name] = RareEventModel.from_bytes(read_trusted(path), path)
                except (ModelError, ValueError, KeyError, TypeError) as exc:
                    self.problems.append(str(exc))
                    self._models[name] = None
        return self._models[name]

    def process(self, store, alert: dict, *, force_learn: bool = False, now: float | None = None) -> list:
        """The findings one alert raises (state updated in `store`; nothing written)."""
        rule = alert.get("rule") if isinstance(alert.get("rule"), dict) else {}
        data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
        if "anomaly" in (rule.get("groups") or ()) or data.get("integration") == "anomaly":
            return []  # our own alerts (rules 117xxx) would otherwise feed back into the detectors
        t = alert_time(alert)
        if t is None:
            t = time.time() if now is None else now
        found: list = []
        for det in self.detectors:
            state = store.get(det.name)
            findings, changed = det.observe(state, alert, t, force_learn=force_learn)
            if changed:
                store.mark(det.name)
            found.extend(_finding(f, alert) for f in findings)
        if not force_learn:
            for spec in self.model_specs:
                if not _detectors.matches(spec.get("filter") or {}, alert):
                    continue
                got = extract(spec["target"], alert, ignore_users=spec["ignore_users"],
                              ignore_path_prefixes=spec["ignore_path_prefixes"])
                if got is None:
                    continue
                model = self.model(spec)
                if model is None:
                    continue
                ev, tokens = got
                score = model.score_tokens(tokens)
                if score <= model.threshold:
                    continue
                found.append(_finding(self._rare_event(spec, model, ev, alert, score, t), alert))
        return found

    @staticmethod
    def _rare_event(spec: dict, model: RareEventModel, ev: dict, alert: dict, score: float, t: float) -> dict:
        if spec["target"] == "fim":
            value_field, value = "syscheck.path", ev["path"]
            what = f"rare file change ({ev['event'] or 'event'})"
            key_field, key = ("syscheck.uname_after", ev["user"]) if ev["user"] else ("agent.id", str((alert.get("agent") or {}).get("id", "")))
        else:
            value_field, value = "command", ev["command"] or ev["exe"]
            what = "rare command"
            key_field, key = "user", ev["user"] or "unknown"
        margin = (score - model.threshold) / max(1.0 - model.threshold, 1e-9)
        severity = spec["severity"]
        if margin >= 0.5 and severity in ("low", "medium", "high"):
            severity = {"low": "medium", "medium": "high", "high": "critical"}[severity]
        return {"detector": spec["name"], "type": "isolation_forest", "kind": "rare_event", "severity": severity,
                "description": spec["description"], "key_fields": [key_field], "key": key,
                "value_fields": [value_field], "value": value, "at": t, "score": score,
                "threshold": model.threshold, "what": what, "model_version": model.version,
                "alert_id": str(alert.get("id") or "")}
