"""Anomalies and health events as schema v1 JSON lines in `logs/anomaly/anomalies.json`.

The manager reads that file with a `<localfile>` `json` block; the stock `json` decoder
flattens each line into `anomaly.*` fields and the rules 117100-117349 raise the alert
(DESIGN.md, WAZUH.md section 3). One JSON object per line, compact, far below the
~64 KiB line limit of logcollector.

Never add a top-level `timestamp` or `event_type` key: the indexer maps `data.timestamp`
as a date, and the stock Suricata root rule 86600 claims any JSON event carrying both.
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import math
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable

from . import SCHEMA_VERSION
from .findings import Anomaly, FeatureContribution, HealthEvent, iso

# Anomalies with more features are cut to the strongest ones; the rest is in the model.
MAX_TOP_FEATURES = 5
# Features named in the one-line summary an analyst reads in the dashboard.
SUMMARY_FEATURES = 3
# Limits (characters) that keep every line small and every expanded rule
# description below Wazuh's 1024-byte cap (ParseRuleComment falls back to the raw
# template when the expansion is longer).
MAX_NAME = 128
MAX_VALUE = 256
MAX_SUMMARY = 320
MAX_MESSAGE = 480
MAX_DESCRIPTION = 480
# Hard bound for one line; logcollector truncates at about 65,279 bytes.
MAX_LINE_BYTES = 60_000
# Ids are remembered this long; a re-run never goes further back than this.
DEDUPE_DAYS = 35

INTEGRATION = "anomaly"
LOG_FILE_MODE = 0o640

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
    # top-level keys the decoder puts into Wazuh's static fields
    "srcip",
    "dstuser",
})

# Entity fields whose value is a source address: written to the static `srcip`, so
# stock active responses (firewall-drop) can act on it. Agent and destination
# addresses are deliberately not here: blocking them would cut off our own hosts.
_IP_FIELD_NAMES = frozenset({
    "srcip", "src_ip", "source_ip", "sourceip", "sourceipaddress", "client_ip",
    "clientip", "remote_ip", "remoteip", "ipaddress", "ip_address",
})
_IP_FIELD_PATHS = frozenset({"source.ip", "data.source.ip", "client.ip", "data.client.ip"})
# Entity fields holding an account name: written to the static `dstuser`.
_USER_FIELD_NAMES = frozenset({
    "dstuser", "srcuser", "user", "username", "user_name", "dst_user", "src_user",
    "targetusername", "subjectusername", "account", "account_name", "login",
})
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def _clip(text: object, limit: int) -> str:
    """One line of printable text, at most `limit` characters ('...' marks a cut)."""
    s = str(text)
    # Lone surrogates cannot be written as UTF-8; control characters would break
    # the one-line summary and a NUL would cut the decoder's C string.
    s = s.encode("utf-8", "replace").decode("utf-8")
    s = _CONTROL.sub(" ", s)
    if len(s) > limit:
        s = s[: limit - 3] + "..."
    return s


def _num(x: float | int | None) -> float | int | None:
    """A JSON-safe number with 6 significant digits (non-finite becomes null)."""
    if x is None:
        return None
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, int):
        return x
    x = float(x)
    if not math.isfinite(x):
        return None
    r = float(f"{x:.6g}")
    return 0.0 if r == 0 else r


def _plain(x: float | None) -> str:
    """A number as an analyst reads it: 143, 2.5, 0.333."""
    if x is None or not math.isfinite(x):
        return "n/a"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.3g}"


def _leaf(field: str) -> str:
    return field.rsplit(".", 1)[-1].lower()


def entity_srcip(field: str | None, value: str | None) -> str | None:
    """The entity as a source IP for the static `srcip`, or None when it is not one."""
    if not field or not value:
        return None
    if field.lower() not in _IP_FIELD_PATHS and _leaf(field) not in _IP_FIELD_NAMES:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        return None


def entity_dstuser(field: str | None, value: str | None) -> str | None:
    """The entity as an account name for the static `dstuser`, or None."""
    if not field or not value or _leaf(field) not in _USER_FIELD_NAMES:
        return None
    name = value.strip()
    if not name or len(name) > MAX_NAME or _CONTROL.search(name):
        return None
    return name


def _entity_phrase(field: str, value: str) -> str:
    leaf = _leaf(field)
    if field.lower() in ("agent.name", "agent.id", "agent.ip") or leaf == "hostname":
        return f" on agent {value}"
    if entity_srcip(field, value):
        return f" from {value}"
    if entity_dstuser(field, value):
        return f" for user {value}"
    return f" for {field}={value}"


def summary_of(anomaly: Anomaly) -> str:
    """One line an analyst reads: 'auth_failures=143 (expected 2), ... on agent web-01'."""
    parts = [
        f"{_clip(f.name, MAX_NAME)}={_plain(f.actual)} (expected {_plain(f.expected)})"
        for f in anomaly.top_features[:SUMMARY_FEATURES]
    ]
    text = ", ".join(parts) if parts else f"score {_plain(anomaly.score)} above {_plain(anomaly.threshold)}"
    if anomaly.entity_field and anomaly.entity_value:
        text += _entity_phrase(_clip(anomaly.entity_field, MAX_NAME), _clip(anomaly.entity_value, MAX_VALUE))
    return _clip(text, MAX_SUMMARY)


def _feature(f: FeatureContribution) -> dict:
    return {
        "name": _clip(f.name, MAX_NAME),
        "actual": _num(f.actual),
        "expected": _num(f.expected),
        "contribution": _num(f.contribution),
        "deviation": _num(f.deviation),
    }


def event_for(anomaly: Anomaly, *, detected_at: datetime) -> dict:
    """The schema v1 event of one anomaly (keys in a stable order)."""
    body: dict = {
        "schema": SCHEMA_VERSION,
        "id": anomaly.id,
        "kind": _clip(anomaly.kind, MAX_NAME),
        "detector": _clip(anomaly.detector, MAX_NAME),
        "scenario": _clip(anomaly.scenario, MAX_NAME),
        "severity": anomaly.severity,
        "score": _num(anomaly.score),
        "threshold": _num(anomaly.threshold),
        "window": {"start": iso(anomaly.window_start), "end": iso(anomaly.window_end)},
        "bucket_minutes": int(anomaly.bucket_minutes),
    }
    if anomaly.entity_field and anomaly.entity_value:
        body["entity"] = {"field": _clip(anomaly.entity_field, MAX_NAME),
                          "value": _clip(anomaly.entity_value, MAX_VALUE)}
    top = anomaly.top_features[:MAX_TOP_FEATURES]
    if top:
        body["top_feature"] = _clip(top[0].name, MAX_NAME)
    body["summary"] = summary_of(anomaly)
    body["top_features"] = [_feature(f) for f in top]
    body["model_version"] = _clip(anomaly.model_version, MAX_NAME)
    if anomaly.description:
        body["description"] = _clip(anomaly.description, MAX_DESCRIPTION)
    body["detected_at"] = iso(detected_at)
    if anomaly.suppressed:
        # Still written, so it can be searched; rule 117108 (level 0) keeps it from alerting.
        body["suppressed"] = "true"
        body["suppression"] = {"id": _clip(anomaly.suppression_id, MAX_NAME),
                               "reason": _clip(anomaly.suppression_reason or "", MAX_MESSAGE)}

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
        body["scenario"] = _clip(h.scenario, MAX_NAME)
    body["message"] = _clip(h.message, MAX_MESSAGE)
    body["detected_at"] = iso(h.at)
    return {"integration": INTEGRATION, "anomaly": body}


def render(event: dict) -> str:
    """One compact JSON line (no newline)."""
    line = json.dumps(event, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if len(line.encode("utf-8")) > MAX_LINE_BYTES:
        raise ValueError(f"event {event.get('anomaly', {}).get('id')} renders to more than {MAX_LINE_BYTES} bytes")
    return line


def line_for(finding: Anomaly | HealthEvent, detected_at: datetime) -> str:
    to_event = getattr(finding, "to_event", None)
    if to_event is not None:  # a real-time finding (realtime/events.py) renders itself
        return render(to_event(detected_at))
    if isinstance(finding, HealthEvent):
        return render(event_for_health(finding))
    return render(event_for(finding, detected_at=detected_at))


def _window_time(finding: Anomaly | HealthEvent) -> datetime:
    return finding.at if isinstance(finding, HealthEvent) else finding.window_start


# ---------------------------------------------------------------------------
# Appending to anomalies.json exactly once per id, safely shared between processes.


@dataclass(frozen=True)
class WriteResult:
    written: int
    duplicates: int


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class AnomalyWriter:
    """Appends findings to anomalies.json, each id once (state kept in `state_dir`).

    All appends and state updates happen under an flock on `<file>.lock`, so the
    wodle and the real-time integration can write at the same time.
    """

    STATE_NAME = "emitted-ids.json"

    def __init__(self, path: Path, state_dir: Path) -> None:
        self.path = Path(path)
        self.state_dir = Path(state_dir)
        self.state_path = self.state_dir / self.STATE_NAME
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    # -- public -------------------------------------------------------------
    def write(self, findings: Iterable[Anomaly | HealthEvent], detected_at: datetime) -> WriteResult:
        findings = list(findings)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._locked():
            seen, file_pos = self._load_state()
            self._recover(seen, file_pos)
            lines: list[str] = []
            duplicates = 0
            for f in findings:
                if f.id in seen:
                    duplicates += 1
                    continue
                lines.append(line_for(f, detected_at))
                # Kept 35 days after writing (or after the window, if later), so a
                # backfill of an old range re-run next week still finds its ids.
                seen[f.id] = max(_window_time(f).timestamp(), detected_at.timestamp())
            if lines:
                file_pos = self._append(lines)
            elif file_pos is None and self.path.exists():
                st = self.path.stat()
                file_pos = (st.st_ino, st.st_size)
            self._prune(seen, detected_at)
            self._save_state(seen, file_pos)
        return WriteResult(written=len(lines), duplicates=duplicates)

    # -- internals ------------------------------------------------------------
    @contextmanager
    def _locked(self):
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, LOG_FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _load_state(self) -> tuple[dict[str, float], tuple[int, int] | None]:
        try:
            raw = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}, None
        except (ValueError, OSError):
            # A damaged state file: the recovery scan below rebuilds what it can.
            return {}, None
        ids = {str(k): float(v) for k, v in raw.get("ids", {}).items()}
        pos = raw.get("file")
        return ids, (int(pos["inode"]), int(pos["size"])) if pos else None

    def _recover(self, seen: dict[str, float], file_pos: tuple[int, int] | None) -> None:
        """Adds the ids of lines appended after the last saved state (a crash between
        append and state save must not duplicate them on the next run)."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        if file_pos is None or st.st_ino != file_pos[0] or st.st_size < file_pos[1]:
            # No state, or rotated/truncated since: the id store covers the old file,
            # and every line of the new one was written after it, so read it whole.
            start = 0
        else:
            start = file_pos[1]
        if st.st_size <= start:
            return
        with open(self.path, "rb") as fh:
            fh.seek(start)
            tail = fh.read()
        for raw in tail.split(b"\n"):
            try:
                event = json.loads(raw)
                body = event["anomaly"]
                ident = str(body["id"])
            except (ValueError, KeyError, TypeError):
                continue
            when = max(_parse_iso(body.get("window", {}).get("start")), _parse_iso(body.get("detected_at")))
            seen.setdefault(ident, when)

    def _append(self, lines: list[str]) -> tuple[int, int]:
        data = ("\n".join(lines) + "\n").encode("utf-8")
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, LOG_FILE_MODE)
        try:
            if created:
                os.fchmod(fd, LOG_FILE_MODE)
            view = memoryview(data)
            while view:  # a regular file takes it all at once; loop only for safety
                n = os.write(fd, view)
                view = view[n:]
            os.fsync(fd)
            st = os.fstat(fd)
            return st.st_ino, st.st_size
        finally:
            os.close(fd)

    def _prune(self, seen: dict[str, float], now: datetime) -> None:
        oldest = (now - timedelta(days=DEDUPE_DAYS)).timestamp()
        for ident in [k for k, t in seen.items() if t < oldest]:
            del seen[ident]

    def _save_state(self, seen: dict[str, float], file_pos: tuple[int, int] | None) -> None:
        state = {"version": 1, "ids": dict(sorted(seen.items()))}
        if file_pos:
            state["file"] = {"inode": file_pos[0], "size": file_pos[1]}
        _atomic_write(self.state_path, json.dumps(state, separators=(",", ":")).encode())


def _parse_iso(text: str | None) -> float:
    if not text:
        return datetime.now(timezone.utc).timestamp()
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()
    except ValueError:
        return datetime.now(timezone.utc).timestamp()
