"""wazuh-anomaly: the command line. Parses arguments, calls the jobs, prints results.

Errors a user can cause come out as one sentence and exit code 2; a scoring run whose
scenarios raised health events still exits 0 (the events are the report), so the
wodle does not log a failure for a manager that simply has no history yet.
"""
from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..core.errors import LockBusy, WazuhAnomalyError
from ..core.paths import PREFIX_ENV, Layout

log = logging.getLogger("wazuh_anomaly")


class _LogFile(logging.handlers.RotatingFileHandler):
    """The run log in logs/anomaly, which the wazuh group may write (real-time path):
    opened like every other file there, never through a planted link."""

    def _open(self):
        from ..core.fileio import open_append
        return os.fdopen(open_append(self.baseFilename, 0o640), "a", encoding=self.encoding, errors=self.errors)


def _setup_logging(layout: Layout, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    root = logging.getLogger("wazuh_anomaly")
    root.setLevel(logging.DEBUG)
    # main() called again in one process (tests, tools) must not keep writing to old streams.
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("wazuh-anomaly: %(message)s"))
    root.addHandler(console)
    log_file = layout.logs_dir / "wazuh-anomaly.log"
    if layout.logs_dir.is_dir() and os.access(layout.logs_dir, os.W_OK):
        try:
            handler = _LogFile(log_file, maxBytes=10 * 1024 * 1024, backupCount=3, encoding="utf-8")
        except WazuhAnomalyError as exc:  # a planted link: say so, and log to stderr only
            console.handle(logging.makeLogRecord({"msg": str(exc), "levelno": logging.ERROR, "levelname": "ERROR"}))
            return
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ"))
        handler.formatter.converter = time.gmtime
        root.addHandler(handler)


def _context(args: argparse.Namespace):
    from ..core.config import load_config, load_scenarios
    from ..detectors.mvad import quiet_library_environment
    layout = Layout.from_env(args.prefix)
    config = load_config(layout, Path(args.config) if args.config else None)
    quiet_library_environment(config.state_dir / ".cache")
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    return layout, config, scenarios, errors


def _runner(args: argparse.Namespace):
    from ..ops.runner import Runner, parse_time
    _, config, scenarios, errors = _context(args)
    now = parse_time(args.now) if getattr(args, "now", None) else None
    return Runner(config, scenarios, config_errors=errors, now=now)


def _print_anomalies(anomalies, *, as_json: bool) -> None:
    from ..emit.emitter import event_for, render
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    for a in anomalies:
        if as_json:
            print(render(event_for(a, detected_at=now)))
        else:
            entity = f" {a.entity_field}={a.entity_value}" if a.entity_value is not None else ""
            top = ", ".join(f"{f.name}={f.actual:g} (expected {f.expected:g})" for f in a.top_features[:3])
            print(f"{a.window_start:%Y-%m-%d %H:%M} {a.scenario}{entity} {a.severity} "
                  f"[{a.detector} score {a.score:.4g} > {a.threshold:.4g}]: {top}")


def cmd_run(args: argparse.Namespace) -> int:
    runner = _runner(args)
    try:
        report = runner.run(args.scenario or None)
    except LockBusy as exc:
        print(f"wazuh-anomaly: {exc}", file=sys.stderr)
        return 0
    for line in report.lines():
        log.info("%s", line)
    if args.show:
        _print_anomalies(report.anomalies, as_json=False)
    if not args.scenario:
        _train_realtime_models(runner, Layout.from_env(args.prefix))
    return 0


def _train_realtime_models(runner, layout: Layout) -> None:
    """The wodle's share of the real-time path: (re)train the rare-event models that are
    due; what cannot be trained becomes a health alert. Only where the real-time path is
    installed (install.sh --realtime puts the integration's launcher in place)."""
    if not (layout.etc_dir / "realtime.yaml").is_file() or not (layout.prefix / "integrations" / "custom-anomaly").exists():
        return
    from datetime import datetime, timezone

    from ..emit.emitter import AnomalyWriter
    from ..core.findings import HealthEvent
    from . import realtime as realtime_commands
    at = datetime.fromtimestamp(runner.now, timezone.utc)
    try:
        outcomes = realtime_commands.scheduled_train(str(layout.prefix), runner.now)
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


def cmd_train(args: argparse.Namespace) -> int:
    from ..ops.runner import parse_time
    runner = _runner(args)
    start = parse_time(args.start) if args.start else None
    end = parse_time(args.end) if args.end else None
    report = runner.train(args.scenario or None, start, end)
    for line in report.lines():
        print(line)
    failed = [r for r in report.scenarios.values() if r.status in ("failed",)]
    # The real-time rare-event models learn from the same history (when realtime.yaml is installed).
    layout = Layout.from_env(args.prefix)
    if not args.scenario and (layout.etc_dir / "realtime.yaml").is_file():
        from . import realtime as realtime_commands
        text, _ = realtime_commands.train(str(layout.prefix), start=start, end=end)
        for line in text.splitlines():
            print(f"realtime {line}")
    return 1 if failed else 0


def cmd_detect(args: argparse.Namespace) -> int:
    from ..ops.runner import parse_time
    runner = _runner(args)
    report = runner.detect(parse_time(args.start), parse_time(args.end), args.scenario or None,
                           write=not args.dry_run)
    _print_anomalies(report.anomalies, as_json=args.json)
    if not args.json:
        for line in report.lines():
            print(line, file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    runner = _runner(args)
    rows = runner.status()
    skipped = runner.input_status()
    if args.json:
        for row in rows:
            row["skipped_input"] = skipped
        print(json.dumps(rows, indent=1))
        return 0
    for row in rows:
        print(f"{row['scenario']}: {'enabled' if row.get('enabled') else 'disabled'}")
        for key in ("model", "model_age_days", "trained_range", "versions", "model_health", "drift", "rolled_back",
                    "excluded_from_training", "last_scored_bucket_end",
                    "lag_minutes", "last_run", "last_anomalies", "total_anomalies", "last_error"):
            if key in row and row[key] is not None:
                print(f"  {key.replace('_', ' ')}: {row[key]}")
    if skipped:
        print(f"skipped input: {skipped}; see 'Troubleshooting' in the README.")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    layout, config, scenarios, errors = _context(args)
    print(f"config: {config.config_file or '(defaults; ' + str(layout.config_file) + ' not found)'}")
    for s in scenarios:
        entity = f", per {s.entity.field} (top {s.entity.top})" if s.entity else ""
        print(f"scenario {s.name}: {'enabled' if s.enabled else 'disabled'}, {len(s.features)} features, "
              f"{s.bucket_minutes}-minute buckets{entity}, detectors {'+'.join(s.detectors)}")
    errors = list(errors) + _binding_errors(layout, config)
    for e in errors:
        print(f"error: {e}")
    return 2 if errors else 0


def _binding_errors(layout: Layout, config) -> list[str]:
    """Our files that the installed rules' <location> would not accept (docs/security.md)."""
    from ..netflow.settings import default_output_file, load_netflow_settings
    from ..ruleset.locations import binding_problems
    try:
        netflow = load_netflow_settings(layout).output_file or str(default_output_file(layout))
    except WazuhAnomalyError:
        netflow = str(default_output_file(layout))   # `netflow normalize` reports a bad netflow.yaml
    return binding_problems(layout.rules_dir, {117100: str(config.anomalies_file), 117000: netflow})


def cmd_show(args: argparse.Namespace) -> int:
    from ..ruleset import explain_all
    layout, config, _, _ = _context(args)
    path = Path(args.file) if args.file else config.anomalies_file
    try:
        from ..core.fileio import read_bytes
        lines = read_bytes(path).decode("utf-8", "replace").splitlines()
    except FileNotFoundError:
        print(f"{path}: no anomalies written yet (run 'wazuh-anomaly run' first).")
        return 0
    # The newest lines (escalation is in each line itself: anomaly.escalated), read with some before them.
    first = max(0, len(lines) - args.last - 200) if args.last else 0
    events = []
    for number, line in enumerate(lines[first:], first + 1):
        try:
            events.append(json.loads(line))
        except ValueError:
            print(f"{path}:{number}: not a JSON line, skipped", file=sys.stderr)
    alerts = explain_all(events)
    shown = list(zip(events, alerts))[-args.last:] if args.last else list(zip(events, alerts))
    for event, alert in shown:
        a = event.get("anomaly", {})
        if a.get("kind") == "health":
            head = f"health {a.get('health')} ({a.get('severity')}): {a.get('message')}"
        else:
            head = (f"{a.get('window', {}).get('start', '')[:16]} {a.get('scenario')} {a.get('severity')} "
                    f"[{a.get('detector')}]: {a.get('summary')}")
        print(head)
        print(f"  -> rule {alert.rule_id} (level {alert.level}): {alert.description}"
              + (f"  mitre {', '.join(alert.mitre)}" if alert.mitre else ""))
    if shown:
        print(f"({len(shown)} of {len(lines)} lines; the rule each raises is simulated by wazuh-anomaly's rule "
              f"engine; run 'wazuh-anomaly logtest' on the manager to check with Wazuh itself)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..indexer.client import check
    layout, config, scenarios, _ = _context(args)
    lines = check(config.indexer, layout.prefix, [s for s in scenarios if s.enabled])
    if config.shipping.enabled and all(line.ok for line in lines):
        from ..emit.shipping import check_shipping
        lines += check_shipping(config, scenarios)
    for line in lines:
        print(f"{'ok  ' if line.ok else 'FAIL'} {line.name}: {line.message}")
    return 0 if all(line.ok for line in lines) else 1


def cmd_sample_data(args: argparse.Namespace) -> int:
    from ..sources.sample import install_sample_alerts
    if not args.prefix and not os.environ.get(PREFIX_ENV):
        raise WazuhAnomalyError("sample-data writes into logs/alerts: name the sandbox with --prefix DIR "
                                "(it refuses a manager's real alerts).")
    layout = Layout.from_env(args.prefix)
    written = install_sample_alerts(layout.alerts_dir, shift_to=args.shift_to)
    for line in written:
        print(line)
    return 0


def cmd_ruleset(args: argparse.Namespace) -> int:
    from . import ruleset as commands
    if args.ruleset_command == "check":
        text, code = commands.ruleset_check([Path(d) for d in args.rules] if args.rules else None,
                                            [Path(d) for d in args.decoders] if args.decoders else None,
                                            layout=Layout.from_env(args.prefix) if args.prefix else None)
    else:
        text, code = commands.ruleset_cases(write=args.write, path=Path(args.path) if args.path else None)
    print(text)
    return code


def cmd_logtest(args: argparse.Namespace) -> int:
    from . import ruleset as commands
    text, code = commands.logtest([Path(f) for f in args.files], socket_path=Path(args.socket) if args.socket else None,
                                  offline=args.offline)
    print(text)
    return code


def cmd_realtime(args: argparse.Namespace) -> int:
    from . import realtime as commands
    from ..ops.runner import parse_time
    prefix = str(Layout.from_env(args.prefix).prefix)
    start = parse_time(args.start) if getattr(args, "start", None) else None
    end = parse_time(args.end) if getattr(args, "end", None) else None
    if args.realtime_command == "learn":
        text, code = commands.learn(prefix, files=args.alerts or [], start=start, end=end, days=args.days,
                                    keep_learning=args.keep_learning)
    elif args.realtime_command == "train":
        text, code = commands.train(prefix, files=args.alerts or [], start=start, end=end, days=args.days,
                                    only=args.model)
    elif args.realtime_command == "status":
        text, code = commands.status(prefix)
    elif args.realtime_command == "cases":
        text, code = commands.cases(write=args.write)
    else:
        text, code = commands.validate(prefix)
    print(text)
    return code


def cmd_backtest(args: argparse.Namespace) -> int:
    from ..ops import backtest as bt
    _, config, scenarios, _ = _context(args)
    if args.report:
        from ..ops.report import require_matplotlib
        require_matplotlib()        # before the backtest's minutes of work, not after
    phases = bt.load_labels(Path(args.labels)) if args.labels else []
    result = bt.backtest(config, scenarios, args.scenario or [], bt.parse_range(args.train, "--train"),
                         bt.parse_range(args.test, "--test"), phases=phases, detector=args.detector,
                         models_dir=Path(args.models_dir) if args.models_dir else None)
    if args.report:
        from ..ops.report import report_from_backtest
        page = report_from_backtest(result, Path(args.report))
        print(f"report: {page}", file=sys.stderr)
    print(json.dumps(result.to_json(), indent=1) if args.json else result.table())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ..ops.report import report_from_installation
    layout, config, scenarios, _ = _context(args)
    from ..ops.feedback import load_feedback
    page = report_from_installation(config, scenarios, args.scenario or None, start=args.start, end=args.end,
                                    labels=Path(args.labels) if args.labels else None, out=Path(args.out),
                                    false_positives=load_feedback(layout))
    print(f"report: {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wazuh-anomaly",
        description="Learns what normal looks like in a Wazuh manager's alerts and raises anomalies as "
                    "native Wazuh alerts (rules 117xxx).")
    parser.add_argument("--version", action="version", version=f"wazuh-anomaly {__version__}")
    parser.add_argument("--prefix", help=f"Wazuh install directory (default: ${PREFIX_ENV} or /var/ossec)")
    parser.add_argument("--config", help="global config file (default: <prefix>/etc/anomaly/config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="print warnings and errors only")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="score new complete buckets of every enabled scenario (what the wodle runs)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--now", help="pretend the time is this (ISO 8601; for replays and tests)")
    p.add_argument("--show", action="store_true", help="also print the anomalies found")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("train", help="learn from history (default: each scenario's training.lookback_days)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--from", dest="start", help="start of the history to learn from (ISO 8601, UTC if no zone)")
    p.add_argument("--to", dest="end", help="end of the history (default: now)")
    p.add_argument("--now", help="pretend the time is this (ISO 8601)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("detect", help="score a historical range with the current models (backfill)")
    p.add_argument("--from", dest="start", required=True, help="start (ISO 8601)")
    p.add_argument("--to", dest="end", required=True, help="end (ISO 8601)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the anomalies without writing them")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("status", help="per scenario: model, age, last scored bucket, lag, last error")
    p.add_argument("--json", action="store_true")
    p.add_argument("--now", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_status)

    from .operations import add_commands
    add_commands(sub, _context)   # models, suppress, feedback

    p = sub.add_parser("validate", help="check the config file and every scenario file")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("show", help="list written anomalies and the Wazuh rule each raises")
    p.add_argument("--last", type=int, default=20, help="how many of the newest lines (0: all; default 20)")
    p.add_argument("--file", help="anomalies file (default: from the config)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("check", help="check the Wazuh indexer: reachable, TLS, auth, health, alert indices, mappings")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("sample-data", help="write the bundled sample alerts (AIT-ADS) into <prefix>/logs/alerts")
    p.add_argument("--shift-to", help="move the sample so that its last day ends at this date (ISO 8601)")
    p.set_defaults(func=cmd_sample_data)

    p = sub.add_parser("backtest", help="train on one range, score a later one: what would have alerted, "
                                        "per labelled phase caught or missed")
    p.add_argument("--scenario", action="append", help="scenario to backtest (repeatable; required)")
    p.add_argument("--train", required=True, metavar="FROM..TO", help="range to learn from (ISO 8601, UTC if no zone)")
    p.add_argument("--test", required=True, metavar="FROM..TO", help="later range to score")
    p.add_argument("--labels", metavar="FILE", help="labelled phases: CSV of start,end,label or an AIT-ADS labels JSON")
    p.add_argument("--detector", choices=("mvad", "seasonal", "both"),
                   help="score with one detector alone, or both side by side (default: as each scenario combines them)")
    p.add_argument("--models-dir", metavar="DIR", help="keep the backtest's models here (default: a temporary "
                                                       "directory; never the production models)")
    p.add_argument("--report", metavar="DIR", help="also write the HTML report and PNGs into DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=cmd_backtest)

    p = sub.add_parser("report", help="write an HTML page with PNGs: features, scores, threshold and anomalies "
                                      "over time, per scenario")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable; default: every enabled one)")
    p.add_argument("--from", dest="start", help="start (ISO 8601; default: 24 hours before --to)")
    p.add_argument("--to", dest="end", help="end (ISO 8601; default: now)")
    p.add_argument("--labels", metavar="FILE", help="labelled phases to shade: CSV of start,end,label or AIT-ADS JSON")
    p.add_argument("--out", default="wazuh-anomaly-report", metavar="DIR",
                   help="directory for index.html and the PNGs (default: ./wazuh-anomaly-report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("ruleset", help="check the shipped rules, or regenerate their test cases")
    rs = p.add_subparsers(dest="ruleset_command", required=True, metavar="ACTION")
    c = rs.add_parser("check", help="ids, parents, fields, PCRE2 patterns — what wazuh-analysisd would reject")
    c.add_argument("--rules", action="append", help="rule directory (repeatable)")
    c.add_argument("--decoders", action="append", help="decoder directory (repeatable)")
    c = rs.add_parser("cases", help="the .ini test cases generated from the emitter")
    c.add_argument("--write", action="store_true", help="update the .ini file")
    c.add_argument("--path", help="the .ini file (default: tests/ruleset/wazuh_anomaly_rules.ini)")
    p.set_defaults(func=cmd_ruleset)

    p = sub.add_parser("logtest", help="run the rule test cases through the manager's logtest socket")
    p.add_argument("files", nargs="*", help=".ini files (default: the shipped cases)")
    p.add_argument("--socket", help="logtest socket (default: <prefix>/queue/sockets/logtest)")
    p.add_argument("--offline", action="store_true",
                   help="use wazuh-anomaly's rule simulator instead of the manager (not Wazuh itself)")
    p.set_defaults(func=cmd_logtest)

    from .netflow import register as register_netflow
    register_netflow(sub)

    p = sub.add_parser("realtime", help="the real-time detectors of integrations/custom-anomaly: learn, train, status")
    rt = p.add_subparsers(dest="realtime_command", required=True, metavar="ACTION")
    c = rt.add_parser("learn", help="replay history through the first-seen detectors, then end learn mode")
    c.add_argument("--alerts", action="append", help="learn from this JSON-lines alerts file (repeatable; default: the manager's alerts)")
    c.add_argument("--from", dest="start", help="start of the history (ISO 8601; default: learn_days before --to)")
    c.add_argument("--to", dest="end", help="end of the history (default: now)")
    c.add_argument("--days", type=float, help="history length when --from is not given (default: learn_days)")
    c.add_argument("--keep-learning", action="store_true", help="stay in learn mode after the replay")
    c = rt.add_parser("train", help="train the rare-event models (FIM, commands) on history")
    c.add_argument("--alerts", action="append", help="train on this JSON-lines alerts file (repeatable)")
    c.add_argument("--from", dest="start", help="start of the history (ISO 8601; default: 30 days before --to)")
    c.add_argument("--to", dest="end", help="end of the history (default: now)")
    c.add_argument("--days", type=float, help="history length when --from is not given (default: each model's training_days, 30)")
    c.add_argument("--model", action="append", help="only this model (repeatable)")
    rt.add_parser("status", help="per detector: learn mode, keys, values, findings; per model: trained or not")
    rt.add_parser("validate", help="check etc/anomaly/realtime.yaml")
    c = rt.add_parser("cases", help="the .ini test cases of rules/wazuh_anomaly_rules_realtime.xml")
    c.add_argument("--write", action="store_true", help="update tests/ruleset/wazuh_anomaly_rules_realtime.ini")
    p.set_defaults(func=cmd_realtime)
    return parser


def _needs_installation(args: argparse.Namespace) -> bool:
    """Whether the command reads the configuration or keeps files under the prefix (then a
    prefix without etc/anomaly is a typo, not a place to create directories in). Checking
    the shipped rules, printing test flows or cases, and sample-data (for a sandbox) do not."""
    if args.command in ("ruleset", "logtest", "sample-data"):
        return False
    if args.command == "netflow":
        return args.netflow_command == "normalize" and args.output != "-"
    if args.command == "realtime":
        return args.realtime_command != "cases"
    return True


def _check_prefix(args: argparse.Namespace, layout: Layout) -> None:
    if args.command == "sample-data" and (args.prefix or os.environ.get(PREFIX_ENV)) and not layout.prefix.is_dir():
        raise WazuhAnomalyError(f"{layout.prefix} does not exist; sample-data writes into an existing sandbox "
                                f"prefix (make it with examples/sandbox.sh or install.sh --prefix DIR).")
    if _needs_installation(args) and not layout.etc_dir.is_dir():
        raise WazuhAnomalyError(f"{layout.prefix} holds no wazuh-anomaly installation (no {layout.etc_dir}); "
                                f"pass the manager's directory with --prefix (default /var/ossec), "
                                f"or install there first with install.sh --prefix {layout.prefix}.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prefix:
        # Everything that derives paths from the environment agrees with --prefix.
        os.environ[PREFIX_ENV] = str(Path(args.prefix).absolute())
    layout = Layout.from_env(args.prefix)
    _setup_logging(layout, args.verbose, args.quiet)
    try:
        _check_prefix(args, layout)
        return args.func(args)
    except WazuhAnomalyError as exc:
        print(f"wazuh-anomaly: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, or a file root owns read by another user: one sentence, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"wazuh-anomaly: {where}{exc.strerror or exc}; check free space and permissions "
              f"(the wodle runs as root).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
