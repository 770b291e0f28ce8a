"""How every command is registered, and what the commands share.

Each topic module of the CLI (scoring, installation, evaluation, operations, ruleset,
netflow, realtime) has one function, `register(subparsers)`, which adds its commands
with `command(...)` (one command) or `group(...)` (a command with actions, each added
with `command(...)`). Every command is a function `(args) -> exit code` that parses
nothing more, calls one library function and prints its result.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

Command = Callable[[argparse.Namespace], int]


def command(subparsers, name: str, func: Command, help: str, *,
            installed: bool | Callable[[argparse.Namespace], bool] = True) -> argparse.ArgumentParser:
    """Adds one command. `installed`: whether it reads the configuration or keeps files
    under the prefix (then a prefix without etc/anomaly is a typo, not a place to create
    directories in); a function of the arguments when that depends on them."""
    parser = subparsers.add_parser(name, help=help, description=help)
    parser.set_defaults(func=func, needs_installation=installed)
    return parser


def group(subparsers, name: str, help: str, *, dest: str):
    """Adds a command with actions (`wazuh-anomaly NAME ACTION`); returns their subparsers."""
    parser = subparsers.add_parser(name, help=help, description=help)
    return parser.add_subparsers(dest=dest, required=True, metavar="ACTION")


def needs_installation(args: argparse.Namespace) -> bool:
    installed = args.needs_installation
    return installed(args) if callable(installed) else bool(installed)


def context(args: argparse.Namespace):
    """(layout, config, scenarios, scenario errors) of the installation under --prefix."""
    from ..core.config import load_config, load_scenarios, share_budget
    from ..core.paths import Layout
    from ..detectors import quiet_libraries
    layout = Layout.from_env(args.prefix)
    config = load_config(layout, Path(args.config) if args.config else None)
    quiet_libraries(config.state_dir / ".cache")
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    scenarios = share_budget(scenarios, config.alerts_per_day, config.realtime_budget_share)
    return layout, config, scenarios, errors


def runner(args: argparse.Namespace):
    from ..ops.runner import Runner, parse_time
    _, config, scenarios, errors = context(args)
    now = parse_time(args.now) if getattr(args, "now", None) else None
    return Runner(config, scenarios, config_errors=errors, now=now)


def time_or_none(text: str | None) -> float | None:
    from ..ops.runner import parse_time
    return parse_time(text) if text else None
