"""`integrations/custom-anomaly`: wazuh-integratord runs this once per matching alert.

argv (WAZUH.md section 1): [--prefix DIR] ALERT_FILE API_KEY HOOK_URL DEBUG OPTIONS_FILE
TIMEOUT RETRIES ...; empty values arrive as empty strings and the trailing
"> /dev/null 2>&1" is a literal argument. The alert file holds one JSON alert
(`<alert_format>json</alert_format>`); the options file, if any, may hold
{"detectors": [names]} to run only some detectors.

Light on purpose: a new process per alert, so only the standard library is imported
(tests/test_realtime_integration.py checks that numpy, pandas, torch and yaml are not).
Errors become one line in logs/integrations.log and exit code 1, never a traceback; an
alert a detector cannot use is one line too (the other detectors still see it), and a
damaged state file is moved aside, logged and written to anomalies.json as a
`malformed_input` health event.
"""
from __future__ import annotations

import os
import sys
import time

from ..core.errors import WazuhAnomalyError
from ..core import jsonio as fastjson

NAME = "custom-anomaly"
# An alert waits at most this long for the detectors' state (LockTimeout, one line, exit 1):
# a stuck holder must not stall wazuh-integratord, which runs one integration at a time.
STATE_LOCK_TIMEOUT_SECONDS = 60.0


class Paths:
    """Where the integration reads and writes, under the manager's prefix."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.config = os.path.join(prefix, "etc", "anomaly", "realtime.yaml")
        self.base = os.path.join(prefix, "var", "anomaly", "realtime")
        self.cache = os.path.join(self.base, "config.json")
        self.models = os.path.join(self.base, "models")
        self.anomalies = os.path.join(prefix, "logs", "anomaly", "anomalies.json")
        self.log = os.path.join(prefix, "logs", "integrations.log")


def _log(paths: Paths | None, message: str) -> None:
    line = f"{time.strftime('%Y/%m/%d %H:%M:%S')} {NAME}: {message}\n"
    sys.stderr.write(line)
    if paths is None:
        return
    try:
        fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    except OSError:
        return  # no integrations.log (a sandbox): stderr only
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    finally:
        os.close(fd)


def read_alert(path: str) -> dict:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(4 * 1024 * 1024)
    except OSError as exc:
        raise WazuhAnomalyError(f"{path}: cannot read the alert file ({exc.strerror}).") from None
    try:
        alert = fastjson.loads(raw)
    except ValueError:
        raise WazuhAnomalyError(f"{path}: the alert is not JSON; add <alert_format>json</alert_format> "
                                f"to the <integration> block of {NAME}.") from None
    if not isinstance(alert, dict):
        raise WazuhAnomalyError(f"{path}: the alert is not a JSON object.")
    return alert


def read_options(path: str) -> list[str] | None:
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read().strip()
    except OSError as exc:
        raise WazuhAnomalyError(f"{path}: cannot read the options file ({exc.strerror}).") from None
    if not text:
        return None
    try:
        options = fastjson.loads(text)
    except ValueError:
        raise WazuhAnomalyError(f"<options> of {NAME} must be JSON such as {{\"detectors\": [\"new_rule_for_agent\"]}}.") from None
    only = options.get("detectors") if isinstance(options, dict) else None
    if only is None or not isinstance(only, list) or not all(isinstance(n, str) for n in only):
        raise WazuhAnomalyError(f"<options> of {NAME} must be JSON such as {{\"detectors\": [\"new_rule_for_agent\"]}}.")
    return only


def handle(paths: Paths, alert: dict, *, only: list[str] | None = None, debug: bool = False) -> int:
    """Evaluate one alert and append its findings; the number of findings written."""
    from . import config as _config
    from .engine import RealtimeEngine
    from .store import StateStore

    cfg = _config.load(paths.config, paths.cache)
    engine = RealtimeEngine(cfg, paths.models, only=only)
    with StateStore(paths.base, lock_timeout=STATE_LOCK_TIMEOUT_SECONDS) as store:
        findings = engine.process(store, alert)
        written = 0
        if findings:
            from datetime import datetime, timezone

            from ..emit.anomalylog import AnomalyLog  # only imported when there is something to write
            # Written before the state is saved: a crash in between repeats the finding,
            # which the writer's id store drops, instead of losing it.
            written = AnomalyLog(paths.anomalies, paths.base).write(findings, datetime.now(timezone.utc)).written
    for problem in engine.problems:
        _log(paths, problem)
    report_damaged(paths)
    if debug:
        _log(paths, f"alert {alert.get('id')}: {len(findings)} findings, {written} written")
    return written


def report_damaged(paths: Paths) -> None:
    """Damaged state files moved aside by this process: a line in integrations.log and a
    `malformed_input` health event each (rare: the emitter is only imported then)."""
    from ..core.fileio import take_damaged

    messages = take_damaged()
    if not messages:
        return
    from datetime import datetime, timezone

    from ..emit.emitter import AnomalyWriter
    from ..core.findings import HealthEvent

    now = datetime.now(timezone.utc)
    for message in messages:
        _log(paths, message)
    events = [HealthEvent(check="malformed_input", message=m, at=now, severity="medium") for m in messages]
    AnomalyWriter(paths.anomalies, paths.base).write(events, now)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    prefix = os.environ.get("WAZUH_ANOMALY_PREFIX") or os.getcwd()
    if len(args) >= 2 and args[0] == "--prefix":
        prefix = args[1]
        args = args[2:]
    paths = Paths(os.path.abspath(prefix))
    if not args or not args[0]:
        _log(paths, "no alert file given; wazuh-integratord passes it as the first argument.")
        return 1
    debug = len(args) > 3 and args[3] == "debug"
    try:
        only = read_options(args[4] if len(args) > 4 else "")
        handle(paths, read_alert(args[0]), only=only, debug=debug)
    except WazuhAnomalyError as exc:
        _log(paths, str(exc))
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _log(paths, f"{where}{exc.strerror or exc}; the wazuh user needs write access to var/anomaly/realtime "
                    f"and logs/anomaly (install.sh --realtime sets it up).")
        return 1
    except Exception as exc:  # noqa: BLE001 - integratord shows stderr as is: one sentence, never a traceback
        _log(paths, f"{args[0]}: the alert could not be handled ({type(exc).__name__}: {str(exc)[:200]}); it was "
                    f"skipped. Please report this line with the alert file's content to the wazuh-anomaly developers.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
