"""The command line as a person at a terminal and the wodle see it: every command
registered one way, each result printed once, progress on a terminal only, and no
command that writes into a source checkout."""
from __future__ import annotations

import argparse
import json
import os
import pty
import shutil
import subprocess
import sys
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from wazuh_anomaly.cli.app import COMMAND_MODULES, build_parser, main
from wazuh_anomaly.sources.sample import lay_out_alerts

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
NOW = "2024-03-03T00:03:00Z"
SCENARIO = textwrap.dedent("""\
    name: auth_test
    description: Failed logins per agent (test)
    bucket_minutes: 5
    entity: {field: agent.name, top: 5}
    features:
      - {name: failures, aggregation: count, filter: {rule.groups: [authentication_failed]}}
    detectors: [seasonal]
    training: {lookback_days: 3, min_history_hours: 24}
    """)


def _alerts(days: float) -> dict[str, list[bytes]]:
    rng = np.random.default_rng(1)
    by_day: dict[str, list[bytes]] = {}
    for bucket in range(int(days * 288)):
        t0 = START + timedelta(minutes=5 * bucket)
        for agent in ("web-01", "db-01", "mail-01"):
            for _ in range(rng.poisson(2)):
                ts = t0 + timedelta(seconds=int(rng.integers(0, 300)))
                alert = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                         "rule": {"level": 5, "id": "5716", "groups": ["authentication_failed"]},
                         "agent": {"id": "001", "name": agent}}
                by_day.setdefault(alert["timestamp"][:10], []).append(json.dumps(alert).encode() + b"\n")
    return {day: sorted(lines) for day, lines in by_day.items()}


@pytest.fixture
def prefix(tmp_path: Path) -> Path:
    """A sandbox with one scenario and two days of alerts: enough to train."""
    scenarios = tmp_path / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "auth_test.yaml").write_text(SCENARIO)
    (tmp_path / "logs" / "anomaly").mkdir(parents=True)
    lay_out_alerts(tmp_path / "logs" / "alerts", _alerts(2))
    return tmp_path


# ------------------------------------------------------------------ one registration style

def _commands(parser: argparse.ArgumentParser, path=()):
    """(command words, parser) of every command a user can run (the leaves)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield from _commands(sub, path + ((name, helps.get(name)),))
            return
    yield path, parser


def test_every_command_has_its_own_function_a_help_text_and_says_whether_it_needs_an_installation():
    commands = list(_commands(build_parser()))
    assert len(commands) >= 25
    for path, parser in commands:
        words = " ".join(name for name, _ in path)
        assert all(help for _, help in path), f"'{words}' has no help text"
        assert callable(parser._defaults.get("func")), f"'{words}' has no function of its own"
        assert "needs_installation" in parser._defaults, f"'{words}' was not added with cli.common.command"


def test_every_command_module_registers_its_commands_the_same_way():
    assert all(callable(getattr(module, "register", None)) for module in COMMAND_MODULES)
    app = (REPO / "integration/wazuh_anomaly/cli/app.py").read_text()
    assert "add_parser(" not in app, "app.py registers commands itself instead of a topic module"


# ------------------------------------------------------------------ no developer tooling in the product

@pytest.mark.parametrize("command", [["ruleset", "cases"], ["netflow", "cases"], ["realtime", "cases"],
                                     ["ruleset", "cases", "--write"]])
def test_the_product_has_no_command_that_writes_the_test_cases_into_a_checkout(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main(command)
    assert exit.value.code == 2
    assert "invalid choice: 'cases'" in capsys.readouterr().err


def test_the_rule_cases_are_regenerated_by_the_developer_script(tmp_path):
    script = [sys.executable, str(REPO / "scripts/update-rule-cases.py")]
    env = {**os.environ, "PYTHONPATH": str(REPO / "integration")}
    shutil.copytree(REPO / "tests/ruleset", tmp_path / "ruleset")
    stale = tmp_path / "ruleset/wazuh_anomaly_rules.ini"
    stale.write_text(stale.read_text() + "\n[hand edit]\n")
    check = subprocess.run([*script, "--check", "--dir", str(tmp_path / "ruleset")], env=env,
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 1 and "wazuh_anomaly_rules.ini: stale" in check.stdout
    assert "[hand edit]" in stale.read_text()
    write = subprocess.run([*script, "--dir", str(tmp_path / "ruleset")], env=env, capture_output=True, text=True,
                           timeout=300)
    assert write.returncode == 0 and "wazuh_anomaly_rules.ini: written" in write.stdout
    assert stale.read_text() == (REPO / "tests/ruleset/wazuh_anomaly_rules.ini").read_text()
    assert "scripts/update-rule-cases.py" in stale.read_text()


# ------------------------------------------------------------------ each message once

def test_train_prints_each_result_once(prefix, capsys):
    assert main(["--prefix", str(prefix), "train", "--now", NOW]) == 0
    out, err = capsys.readouterr()
    version = next((prefix / "var/anomaly/models/auth_test").iterdir()).name
    assert f"auth_test: trained — model {version}" in out
    assert (out + err).count(version) == 1, out + err
    assert err == ""


def test_a_training_that_waits_for_history_says_so_once(tmp_path, capsys):
    scenarios = tmp_path / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "auth_test.yaml").write_text(SCENARIO)
    lay_out_alerts(tmp_path / "logs" / "alerts", _alerts(0.5))
    assert main(["--prefix", str(tmp_path), "train", "--now", "2024-03-01T12:03:00Z"]) == 0
    out, err = capsys.readouterr()
    assert "health insufficient_history (low): scenario auth_test: needs 24.0 h of alert history" in out
    assert (out + err).count("needs 24.0 h of alert history") == 2, out + err   # the scenario line and the health line
    assert err == ""


def test_run_prints_its_summary_once_and_keeps_it_in_the_log_file(prefix, capsys):
    assert main(["--prefix", str(prefix), "run", "--now", NOW]) == 0
    out, err = capsys.readouterr()
    assert "auth_test: trained" in out and err == ""
    assert "auth_test: trained" in (prefix / "logs/anomaly/wazuh-anomaly.log").read_text()


# ------------------------------------------------------------------ progress on a terminal only

def _train(prefix: Path, *options: str, stderr_tty: bool) -> tuple[str, str]:
    """Runs `train` in a child; stderr on a pseudo-terminal or a pipe. (stdout, stderr)."""
    argv = [sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), *options, "train", "--now", NOW]
    env = {**os.environ, "PYTHONPATH": str(REPO / "integration"), "COLUMNS": "200"}
    if not stderr_tty:
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    master, slave = pty.openpty()
    child = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:      # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    out = child.stdout.read().decode()
    assert child.wait(timeout=300) == 0
    reader.join(timeout=30)
    os.close(master)
    return out, b"".join(chunks).decode()


def test_training_on_a_terminal_shows_progress_on_one_line_and_erases_it(prefix):
    out, terminal = _train(prefix, stderr_tty=True)
    assert "\r\x1b[Kreading alerts" in terminal
    assert "\r\x1b[Ktraining 1/1 auth_test" in terminal
    assert "training 1/1 auth_test · detector 1/1 seasonal" in terminal
    assert terminal.endswith("\r\x1b[K")          # the line is gone before the results
    assert "\n" not in terminal.replace("\r\n", "")  # one line rewritten in place, nothing else
    assert "auth_test: trained" in out and "\r" not in out


def test_training_without_a_terminal_shows_no_progress(prefix):
    out, err = _train(prefix, stderr_tty=False)
    assert err == ""
    assert "auth_test: trained" in out and "\r" not in out


def test_quiet_training_on_a_terminal_shows_no_progress(prefix):
    out, terminal = _train(prefix, "-q", stderr_tty=True)
    assert terminal == ""
    assert "auth_test: trained" in out
