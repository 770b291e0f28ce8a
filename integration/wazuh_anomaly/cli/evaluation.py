"""`wazuh-anomaly backtest | report`: how well the detectors did, as a table or pictures."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import command, context


def register(sub) -> None:
    p = command(sub, "backtest", cmd_backtest, "train on one range, score a later one: what would have alerted, "
                                               "per labelled phase caught or missed")
    p.add_argument("--scenario", action="append", help="scenario to backtest (repeatable; required)")
    p.add_argument("--train", required=True, metavar="FROM..TO", help="range to learn from (ISO 8601, UTC if no zone)")
    p.add_argument("--test", required=True, metavar="FROM..TO", help="later range to score")
    p.add_argument("--labels", metavar="FILE", help="labelled phases: CSV of start,end,label or an AIT-ADS labels JSON")
    p.add_argument("--detector", metavar="NAME",
                   help="score with one detector alone (seasonal, mvad or any registered detector), or 'both' for "
                        "seasonal and mvad side by side (default: as each scenario combines them)")
    p.add_argument("--models-dir", metavar="DIR", help="keep the backtest's models here (default: a temporary "
                                                       "directory; never the production models)")
    p.add_argument("--report", metavar="DIR", help="also write the HTML report and PNGs into DIR")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = command(sub, "report", cmd_report, "write an HTML page with PNGs: features, scores, threshold and anomalies "
                                           "over time, per scenario")
    p.add_argument("--scenario", action="append", help="only this scenario (repeatable; default: every enabled one)")
    p.add_argument("--from", dest="start", help="start (ISO 8601; default: 24 hours before --to)")
    p.add_argument("--to", dest="end", help="end (ISO 8601; default: now)")
    p.add_argument("--labels", metavar="FILE", help="labelled phases to shade: CSV of start,end,label or AIT-ADS JSON")
    p.add_argument("--out", default="wazuh-anomaly-report", metavar="DIR",
                   help="directory for index.html and the PNGs (default: ./wazuh-anomaly-report)")


def cmd_backtest(args: argparse.Namespace) -> int:
    from ..ops import backtest as bt
    _, config, scenarios, _ = context(args)
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
    from ..ops.feedback import load_feedback
    from ..ops.report import report_from_installation
    layout, config, scenarios, _ = context(args)
    page = report_from_installation(config, scenarios, args.scenario or None, start=args.start, end=args.end,
                                    labels=Path(args.labels) if args.labels else None, out=Path(args.out),
                                    false_positives=load_feedback(layout))
    print(f"report: {page}")
    return 0
