"""`wazuh-anomaly realtime learn | train | status | validate`: the real-time detectors of
integrations/custom-anomaly (the work is in realtime/jobs.py)."""
from __future__ import annotations

import argparse

from ..core.paths import Layout
from .common import command, group, time_or_none


def register(sub) -> None:
    rt = group(sub, "realtime", "the real-time detectors: serve (the service), learn, train, status",
               dest="realtime_command")
    c = command(rt, "learn", cmd_learn, "replay history through the first-seen detectors, then end learn mode")
    c.add_argument("--alerts", action="append", help="learn from this JSON-lines alerts file (repeatable; default: the manager's alerts)")
    c.add_argument("--from", dest="start", help="start of the history (ISO 8601; default: learn_days before --to)")
    c.add_argument("--to", dest="end", help="end of the history (default: now)")
    c.add_argument("--days", type=float, help="history length when --from is not given (default: learn_days)")
    c.add_argument("--keep-learning", action="store_true", help="stay in learn mode after the replay")

    c = command(rt, "train", cmd_train, "train the rare-event models (FIM, commands) on history")
    c.add_argument("--alerts", action="append", help="train on this JSON-lines alerts file (repeatable)")
    c.add_argument("--from", dest="start", help="start of the history (ISO 8601; default: 30 days before --to)")
    c.add_argument("--to", dest="end", help="end of the history (default: now)")
    c.add_argument("--days", type=float, help="history length when --from is not given (default: each model's training_days, 30)")
    c.add_argument("--model", action="append", help="only this model (repeatable)")

    c = command(rt, "serve", cmd_serve, "follow alerts.json and judge each alert as it is written, in batches "
                                        "(the wazuh-anomaly-realtime service; stop with SIGTERM)")
    c.add_argument("--alerts", help="the alerts file to follow (default: logs/alerts/alerts.json under the prefix)")
    c.add_argument("--from-start", action="store_true",
                   help="with no saved position, start at the beginning of the file (default: at its end)")
    c.add_argument("--poll", type=float, default=0.2, help="seconds between looks at an idle file (default 0.2)")
    c.add_argument("--batch", type=int, default=4096, help="alerts judged and committed together at most (default 4096)")
    c.add_argument("--idle-exit", type=float, help="stop after this many seconds without a new line (replays, tests)")

    command(rt, "status", cmd_status, "per detector: learn mode, keys, values, findings; per model: trained or not")
    command(rt, "validate", cmd_validate, "check etc/anomaly/realtime.yaml")


def _prefix(args: argparse.Namespace) -> str:
    return str(Layout.from_env(args.prefix).prefix)


def cmd_learn(args: argparse.Namespace) -> int:
    from ..realtime import jobs
    text, code = jobs.learn(_prefix(args), files=args.alerts or [], start=time_or_none(args.start),
                            end=time_or_none(args.end), days=args.days, keep_learning=args.keep_learning)
    print(text)
    return code


def cmd_train(args: argparse.Namespace) -> int:
    from ..realtime import jobs
    text, code = jobs.train(_prefix(args), files=args.alerts or [], start=time_or_none(args.start),
                            end=time_or_none(args.end), days=args.days, only=args.model)
    print(text)
    return code


def cmd_serve(args: argparse.Namespace) -> int:
    import signal
    import sys

    from ..realtime.service import RealtimeService
    layout = Layout.from_env(args.prefix)
    if args.batch < 1 or not args.poll > 0:
        print("--batch must be at least 1 and --poll above 0.", file=sys.stderr)
        return 2
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))   # the batch in hand is finished and committed
    service = RealtimeService(str(layout.prefix), args.alerts or str(layout.alerts_file), from_start=args.from_start,
                              poll_seconds=args.poll, batch_lines=args.batch)
    stats = service.run(lambda: bool(stopping), idle_exit_seconds=args.idle_exit,
                        ready=lambda sentence: print(f"{sentence} (stop with SIGTERM or Ctrl-C)", file=sys.stderr, flush=True))
    print(stats.describe())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ..realtime import jobs
    text, code = jobs.status(_prefix(args))
    print(text)
    return code


def cmd_validate(args: argparse.Namespace) -> int:
    from ..realtime import jobs
    text, code = jobs.validate(_prefix(args))
    print(text)
    return code
