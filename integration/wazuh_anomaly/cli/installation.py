"""`wazuh-anomaly validate | show | check | sample-data`: looking at an installation."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ..core.errors import WazuhAnomalyError
from ..core.paths import PREFIX_ENV, Layout
from .common import command, context


def register(sub) -> None:
    command(sub, "validate", cmd_validate, "check the config file and every scenario file")

    p = command(sub, "show", cmd_show, "list written anomalies and the Wazuh rule each raises")
    p.add_argument("--last", type=int, default=20, help="how many of the newest lines (0: all; default 20)")
    p.add_argument("--file", help="anomalies file (default: from the config)")

    command(sub, "check", cmd_check,
            "check the Wazuh indexer: reachable, TLS, auth, health, alert indices, mappings")

    # A sandbox: it needs no installation, only an existing prefix (checked in the command).
    p = command(sub, "sample-data", cmd_sample_data,
                "write the bundled sample alerts (AIT-ADS) into <prefix>/logs/alerts", installed=False)
    p.add_argument("--shift-to", help="move the sample so that its last day ends at this date (ISO 8601)")


def cmd_validate(args: argparse.Namespace) -> int:
    from ..ops.jobs import binding_problems
    layout, config, scenarios, errors = context(args)
    print(f"config: {config.config_file or '(defaults; ' + str(layout.config_file) + ' not found)'}")
    for s in scenarios:
        entity = f", per {s.entity.field} ({'all' if s.entity.top is None else 'top ' + str(s.entity.top)})" if s.entity else ""
        print(f"scenario {s.name}: {'enabled' if s.enabled else 'disabled'}, {len(s.features)} features, "
              f"{s.bucket_minutes}-minute buckets{entity}, detectors {'+'.join(s.detectors)}")
    errors = list(errors) + binding_problems(layout, config)
    for e in errors:
        for problem in getattr(e, "problems", None) or [str(e)]:   # every problem of a file, one line each
            print(f"error: {problem}")
    return 2 if errors else 0


def cmd_show(args: argparse.Namespace) -> int:
    from ..ops.jobs import written_anomalies
    _, config, _, _ = context(args)
    path = Path(args.file) if args.file else config.anomalies_file
    try:
        shown, total, bad = written_anomalies(path, args.last)
    except FileNotFoundError:
        print(f"{path}: no anomalies written yet (run 'wazuh-anomaly run' first).")
        return 0
    for number in bad:
        print(f"{path}:{number}: not a JSON line, skipped", file=sys.stderr)
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
        print(f"({len(shown)} of {total} lines; the rule each raises is simulated by wazuh-anomaly's rule "
              f"engine; run 'wazuh-anomaly logtest' on the manager to check with Wazuh itself)")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from ..core.indexer import check
    layout, config, scenarios, _ = context(args)
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
    if not layout.prefix.is_dir():
        raise WazuhAnomalyError(f"{layout.prefix} does not exist; sample-data writes into an existing sandbox "
                                f"prefix (make it with examples/sandbox.sh or install.sh --prefix DIR).")
    for line in install_sample_alerts(layout.alerts_dir, shift_to=args.shift_to):
        print(line)
    return 0
