"""What a newcomer types and reads: a wrong --prefix, the sandbox script, and every
command a message or the README suggests.

A message that suggests a command is part of the interface: each suggestion found in
the package's messages, in install.sh's closing lines and in the README's command
examples must parse with the CLI's own argument parser, and the files they name must
exist.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from wazuh_anomaly.cli.app import build_parser, main

SCENARIOS = sorted(p.stem for p in (REPO / "wazuh/etc/anomaly/scenarios").glob("*.yaml"))


def snapshot(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


# ------------------------------------------------------------------ a prefix with no installation

@pytest.mark.parametrize("command", [
    ["run"], ["train"], ["status"], ["validate"], ["show"], ["detect", "--from", "2024-03-01", "--to", "2024-03-02"],
    ["models", "list"], ["suppress", "list"], ["feedback", "--list"], ["check"],
    ["realtime", "learn"], ["realtime", "status"], ["realtime", "train"],
    ["report", "--out", "r"], ["netflow", "normalize", "flows.json"],
])
def test_a_prefix_without_an_installation_is_an_error_and_nothing_is_created(tmp_path, capsys, command):
    typo = tmp_path / "typo"
    before = snapshot(tmp_path)
    assert main(["--prefix", str(typo), *command]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"wazuh-anomaly: {typo} holds no wazuh-anomaly installation (no {typo}/etc/anomaly); "
                           f"pass the manager's directory with --prefix (default /var/ossec), "
                           f"or install there first with install.sh --prefix {typo}.")
    assert snapshot(tmp_path) == before and not typo.exists()


def test_sample_data_into_a_prefix_that_does_not_exist_is_an_error(tmp_path, capsys):
    assert main(["--prefix", str(tmp_path / "typo"), "sample-data"]) == 2
    assert "typo does not exist; sample-data writes into an existing sandbox prefix" in capsys.readouterr().err
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("command", [["ruleset", "check", "--rules", str(REPO / "rules"), "--decoders", str(REPO / "decoders")],
                                     ["netflow", "generate", "--count", "1"],
                                     ["netflow", "normalize", "--output", "-", "EMPTY_FLOW_FILE"]])
def test_commands_about_the_shipped_files_need_no_installation(tmp_path, command, capsys):
    flows = tmp_path / "flows.json"          # pmacct's output: a plain file (a device or FIFO is refused)
    flows.write_bytes(b"")
    command = [str(flows) if c == "EMPTY_FLOW_FILE" else c for c in command]
    assert main(["--prefix", str(tmp_path / "none"), *command]) == 0
    assert not (tmp_path / "none").exists()


# ------------------------------------------------------------------ examples/sandbox.sh

@pytest.mark.parametrize("which", ["prefix", "venv"])
def test_sandbox_refuses_a_non_empty_directory_it_did_not_make(tmp_path, which):
    prefix = tmp_path / "mine"
    target = prefix if which == "prefix" else Path(f"{prefix}.venv")
    target.mkdir()
    (target / "thesis.tex").write_text("three years of work")
    proc = subprocess.run(["bash", str(REPO / "examples/sandbox.sh"), str(prefix)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"sandbox.sh: {target} exists and was not made by sandbox.sh, so it is not deleted; "
                                   f"name a new or empty directory (or remove it yourself).")
    assert (target / "thesis.tex").read_text() == "three years of work"


# ------------------------------------------------------------------ every suggested command parses

# Placeholders of messages and docs, and a value of the right kind for each.
PLACEHOLDERS = {
    "{s.name}": "alert_volume", "{scenario.name}": "alert_volume", "{name}": "alert_volume", "S": "alert_volume",
    "ID": "0123456789abcdef0123", "E": "web-01", "VERDICT": "false-positive", "TEXT": "note", "FILE": "x.ini", "DIR": "/tmp/d",
    "T": "2024-03-01", "F": "-", "CIDRS": "10.0.0.0/8", "FROM..TO": "2024-03-01..2024-03-02",
}


def _suggestions_in_code() -> list[tuple[str, str]]:
    """'wazuh-anomaly ...' quoted inside the package's strings (what a message tells the user to run)."""
    found = []
    for path in sorted((REPO / "integration/wazuh_anomaly").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for match in re.finditer(r"'wazuh-anomaly ([a-z][^'\n]*)'", text):
            found.append((f"{path.relative_to(REPO)}", match.group(1)))
    return found


def _suggestions_in_docs() -> list[tuple[str, str]]:
    """Command lines in the README's and docs' code blocks and inline code, and install.sh's next steps."""
    found = []
    for path in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\\\n\s*", " ", text)   # continued lines of a code block
        for match in re.finditer(r"(?:^|`)(?:\S*/)?wazuh-anomaly (?:--prefix \S+ )?([a-z][^`\n#]*)", text, re.M):
            found.append((path.name, match.group(1)))
    install = "\n".join(p.read_text() for p in (REPO / "install.sh", *sorted((REPO / "lib").glob("*.sh"))))
    for match in re.finditer(r'^\s*say "  [^:]*:\s+\$launcher ([a-z][^";]*)', install, re.M):
        found.append(("install.sh", match.group(1)))
    return found


def _expand(line: str) -> list[list[str]] | None:
    """argv lists for a suggested command line (one per alternative a|b), None for syntax summaries."""
    line = line.strip().rstrip(".;,")
    if "[" in line or "…" in line or "..." in line.replace("..TO", ""):
        return None   # a usage summary ([--opt]) or an elided example
    try:
        words = shlex.split(line)
    except ValueError:
        return None
    out = [[]]
    for word in words:
        if word in ("|", "&&", ";") or word.startswith((">", "|")):
            break
        value = PLACEHOLDERS.get(word, word)
        for key, replacement in PLACEHOLDERS.items():
            if key.startswith("{"):
                value = value.replace(key, replacement)
        choices = value.split("|") if "|" in value and not value.startswith("-") else [value]
        out = [argv + [c] for argv in out for c in choices]
    return out


def _all_suggestions():
    return _suggestions_in_code() + _suggestions_in_docs()


def test_the_suggestions_are_found():
    found = _all_suggestions()
    assert len(found) > 40
    assert any("train --scenario" in s for _, s in found)
    assert any(where == "install.sh" for where, _ in found)


@pytest.mark.parametrize("where,line", _all_suggestions(), ids=lambda v: v if isinstance(v, str) else None)
def test_every_suggested_command_parses_and_names_files_that_exist(where, line):
    variants = _expand(line)
    if variants is None:
        pytest.skip("a usage summary, not a command line")
    parser = build_parser()

    def exit(status=0, message=None):
        if status:
            pytest.fail(f"{where}: 'wazuh-anomaly {line}' does not parse: {message}")
        raise _Helped

    parser.exit = exit
    parser.error = lambda message: pytest.fail(f"{where}: 'wazuh-anomaly {line}' does not parse: {message}")
    for argv in variants:
        try:
            args = _parse(parser, argv)
        except _Helped:   # --help: printed the usage and would exit 0
            continue
        named = getattr(args, "scenario", None) if args.command != "netflow" else None   # netflow: its own generators
        for scenario in [named] if isinstance(named, str) else named or []:
            assert scenario in SCENARIOS, f"{where}: 'wazuh-anomaly {line}' names an unknown scenario {scenario}"
        labels = getattr(args, "labels", None)
        if labels and labels not in PLACEHOLDERS.values():
            assert (REPO / labels).is_file(), f"{where}: 'wazuh-anomaly {line}': --labels {labels} does not exist"


class _Helped(Exception):
    pass


def _parse(parser, argv):
    # Sub-parsers exit through their own instances: make every one of them fail the test.
    for action in parser._actions:
        for sub in getattr(action, "choices", None) and isinstance(action.choices, dict) and action.choices.values() or []:
            sub.exit = parser.exit
            sub.error = parser.error
            _parse_subparsers(sub, parser)
    return parser.parse_args(argv)


def _parse_subparsers(sub, parser):
    for action in sub._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for deeper in choices.values():
                deeper.exit = parser.exit
                deeper.error = parser.error


# ------------------------------------------------------------------ the flow baseline before any flows

def test_train_of_the_flow_baseline_before_any_netflow_events_says_what_to_start(tmp_path, capsys):
    prefix = tmp_path / "ossec"
    (prefix / "etc/anomaly").mkdir(parents=True)
    shutil.copytree(REPO / "wazuh/etc/anomaly/scenarios", prefix / "etc/anomaly/scenarios")
    assert main(["--prefix", str(prefix), "train", "--scenario", "flow_baseline"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"wazuh-anomaly: scenario flow_baseline counts NetFlow events and {prefix}/logs/anomaly/netflow.json does not "
        f"exist yet; start the NetFlow normaliser first ('wazuh-anomaly netflow normalize --follow', see "
        f"docs/netflow.md).")


def test_the_report_does_not_suggest_training_the_flow_baseline_before_any_netflow_events(tmp_path):
    from wazuh_anomaly.core.config import load_config, load_scenarios
    from wazuh_anomaly.core.paths import Layout
    from wazuh_anomaly.ops.report import report_from_installation
    from wazuh_anomaly.ops.runner import Runner, parse_time
    from wazuh_anomaly.sources.sample import install_sample_alerts
    prefix = tmp_path / "ossec"
    scenarios_dir = prefix / "etc/anomaly/scenarios"
    scenarios_dir.mkdir(parents=True)
    text = (REPO / "wazuh/etc/anomaly/scenarios/alert_volume.yaml").read_text()
    (scenarios_dir / "alert_volume.yaml").write_text(text.replace("detectors: [mvad, seasonal]", "detectors: [seasonal]"))
    shutil.copy(REPO / "wazuh/etc/anomaly/scenarios/flow_baseline.yaml", scenarios_dir)
    install_sample_alerts(prefix / "logs/alerts")
    layout = Layout(prefix)
    scenarios, _ = load_scenarios(layout.scenarios_dir)
    config = load_config(layout)
    now = parse_time("2022-01-25T00:10:00Z")
    Runner(config, scenarios, now=now).train(start=parse_time("2022-01-21"), end=parse_time("2022-01-24"))
    page = report_from_installation(config, scenarios, None, start="2022-01-24", end="2022-01-25",
                                    out=tmp_path / "report", now=now).read_text()
    assert "train --scenario flow_baseline" not in page
    assert "flow_baseline: no model yet, not drawn: scenario flow_baseline counts NetFlow events" in page
