"""The CLI commands of this package, each returning (text to print, exit code), so
that cli.py only parses arguments: `ruleset check`, `ruleset cases [--write]`,
`logtest [--socket PATH] [--offline] [FILES...]`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import WazuhAnomalyError
from ..paths import Layout
from . import default_ini_files, default_rule_files, repo_dir
from .cases import INI_FILE_NAME, render_cases, write_cases
from .check import check_ruleset, format_problems
from .logtest import format_results, run_cases, run_cases_offline


def ruleset_check(rules_dirs: Iterable[Path] | None = None,
                  decoders_dirs: Iterable[Path] | None = None) -> tuple[str, int]:
    """Problems in the rule files; exit 1 when any is an error."""
    repo = repo_dir()
    if rules_dirs is None:
        rules_dirs = [repo / "rules"] if repo else [p.parent for p in default_rule_files()]
    if decoders_dirs is None:
        decoders_dirs = [repo / "decoders"] if repo else [Layout.from_env().decoders_dir]
    problems = check_ruleset(list(rules_dirs), list(decoders_dirs))
    return format_problems(problems), 1 if any(p.severity == "error" for p in problems) else 0


def ruleset_cases(*, write: bool = False, path: Path | None = None) -> tuple[str, int]:
    """Without write: the .ini text (exit 1 if the committed file differs); with write: update it."""
    if path is None:
        repo = repo_dir()
        if repo is None:
            raise WazuhAnomalyError(f"No source checkout found; pass the path of {INI_FILE_NAME} to write.")
        path = repo / "tests" / "ruleset" / INI_FILE_NAME
    if write:
        changed = write_cases(path)
        return (f"wrote {path}" if changed else f"{path} is up to date"), 0
    text = render_cases()
    stale = not path.exists() or path.read_text(encoding="utf-8") != text
    return text.rstrip("\n") + (f"\n; {path} differs: run with --write" if stale else ""), 1 if stale else 0


def logtest(files: Iterable[Path] = (), *, socket_path: Path | None = None, offline: bool = False,
            rule_files: Iterable[Path] | None = None) -> tuple[str, int]:
    """The .ini cases through the manager's logtest socket (or the simulator); exit 1 on a failure."""
    files = list(files) or default_ini_files()
    if not files:
        raise WazuhAnomalyError("No rule-test .ini file given and no source checkout found; pass the files to run.")
    if offline:
        results = run_cases_offline(files, list(rule_files or default_rule_files()))
    else:
        results = run_cases(socket_path or Layout.from_env().logtest_socket, files)
    return format_results(results), 0 if all(r.passed for r in results) else 1
