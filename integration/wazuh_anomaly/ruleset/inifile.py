"""Wazuh's own rule-test format (`ruleset/testing/tests/*.ini`), read as its runner reads it.

`ruleset/testing/runtests.py` (v4.14.x) parses with a RawConfigParser whose dict
extends repeated keys, so repeating `log 1 pass = …` in a section makes ONE run of
several lines: they are piped into one `wazuh-logtest -U rule:alert:decoder` (one
session, so frequency rules accumulate) and only the LAST line's result is compared.
Each distinct `log N pass|fail` key is a separate run; `fail` expects no match.

Our extension: `location = …` says where the section's lines come from, as a logtest
request carries it (a manager file's path, "[id] (agent) ip->path" for an agent, a
syslog sender's address). Our rules only match their own file on the manager, so
`wazuh-anomaly logtest` sends it; Wazuh's runtests.py ignores the key and sends
wazuh-logtest's default location "stdin", so it cannot run these files.
"""
from __future__ import annotations

import configparser
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import WazuhAnomalyError


class IniError(WazuhAnomalyError):
    """A rule-test .ini file cannot be read."""


class _MultiOrderedDict(OrderedDict):
    """runtests.py's MultiOrderedDict: a repeated key appends its lines."""

    def __setitem__(self, key, value):
        if isinstance(value, list) and key in self:
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


@dataclass(frozen=True)
class Run:
    """One `log N pass|fail` key: its lines go through one logtest session."""

    name: str
    lines: tuple[str, ...]
    expect_match: bool


@dataclass(frozen=True)
class Section:
    """One [section]: expected rule, level and decoder for each of its runs."""

    file: Path
    name: str
    rule: str
    alert: str
    decoder: str
    runs: tuple[Run, ...]
    location: str = ""              # "" when the section does not say (logtest's "stdin")


def read_ini(path: Path) -> list[Section]:
    """All sections of one .ini file, as runtests.py would run them."""
    parser = configparser.RawConfigParser(dict_type=_MultiOrderedDict, strict=False)
    try:
        with open(path, encoding="utf-8") as fh:
            parser.read_file(fh, source=str(path))
    except OSError as exc:
        raise IniError(f"{path}: cannot read the test file ({exc.strerror}); check the path.") from exc
    except configparser.Error as exc:
        raise IniError(f"{path}: not a valid rule-test .ini file ({exc.message.splitlines()[0]}).") from exc
    sections = []
    for name in parser.sections():
        missing = [k for k in ("rule", "alert", "decoder") if not parser.has_option(name, k)]
        if missing:
            raise IniError(f"{path}: section [{name}] has no {', '.join(missing)}; add 'rule = …', 'alert = …' and 'decoder = …'.")
        runs = []
        for key, value in parser.items(name):
            if not key.startswith("log "):
                continue
            lines = tuple(line for line in value.split("\n") if line)
            runs.append(Run(key, lines, expect_match=not key.endswith("fail")))
        location = parser.get(name, "location") if parser.has_option(name, "location") else ""
        if "\n" in location:
            raise IniError(f"{path}: section [{name}] has more than one 'location' line; keep one.")
        sections.append(Section(Path(path), name, parser.get(name, "rule"), parser.get(name, "alert"),
                                parser.get(name, "decoder"), tuple(runs), location))
    return sections


@dataclass(frozen=True)
class CaseSpec:
    """A section to write: `lines` become repeated `log 1 pass` (one session), or
    `log 1 fail` when the lines must NOT raise `rule` (a forged line)."""

    name: str
    lines: tuple[str, ...]
    rule: int
    alert: int
    decoder: str = "json"
    comment: str = ""
    location: str = ""
    expect_match: bool = True


def render_ini(cases: list[CaseSpec], header: str) -> str:
    out = [f"; {line}".rstrip() for line in header.splitlines()]
    for case in cases:
        out.append("")
        if case.comment:
            out.extend(f"; {line}".rstrip() for line in case.comment.splitlines())
        out.append(f"[{case.name}]")
        key = "log 1 pass" if case.expect_match else "log 1 fail"
        out.extend(f"{key} = {line}" for line in case.lines)
        out.append(f"rule = {case.rule}")
        out.append(f"alert = {case.alert}")
        out.append(f"decoder = {case.decoder}")
        if case.location:
            out.append(f"location = {case.location}")
    return "\n".join(out) + "\n"
