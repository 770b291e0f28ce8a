"""`wazuh-anomaly realtime serve`: the real-time detectors as one long-running service.

The per-alert integration starts a Python process for every alert (about 12-30 alerts a
second per core); an attack arrives as a burst of hundreds a second. The service
instead follows `logs/alerts/alerts.json` itself with the one rotation-following reader
(`core/follow.py`), judges the alerts in batches with the detectors and rare-event
models kept in memory, and writes findings through the same `AnomalyLog` as every other
writer of anomalies.json (ids, repeats, escalation).

Exactly once, whatever kills it and whenever: each batch is committed in this order,
under the real-time state lock —

1. the batch's findings are appended (`AnomalyLog`: an id already written is dropped);
2. the checkpoint `var/anomaly/realtime/service.json` is replaced atomically and fsynced
   with the position after the batch *and* the detector states the batch changed: this
   is the commit point;
3. the detector state files are replaced, then the checkpoint without the states.

Killed before 2, the next start reads the batch again from the old position with the old
states: the same findings come out with the same ids and the anomaly log drops them.
Killed after 2, the next start writes the states of the checkpoint first and goes on
after the batch. Nothing is lost, nothing written twice.
"""
from __future__ import annotations

import fcntl
import logging
import os
import time
from datetime import datetime, timezone
from typing import Callable

try:  # several times faster than json on alert lines
    from orjson import loads as _loads, dumps as _dumps
except ImportError:  # pragma: no cover - the project environment always has orjson
    import json

    def _dumps(obj) -> bytes:
        return json.dumps(obj).encode()

    from json import loads as _loads

from ..core import fileio
from ..core.errors import WazuhAnomalyError
from ..core.findings import HealthEvent
from ..core.follow import Follower, siblings
from ..emit.anomalylog import AnomalyLog
from ..emit.emitter import AnomalyWriter
from . import config as _config
from .engine import RealtimeEngine
from .integration import Paths
from .store import FILE_MODE, StateStore, ensure_shared_dir

log = logging.getLogger("wazuh_anomaly")

CHECKPOINT_NAME = "service.json"
LOCK_NAME = "service.lock"
# alerts.json lines can be long (a full_log of a big event); the per-alert path reads up to
# the same. What we write is bounded separately (64 KiB, logcollector's limit).
MAX_ALERT_BYTES = 4 << 20
BATCH_LINES = 4096
STATE_LOCK_TIMEOUT_SECONDS = 120.0
HEALTH_EVERY_SECONDS = 300.0      # skipped lines are raised at most this often
MODEL_CHECK_SECONDS = 60.0        # retrained models are picked up this often
_MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
SKIP_REASONS = {
    "line_too_long": f"longer than {MAX_ALERT_BYTES:,} bytes",
    "bad_json": "not JSON",
    "not_object": "not a JSON object",
}


def wazuh_rotated(alerts_file: str) -> list[str]:
    """Where a rotated alerts.json may be: beside it (logrotate) and where Wazuh keeps the
    day's file, logs/alerts/YYYY/Mon/ossec-alerts-DD.json (today's and yesterday's folders)."""
    out = siblings(alerts_file)
    base = os.path.dirname(alerts_file)
    now = time.time()
    folders = []
    for t in (now, now - 86400):
        lt = time.localtime(t)
        folder = os.path.join(base, str(lt.tm_year), _MONTHS[lt.tm_mon])
        if folder not in folders:
            folders.append(folder)
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        out += [os.path.join(folder, n) for n in names if n.startswith("ossec-alerts-") and n.endswith(".json")]
    return out


class ServiceStats:
    """What the service did since it started (also kept in the checkpoint for `realtime status`)."""

    def __init__(self) -> None:
        self.lines = 0
        self.alerts = 0
        self.findings = 0           # appended to anomalies.json
        self.duplicates = 0         # findings already there (a batch read again after a crash)
        self.batches = 0
        self.skipped: dict[str, int] = {}
        self.first: dict[str, str] = {}

    def skip(self, reason: str, where: str) -> None:
        if reason not in self.skipped:
            self.skipped[reason] = 0
            self.first[reason] = where
        self.skipped[reason] += 1

    def sentence(self) -> str:
        total = sum(self.skipped.values())
        if not total:
            return ""
        parts = ", ".join(f"{n} {SKIP_REASONS[r]} (first at {self.first[r]})" for r, n in self.skipped.items())
        return f"skipped {total} alert line{'s' if total != 1 else ''}: {parts}"

    def describe(self) -> str:
        text = (f"{self.alerts} alerts judged in {self.batches} batches, {self.findings} findings written"
                + (f", {self.duplicates} already written" if self.duplicates else ""))
        skipped = self.sentence()
        return text + ("; " + skipped if skipped else "")

    def to_json(self) -> dict:
        return {"lines": self.lines, "alerts": self.alerts, "findings": self.findings,
                "duplicates": self.duplicates, "batches": self.batches, "skipped": dict(self.skipped)}


class RealtimeService:
    """Follows `alerts_file` and judges its alerts until `stop()` (see the module's docstring).

    from_start: with no saved position, read the file from its start (default: from its
    end, only what is written from now on: a first start does not judge a day of old alerts).
    """

    def __init__(self, prefix: str, alerts_file: str, *, from_start: bool = False, poll_seconds: float = 0.2,
                 batch_lines: int = BATCH_LINES, max_line_bytes: int = MAX_ALERT_BYTES,
                 grace_seconds: float = 5.0):
        self.paths = Paths(prefix)
        self.alerts_file = alerts_file
        self.from_start = from_start
        self.poll_seconds = poll_seconds
        self.batch_lines = batch_lines
        self.max_line_bytes = max_line_bytes
        self.grace_seconds = grace_seconds
        self.checkpoint_path = os.path.join(self.paths.base, CHECKPOINT_NAME)
        self.stats = ServiceStats()
        self.anomaly_log = AnomalyLog(self.paths.anomalies, self.paths.base)
        self._cache: dict = {}          # detector states between batches (StateStore cache)
        self.engine: RealtimeEngine | None = None
        self._told = {"losses": 0, "skipped": 0, "at": time.monotonic()}

    # -- the checkpoint -------------------------------------------------------------
    def _write_checkpoint(self, position: dict, states: dict | None, *, durable: bool) -> None:
        doc = {"version": 1, "input": self.alerts_file, "position": position, "stats": self.stats.to_json()}
        if states:
            doc["states"] = states
        fileio.atomic_write(self.checkpoint_path, _dumps(doc), FILE_MODE, durable=durable, sync_dir=durable)

    def _recover(self) -> dict | None:
        """The saved position; states committed by a batch whose state files may not all
        have been written are written first."""
        try:
            doc = _loads(fileio.read_bytes(self.checkpoint_path))
        except FileNotFoundError:
            return None
        except ValueError:
            doc = None
        if not isinstance(doc, dict) or not isinstance(doc.get("position"), dict) \
                or not isinstance(doc.get("states", {}), dict):
            fileio.set_aside_damaged(self.checkpoint_path, "the service starts at the end of the alerts file")
            return None
        states = doc.get("states")
        if states:
            with StateStore(self.paths.base, lock_timeout=STATE_LOCK_TIMEOUT_SECONDS) as store:
                for name, state in states.items():
                    if isinstance(state, dict):
                        store.put(name, state)
            log.info("the last batch before the interruption was committed; its detector states are written now")
            self._write_checkpoint(doc["position"], None, durable=True)
        return doc["position"]

    # -- one batch ------------------------------------------------------------------
    def commit(self, batch: list, position: dict) -> int:
        """Judge one batch of (where, line) and commit it (findings, checkpoint, states);
        the number of findings written."""
        stats = self.stats
        stats.lines += len(batch)
        alerts = []
        loads = _loads
        for where, line in batch:
            if line is None:
                stats.skip("line_too_long", where)
                continue
            try:
                alert = loads(line)
            except ValueError:
                if line.strip():
                    stats.skip("bad_json", where)
                continue
            if type(alert) is not dict:
                stats.skip("not_object", where)
                continue
            alerts.append(alert)
        engine = self.engine
        written = 0
        with StateStore(self.paths.base, lock_timeout=STATE_LOCK_TIMEOUT_SECONDS, cache=self._cache) as store:
            findings: list = []
            for alert in alerts:
                findings.extend(engine.process(store, alert))
            if findings:
                result = self.anomaly_log.write(findings, datetime.now(timezone.utc))
                written = result.written
                stats.findings += result.written
                stats.duplicates += result.duplicates
            stats.alerts += len(alerts)
            stats.batches += 1
            changed = store.changed()
            self._write_checkpoint(position, changed, durable=True)   # the commit point
        if changed:
            self._write_checkpoint(position, None, durable=False)     # the states are in their files now
        for problem in engine.problems:
            log.warning("%s", problem)
        engine.problems.clear()
        return written

    # -- running ----------------------------------------------------------------------
    def run(self, stop: Callable[[], bool] = lambda: False, *, idle_exit_seconds: float | None = None,
            ready: Callable[[str], None] | None = None) -> ServiceStats:
        """Follow until `stop()` (or `idle_exit_seconds` without a new line); `ready` hears
        one sentence once the service holds its lock and knows where it starts."""
        ensure_shared_dir(self.paths.base)
        lock_fd = self._only_instance()
        try:
            cfg = _config.load(self.paths.config, self.paths.cache)
            self.engine = RealtimeEngine(cfg, self.paths.models)
            position = self._recover()
            follower = Follower(self.alerts_file, position=position, max_line_bytes=self.max_line_bytes,
                                grace_seconds=self.grace_seconds, candidates=lambda: wazuh_rotated(self.alerts_file),
                                from_end=not self.from_start)
            if position is None:
                # where a first start begins is kept at once: a restart before the first
                # alert must not skip what was written in between
                self._write_checkpoint(follower.position(), None, durable=True)
            mark = follower.position().get("file")
            sentence = f"following {self.alerts_file} from byte {mark['offset'] if mark else 0}"
            log.info("%s", sentence)
            if ready is not None:
                ready(sentence)
            try:
                self._loop(follower, stop, idle_exit_seconds)
            finally:
                follower.close()
                self._report(follower, final=True)
        finally:
            os.close(lock_fd)
        return self.stats

    def _loop(self, follower: Follower, stop, idle_exit_seconds) -> None:
        idle_since = time.monotonic()
        models_checked = time.monotonic()
        waiting = False
        while not stop():
            progressed = False
            pending: list = []
            # A burst is committed in batches of up to batch_lines alerts (fewer commits,
            # fewer fsyncs); what is there when the file is read to its end, at once.
            for batch in follower.batches(self.batch_lines):
                pending += batch
                progressed = True
                if len(pending) >= self.batch_lines or stop():
                    self.commit(pending, follower.position())   # the position after exactly these lines
                    pending = []
                    if stop():
                        break
            if pending:
                self.commit(pending, follower.position())
            if follower.waiting and not waiting:
                log.info("%s does not exist yet; waiting for wazuh-analysisd to write it", self.alerts_file)
            waiting = follower.waiting
            self._report(follower)
            now = time.monotonic()
            if now - models_checked >= MODEL_CHECK_SECONDS:
                self.engine.refresh_models()
                models_checked = now
            if progressed:
                idle_since = now
                continue                  # a burst: read on at once
            if idle_exit_seconds is not None and now - idle_since >= idle_exit_seconds:
                break
            time.sleep(self.poll_seconds)

    def _report(self, follower: Follower, final: bool = False) -> None:
        """Losses to rotation at once, skipped lines now and then: a health event each."""
        told = self._told
        events = []
        now = datetime.now(timezone.utc)
        for sentence in follower.losses[told["losses"]:]:
            log.warning("%s", sentence)
            events.append(HealthEvent(check="source_unreadable", message=sentence, at=now, severity="high"))
        told["losses"] = len(follower.losses)
        skipped = sum(self.stats.skipped.values())
        if skipped > told["skipped"] and (final or time.monotonic() - told["at"] >= HEALTH_EVERY_SECONDS):
            sentence = f"{self.alerts_file}: {self.stats.sentence()}."
            log.warning("%s", sentence)
            events.append(HealthEvent(check="malformed_input", message=sentence, at=now, severity="medium"))
            told["skipped"], told["at"] = skipped, time.monotonic()
        for message in fileio.take_damaged():
            log.warning("%s", message)
            events.append(HealthEvent(check="malformed_input", message=message, at=now, severity="medium"))
        if events:
            AnomalyWriter(self.paths.anomalies, self.paths.base).write(events, now)

    def _only_instance(self) -> int:
        """Two services would both judge every alert: the second one is refused in one sentence."""
        fd = fileio.open_file(os.path.join(self.paths.base, LOCK_NAME), os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WazuhAnomalyError(f"another 'wazuh-anomaly realtime serve' is running for {self.paths.prefix} "
                                    f"(the wazuh-anomaly-realtime service?); stop it first.") from None
        return fd


def read_checkpoint(prefix: str) -> dict | None:
    """The service's checkpoint (for `realtime status`), None when it never ran."""
    path = os.path.join(Paths(prefix).base, CHECKPOINT_NAME)
    try:
        doc = _loads(fileio.read_bytes(path))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None
