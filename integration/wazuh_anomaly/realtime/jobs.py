"""The jobs behind `wazuh-anomaly realtime learn|train|status|validate` and the wodle's
scheduled training: each returns what the command prints (text, exit code), so the CLI
only parses arguments and prints."""
from __future__ import annotations

import gzip
import json
import os
import time
from typing import Iterable, Iterator

from ..core import jsonio as fastjson
from ..core import progress
from ..core.errors import WazuhAnomalyError
from ..core.fileio import atomic_write, read_bytes, take_damaged
from . import config as _config
from .engine import INPUT_STATE, RealtimeEngine
from .fields import alert_time
from .integration import Paths
from .store import FILE_MODE, StateStore, ensure_shared_dir, read_states

DAY = 86400.0


def _iso(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def alerts_from_files(files: Iterable[str]) -> Iterator[dict]:
    """Alerts of JSON-lines files (plain or .gz), malformed lines skipped."""
    for name in files:
        opener = gzip.open if name.endswith(".gz") else open
        try:
            with opener(name, "rt", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    try:
                        alert = fastjson.loads(line)
                    except ValueError:
                        continue
                    if isinstance(alert, dict):
                        yield alert
        except OSError as exc:
            raise WazuhAnomalyError(f"{name}: cannot read it ({exc.strerror}).") from None


def alerts_from_manager(prefix: str, start: float, end: float) -> Iterator[dict]:
    """Alerts of the manager's alerts.json and rotated files in [start, end)."""
    from ..core.config import load_config
    from ..core.paths import Layout
    from ..sources.alerts_file import AlertsFileSource
    cfg = load_config(Layout.from_env(prefix))
    for _, alert in AlertsFileSource(cfg.alerts_dir).read(start, end):
        yield alert


def _history(paths: Paths, files, start, end) -> Iterator[dict]:
    return alerts_from_files(files) if files else alerts_from_manager(paths.prefix, start, end)


def learn(prefix: str, *, files: list[str] = (), start: float | None = None, end: float | None = None,
          days: float | None = None, keep_learning: bool = False) -> tuple[str, int]:
    """Replay history through every detector in learn mode; unless keep_learning, learn mode
    ends at the end of the replayed range, so the next alert is already judged."""
    paths = Paths(prefix)
    cfg = _config.load(paths.config, paths.cache)
    now = time.time()
    end = now if end is None else end
    start = end - (days if days is not None else cfg["learn_days"]) * DAY if start is None else start
    engine = RealtimeEngine(cfg, paths.models)
    seen = 0
    newest = None
    with StateStore(paths.base) as store, progress.steps("learning: alerts replayed") as replayed:
        for alert in _history(paths, files, start, end):
            engine.process(store, alert, force_learn=True, now=end)
            seen += 1
            replayed.step()
            t = alert_time(alert)
            if t is not None and (newest is None or t > newest):
                newest = t
        # Files carry their own clock: learn mode ends just after their newest alert.
        learned_to = (newest + 1 if newest is not None else end) if files else end
        budget = realtime_budget(prefix, engine)
        for det in engine.detectors:
            state = store.get(det.name)
            if budget is not None:
                state["budget"] = budget      # this detector's share of the alert budget, alerts a day
                state.pop("needed", None)
                store.mark(det.name)
            # Every detector leaves learn mode here, also one that saw nothing: the first
            # sudo after a week without one is exactly what it is there to report.
            if not keep_learning:
                state.setdefault("created", learned_to)
                state["learn_end"] = learned_to
                store.mark(det.name)
    lines = [f"learned from {seen} alerts ({'files ' + ', '.join(files) if files else _iso(start) + ' to ' + _iso(end)})"
             + ("" if keep_learning else f"; learn mode ends at {_iso(learned_to)}")]
    lines += status_lines(prefix)
    return "\n".join(lines), 0


def realtime_budget(prefix: str, engine: RealtimeEngine) -> float | None:
    """Each gated first-seen detector's share of the installation's alert budget
    (config.yaml alerts_per_day and realtime_budget_share, beside the scenarios'
    budget_share), in alerts a day; None when the configuration cannot be read."""
    from ..core.config import load_config, load_scenarios, realtime_alerts_per_day
    from ..core.errors import ConfigError
    from ..core.paths import Layout
    from .detectors import GATED
    try:
        layout = Layout.from_env(prefix)
        config = load_config(layout)
        scenarios, _ = load_scenarios(layout.scenarios_dir)
    except (ConfigError, OSError):
        return None
    gated = [d for d in engine.detectors if d.spec["type"] in GATED] or [None]
    return realtime_alerts_per_day(config, scenarios) / len(gated)


def train(prefix: str, *, files: list[str] = (), start: float | None = None, end: float | None = None,
          days: float | None = None, only: list[str] | None = None) -> tuple[str, int]:
    """Train every enabled rare-event model on history and save it under
    var/anomaly/realtime/models: the given files or range, else each model's last
    `training_days` (or `days`) of the manager's alerts."""
    paths = Paths(prefix)
    cfg = _config.load(paths.config, paths.cache)
    specs = [m for m in cfg["models"] if m["enabled"] and (not only or m["name"] in only)]
    if not specs:
        return "no enabled model in " + paths.config, 0
    end = time.time() if end is None else end
    span = {spec["name"]: (days if days is not None else spec["training_days"]) * DAY for spec in specs}
    first = end - max(span.values()) if start is None else start
    since = {spec["name"]: None if files or start is not None else end - span[spec["name"]] for spec in specs}
    collected = _collect(specs, _history(paths, files, first, end), since)
    lines, code = [], 0
    outcomes = _outcomes(paths)
    with progress.steps("training real-time models", len(specs)) as training:
        for spec in specs:
            training.step(spec["name"])
            where = (f"{', '.join(files)}" if files else
                     f"the manager's alerts from {_iso(since[spec['name']] or first)} to {_iso(end)}")
            try:
                doc, path = _train_one(paths, spec, collected[spec["name"]], where)
            except WazuhAnomalyError as exc:
                lines.append(f"{spec['name']}: not trained: {exc}")
                outcomes[spec["name"]] = {"at": end, "trained": False, "why": str(exc)}
                code = 1
                continue
            outcomes.pop(spec["name"], None)
            lines.append(f"{spec['name']}: trained on {doc['training_events']} {spec['target']} events, "
                         f"threshold {doc['threshold']:.4f}, {len(doc['trees'])} trees, "
                         f"{os.path.getsize(path)} bytes -> {path}")
    _save_outcomes(paths, outcomes)
    return "\n".join(lines), code


def _collect(specs: list[dict], alerts: Iterable[dict], since: dict) -> dict:
    """One pass over the history: each model's training rows (small hashed vectors; the
    alerts themselves are never kept, so weeks of history cost what one alert costs)."""
    from ..realtime.train import TrainingRows
    collected = {spec["name"]: TrainingRows(spec, since.get(spec["name"])) for spec in specs}
    adders = [c.add for c in collected.values()]
    with progress.steps("reading alerts") as reading:
        for alert in alerts:
            t = alert_time(alert)
            for add in adders:
                add(alert, t)
            reading.step()
    return collected


def _train_one(paths: Paths, spec: dict, collected, where: str) -> tuple[dict, str]:
    """Fit one model on the rows collected for it and save it."""
    from ..realtime.train import fit, save
    doc = fit(spec, collected.rows, where=where)
    if collected.seen > len(collected.rows):
        doc["events_seen"] = collected.seen      # the rows are a uniform sample of these
    return doc, save(doc, paths.models)


# Why each model that could not be trained was not (for `status`): model -> {at, trained, why}.
OUTCOMES_FILE = "training-outcomes.json"


def _outcomes(paths: Paths) -> dict:
    try:
        data = json.loads(read_bytes(os.path.join(paths.base, OUTCOMES_FILE)))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_outcomes(paths: Paths, outcomes: dict) -> None:
    ensure_shared_dir(paths.base)
    atomic_write(os.path.join(paths.base, OUTCOMES_FILE), json.dumps(outcomes, sort_keys=True).encode(), FILE_MODE)


# How long the wodle waits before it tries again to train a model that could not be
# trained (too few events in the history, or an error): reading weeks of alerts every
# five minutes would cost more than the model is worth.
RETRY_SECONDS = DAY
FAILURES_FILE = "training-failures.json"


def scheduled_train(prefix: str, now: float) -> list[tuple[str, str, str]]:
    """What the wodle runs after scoring: train each enabled model with
    `retrain_every_days` > 0 that is missing or older than that, on its last
    `training_days` of the manager's alerts. Returns (model, outcome, message) with
    outcome "trained", "insufficient_history" or "training_failed"; a model that could
    not be trained is tried again a day later."""
    from ..realtime.train import TooFewEvents
    paths = Paths(prefix)
    if not os.path.isfile(paths.config):
        return []
    cfg = _config.load(paths.config, paths.cache)
    failures_path = os.path.join(paths.base, FAILURES_FILE)
    try:
        attempts = json.loads(read_bytes(failures_path))
        if not isinstance(attempts, dict):
            attempts = {}
    except (OSError, ValueError):
        attempts = {}
    due = []
    for spec in cfg["models"]:
        every = spec["retrain_every_days"] * DAY
        if not spec["enabled"] or every <= 0:
            continue
        try:
            trained_at = os.stat(os.path.join(paths.models, f"{spec['name']}.json")).st_mtime
        except FileNotFoundError:
            trained_at = None
        if trained_at is not None and now - trained_at < every:
            continue
        failed = attempts.get(spec["name"])  # only failed attempts are kept
        if isinstance(failed, (int, float)) and 0 <= now - failed < RETRY_SECONDS:
            continue
        due.append(spec)
    if not due:
        return []
    days = max(spec["training_days"] for spec in due)
    since = {spec["name"]: now - spec["training_days"] * DAY for spec in due}
    collected = _collect(due, alerts_from_manager(paths.prefix, now - days * DAY, now), since)
    outcomes = _outcomes(paths)
    out = []
    for spec in due:
        attempts[spec["name"]] = now
        where = (f"the last {spec['training_days']:g} days of the manager's alerts "
                 f"({_iso(since[spec['name']])} to {_iso(now)})")
        try:
            doc, path = _train_one(paths, spec, collected[spec["name"]], where)
        except WazuhAnomalyError as exc:
            check = "insufficient_history" if isinstance(exc, TooFewEvents) else "training_failed"
            out.append((spec["name"], check, f"real-time {str(exc).rstrip('.')}; the wodle tries again in a day."))
            outcomes[spec["name"]] = {"at": now, "trained": False, "why": str(exc)}
            continue
        outcomes.pop(spec["name"], None)
        del attempts[spec["name"]]
        out.append((spec["name"], "trained", f"{spec['name']}: trained on {doc['training_events']} {spec['target']} "
                                             f"events of the last {spec['training_days']:g} days -> {path}"))
    ensure_shared_dir(paths.base)
    atomic_write(failures_path, json.dumps(attempts, sort_keys=True).encode(), FILE_MODE)
    _save_outcomes(paths, outcomes)
    return out


def status_lines(prefix: str) -> list[str]:
    paths = Paths(prefix)
    cfg = _config.load(paths.config, paths.cache)
    states = read_states(paths.base)
    engine = RealtimeEngine(cfg, paths.models)
    lines = []
    for det in engine.detectors:
        st = states.get(det.name, {})
        keys = st.get("keys") or {}
        until = det.learn_until(st) if st else None
        if until is None:
            mode = "not started (no alert seen yet)"
        else:
            mode = f"learning until {_iso(until)}" if det.learning(st, time.time()) else f"detecting since {_iso(until)}"
            if not st.get("started"):
                mode += " (no matching alert yet" + ("" if det.learning(st, time.time()) else
                                                     "; the first one is judged") + ")"
        entries = [e for e in keys.values() if isinstance(e, dict)]
        n_values = sum(len(e["values"]) for e in entries if isinstance(e.get("values"), list))
        full = sum(1 for e in entries if e.get("full"))
        lines.append(f"{det.name} ({det.spec['type']}): {mode}; {len(keys)} keys"
                     + (f", {n_values} values" if det.spec["type"] == "new_value" else "")
                     + (f", {full} keys at the value cap" if full else "")
                     + (f", {st['dropped_keys']} keys over the cap not tracked" if st.get("dropped_keys") else "")
                     + (f", {st['dropped_values']} values over the caps not learned" if st.get("dropped_values") else "")
                     + (f", {st['reset_keys']} damaged keys learned again" if st.get("reset_keys") else "")
                     + f"; {st.get('findings', 0)} findings, last {_iso(st.get('last_finding'))}"
                     + (f"; {st['held']} first-seen values held back (no burst, docs/budget.md)" if st.get("held") else ""))
    lines += _model_lines(paths, engine)
    skipped = states.get(INPUT_STATE) or {}
    if skipped:
        lines.append("skipped input (alerts no detector could use; details in logs/integrations.log): "
                     + ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items())))
    lines += service_lines(prefix)
    lines += [f"problem: {p}" for p in engine.problems + take_damaged()]
    return lines


def _model_lines(paths: Paths, engine: RealtimeEngine) -> list[str]:
    """One line per rare-event model: what it was trained on, or exactly why it was not."""
    outcomes = _outcomes(paths)
    lines = []
    for spec in engine.model_specs:
        model = engine.model(spec)
        if model is None:
            failed = outcomes.get(spec["name"]) if isinstance(outcomes.get(spec["name"]), dict) else None
            why = (f"not trained: {str(failed.get('why')).rstrip('.')} (tried {_iso(failed.get('at'))})" if failed else
                   "not trained yet; the scheduled run trains it, or run 'wazuh-anomaly realtime train'")
            lines.append(f"{spec['name']} (rare {spec['target']} events): {why}")
        else:
            lines.append(f"{spec['name']} (rare {spec['target']} events): trained {model.doc.get('trained_at')} on "
                         f"{model.doc.get('training_events')} events, threshold {model.threshold:.4f}")
    return lines


def model_status_lines(prefix: str) -> list[str]:
    """The rare-event models' lines of `realtime status`, for `wazuh-anomaly status`."""
    paths = Paths(prefix)
    if not os.path.isfile(paths.config):
        return []
    return _model_lines(paths, RealtimeEngine(_config.load(paths.config, paths.cache), paths.models))


def service_lines(prefix: str) -> list[str]:
    """Where the real-time service is in alerts.json and what it did since its last start."""
    from .service import CHECKPOINT_NAME, read_checkpoint
    doc = read_checkpoint(prefix)
    if doc is None:
        return []
    stats = doc.get("stats") if isinstance(doc.get("stats"), dict) else {}
    mark = (doc.get("position") or {}).get("file") if isinstance(doc.get("position"), dict) else None
    mark = mark if isinstance(mark, dict) else {}
    try:
        committed = _iso(os.path.getmtime(os.path.join(Paths(prefix).base, CHECKPOINT_NAME)))
    except OSError:
        committed = "-"
    skipped = stats.get("skipped") if isinstance(stats.get("skipped"), dict) else {}
    return [f"service: {doc.get('input')} read to line {mark.get('line', 0)} (byte {mark.get('offset', 0)}), "
            f"last commit {committed}; since its last start {stats.get('alerts', 0)} alerts judged, "
            f"{stats.get('findings', 0)} findings written"
            + (", skipped " + ", ".join(f"{n} {r}" for r, n in sorted(skipped.items())) if skipped else "")]


def status(prefix: str) -> tuple[str, int]:
    return "\n".join(status_lines(prefix)), 0


def validate(prefix: str) -> tuple[str, int]:
    paths = Paths(prefix)
    cfg = _config.load(paths.config, paths.cache, revalidate=True)   # and compiled for the per-alert path
    return (f"{paths.config}: {len(cfg['detectors'])} detectors, {len(cfg['models'])} models, "
            f"learn_days {cfg['learn_days']:g}, max_keys {cfg['max_keys']}, max_values_per_key {cfg['max_values_per_key']}"), 0

