"""What `wazuh-anomaly run` and `wazuh-anomaly train` do beyond the scenarios: the
real-time rare-event models learn from the same history. The decisions (which models,
when) live here, so the command line only parses, calls one function and prints."""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from ..core.errors import WazuhAnomalyError
from ..core.findings import HealthEvent
from ..core.paths import Layout
from ..emit.emitter import AnomalyWriter
from .runner import RunReport, Runner

log = logging.getLogger("wazuh_anomaly")


def _realtime_installed(layout: Layout) -> bool:
    return (layout.etc_dir / "realtime.yaml").is_file()


def run(runner: Runner, names: list[str] | None = None) -> RunReport:
    """The wodle's run: score every enabled scenario (or the named ones); after a full run,
    also (re)train the real-time models that are due. Raises LockBusy when another run holds
    the lock."""
    report = runner.run(names)
    if not names:
        train_due_realtime_models(runner)
    return report


def train(runner: Runner, names: list[str] | None = None, start: float | None = None,
          end: float | None = None) -> tuple[list[str], int]:
    """Train the scenarios (all enabled ones, or the named ones) and, when no scenario is
    named and the real-time path is configured, the real-time models on the same range.
    Returns the result lines and the exit code (1 when a scenario failed to train)."""
    report = runner.train(names, start, end)
    lines = report.lines()
    failed = any(r.status == "failed" for r in report.scenarios.values())
    layout = runner.config.layout
    if not names and _realtime_installed(layout):
        from ..realtime import jobs as realtime_jobs
        text, _ = realtime_jobs.train(str(layout.prefix), start=start, end=end)
        lines += [f"realtime {line}" for line in text.splitlines()]
    return lines, 1 if failed else 0


def train_due_realtime_models(runner: Runner) -> None:
    """The wodle's share of the real-time path: (re)train the rare-event models that are
    due; what cannot be trained becomes a health alert. Only where the real-time path is
    installed (install.sh --realtime puts the service's unit in place, --realtime-per-alert
    the integration's launcher)."""
    layout = runner.config.layout
    if not _realtime_installed(layout) or not ((layout.prefix / "integrations" / "custom-anomaly").exists()
                                               or (layout.etc_dir / "wazuh-anomaly-realtime.service").exists()):
        return
    from ..realtime import jobs as realtime_jobs
    at = datetime.fromtimestamp(runner.now, timezone.utc)
    try:
        outcomes = realtime_jobs.scheduled_train(str(layout.prefix), runner.now)
    except WazuhAnomalyError as exc:
        outcomes = [("realtime", "config_invalid", f"real-time models not trained: {exc}")]
    health = []
    for name, outcome, message in outcomes:
        if outcome == "trained":
            log.info("realtime %s", message)
            continue
        log.warning("realtime %s", message)
        health.append(HealthEvent(outcome, message, at, scenario=name,
                                  severity="low" if outcome == "insufficient_history" else "medium"))
    if health:
        AnomalyWriter(runner.config.anomalies_file, runner.config.state_dir).write(health, at)


def binding_problems(layout: Layout, config) -> list[str]:
    """Our files that the installed rules' <location> would not accept (docs/security.md):
    the anomalies file (rules 117100+) and the NetFlow events file (117000+)."""
    from ..netflow.settings import default_output_file, load_netflow_settings
    from ..ruleset.locations import binding_problems as problems
    try:
        netflow = load_netflow_settings(layout).output_file or str(default_output_file(layout))
    except WazuhAnomalyError:
        netflow = str(default_output_file(layout))   # `netflow normalize` reports a bad netflow.yaml
    return problems(layout.rules_dir, {117100: str(config.anomalies_file), 117000: netflow})


def written_anomalies(path, last: int) -> tuple[list[tuple[dict, object]], int, list[int]]:
    """The newest `last` lines of an anomalies file (0: all), each with the alert its rule
    raises (simulated, in one session: escalation is in each line itself, read with some
    lines before them), the file's number of lines and the numbers of lines that are not
    JSON. Raises FileNotFoundError when nothing was written yet."""
    import json

    from ..core.fileio import read_bytes
    from ..ruleset import explain_all
    lines = read_bytes(path).decode("utf-8", "replace").splitlines()
    first = max(0, len(lines) - last - 200) if last else 0
    events, bad = [], []
    for number, line in enumerate(lines[first:], first + 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            bad.append(number)
    pairs = list(zip(events, explain_all(events)))
    return (pairs[-last:] if last else pairs), len(lines), bad
