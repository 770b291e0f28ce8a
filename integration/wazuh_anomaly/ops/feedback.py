"""Feedback: an analyst's verdict on one anomaly, `false-positive` or `true-positive`.

`wazuh-anomaly feedback ID VERDICT [--note TEXT]` looks the id up in anomalies.json and its
rotated copies (so a typo is refused), and stores the verdict with what training needs
to know about the anomaly (scenario, entity, window), so that a false positive's window
is left out of the next training even after anomalies.json has rotated away.

Stored in `var/anomaly/state/feedback.json`, written atomically; a later verdict on the
same id replaces the earlier one.
"""
from __future__ import annotations

import getpass
import gzip
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from ..core.errors import ConfigError
from ..core.eventtext import iso, parse_iso
from ..core.state import atomic_write_json, read_json, state_dir_of

FILE_NAME = "feedback.json"
# What a damaged file costs (it is moved aside and reported, the rest goes on).
IF_DAMAGED = ('the verdicts it held are lost for training: restore them from that copy or give them '
              'again with "wazuh-anomaly feedback"')
VERDICTS = ("false-positive", "true-positive")


@dataclass(frozen=True)
class Feedback:
    """An analyst's verdict on one anomaly, with the anomaly's own coordinates."""

    id: str                          # the anomaly id (anomaly.id in anomalies.json)
    verdict: str                     # one of VERDICTS
    note: str
    at: datetime                     # when the verdict was given
    scenario: str
    window_start: datetime
    window_end: datetime
    entity_field: str | None = None
    entity: str | None = None        # the entity value, None for scenarios without a split
    severity: str | None = None
    summary: str | None = None
    by: str = ""

    @property
    def false_positive(self) -> bool:
        return self.verdict == "false-positive"

    def to_json(self) -> dict:
        return {"id": self.id, "verdict": self.verdict, "note": self.note, "at": iso(self.at),
                "scenario": self.scenario, "window_start": iso(self.window_start),
                "window_end": iso(self.window_end), "entity_field": self.entity_field, "entity": self.entity,
                "severity": self.severity, "summary": self.summary, "by": self.by}

    @classmethod
    def from_json(cls, data: dict) -> "Feedback":
        return cls(id=str(data["id"]), verdict=str(data["verdict"]), note=str(data.get("note") or ""),
                   at=parse_iso(data["at"]), scenario=str(data["scenario"]),
                   window_start=parse_iso(data["window_start"]), window_end=parse_iso(data["window_end"]),
                   entity_field=data.get("entity_field"), entity=data.get("entity"),
                   severity=data.get("severity"), summary=data.get("summary"), by=str(data.get("by") or ""))


def anomaly_files(anomalies_file: Path) -> list[Path]:
    """anomalies.json and its rotated copies beside it (anomalies.json.1, anomalies.json-2024…,
    .gz), newest first."""
    anomalies_file = Path(anomalies_file)
    try:
        names = os.listdir(anomalies_file.parent)
    except OSError:
        return []
    rotated = [anomalies_file.parent / n for n in names
               if n.startswith(anomalies_file.name) and n != anomalies_file.name
               and not n.endswith((".lock", ".tmp"))]
    rotated.sort(key=lambda p: p.lstat().st_mtime, reverse=True)
    return ([anomalies_file] if anomalies_file.exists() else []) + rotated


def _events(path: Path) -> Iterator[dict]:
    from ..core.fileio import open_binary
    try:
        # logs/anomaly may be writable by the wazuh group: never read through a link planted there
        fh = open_binary(path)
    except (OSError, EOFError):
        return
    try:
        with (gzip.GzipFile(fileobj=fh) if path.name.endswith(".gz") else fh) as handle:
            for raw in handle:
                try:
                    event = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(event, dict) and isinstance(event.get("anomaly"), dict):
                    yield event
    except (OSError, EOFError):
        return
    finally:
        fh.close()


def find_anomaly(anomalies_file: Path, ident: str) -> dict | None:
    """The event of anomaly `ident` in anomalies.json or its rotations, None if absent."""
    for path in anomaly_files(anomalies_file):
        for event in _events(path):
            if event["anomaly"].get("id") == ident and event["anomaly"].get("kind") != "health":
                return event
    return None


def load_feedback(layout: Any) -> dict[str, Feedback]:
    """Every verdict, by anomaly id. `layout` is a Layout, a Config or the state directory."""
    data = read_json(state_dir_of(layout) / FILE_NAME, {}, consequence=IF_DAMAGED) or {}
    items = data.get("feedback", {}) if isinstance(data, dict) else {}
    out = {}
    for ident, item in items.items() if isinstance(items, dict) else []:
        try:
            out[ident] = Feedback.from_json(item)
        except (KeyError, ValueError, TypeError):
            continue
    return out


def record_feedback(layout: Any, anomalies_file: Path, ident: str, verdict: str, note: str = "",
                    *, now: datetime | None = None) -> Feedback:
    """Validate the id against the written anomalies and store the verdict atomically."""
    if verdict not in VERDICTS:
        raise ConfigError(f"verdict '{verdict}' is not one of {', '.join(VERDICTS)}.")
    event = find_anomaly(anomalies_file, ident)
    if event is None:
        raise ConfigError(f"no anomaly with id '{ident}' in {anomalies_file} or its rotated copies; copy the id "
                          f"from the alert's data.anomaly.id or from 'wazuh-anomaly show'.")
    body = event["anomaly"]
    window = body.get("window") or {}
    entity = body.get("entity") or {}
    try:
        who = os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        who = str(os.getuid())
    item = Feedback(id=ident, verdict=verdict, note=note.strip(), at=now or datetime.now(timezone.utc),
                    scenario=str(body.get("scenario")), window_start=parse_iso(window.get("start")),
                    window_end=parse_iso(window.get("end")), entity_field=entity.get("field"),
                    entity=entity.get("value"), severity=body.get("severity"), summary=body.get("summary"), by=who)
    current = load_feedback(layout)
    current[ident] = item
    atomic_write_json(state_dir_of(layout) / FILE_NAME,
                      {"version": 1, "feedback": {k: v.to_json() for k, v in sorted(current.items())}})
    return item
