"""Suppressions: known-benign activity an admin silences without losing it.

A suppression names what it covers (scenario, optionally an entity and the feature that
leads the anomaly) and when: a fixed window (`--from/--to`) or a recurring maintenance
window (`--every "sun 02:00-04:00"`, days `mon`..`sun`, ranges `mon-fri`, or `daily`;
times in UTC like the buckets; an end before the start runs past midnight). It has a
reason and an optional expiry. A suppressed anomaly is still written to anomalies.json,
with `anomaly.suppressed: "true"` and the reason, and maps to the level-0 rule 117108,
so it is searchable but raises no alert and no escalation. Suppressed periods are also
left out of the next training (runner: exclusions).

Stored in `var/anomaly/state/suppressions.json`, written atomically.
"""
from __future__ import annotations

import dataclasses
import getpass
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

from ..core.errors import ConfigError
from ..core.eventtext import iso, parse_iso, stable_id
from ..core.findings import Anomaly
from ..core.state import atomic_write_json, read_json, state_dir_of

FILE_NAME = "suppressions.json"
# What a damaged file costs (it is moved aside and reported, the rest goes on).
IF_DAMAGED = ('the suppressions it held no longer apply: restore them from that copy or add them '
              'again with "wazuh-anomaly suppress add"')
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_EVERY_RE = re.compile(r"^\s*(?P<days>[a-z,\-]+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")


def _minutes(text: str, spec: str) -> int:
    hours, minutes = (int(x) for x in text.split(":"))
    if hours > 24 or minutes > 59 or hours * 60 + minutes > 1440:
        raise ConfigError(f"--every '{spec}': '{text}' is not a time of day (00:00 to 24:00).")
    return hours * 60 + minutes


def parse_every(spec: str) -> tuple[tuple[int, ...], int, int]:
    """'mon-fri 22:00-23:30' -> (weekdays 0..6, start minute, end minute) in UTC."""
    match = _EVERY_RE.match(spec.lower())
    if not match:
        raise ConfigError(f"--every '{spec}' is not a recurring window; use DAYS HH:MM-HH:MM such as "
                          f"'sun 02:00-04:00', 'mon-fri 22:00-23:30' or 'daily 01:00-01:30' (UTC).")
    days: set[int] = set()
    for part in match.group("days").split(","):
        if part == "daily":
            days.update(range(7))
            continue
        ends = part.split("-")
        if len(ends) > 2 or any(e not in DAYS for e in ends):
            raise ConfigError(f"--every '{spec}': '{part}' is not a day; use {', '.join(DAYS)}, a range such as "
                              f"mon-fri, or daily.")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        days.update(range(first, last + 1) if first <= last else list(range(first, 7)) + list(range(0, last + 1)))
    start, end = _minutes(match.group("start"), spec), _minutes(match.group("end"), spec)
    if start == end:
        raise ConfigError(f"--every '{spec}': the window starts and ends at the same time.")
    return tuple(sorted(days)), start, end


def _anomaly_fields(anomaly: Anomaly | dict) -> tuple[str | None, str | None, str | None, datetime, datetime]:
    """(scenario, entity value, leading feature, window start, window end) of an Anomaly or
    of a schema v1 event read back from anomalies.json."""
    if isinstance(anomaly, Anomaly):
        lead = anomaly.top_features[0].name if anomaly.top_features else None
        return anomaly.scenario, anomaly.entity_value, lead, anomaly.window_start, anomaly.window_end
    body = anomaly.get("anomaly", anomaly)
    window = body.get("window") or {}
    start = parse_iso(window.get("start"))
    end = parse_iso(window.get("end")) or start
    entity = (body.get("entity") or {}).get("value")
    return body.get("scenario"), entity, body.get("top_feature"), start, end


@dataclass(frozen=True)
class Suppression:
    """One rule an admin wrote to silence known-benign anomalies."""

    id: str
    reason: str
    scenario: str | None = None          # None: every scenario
    entity: str | None = None            # None: every entity (and scenarios without entities)
    feature: str | None = None           # None: any; else the feature leading the anomaly
    start: datetime | None = None        # fixed window [start, end)
    end: datetime | None = None
    days: tuple[int, ...] = ()           # recurring window: weekdays (0 = Monday) ...
    start_minute: int = 0                # ... and minutes of the day, UTC
    end_minute: int = 0
    expires: datetime | None = None      # anomalies in windows from then on are no longer covered
    created: datetime | None = None
    created_by: str = ""

    @property
    def recurring(self) -> bool:
        return bool(self.days)

    def when(self) -> str:
        if self.recurring:
            names = "daily" if len(self.days) == 7 else ",".join(DAYS[d] for d in self.days)
            return (f"every {names} {self.start_minute // 60:02d}:{self.start_minute % 60:02d}-"
                    f"{self.end_minute // 60:02d}:{self.end_minute % 60:02d} UTC")
        return f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M} UTC"

    def occurrences(self, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
        """The covered periods overlapping [start, end), cut at the expiry."""
        stop = min(end, self.expires) if self.expires else end
        if stop <= start:
            return []
        if not self.recurring:
            lo, hi = max(start, self.start), min(stop, self.end)
            return [(lo, hi)] if lo < hi else []
        out = []
        length = (self.end_minute - self.start_minute) % 1440
        day = start.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
        while day < stop:
            if day.weekday() in self.days:
                lo = day + timedelta(minutes=self.start_minute)
                hi = lo + timedelta(minutes=length)
                lo, hi = max(lo, start), min(hi, stop)
                if lo < hi:
                    out.append((lo, hi))
            day += timedelta(days=1)
        return out

    def covers_scenario(self, scenario: str | None, entity: str | None = None) -> bool:
        if self.scenario is not None and scenario != self.scenario:
            return False
        return self.entity is None or entity == self.entity

    def matches(self, anomaly: Anomaly | dict) -> bool:
        """True when this suppression covers the anomaly (an Anomaly or a schema v1 event)."""
        scenario, entity, lead, window_start, window_end = _anomaly_fields(anomaly)
        if window_start is None or not self.covers_scenario(scenario, entity):
            return False
        if self.feature is not None and lead != self.feature:
            return False
        if self.expires is not None and window_start >= self.expires:
            return False
        if self.recurring:
            # The bucket's start must fall inside an occurrence (a maintenance window of the day).
            return bool(self.occurrences(window_start, window_start + timedelta(seconds=1)))
        return window_start < self.end and window_end > self.start

    def to_json(self) -> dict:
        out: dict = {"id": self.id, "reason": self.reason, "scenario": self.scenario, "entity": self.entity,
                     "feature": self.feature}
        if self.recurring:
            out["every"] = {"days": [DAYS[d] for d in self.days], "start_minute": self.start_minute,
                            "end_minute": self.end_minute}
        else:
            out["start"], out["end"] = iso(self.start), iso(self.end)
        out["expires"] = iso(self.expires) if self.expires else None
        out["created"] = iso(self.created) if self.created else None
        out["created_by"] = self.created_by
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Suppression":
        every = data.get("every") or {}
        return cls(id=str(data["id"]), reason=str(data.get("reason") or ""), scenario=data.get("scenario"),
                   entity=data.get("entity"), feature=data.get("feature"),
                   start=parse_iso(data.get("start")), end=parse_iso(data.get("end")),
                   days=tuple(DAYS.index(d) for d in every.get("days", ())),
                   start_minute=int(every.get("start_minute", 0)), end_minute=int(every.get("end_minute", 0)),
                   expires=parse_iso(data.get("expires")), created=parse_iso(data.get("created")),
                   created_by=str(data.get("created_by") or ""))


def new_suppression(*, reason: str, scenario: str | None = None, entity: str | None = None,
                    feature: str | None = None, start: datetime | None = None, end: datetime | None = None,
                    every: str | None = None, expires: datetime | None = None,
                    now: datetime | None = None) -> Suppression:
    """A validated suppression from what the admin typed; ConfigError names the option at fault."""
    now = now or datetime.now(timezone.utc)
    if not reason or not reason.strip():
        raise ConfigError("--reason is required: say why this activity is benign (it is written with every "
                          "suppressed anomaly).")
    if every and (start or end):
        raise ConfigError("give either --from/--to (one window) or --every (a recurring window), not both.")
    days, start_minute, end_minute = ((), 0, 0)
    if every:
        days, start_minute, end_minute = parse_every(every)
    elif start is None or end is None:
        raise ConfigError("a suppression needs a time: --from and --to, or --every 'sun 02:00-04:00'.")
    elif end <= start:
        raise ConfigError(f"--to ({iso(end)}) must be after --from ({iso(start)}).")
    if expires is not None and expires <= now:
        raise ConfigError(f"--expires ({iso(expires)}) is in the past.")
    ident = stable_id("suppression", scenario, entity, feature, start and iso(start), end and iso(end),
                      every, reason.strip(), iso(now))[:10]
    try:
        who = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    return Suppression(id=ident, reason=reason.strip(), scenario=scenario, entity=entity, feature=feature,
                       start=start, end=end, days=days, start_minute=start_minute, end_minute=end_minute,
                       expires=expires, created=now, created_by=who)


def load_suppressions(layout: Any) -> list[Suppression]:
    """Every stored suppression (expired ones too: they still cover the anomalies before
    their expiry, e.g. in a backtest). `layout` is a Layout, a Config or the state directory."""
    data = read_json(state_dir_of(layout) / FILE_NAME, {}, consequence=IF_DAMAGED) or {}
    items = data.get("suppressions", []) if isinstance(data, dict) else []
    out = []
    for item in items:
        try:
            out.append(Suppression.from_json(item))
        except (KeyError, ValueError, TypeError):
            continue  # a hand-edited entry that no longer parses covers nothing
    return out


def save_suppressions(layout: Any, suppressions: Iterable[Suppression]) -> None:
    atomic_write_json(state_dir_of(layout) / FILE_NAME,
                      {"version": 1, "suppressions": [s.to_json() for s in suppressions]})


def add_suppression(layout: Any, suppression: Suppression) -> None:
    save_suppressions(layout, [*load_suppressions(layout), suppression])


def remove_suppression(layout: Any, ident: str) -> Suppression:
    current = load_suppressions(layout)
    found = [s for s in current if s.id == ident]
    if not found:
        known = ", ".join(s.id for s in current) or "none"
        raise ConfigError(f"no suppression with id '{ident}' (known: {known}); see 'wazuh-anomaly suppress list'.")
    save_suppressions(layout, [s for s in current if s.id != ident])
    return found[0]


def suppression_for(anomaly: Anomaly | dict, suppressions: Iterable[Suppression]) -> Suppression | None:
    """The first suppression that covers the anomaly, or None."""
    return next((s for s in suppressions if s.matches(anomaly)), None)


def apply_suppressions(anomalies: list[Anomaly], suppressions: list[Suppression]) -> list[Anomaly]:
    """The same anomalies, those covered by a suppression flagged with its id and reason."""
    if not suppressions:
        return anomalies
    out = []
    for a in anomalies:
        s = suppression_for(a, suppressions)
        out.append(dataclasses.replace(a, suppression_id=s.id, suppression_reason=s.reason) if s else a)
    return out
