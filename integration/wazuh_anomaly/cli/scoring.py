"""`wazuh-anomaly run | train | detect | status`: scoring and training the scenarios."""
from __future__ import annotations

import argparse
import json
import logging
import sys

from ..core.errors import LockBusy
from .common import command, runner, time_or_none

log = logging.getLogger("wazuh_anomaly")


def register(sub) -> None:
    p = command(sub, "run", cmd_run, "score new complete buckets of every enabled scenario (what the wodle runs)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--now", help="pretend the time is this (ISO 8601; for replays and tests)")
    p.add_argument("--show", action="store_true", help="also print the anomalies found")

    p = command(sub, "train", cmd_train, "learn from history (default: each scenario's training.lookback_days)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--from", dest="start", help="start of the history to learn from (ISO 8601, UTC if no zone)")
    p.add_argument("--to", dest="end", help="end of the history (default: now)")
    p.add_argument("--now", help="pretend the time is this (ISO 8601)")

    p = command(sub, "detect", cmd_detect, "score a historical range with the current models (backfill)")
    p.add_argument("--from", dest="start", required=True, help="start (ISO 8601)")
    p.add_argument("--to", dest="end", required=True, help="end (ISO 8601)")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="print the anomalies without writing them")
    p.add_argument("--json", action="store_true", help="print events as JSON lines")

    p = command(sub, "status", cmd_status, "per scenario: model, age, last scored bucket, lag, last error")
    p.add_argument("--json", action="store_true", help="print the status as JSON")
    p.add_argument("--now", help=argparse.SUPPRESS)


def cmd_run(args: argparse.Namespace) -> int:
    from ..ops import jobs
    try:
        report = jobs.run(runner(args), args.scenario or None)
    except LockBusy as exc:
        print(f"wazuh-anomaly: {exc}", file=sys.stderr)
        return 0
    for line in report.lines():
        log.info("%s", line)     # the wodle's record (its output is thrown away)
        print(line)
    if args.show:
        print_anomalies(report.anomalies, as_json=False)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..ops import jobs
    lines, code = jobs.train(runner(args), args.scenario or None, time_or_none(args.start), time_or_none(args.end))
    for line in lines:
        print(line)
    return code


def cmd_detect(args: argparse.Namespace) -> int:
    from ..ops.runner import parse_time
    report = runner(args).detect(parse_time(args.start), parse_time(args.end), args.scenario or None,
                                 write=not args.dry_run)
    print_anomalies(report.anomalies, as_json=args.json)
    if not args.json:
        for line in report.lines():
            print(line, file=sys.stderr)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    r = runner(args)
    rows = r.status()
    skipped = r.input_status()
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
        print(f"skipped input: {skipped}; see 'Troubleshooting' in docs/operations.md.")
    from ..core.errors import WazuhAnomalyError
    from ..realtime.jobs import model_status_lines
    try:
        for line in model_status_lines(str(r.config.layout.prefix)):
            print(f"realtime model {line}")
    except WazuhAnomalyError as exc:
        print(f"realtime models: {exc}")
    return 0


def print_anomalies(anomalies, *, as_json: bool) -> None:
    from datetime import datetime, timezone

    from ..emit.emitter import event_for, render
    now = datetime.now(timezone.utc)
    for a in anomalies:
        if as_json:
            print(render(event_for(a, detected_at=now)))
        else:
            entity = f" {a.entity_field}={a.entity_value}" if a.entity_value is not None else ""
            top = ", ".join(f"{f.name}={f.actual:g} (expected {f.expected:g})" for f in a.top_features[:3])
            print(f"{a.window_start:%Y-%m-%d %H:%M} {a.scenario}{entity} {a.severity} "
                  f"[{a.detector} score {a.score:.4g} > {a.threshold:.4g}]: {top}")
