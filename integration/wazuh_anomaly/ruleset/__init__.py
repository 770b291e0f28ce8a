"""The shipped Wazuh rules and everything that keeps them honest: a checker
(`check`), Wazuh's .ini test format (`inifile`, `cases`), an offline simulator of
wazuh-analysisd (`engine`) and a client of the manager's logtest socket (`logtest`)."""
from __future__ import annotations

import re
import time
from ..core.timeparse import parse_timestamp
from pathlib import Path
from typing import Iterable

from ..emit.emitter import render
from ..core.paths import Layout
from .cases import RULES_FILE_NAME
from .engine import RuleEngine, SimulatedAlert
from .locations import ANOMALIES_REL, manager_file
from .rulefile import load_order

__all__ = ["SimulatedAlert", "default_location", "default_rule_files", "explain", "explain_all", "repo_dir"]


def repo_dir() -> Path | None:
    """The source checkout this package runs from, if any (rules/ and tests/ beside it)."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "rules" / RULES_FILE_NAME).is_file() else None


# What install.sh puts into etc/rules and etc/decoders (every file of rules/ is named so).
OUR_FILES = r"^wazuh_anomaly.*\.xml$"


def is_ours(path: Path) -> bool:
    """A rule or decoder file this project ships (not a stock or the admin's own file)."""
    return re.search(OUR_FILES, Path(path).name) is not None


def default_rule_files() -> list[Path]:
    """Our rule files in Wazuh's load order: the checkout's rules/, else the ones
    installed on this manager (every etc/rules file named like ours)."""
    repo = repo_dir()
    if repo is not None:
        return load_order([repo / "rules"])
    return load_order([Layout.from_env().rules_dir], OUR_FILES)


def default_location(rel: str = ANOMALIES_REL) -> str:
    """Where the rules of default_rule_files() expect the lines of our file `rel`: the
    checkout's rules carry the default prefix, installed ones this manager's prefix."""
    if repo_dir() is not None:
        return manager_file(rel)
    return manager_file(rel, str(Layout.from_env().prefix))


def default_ini_files() -> list[Path]:
    """The checkout's tests/ruleset cases, else the copies install.sh put on this manager."""
    repo = repo_dir()
    if repo is not None:
        return sorted((repo / "tests" / "ruleset").glob("*.ini"))
    return sorted((Layout.from_env().etc_dir / "ruleset-tests").glob("*.ini"))


def _received_at(event: dict) -> float:
    # The manager receives a line moments after the detector writes it.
    text = (event.get("anomaly") or {}).get("detected_at")
    when = parse_timestamp(text) if isinstance(text, str) else None
    return time.time() if when is None else when


def explain_all(events: Iterable[dict], *, rule_files: Iterable[Path] | None = None,
                location: str | None = None) -> list[SimulatedAlert]:
    """The alert each event would raise, in order, in one session (so escalations show),
    read by the manager from anomalies.json (`location`, default default_location())."""
    session = RuleEngine(rule_files or default_rule_files()).session()
    where = location or default_location()
    return [session.process(render(e), now=_received_at(e), location=where) for e in events]


def explain(event: dict, *, rule_files: Iterable[Path] | None = None, location: str | None = None) -> SimulatedAlert:
    """The alert one emitter event would raise on a manager (simulated, not Wazuh)."""
    return explain_all([event], rule_files=rule_files, location=location)[0]
