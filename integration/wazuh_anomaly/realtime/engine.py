"""Runs the configured detectors and rare-event models over alerts (one at a time)."""
from __future__ import annotations

import os
import time

from ..core.errors import ModelError
from . import detectors as _detectors
from .fields import alert_time, first
from .rarity import RareEventModel, extract

# An alert stamped further ahead of the clock than this is skipped (and counted): learned
# as it is, a year-9999 timestamp would keep a detector in learn mode for ever.
FUTURE_SECONDS = 86400.0
# The store's document of input skipped per reason (future_timestamp, bad_alert), for `realtime status`.
INPUT_STATE = "skipped-input"


def _file_signature(path: str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size


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
        self._model_files: dict[str, tuple | None] = {}
        self.problems: list[str] = []

    def refresh_models(self) -> None:
        """Forget each model whose file changed since it was read (retrained by `realtime
        train` or the wodle, or trained at last): a long-running service reads it again."""
        for name in list(self._models):
            if _file_signature(os.path.join(self.models_dir, f"{name}.json")) != self._model_files.get(name):
                del self._models[name]

    def model(self, spec: dict) -> RareEventModel | None:
        """The trained model of a spec (read once, refused when someone else could have written it)."""
        name = spec["name"]
        if name not in self._models:
            path = os.path.join(self.models_dir, f"{name}.json")
            self._model_files[name] = _file_signature(path)
            if not os.path.exists(path):
                self._models[name] = None  # not trained yet: `wazuh-anomaly realtime train`
            else:
                from ..core.trust import read_trusted  # pathlib: only when there is a model to read
                try:
                    self._models[name] = RareEventModel.from_bytes(read_trusted(path), path)
                except (ModelError, ValueError, KeyError, TypeError) as exc:
                    self.problems.append(str(exc))
                    self._models[name] = None
        return self._models[name]

    def process(self, store, alert: dict, *, force_learn: bool = False, now: float | None = None) -> list:
        """The findings one alert raises (state updated in `store`; nothing written).
        Whatever the alert's shape, a detector that cannot use it skips it with one
        sentence in `problems`; the other detectors still see it."""
        rule = alert.get("rule") if isinstance(alert.get("rule"), dict) else {}
        data = alert.get("data") if isinstance(alert.get("data"), dict) else {}
        groups = rule.get("groups")
        if (isinstance(groups, list) and "anomaly" in groups) or data.get("integration") == "anomaly":
            return []  # our own alerts (rules 117xxx) would otherwise feed back into the detectors
        clock = time.time() if now is None else now
        t = alert_time(alert)
        if t is None:
            t = clock
        elif t > time.time() + FUTURE_SECONDS:
            self.skipped("future_timestamp", alert, store, f"stamped {alert.get('timestamp') or alert.get('@timestamp')}, "
                                                        f"more than a day ahead of this manager's clock")
            return []
        found: list = []
        for det in self.detectors:
            state = store.get(det.name)
            try:
                findings, changed = det.observe(state, alert, t, force_learn=force_learn)
                # A finding held back until its burst (detectors.py) carries its own alert's outline.
                found.extend(_finding(f, f.pop("_alert", None) or alert) for f in findings)
            except Exception as exc:  # noqa: BLE001 - an odd alert costs this detector this alert
                self.skipped("bad_alert", alert, store, f"detector {det.name} could not use it "
                                                        f"({type(exc).__name__}: {str(exc)[:100]})")
                continue
            if changed:
                store.mark(det.name)
        if not force_learn:
            try:
                found.extend(self._rare_events(alert, t))
            except Exception as exc:  # noqa: BLE001
                self.skipped("bad_alert", alert, store, f"the rare-event models could not use it "
                                                        f"({type(exc).__name__}: {str(exc)[:100]})")
        return found

    def skipped(self, reason: str, alert: dict, store, why: str) -> None:
        """One sentence in `problems`, and a count per reason in the store's `input` state."""
        ident = alert.get("id")
        self.problems.append(f"alert {ident if isinstance(ident, str) else '(no id)'} skipped ({reason}): {why}.")
        counts = store.get(INPUT_STATE)
        n = counts.get(reason)
        counts[reason] = n + 1 if type(n) is int else 1
        store.mark(INPUT_STATE)

    def _rare_events(self, alert: dict, t: float) -> list:
        found: list = []
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
            score = model.rarity(tokens)
            if score <= model.threshold:
                continue
            found.append(_finding(self._rare_event(spec, model, ev, alert, score, t), alert))
        return found

    @staticmethod
    def _rare_event(spec: dict, model: RareEventModel, ev: dict, alert: dict, score: float, t: float) -> dict:
        if spec["target"] == "fim":
            value_field, value = "syscheck.path", ev["path"]
            what = f"rare file change ({ev['event'] or 'event'})"
            key_field, key = ("syscheck.uname_after", ev["user"]) if ev["user"] else ("agent.id", first(alert, "agent.id") or "")
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
                "alert_id": first(alert, "id") or ""}
