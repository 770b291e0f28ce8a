"""The CLI commands of this package, each returning (text to print, exit code), so
that cli.py only parses arguments: `ruleset check`, `ruleset cases [--write]`,
`logtest [--socket PATH] [--offline] [FILES...]`."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..core.errors import WazuhAnomalyError
from ..core.paths import Layout
from ..ruleset import default_ini_files, default_rule_files, is_ours, repo_dir
from ..ruleset.cases import INI_FILE_NAME, render_cases, write_cases
from ..ruleset.check import check_ruleset, format_problems
from ..ruleset.logtest import format_results, run_cases, run_cases_offline
from ..ruleset.rulefile import load_order


def ruleset_check(rules_dirs: Iterable[Path] | None = None,
                  decoders_dirs: Iterable[Path] | None = None, *,
                  layout: Layout | None = None) -> tuple[str, int]:
    """Problems in the rule files; exit 1 when any is an error.

    Directories given: every file in them is judged. Otherwise the source checkout's
    rules/ (all ours), or, on a manager (no checkout, or `layout` given), the directories
    analysisd loads by default: ruleset/ and etc/ rules and decoders. There every file is
    loaded once, for parents and duplicate ids, but only ours (wazuh_anomaly*.xml) are
    judged; the stock and the admin's own files are listed as not checked.
    """
    repo = repo_dir()
    ours = None
    if rules_dirs is None and (layout is not None or repo is None):
        layout = layout or Layout.from_env()
        rules_dirs = [layout.prefix / "ruleset" / "rules", layout.rules_dir]
        if decoders_dirs is None:
            decoders_dirs = [layout.prefix / "ruleset" / "decoders", layout.decoders_dir]
        ours = is_ours
    if rules_dirs is None:
        rules_dirs = [repo / "rules"]
    if decoders_dirs is None:
        decoders_dirs = [repo / "decoders"] if repo else [(layout or Layout.from_env()).decoders_dir]
    rules_dirs, decoders_dirs = list(rules_dirs), list(decoders_dirs)
    problems = check_ruleset(rules_dirs, decoders_dirs, ours=ours)
    lines = []
    files = load_order(rules_dirs) + load_order(decoders_dirs)
    checked = [p for p in files if ours is None or ours(p)]
    skipped = [p for p in files if ours is not None and not ours(p)]
    if not checked:
        raise WazuhAnomalyError(f"No rule files of wazuh-anomaly in {', '.join(map(str, rules_dirs))}; "
                                f"install them with install.sh, or name the directory with --rules.")
    lines.append(f"checked {len(checked)} file(s): {', '.join(str(p) for p in checked)}")
    if skipped:
        names = ", ".join(p.name for p in skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        lines.append(f"not checked (not wazuh-anomaly's, loaded only for rule ids and parents): "
                     f"{len(skipped)} file(s): {names}")
    lines.append(format_problems(problems))
    return "\n".join(lines), 1 if any(p.severity == "error" for p in problems) else 0


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
