#!/usr/bin/env python3
"""Regenerate the rule tests in tests/ruleset/*.ini from the real emitter, NetFlow
generator and real-time detectors (developer tool; the product never writes into a
source checkout).

    PYTHONPATH=integration python3 scripts/update-rule-cases.py          # write the stale files
    PYTHONPATH=integration python3 scripts/update-rule-cases.py --check  # exit 1 if any is stale

Run it after changing rules/, the emitter, the NetFlow generator or
wazuh/etc/anomaly/realtime.yaml, and review the diff; tests/test_ruleset.py,
tests/test_netflow_rules.py and tests/test_realtime_integration.py fail while a file is
stale.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def generators(directory: Path):
    """(the .ini file, the function that renders it now) for each generated file."""
    sys.path.insert(0, str(REPO / "tests"))      # the generators are developer tooling (tests/rulecases)
    from rulecases import netflow_cases, realtime_cases
    from wazuh_anomaly.ruleset import cases as anomaly_cases
    for module in (anomaly_cases, netflow_cases, realtime_cases):
        yield directory / module.INI_FILE_NAME, module.render_cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is stale")
    parser.add_argument("--dir", type=Path, default=REPO / "tests" / "ruleset",
                        help="where the .ini files are (default: tests/ruleset of this checkout)")
    args = parser.parse_args(argv)
    stale = 0
    for path, render in generators(args.dir):
        text = render()
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            print(f"{path}: up to date")
            continue
        stale += 1
        if args.check:
            print(f"{path}: stale; run scripts/update-rule-cases.py and review the diff")
        else:
            path.write_text(text, encoding="utf-8")
            print(f"{path}: written")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
