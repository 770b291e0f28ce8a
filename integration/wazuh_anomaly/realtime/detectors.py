"""The first-seen family (in the spirit of logdata-anomaly-miner): each detector learns
from the alerts it sees until its learn mode ends, then reports what it never saw.

- `new_value`: a value (or a combination of values) never seen for its key, e.g. a
  rule id an agent never raised, a user never logged into a host, a command a user
  never ran, a source address a user never logged in from.
- `value_range`: a number outside the range learned for its key (with a margin).
- `frequency`: the number of matching alerts per key and window above (or below) the
  band learned from complete windows.

A detector's state is a plain dict (saved by `store.StateStore`), bounded: at most
`max_keys` keys and `max_values_per_key` values per key, at most MAX_VALUES values in
all, and each key or value at most MAX_VALUE_CHARS characters (a longer one is kept as
its first characters and a checksum of the whole, so it still compares exactly). A key
that reaches the value cap is marked `full` and no longer reported on: a key with that
many values is too varied for a first-seen value to mean anything. Keys beyond
`max_keys` are counted in `dropped_keys`, values beyond a cap in `dropped_values`, and
neither is tracked. Time is the alert's own timestamp, so replaying
history (`wazuh-anomaly realtime learn`) behaves exactly as the live path did.
"""
from __future__ import annotations

from ..core.filters import Condition, compile_filter
from .fields import first

DAY = 86400.0
# A learned key or value longer than this is kept as its first characters and a checksum
# (a 60 KB command line would otherwise be stored, and read back for every alert, whole).
MAX_VALUE_CHARS = 256
# Learned values per detector in all keys together: the state file stays small enough to
# be read for every alert (5000 keys x 200 values of long command lines made a 31 MB one).
MAX_VALUES = 50_000
KIND_OF_TYPE = {"new_value": "rare_value", "value_range": "rare_value", "frequency": "rare_value"}

# The alert budget (issue 14): first-seen values are not rare in themselves (a busy
# network meets a few new ones every day), so a new_value or value_range detector
# raises only a burst of them that its own learned novelty rate makes improbable: k or
# more within BURST_MINUTES, where P(N >= k) under a Poisson law with the rate seen in
# the second half of learning is at most the detector's share of the real-time budget
# per window. `realtime learn` stores that share (state "budget", alerts a day) from
# config.yaml; a detector that learned live uses DEFAULT_BUDGET.
BURST_MINUTES = 10
DEFAULT_BUDGET = 0.125 / 9            # the shipped split: 1 a day, 7 scenarios + real time, 9 detectors
MIN_LEARNED_SECONDS = DAY             # less learning than this gives no novelty rate: every finding is raised
MAX_NOVEL = 5000                      # learned novelty times kept per detector
GATED = ("new_value", "value_range")
MAX_HELD = 20                         # findings held back per window, raised with the burst they start


def _alert_outline(alert: dict) -> dict:
    """What a finding's line names of its alert (events.RareFinding.to_event), kept while held."""
    out: dict = {}
    for name in ("id",):
        if isinstance(alert.get(name), str):
            out[name] = bounded(alert[name])
    for section, keys in (("rule", ("id",)), ("agent", ("id", "name")), ("data", ("srcip",))):
        part = alert.get(section)
        if isinstance(part, dict):
            kept = {k: bounded(part[k]) for k in keys if isinstance(part.get(k), str)}
            if kept:
                out[section] = kept
    return out


def poisson_tail(k: int, rate: float) -> float:
    """P(N >= k) for N ~ Poisson(rate)."""
    from math import exp
    if k <= 0:
        return 1.0
    term = total = exp(-rate)
    for i in range(1, k):
        term *= rate / i
        total += term
    return max(1.0 - total, 0.0)


def burst_needed(state: dict, learn_end: float | None) -> int:
    """How many first-seen findings within BURST_MINUTES make a burst worth raising."""
    novel = [t for t in state.get("novel") or [] if _number(t)]
    started = state.get("started")
    end = learn_end if _number(learn_end) else (max(novel) if novel else None)
    if not _number(started) or end is None or end - started < MIN_LEARNED_SECONDS:
        return 1      # no novelty rate to go by yet: every first-seen value is raised
    half = started + (end - started) / 2
    windows = max((end - half) / (BURST_MINUTES * 60), 1.0)
    rate = sum(1 for t in novel if half <= t <= end) / windows
    budget = state.get("budget") if _number(state.get("budget")) and state["budget"] > 0 else DEFAULT_BUDGET
    p_alert = budget / (1440 / BURST_MINUTES)
    k = 1
    while poisson_tail(k, rate) > p_alert and k < 1000:
        k += 1
    return k


_compiled: dict = {}   # id of a filter -> (the filter, its predicate)


def matches(filt, alert: dict) -> bool:
    """Does the alert pass a detector's filter (a list of conditions of the one filter
    language, core/filters.py, as the validated configuration holds them)?"""
    if not filt:
        return True
    hit = _compiled.get(id(filt))
    if hit is None or hit[0] is not filt:
        hit = (filt, compile_filter([Condition.from_dict(c) for c in filt]))
        _compiled[id(filt)] = hit
    return hit[1](alert)


def _key(alert: dict, fields: list[str]) -> str | None:
    parts = []
    for f in fields:
        v = first(alert, f)
        if v is None or v == "":
            return None
        parts.append(v)
    return bounded("\x1f".join(parts))


def bounded(text: str) -> str:
    """`text`, or for a longer one its first characters and a checksum of the whole."""
    if len(text) <= MAX_VALUE_CHARS:
        return text
    from zlib import crc32     # only for a long value: not on every alert's path

    tail = f"...[{len(text)} chars, crc {crc32(text.encode('utf-8', 'surrogatepass')):08x}]"
    return text[:MAX_VALUE_CHARS - len(tail)] + tail


def _drop_value(state: dict) -> None:
    state["dropped_values"] = state.get("dropped_values", 0) + 1


class Detector:
    """Shared learn-mode and key bookkeeping; subclasses implement `_observe`."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.name = spec["name"]
        self.kind = KIND_OF_TYPE[spec["type"]]
        self._novel = False

    def learn_until(self, state: dict) -> float | None:
        if state.get("learn_end") is not None:  # set by `realtime learn` or `realtime detect-now`
            return state["learn_end"]
        if self.spec.get("learn_until") is not None:
            return self.spec["learn_until"]
        # Learn mode runs from when the detector was first configured, not from its first
        # matching alert: a detector that saw nothing while learning (no sudo in a week)
        # judges the first one that comes (the first escalation), it does not start learning then.
        created = state.get("created", state.get("started"))
        return None if created is None else created + self.spec["learn_days"] * DAY

    def learning(self, state: dict, t: float) -> bool:
        until = self.learn_until(state)
        return until is None or t < until

    def observe(self, state: dict, alert: dict, t: float, *, force_learn: bool = False) -> tuple[list[dict], bool]:
        """(findings, whether the state changed) for one alert at time t."""
        created = "created" not in state
        if created:
            # The detector exists from its first alert of any kind (an older state: from its first match).
            state["created"] = state.get("started", t)
        if not matches(self.spec.get("filter") or {}, alert):
            return [], created
        key = _key(alert, self.spec["key"]) if self.spec["key"] else ""
        if key is None or (self.spec["value"] and _key(alert, self.spec["value"]) is None):
            return [], created  # the alert lacks the key or the value: not this detector's event
        changed = created
        if "started" not in state:
            state["started"] = t
            changed = True
        keys = state.setdefault("keys", {})
        entry = keys.get(key)
        if entry is not None and not self._sane(entry):
            del keys[key]                  # a damaged entry in a hand-edited state: learned again
            state["reset_keys"] = state.get("reset_keys", 0) + 1
            state.pop("values_total", None)
            entry = None
        if entry is None:
            if len(keys) >= self.spec["max_keys"]:
                state["dropped_keys"] = state.get("dropped_keys", 0) + 1
                return [], True
            entry = keys[key] = {"since": t}
            changed = True
        learning = force_learn or self.learning(state, t) or t < entry["since"] + self.spec["new_key_learn_hours"] * 3600
        self._novel = False
        findings, entry_changed = self._observe(entry, alert, t, learning, state)
        for f in findings:
            f.update(detector=self.name, type=self.spec["type"], kind=self.kind,
                     severity=f.get("severity", self.spec["severity"]),
                     description=self.spec["description"], key_fields=self.spec["key"], key=key, at=t,
                     since=state["started"])
        if self.spec["type"] in GATED:
            if learning and self._novel and t >= entry["since"] + self.spec["new_key_learn_hours"] * 3600:
                # What would have been a finding had learning been over: the novelty rate.
                novel = state.setdefault("novel", [])
                novel.append(t)
                del novel[:-MAX_NOVEL]
                changed = True
            elif findings:
                findings = self._burst(state, t, findings, alert)
                changed = True
        if findings:
            state["findings"] = state.get("findings", 0) + len(findings)
            state["last_finding"] = t
        return findings, changed or entry_changed or bool(findings)

    def _observe(self, entry: dict, alert: dict, t: float, learning: bool, state: dict) -> tuple[list[dict], bool]:
        raise NotImplementedError

    def _burst(self, state: dict, t: float, findings: list[dict], alert: dict) -> list[dict]:
        """The findings, once this window holds a burst the learned novelty rate makes
        rarer than the detector's budget allows, with the ones held back earlier in the
        window (each with its own time and alert); before that none."""
        width = BURST_MINUTES * 60
        window = t - t % width
        burst = state.get("burst")
        if not isinstance(burst, dict) or burst.get("w") != window or not isinstance(burst.get("c"), int):
            burst = state["burst"] = {"w": window, "c": 0}
        burst["c"] += len(findings)
        needed = state.get("needed")
        if not isinstance(needed, int) or state.get("needed_for") != state.get("learn_end"):
            needed = state["needed"] = burst_needed(state, self.learn_until(state))
            state["needed_for"] = state.get("learn_end")
        if burst["c"] < needed:
            state["held"] = state.get("held", 0) + len(findings)
            held = burst.setdefault("held", [])
            for f in findings:
                if len(held) < MAX_HELD:
                    held.append({**f, "_alert": _alert_outline(alert)})
            return []
        released = burst.pop("held", [])
        for f in released + findings:
            f["burst"] = burst["c"]
        return released + findings

    # entry field -> the types it may hold; anything else means the entry is damaged
    FIELDS: dict = {}

    def _sane(self, entry) -> bool:
        if not isinstance(entry, dict) or not _number(entry.get("since")):
            return False
        for name, kinds in self.FIELDS.items():
            value = entry.get(name)
            if value is None:
                continue
            if not isinstance(value, kinds) or (isinstance(value, bool) and kinds is not bool):
                return False
        return True


def _length(values) -> int:
    return len(values) if isinstance(values, list) else 0


def _number(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and value == value


class NewValue(Detector):
    FIELDS = {"values": list, "full": bool}

    def _observe(self, entry, alert, t, learning, state):
        value = _key(alert, self.spec["value"])
        if value is None:
            return [], False
        known = entry.setdefault("values", [])
        if value in known:
            return [], False
        if len(known) >= self.spec["max_values_per_key"]:
            if not entry.get("full"):   # `full` says the key drops its new values (status counts them)
                entry["full"] = True
                return [], True
            return [], False
        total = state.get("values_total")
        if not _number(total):
            total = sum(_length(e.get("values")) for e in state["keys"].values() if isinstance(e, dict))
        if total >= MAX_VALUES:
            _drop_value(state)
            return [], True
        state["values_total"] = total + 1
        known.append(value)
        self._novel = True
        if learning or entry.get("full"):
            return [], True
        return [{"value_fields": self.spec["value"], "value": value, "known": len(known) - 1,
                 "score": 1.0, "threshold": 1.0,
                 "what": "new combination" if len(self.spec["value"]) > 1 else "new value"}], True


class ValueRange(Detector):
    FIELDS = {"lo": (int, float), "hi": (int, float), "reported": list}

    def _observe(self, entry, alert, t, learning, state):
        raw = first(alert, self.spec["value"][0])
        try:
            x = float(raw)
        except (TypeError, ValueError, OverflowError):
            return [], False
        if x != x or x in (float("inf"), float("-inf")):
            return [], False                # "nan", "1e999": not a value a range can learn
        lo, hi = entry.get("lo"), entry.get("hi")
        if learning or lo is None:
            if lo is None or x < lo or x > hi:
                if lo is not None:
                    span = max(hi - lo, abs(hi) * 0.01, 1e-9) * self.spec["margin"]
                    self._novel = not (lo - span <= x <= hi + span)   # would have been reported
                entry["lo"] = x if lo is None else min(lo, x)
                entry["hi"] = x if hi is None else max(hi, x)
                return [], True
            return [], False
        span = max(hi - lo, abs(hi) * 0.01, 1e-9) * self.spec["margin"]
        if lo - span <= x <= hi + span:
            return [], False
        raw = bounded(raw)
        reported = entry.setdefault("reported", [])
        if raw in reported:
            return [], False  # each out-of-range value is reported once per key
        if len(reported) < self.spec["max_values_per_key"]:
            reported.append(raw)
        else:
            _drop_value(state)
        return [{"value_fields": self.spec["value"], "value": raw, "expected_low": lo, "expected_high": hi,
                 "score": x, "threshold": hi + span if x > hi else lo - span,
                 "what": "value above its learned range" if x > hi else "value below its learned range"}], True


class Frequency(Detector):
    FIELDS = {"w": (int, float), "c": int, "fired": bool, "lo": (int, float), "hi": (int, float), "n": int}

    def _observe(self, entry, alert, t, learning, state):
        if self.spec["value"] and _key(alert, self.spec["value"]) is None:
            return [], False
        width = self.spec["window_minutes"] * 60
        window = t - t % width
        findings: list[dict] = []
        current = entry.get("w")
        if current is None:
            entry.update(w=window, c=0, fired=False)
        elif window > current:
            closed = entry.get("c", 0)
            gap = int((window - current) // width) - 1  # complete windows without a single alert
            learned = entry.get("n", 0) >= self.spec["min_windows"]
            if learning or not learned:
                seen = [closed] + ([0] if gap > 0 else [])
                entry["lo"] = min([entry["lo"], *seen]) if "lo" in entry else min(seen)
                entry["hi"] = max([entry["hi"], *seen]) if "hi" in entry else max(seen)
                entry["n"] = entry.get("n", 0) + 1 + max(gap, 0)
            elif closed < entry["lo"] * (1 - self.spec["tolerance"]):
                findings.append(self._finding(entry, closed, current, width, "alerts per window below the learned band"))
            entry.update(w=window, c=0, fired=False)
        elif window < current:
            return [], False  # a late alert of a window already closed
        entry["c"] = entry.get("c", 0) + 1
        learned = entry.get("n", 0) >= self.spec["min_windows"]
        if not learning and learned and not entry.get("fired") and entry["c"] > entry["hi"] * (1 + self.spec["tolerance"]):
            entry["fired"] = True
            findings.append(self._finding(entry, entry["c"], window, width, "alerts per window above the learned band"))
        return findings, True

    def _finding(self, entry, count, window, width, what):
        above = count > entry["hi"]
        return {"value_fields": ["alerts_per_window"], "value": str(count), "window_start": window,
                "window_end": window + width, "expected_low": entry["lo"], "expected_high": entry["hi"],
                "score": float(count),
                "threshold": entry["hi"] * (1 + self.spec["tolerance"]) if above else entry["lo"] * (1 - self.spec["tolerance"]),
                "what": what}


TYPES = {"new_value": NewValue, "value_range": ValueRange, "frequency": Frequency}


def build(spec: dict) -> Detector:
    return TYPES[spec["type"]](spec)
