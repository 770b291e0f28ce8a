"""Repeats and escalation of time-series anomalies, decided from event time.

An anomaly's `repeat` counts the anomalies of the same scenario whose window started
within the hour of event time that ends with its own window start (its own window
included, so anomalies of one bucket count each other): `entity` for the same entity,
`scenario` for any entity of the scenario. At
`ESCALATE_AT` or more of either the anomaly is escalated; the rules map
`anomaly.escalated` to the scenario's own escalated rule (level 13, same group and
MITRE), so the result depends only on the anomalies and their timestamps: not on the
order or the time the manager reads the lines, nor on how runs are cut (a day of
catch-up in one run writes what 288 five-minute runs would).

Counting is over the anomalies written before (the `AnomalyLog`'s state, 35 days, keyed
by id, so a replayed anomaly is never counted twice) and the ones written with it (a
run writes every entity of a bucket together); an anomaly counts only windows that
start at or before its own, so one written later for an older window (a backfill with
`detect`) never changes the count of a line already written. Suppressed anomalies and other kinds are never counted nor escalated.
Severity is left as the detector measured it.
"""
from __future__ import annotations

from bisect import bisect_right, insort

from ..core.eventtext import parse_iso

# An anomaly counts the anomalies whose window started less than this before its own.
WINDOW_SECONDS = 3600
# This many in the window (this one included) escalate.
ESCALATE_AT = 3


class Repeat:
    """How many anomalies of the scenario (and of the entity) fell in the hour up to this one."""

    __slots__ = ("entity", "scenario")

    def __init__(self, entity: int, scenario: int):
        self.entity = entity
        self.scenario = scenario

    @property
    def escalated(self) -> bool:
        return self.entity >= ESCALATE_AT or self.scenario >= ESCALATE_AT

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Repeat) and (self.entity, self.scenario) == (other.entity, other.scenario)

    def __repr__(self) -> str:
        return f"Repeat(entity={self.entity}, scenario={self.scenario})"


def series_of_event(event: dict) -> tuple[str, str, float] | None:
    """(scenario, entity key, window start in epoch seconds) of a schema v1 event that
    counts for escalation; None for health events, other kinds, suppressed anomalies and
    lines that are not ours. Taken from the event as written, so the live path and the
    recovery from anomalies.json build the same keys."""
    body = event.get("anomaly") if isinstance(event, dict) else None
    if not isinstance(body, dict) or body.get("kind") != "timeseries" or body.get("suppressed") == "true":
        return None
    scenario = body.get("scenario")
    window = body.get("window")
    if not isinstance(scenario, str) or not isinstance(window, dict):
        return None
    try:
        start = parse_iso(window.get("start"))
    except (TypeError, ValueError):
        return None
    if start is None:
        return None
    entity = body.get("entity")
    key = ""
    if isinstance(entity, dict) and isinstance(entity.get("field"), str) and isinstance(entity.get("value"), str):
        key = f"{entity['field']}={entity['value']}"
    return scenario, key, start.timestamp()


class RepeatHistory:
    """The counted anomalies: scenario -> sorted [window start, id, entity key]."""

    def __init__(self, data: dict | None = None):
        self.series: dict[str, list[tuple[float, str, str]]] = {}
        self.ids: set[str] = set()
        for scenario, items in (data or {}).items() if isinstance(data, dict) else ():
            if not isinstance(items, list):
                continue
            kept = []
            for item in items:
                try:
                    start, ident, entity = float(item[0]), str(item[1]), str(item[2])
                except (TypeError, ValueError, IndexError, KeyError):
                    continue   # a damaged entry: that anomaly is no longer counted
                if start == start and abs(start) != float("inf") and ident not in self.ids:
                    self.ids.add(ident)
                    kept.append((start, ident, entity))
            if kept:
                self.series[str(scenario)] = sorted(kept)

    def add(self, ident: str, scenario: str, entity: str, start: float) -> None:
        if ident in self.ids:
            return
        self.ids.add(ident)
        insort(self.series.setdefault(scenario, []), (start, ident, entity))

    def count(self, scenario: str, entity: str, start: float) -> Repeat:
        """The repeats of an anomaly of `scenario` and `entity` whose window starts at
        `start`, among those known (add it first: it counts itself)."""
        items = self.series.get(scenario, [])
        lo = bisect_right(items, start - WINDOW_SECONDS, key=_start)   # strictly after start - window
        hi = bisect_right(items, start, key=_start)                    # up to its own window, all of it
        window = items[lo:hi]
        return Repeat(entity=sum(1 for _, _, e in window if e == entity), scenario=len(window))

    def keep_only(self, ids) -> None:
        """Forgets anomalies whose ids the id store no longer keeps."""
        for scenario in list(self.series):
            items = [x for x in self.series[scenario] if x[1] in ids]
            if items:
                self.series[scenario] = items
            else:
                del self.series[scenario]
        self.ids = {x[1] for items in self.series.values() for x in items}

    def to_json(self) -> dict:
        return {scenario: [[start, ident, entity] for start, ident, entity in items]
                for scenario, items in sorted(self.series.items())}


def repeats_of(events: list[dict]) -> list[Repeat | None]:
    """The repeats of a set of events on their own (no history): what the log would write
    for them on an empty state. Used where no state exists (backtests, explanations)."""
    history = RepeatHistory()
    series = [series_of_event(e) for e in events]
    for e, s in zip(events, series):
        if s is not None:
            history.add(str(e["anomaly"].get("id")), *s)
    return [None if s is None else history.count(*s) for s in series]


def _start(item: tuple[float, str, str]) -> float:
    return item[0]

