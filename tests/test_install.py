"""install.sh on a sandbox prefix: real bash, real files, a real pip install of the package.

The sandbox mirrors a manager's /var/ossec (etc/ossec.conf from tests/data, etc/rules,
etc/decoders, logs/, bin/). The virtualenvs are fresh `python -m venv` ones whose
site-packages hold a .pth line pointing at this interpreter's site-packages, so torch and
the other dependencies are already there: install.sh skips the torch step and pip really
installs our package, offline.
"""
from __future__ import annotations

import grp
import hashlib
import json
import importlib.util
import os
import re
import shutil
import site
import stat
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wazuh_anomaly.core.paths import LAYOUT, Layout
from wazuh_anomaly.ruleset.engine import RuleEngine
from wazuh_anomaly.ruleset.inifile import read_ini
from wazuh_anomaly.ruleset.locations import AGENT_NAME, agent_location, file_pattern, pcre2_literal
from wazuh_anomaly.ruleset.rulefile import load_order, read_rule_file

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "install.sh"
MANAGER_CONF = Path(__file__).parent / "data" / "ossec.conf"
STOCK_MANAGER = Path(__file__).parent / "data" / "manager"
BEGIN = "<!-- wazuh-anomaly:begin (managed by install.sh, do not edit inside) -->"
END = "<!-- wazuh-anomaly:end -->"

# Tests that pip-install the package (about 10 s each); deselect with -m "not pip".
pip = pytest.mark.pip
needs_torch = pytest.mark.skipif(
    importlib.util.find_spec("torch") is None,
    reason="install.sh would download torch: run the tests with the project's environment",
)


def _can_chown() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        grp.getgrnam("wazuh")
    except KeyError:
        return False
    return True


CAN_CHOWN = _can_chown()


# ---------------------------------------------------------------- helpers

def run(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs install.sh with no terminal on stdin, as a scheduled job or CI would."""
    clean_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    clean_env.update(env or {})
    proc = subprocess.run(
        ["bash", str(INSTALL), *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, env=clean_env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"install.sh {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root with its type and mode, owner, group and, for files, sha256."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            entry: tuple = (stat.filemode(st.st_mode), st.st_uid, st.st_gid)
            if stat.S_ISREG(st.st_mode):
                entry += (hashlib.sha256(p.read_bytes()).hexdigest(),)
            out[p.relative_to(root).as_posix()] = entry
    return out


def make_prefix(root: Path, conf_text: str | None = None) -> Path:
    """A sandbox manager directory laid out like /var/ossec."""
    prefix = root / "ossec"
    for d in ("etc/rules", "etc/decoders", "logs/alerts", "bin", "queue/sockets"):
        (prefix / d).mkdir(parents=True)
    conf = prefix / "etc" / "ossec.conf"
    conf.write_text(conf_text if conf_text is not None else MANAGER_CONF.read_text())
    conf.chmod(0o660)
    # The stock rule and decoder files a manager has before we install anything.
    for src in STOCK_MANAGER.rglob("*.xml"):
        dst = prefix / src.relative_to(STOCK_MANAGER)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    (prefix / "logs/alerts/alerts.json").write_text("")
    return prefix


def make_venv(path: Path) -> Path:
    """A fresh virtualenv that sees this interpreter's site-packages (torch and all)."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    # Its own older setuptools would shadow the runner's one that torch requires.
    subprocess.run([str(path / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", "setuptools"],
                   capture_output=True)
    purelib = subprocess.run(
        [str(path / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    runner_sites = [p for p in site.getsitepackages() if Path(p).is_dir()]
    Path(purelib, "wazuh_anomaly_test_runner.pth").write_text("\n".join(runner_sites) + "\n")
    return path


def block_of(conf: Path) -> ET.Element:
    text = conf.read_text()
    assert text.count(BEGIN) == 1 and text.count(END) == 1, "expected exactly one wazuh-anomaly block"
    inner = text.split(BEGIN, 1)[1].split(END, 1)[0]
    return ET.fromstring(inner)


def venv_imports_package(venv: Path) -> bool:
    probe = "import wazuh_anomaly, sys; sys.exit(0 if wazuh_anomaly.__file__.startswith(sys.prefix) else 3)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, env=env).returncode == 0


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def scratch_venv(tmp_path_factory) -> Path:
    """Shared by the tests that install and uninstall again."""
    return make_venv(tmp_path_factory.mktemp("venv") / "scratch")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, subprocess.CompletedProcess]:
    """One install into its own prefix and virtualenv, for the read-only checks."""
    root = tmp_path_factory.mktemp("installed")
    prefix = make_prefix(root)
    venv = make_venv(root / "venv")
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--no-restart")
    return prefix, venv, proc


@pytest.fixture
def prefix(tmp_path) -> Path:
    return make_prefix(tmp_path)


# ---------------------------------------------------------------- what an install leaves

@pip
@needs_torch
def test_launcher_is_root_wazuh_0750_and_execs_the_virtualenv_cli(installed):
    prefix, venv, _ = installed
    launcher = prefix / "wodles/anomaly/wazuh-anomaly"
    st = launcher.stat()
    assert stat.S_IMODE(st.st_mode) == 0o750
    if CAN_CHOWN:
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("wazuh").gr_gid)
    text = launcher.read_text()
    assert text.startswith("#!/bin/sh\n")
    assert f"exec '{venv}/bin/wazuh-anomaly' --prefix '{prefix}' \"$@\"" in text


@pip
@needs_torch
def test_package_is_really_pip_installed_into_the_virtualenv(installed):
    _, venv, _ = installed
    assert venv_imports_package(venv)
    assert (venv / "bin/wazuh-anomaly").is_file()


@pip
@needs_torch
def test_launcher_help_exits_zero(installed):
    prefix, _, _ = installed
    proc = subprocess.run([str(prefix / "wodles/anomaly/wazuh-anomaly"), "--help"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


@pip
@needs_torch
def test_files_and_directories_get_the_modes_of_the_design(installed):
    prefix, _, proc = installed
    # The design's paths and modes, written down once in the layout both install.sh and the package read.
    modes = {LAYOUT[name].path: LAYOUT[name].mode for name in (
        "etc_dir", "config_file", "ruleset_tests_dir", "logrotate_file", "manifest_file", "var_dir", "models_dir",
        "state_dir", "logs_dir", "anomalies_file", "wodle_dir", "launcher")}
    for rules in sorted((REPO / "rules").glob("*.xml")):
        modes[f"etc/rules/{rules.name}"] = 0o660
    for rel, mode in modes.items():
        assert stat.S_IMODE((prefix / rel).stat().st_mode) == mode, rel
    if CAN_CHOWN:
        wazuh_gid = grp.getgrnam("wazuh").gr_gid
        for rel in modes:
            st = (prefix / rel).stat()
            assert (st.st_uid, st.st_gid) == (0, wazuh_gid), rel
    else:
        assert "skipping chown:" in proc.stdout


@pip
@needs_torch
def test_config_scenarios_rules_and_decoders_are_copied_from_the_repo(installed):
    prefix, _, _ = installed
    shipped = {
        f"etc/anomaly/{p.relative_to(REPO / 'wazuh/etc/anomaly').as_posix()}": p
        for p in (REPO / "wazuh/etc/anomaly").rglob("*") if p.is_file() and not p.name.startswith(".")
    }
    shipped.update({f"etc/decoders/{p.name}": p for p in (REPO / "decoders").glob("*.xml")})
    assert "etc/anomaly/config.yaml" in shipped
    for rel, src in shipped.items():
        assert (prefix / rel).read_bytes() == src.read_bytes(), rel
    # The rules are the repository's with this prefix in their <location> patterns, nothing else.
    esc = pcre2_literal(str(prefix))
    for src in (REPO / "rules").glob("*.xml"):
        expected = src.read_text().replace(r"^/var/ossec/logs/anomaly/", f"^{esc}/logs/anomaly/")
        assert (prefix / "etc/rules" / src.name).read_text() == expected, src.name
        shipped[f"etc/rules/{src.name}"] = src
    manifest = (prefix / "etc/anomaly/.install-manifest").read_text()
    for rel in shipped:
        assert f"\t{rel}\n" in manifest


def _genuine_line(ini_name: str, rule: str) -> str:
    section = next(s for s in read_ini(REPO / "tests/ruleset" / ini_name) if s.rule == rule and s.runs[0].expect_match)
    return section.runs[0].lines[0]


def _rule_of(rules_dir: Path, line: str, location: str) -> int | None:
    return RuleEngine(load_order([rules_dir])).session().process(line, now=1_643_000_000.0, location=location).rule_id


@pip
@needs_torch
def test_installed_rules_only_accept_this_prefixs_own_files(installed):
    prefix, _, _ = installed
    rules = prefix / "etc/rules"
    anomalies, netflow = f"{prefix}/logs/anomaly/anomalies.json", f"{prefix}/logs/anomaly/netflow.json"
    bases = {r.id: r.location for p in load_order([rules]) for r in read_rule_file(p).rules if r.location}
    assert {k: (v.type, v.pattern) for k, v in bases.items()} == {
        117100: ("pcre2", file_pattern(anomalies)), 117000: ("pcre2", file_pattern(netflow))}
    auth = _genuine_line("wazuh_anomaly_rules.ini", "117113")
    dos = _genuine_line("wazuh_anomaly_netflow_rules.ini", "117008")
    assert _rule_of(rules, auth, anomalies) == 117113
    assert _rule_of(rules, dos, netflow) == 117008
    # the same lines with this prefix's path, but from an agent, a syslog sender or the default prefix
    for line, path in ((auth, anomalies), (dos, netflow)):
        for where in (agent_location(path), "192.0.2.7", path.replace(str(prefix), "/var/ossec")):
            assert _rule_of(rules, line, where) is None, where


@pip
@needs_torch
def test_installed_rule_tests_name_this_prefix_and_pass_on_the_installed_rules(installed):
    prefix, _, _ = installed
    tests = sorted((prefix / "etc/anomaly/ruleset-tests").glob("*.ini"))
    assert [p.name for p in tests] == sorted(p.name for p in (REPO / "tests/ruleset").glob("*.ini"))
    locations = {s.location for p in tests for s in read_ini(p)}
    assert f"{prefix}/logs/anomaly/anomalies.json" in locations
    assert f"[003] (web-01) any->{prefix}/logs/anomaly/netflow.json" in locations
    assert not any("/var/ossec/" in loc for loc in locations)
    # the launcher's own check on this manager: installed cases against installed rules
    proc = subprocess.run([str(prefix / "wodles/anomaly/wazuh-anomaly"), "logtest", "--offline"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith(" failed") and ", 0 failed" in proc.stdout


@pip
@needs_torch
def test_netflow_sensors_are_accepted_exactly_as_named_and_nothing_else(prefix, scratch_venv):
    run("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart",
        "--netflow-sensor", "sensor-01:/var/ossec/logs/anomaly/netflow.json",
        "--netflow-sensor=edge.fw_2:/opt/flows+x/netflow.json")
    rules = prefix / "etc/rules"
    dos = _genuine_line("wazuh_anomaly_netflow_rules.ini", "117008")
    auth = _genuine_line("wazuh_anomaly_rules.ini", "117113")
    accepted = [f"{prefix}/logs/anomaly/netflow.json",
                "[007] (sensor-01) 10.0.0.9->/var/ossec/logs/anomaly/netflow.json",
                "[007] (sensor-01) any->/var/ossec/logs/anomaly/netflow.json",
                "[012] (edge.fw_2) 2001:db8::7->/opt/flows+x/netflow.json"]
    refused = ["[003] (web-01) any->/var/ossec/logs/anomaly/netflow.json",       # another agent
               "[007] (sensor-01) any->/var/log/other.json",                      # another file of the sensor
               "[007] (sensor-01) any->/var/ossec/logs/anomaly/netflow.json.1",
               "[008] (sensor-011) any->/var/ossec/logs/anomaly/netflow.json",    # a longer name
               "[012] (edgeXfw_2) any->/opt/flows+x/netflow.json",                # "." is not any character
               "[012] (edge.fw_2) any->/opt/flowssx/netflow.json",                # "+" is not a repetition
               "[003] (web-01) any->/opt/flows+x/netflow.json",
               "/var/ossec/logs/anomaly/netflow.json",                            # the default prefix, not this one
               "192.0.2.7", "sensor-01"]
    for where in accepted:
        assert _rule_of(rules, dos, where) == 117008, where
    for where in refused:
        assert _rule_of(rules, dos, where) is None, where
    # the sensors write flows, not anomalies: the anomaly family does not accept them
    assert _rule_of(rules, auth, "[007] (sensor-01) any->/var/ossec/logs/anomaly/anomalies.json") is None
    assert _rule_of(rules, auth, f"{prefix}/logs/anomaly/anomalies.json") == 117113


@pytest.mark.parametrize("value, says", [
    ("sensor-01", "must be AGENT:PATH"),
    ("sensor-01:relative/netflow.json", "must be an absolute path"),
    ("web-01) \\S+->/x|(a:/x", "is not a Wazuh agent name"),
    ("sensor-01:/x)|.*", "must be an absolute path"),
    ("sensor-01:/var/log/a&b.json", "must be an absolute path"),
    ("sensor-01:/var/log/<x>.json", "must be an absolute path"),
    ("sensor-01:/var/log/with space.json", "must be an absolute path"),
    (".hidden:/x.json", "is not a Wazuh agent name"),
    ("a:/x.json", "is not a Wazuh agent name"),
    ("x" * 129 + ":/x.json", "is not a Wazuh agent name"),
    (":/x.json", "is not a Wazuh agent name"),
])
def test_a_netflow_sensor_that_is_not_an_agent_name_and_plain_path_is_refused(value, says, tmp_path):
    proc = run("--prefix", str(tmp_path / "missing"), "--netflow-sensor", value, check=False)
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"install.sh: --netflow-sensor '{value}'") and says in proc.stderr
    assert proc.stderr.count("\n") == 1


SAFE_PATH = re.compile(r"/[A-Za-z0-9._/+-]*")


@settings(max_examples=60, deadline=None)
@given(value=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
       | st.from_regex(r"\A[A-Za-z0-9._-]{1,12}:/[ -~]{0,20}\Z"))
def test_only_an_agent_name_and_a_plain_absolute_path_pass_the_netflow_sensor_check(value):
    # a missing prefix: a value that passes the sensor check stops at the prefix check instead
    proc = run("--prefix", "/nonexistent-wazuh-anomaly-prefix", "--netflow-sensor", value, check=False)
    assert proc.returncode != 0
    name, sep, path = value.partition(":")
    valid = bool(sep) and AGENT_NAME.fullmatch(name) is not None and SAFE_PATH.fullmatch(path) is not None
    assert ("--netflow-sensor" not in proc.stderr) == valid, proc.stderr


@pip
@needs_torch
def test_ruleset_check_on_the_installed_manager_judges_our_files_once_and_finds_no_error(installed):
    prefix, _, _ = installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "WAZUH_ANOMALY_PREFIX")}
    proc = subprocess.run([str(prefix / "wodles/anomaly/wazuh-anomaly"), "ruleset", "check"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.rstrip().endswith("ruleset check: no problems found"), proc.stdout
    checked = proc.stdout.split("checked ", 1)[1].split("\n", 1)[0]
    ours = sorted(p.name for p in (REPO / "rules").glob("*.xml"))
    assert checked.startswith(f"{len(ours)} file(s): ")
    assert sorted(Path(p).name for p in checked.split(": ", 1)[1].split(", ")) == ours
    assert "local_rules.xml" in proc.stdout.split("not checked", 1)[1]


@pip
@needs_torch
def test_ossec_conf_block_schedules_the_wodle_and_reads_the_anomalies_file(installed):
    prefix, _, _ = installed
    conf = prefix / "etc/ossec.conf"
    # The original file is untouched up to the block, which is its own <ossec_config>.
    assert conf.read_text().startswith(MANAGER_CONF.read_text())
    block = block_of(conf)
    assert block.tag == "ossec_config"
    wodle = block.find("wodle")
    assert wodle is not None and wodle.get("name") == "command"
    assert {child.tag: child.text for child in wodle} == {
        "disabled": "no",
        "tag": "wazuh-anomaly",
        "command": f"{prefix}/wodles/anomaly/wazuh-anomaly run",
        "interval": "5m",
        "run_on_start": "yes",
        "timeout": "1800",
        "ignore_output": "yes",
    }
    localfile = block.find("localfile")
    assert {child.tag: child.text for child in localfile} == {
        "log_format": "json",
        "location": f"{prefix}/logs/anomaly/anomalies.json",
        "only-future-events": "no",
    }
    assert not list(conf.parent.glob("ossec.conf.anomaly-*")), "backup or temp file left behind"


@pip
@needs_torch
def test_dry_run_of_uninstall_changes_nothing(installed):
    prefix, _, _ = installed
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--uninstall", "--dry-run")
    assert "[dry-run] would remove the wazuh-anomaly block" in proc.stdout
    assert snapshot(prefix) == before


# ---------------------------------------------------------------- install, re-install, uninstall

@pip
@needs_torch
def test_install_twice_then_uninstall_leaves_the_prefix_exactly_as_before(prefix, scratch_venv):
    original_conf = (prefix / "etc/ossec.conf").read_bytes()
    before = snapshot(prefix)
    args = ("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")

    run(*args)
    after_first = snapshot(prefix)
    conf_after_first = (prefix / "etc/ossec.conf").read_bytes()
    second = run(*args)
    assert snapshot(prefix) == after_first
    assert (prefix / "etc/ossec.conf").read_bytes() == conf_after_first
    assert conf_after_first.decode().count(BEGIN) == 1
    assert "is up to date" in second.stdout

    assert "venv\t-\t" in (prefix / "etc/anomaly/.install-manifest").read_text()
    gone = run("--prefix", str(prefix), "--uninstall", "--yes")
    assert (prefix / "etc/ossec.conf").read_bytes() == original_conf
    assert snapshot(prefix) == before
    # The virtualenv was not made by install.sh: it is left exactly as it is, our package
    # included (something else may use it), and the admin is told how to remove that.
    assert venv_imports_package(scratch_venv)
    assert (f"kept the virtualenv {scratch_venv} as it is, because install.sh did not create it; "
            f"if nothing else uses wazuh-anomaly there: {scratch_venv}/bin/python -m pip uninstall wazuh-anomaly"
            in gone.stdout)


@pip
@needs_torch
def test_uninstall_removes_a_virtualenv_install_sh_created(prefix, tmp_path):
    venv = tmp_path / "opt" / "wazuh-anomaly" / "venv"
    # The same interpreter as the runner, so the .pth trick below keeps torch importable.
    python = Path(sys.executable)
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--python", str(python),
               "--no-restart", "--torch-index", "http://127.0.0.1:9/unreachable", check=False,
               env={"PIP_RETRIES": "0", "PIP_TIMEOUT": "2"})
    # A fresh virtualenv has no torch: the CPU index step runs and fails offline, with advice.
    assert proc.returncode != 0
    assert "--find-links" in proc.stderr and "--torch-index pypi" in proc.stderr
    assert not (prefix / "etc/anomaly").exists(), "nothing may be installed before the Python step succeeds"
    assert not (tmp_path / "opt").exists(), "the virtualenv it made, and the parents made for it, are removed again"
    # Torch importable (the runner's site-packages on PYTHONPATH), but the rules are rejected:
    # the new virtualenv goes again with everything else.
    with_torch = {"PYTHONPATH": os.pathsep.join(site.getsitepackages())}
    analysisd = prefix / "bin/wazuh-analysisd"
    add_failing_analysisd(prefix)
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--python", str(python), "--no-restart",
               check=False, env=with_torch)
    assert proc.returncode != 0 and "installing wazuh-anomaly from" in proc.stdout
    assert f"rolled back: {prefix} and the virtualenv {venv} are as they were before this run." in proc.stderr
    assert not (tmp_path / "opt").exists()
    analysisd.unlink()
    run("--prefix", str(prefix), "--venv", str(venv), "--python", str(python), "--no-restart", env=with_torch)
    assert venv_imports_package(venv)
    assert f"venv\tcreated\t{venv}\n" in (prefix / "etc/anomaly/.install-manifest").read_text()
    run("--prefix", str(prefix), "--uninstall", "--yes")
    assert not venv.exists()
    assert not (tmp_path / "opt").exists(), "parents made for the virtualenv must go too"


def copy_of_the_source_tree(dst: Path) -> Path:
    """The files install.sh needs, as a release archive or a clone has them."""
    shutil.copytree(REPO, dst, ignore=shutil.ignore_patterns(
        ".git", ".hypothesis", "bench", "docs", "examples", "tests", "__pycache__", "*.egg-info", "build"))
    return dst


@pip
@needs_torch
def test_install_sh_and_the_installed_package_take_the_layout_from_the_same_file(prefix, tmp_path):
    tree = copy_of_the_source_tree(tmp_path / "src")
    layout = tree / "integration/wazuh_anomaly/data/layout.tsv"
    text = layout.read_text()
    assert "models_dir\tvar/anomaly/models\tdir\t0750\t-\n" in text
    layout.write_text(text.replace("models_dir\tvar/anomaly/models\tdir\t0750\t-\n",
                                   "models_dir\tvar/anomaly/model-store\tdir\t0700\t-\n"))
    venv = make_venv(tmp_path / "venv")

    proc = subprocess.run(["bash", str(tree / "install.sh"), "--prefix", str(prefix), "--venv", str(venv),
                           "--no-restart"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900,
                          env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")})
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert stat.S_IMODE((prefix / "var/anomaly/model-store").stat().st_mode) == 0o700
    assert not (prefix / "var/anomaly/models").exists()
    probe = "import sys; from wazuh_anomaly.core.paths import Layout; print(Layout.from_env(sys.argv[1]).models_dir)"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    models_dir = subprocess.run([str(venv / "bin/python"), "-c", probe, str(prefix)], capture_output=True, text=True,
                                env=env, check=True).stdout.strip()
    assert models_dir == str(prefix / "var/anomaly/model-store")


def test_a_layout_line_without_its_five_fields_is_refused_with_its_line_number(tmp_path):
    from wazuh_anomaly.core.paths import read_layout
    bad = tmp_path / "layout.tsv"
    bad.write_text("# name\tpath\tkind\tmode\trealtime mode\netc_dir\tetc/anomaly\tdir\t0750\t-\n"
                   "models_dir var/anomaly/models dir 0750 -\n")
    with pytest.raises(ValueError, match=r"layout.tsv, line 3: expected 5 tab-separated fields, found 1"):
        read_layout(bad)
    assert read_layout()["anomalies_file"].path == "logs/anomaly/anomalies.json"
    assert Layout.from_env("/var/ossec").anomalies_file == Path("/var/ossec/logs/anomaly/anomalies.json")


# ---------------------------------------------------------------- cluster

@pip
@needs_torch
def test_worker_gets_the_localfile_but_no_wodle_unless_allowed(tmp_path, scratch_venv):
    worker_conf = MANAGER_CONF.read_text().replace(
        "<node_type>master</node_type>", "<node_type>worker</node_type>"
    ).replace("<disabled>yes</disabled>\n  </cluster>", "<disabled>no</disabled>\n  </cluster>")
    assert "<node_type>worker</node_type>" in worker_conf and "<disabled>no</disabled>\n  </cluster>" in worker_conf
    prefix = make_prefix(tmp_path, worker_conf)
    args = ("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")

    proc = run(*args)
    assert "must score on the master only" in proc.stdout
    block = block_of(prefix / "etc/ossec.conf")
    assert block.find("wodle") is None
    assert block.find("localfile/location").text == f"{prefix}/logs/anomaly/anomalies.json"

    run(*args, "--allow-worker")
    block = block_of(prefix / "etc/ossec.conf")
    assert block.find("wodle/command").text == f"{prefix}/wodles/anomaly/wazuh-anomaly run"


# ---------------------------------------------------------------- rollback

FAILING_ANALYSISD = """#!/bin/sh
echo "2026/01/01 00:00:00 wazuh-analysisd: ERROR: (1226): Error reading XML file 'etc/rules/wazuh_anomaly_rules.xml': XMLERR: Element 'rule' not closed. (line 12)." >&2
echo "2026/01/01 00:00:00 wazuh-analysisd: CRITICAL: (1220): Error loading the rules: 'etc/rules/wazuh_anomaly_rules.xml'." >&2
exit 1
"""


def add_failing_analysisd(prefix: Path) -> None:
    analysisd = prefix / "bin/wazuh-analysisd"
    analysisd.write_text(FAILING_ANALYSISD)
    analysisd.chmod(0o750)


@pip
@needs_torch
def test_failed_configuration_check_rolls_the_first_install_back(prefix, scratch_venv):
    add_failing_analysisd(prefix)
    original_conf = (prefix / "etc/ossec.conf").read_bytes()
    before = snapshot(prefix)

    proc = run("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart", check=False)

    assert proc.returncode != 0
    assert "Error loading the rules" in proc.stderr  # analysisd's own words reach the admin
    assert "rolled back" in proc.stderr
    assert (prefix / "etc/ossec.conf").read_bytes() == original_conf
    assert snapshot(prefix) == before


@pip
@needs_torch
def test_failed_configuration_check_on_reinstall_restores_the_previous_install(prefix, scratch_venv):
    args = ("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")
    run(*args)
    add_failing_analysisd(prefix)
    before = snapshot(prefix)

    proc = run(*args, "--interval", "10m", check=False)

    assert proc.returncode != 0
    assert snapshot(prefix) == before
    assert block_of(prefix / "etc/ossec.conf").find("wodle/interval").text == "5m"


def pip_freeze(venv: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run([str(venv / "bin/python"), "-m", "pip", "freeze", "--all"],
                          check=True, capture_output=True, text=True, env=env).stdout


@pip
@needs_torch
def test_failed_configuration_check_puts_an_upgraded_virtualenv_back_file_for_file(prefix, tmp_path):
    venv = make_venv(tmp_path / "opt" / "venv")
    args = ("--prefix", str(prefix), "--venv", str(venv), "--no-restart")
    run(*args)
    # The version installed before this upgrade: one of its files differs from this checkout's.
    init = next(venv.glob("lib/python3*/site-packages/wazuh_anomaly/__init__.py"))
    init.write_text(init.read_text() + "# the version installed before this upgrade\n")
    freeze_before = pip_freeze(venv)
    before = snapshot(venv)
    add_failing_analysisd(prefix)

    proc = run(*args, check=False)

    assert proc.returncode != 0
    assert "installing wazuh-anomaly from" in proc.stdout   # the upgrade really ran
    assert snapshot(venv) == before
    assert pip_freeze(venv) == freeze_before
    assert f"rolled back: {prefix} and the virtualenv {venv} are as they were before this run." in proc.stderr
    assert sorted(p.name for p in venv.parent.iterdir()) == ["venv"], "no copy of it is left beside it"


@pip
@needs_torch
def test_a_successful_upgrade_leaves_no_copy_of_the_previous_virtualenv(prefix, tmp_path):
    venv = make_venv(tmp_path / "opt" / "venv")
    args = ("--prefix", str(prefix), "--venv", str(venv), "--no-restart")
    run(*args)
    init = next(venv.glob("lib/python3*/site-packages/wazuh_anomaly/__init__.py"))
    init.write_text(init.read_text() + "# the version installed before this upgrade\n")

    run(*args)

    assert "the version installed before" not in init.read_text()
    assert sorted(p.name for p in venv.parent.iterdir()) == ["venv"]


# ---------------------------------------------------------------- the admin's changes and data

@pip
@needs_torch
def test_admin_changed_config_survives_reinstall_and_the_new_one_lands_as_dist(prefix, scratch_venv):
    args = ("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")
    run(*args)
    config = prefix / "etc/anomaly/config.yaml"
    admin_text = config.read_text() + "\n# tuned by the admin\n"
    config.write_text(admin_text)

    proc = run(*args)

    assert config.read_text() == admin_text
    dist = prefix / "etc/anomaly/config.yaml.dist"
    assert dist.read_bytes() == (REPO / "wazuh/etc/anomaly/config.yaml").read_bytes()
    assert f"kept {config} because it was changed" in proc.stdout
    assert stat.S_IMODE(dist.stat().st_mode) == 0o640



@pip
@needs_torch
def test_uninstall_with_keep_data_keeps_models_state_and_anomalies(prefix, scratch_venv):
    # This manager's ossec.conf lacks the final newline: it must still come back byte for byte.
    (prefix / "etc/ossec.conf").write_bytes(MANAGER_CONF.read_bytes().rstrip(b"\n"))
    original_conf = (prefix / "etc/ossec.conf").read_bytes()
    run("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")
    model = prefix / "var/anomaly/models/authentication_failures.pt"
    model.write_bytes(b"trained model bytes")
    anomalies = prefix / "logs/anomaly/anomalies.json"
    anomalies.write_text('{"integration":"anomaly","anomaly":{"id":"a1"}}\n')
    config = prefix / "etc/anomaly/config.yaml"
    config.write_text(config.read_text() + "\n# tuned by the admin\n")

    proc = run("--prefix", str(prefix), "--uninstall", "--keep-data", "--yes")

    assert model.read_bytes() == b"trained model bytes"
    assert anomalies.read_text().startswith('{"integration":"anomaly"')
    assert (prefix / "var/anomaly/state").is_dir()
    # The admin's config stays; everything else of ours is gone.
    assert config.exists() and "tuned by the admin" in config.read_text()
    assert sorted(p.name for p in (prefix / "etc/anomaly").iterdir()) == ["config.yaml"]
    assert not (prefix / "wodles/anomaly").exists()
    assert (prefix / "etc/ossec.conf").read_bytes() == original_conf
    assert "--keep-data" in proc.stdout


# ---------------------------------------------------------------- a real wazuh-analysisd (optional)

REAL_MANAGER = os.environ.get("WAZUH_ANOMALY_TEST_MANAGER")  # a prefix with a real bin/wazuh-analysisd


def _copy_manager(src: Path, dst: Path) -> Path:
    def sockets(directory, names):
        return [n for n in names if stat.S_ISSOCK(os.lstat(os.path.join(directory, n)).st_mode)]
    shutil.copytree(src, dst, symlinks=True, ignore=sockets)
    for path in [dst, *dst.rglob("*")]:  # owners matter: analysisd reads as the wazuh user
        st = os.lstat(src / path.relative_to(dst))
        os.lchown(path, st.st_uid, st.st_gid)
    for pid in (dst / "var/run").glob("*.pid"):
        pid.unlink()
    return dst


@pip
@needs_torch
@pytest.mark.skipif(not REAL_MANAGER, reason="set WAZUH_ANOMALY_TEST_MANAGER to a prefix with a real wazuh-analysisd")
@pytest.mark.skipif(os.geteuid() != 0, reason="wazuh-analysisd -t chroots into the prefix: needs root")
def test_real_analysisd_accepts_the_installed_rules_and_block(scratch_venv):
    # analysisd reads its files as the wazuh user: the copy must not sit under pytest's 0700 tmp.
    root = Path(tempfile.mkdtemp(prefix="wazuh-anomaly-install-test-"))
    try:
        root.chmod(0o755)
        prefix = _copy_manager(Path(REAL_MANAGER), root / "ossec")
        original_conf = (prefix / "etc/ossec.conf").read_bytes()

        proc = run("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")

        assert "configuration check passed: wazuh-analysisd -t" in proc.stdout
        run("--prefix", str(prefix), "--uninstall", "--yes")
        assert (prefix / "etc/ossec.conf").read_bytes() == original_conf
    finally:
        shutil.rmtree(root)


@pip
@needs_torch
def test_indexer_option_installs_opensearch_py_when_the_virtualenv_lacks_it(prefix, tmp_path):
    # The runner's site-packages without opensearch-py: everything else is there, so pip
    # fetches only opensearch-py (pinned to the runner's version; one small wheel from PyPI).
    import importlib.metadata as metadata

    version = metadata.version("opensearch-py")
    sites = tmp_path / "sites"
    sites.mkdir()
    for runner_site in (Path(p) for p in site.getsitepackages() if Path(p).is_dir()):
        for entry in runner_site.iterdir():
            if entry.name.lower().startswith(("opensearchpy", "opensearch_py")) or (sites / entry.name).exists():
                continue
            (sites / entry.name).symlink_to(entry)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", "setuptools"], capture_output=True)
    purelib = subprocess.run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "wazuh_anomaly_test_runner.pth").write_text(f"{sites}\n")
    has_client = [str(venv / "bin/python"), "-c", "import opensearchpy"]
    assert subprocess.run(has_client, capture_output=True).returncode != 0

    run("--prefix", str(prefix), "--venv", str(venv), "--no-restart")
    assert subprocess.run(has_client, capture_output=True).returncode != 0   # not without --indexer
    constraints = tmp_path / "constraints.txt"
    constraints.write_text(f"opensearch-py=={version}\n")
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--indexer",
               env={"PIP_CONSTRAINT": str(constraints)})
    assert "installing the dependencies of wazuh-anomaly" in proc.stdout
    assert subprocess.run(has_client, capture_output=True).returncode == 0
    # the client is there: `check` gets as far as the connection (nothing listens on port 9)
    (prefix / "etc/anomaly/config.yaml").write_text(
        "source:\n  type: indexer\nindexer:\n  hosts: [\"https://127.0.0.1:9\"]\n  retries: 0\n"
        "  timeout_seconds: 2\n  keystore: false\n  verify: false\n")
    check = subprocess.run([str(prefix / "wodles/anomaly/wazuh-anomaly"), "check"], capture_output=True, text=True,
                           timeout=300)
    assert "FAIL reachable: The indexer https://127.0.0.1:9 is unreachable" in check.stdout, check.stdout + check.stderr


LOGROTATE = shutil.which("logrotate") or next((p for p in ("/usr/sbin/logrotate", "/sbin/logrotate")
                                                if os.access(p, os.X_OK)), None)


@pip
@needs_torch
def test_shipped_logrotate_configuration_rotates_anomalies_without_losing_or_repeating_any(prefix, scratch_venv):
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    from wazuh_anomaly.core.findings import Anomaly

    run("--prefix", str(prefix), "--venv", str(scratch_venv), "--no-restart")
    conf = prefix / "etc/anomaly/logrotate.conf"
    text = conf.read_text()
    assert f"{prefix}/logs/anomaly/anomalies.json {{" in text and f"{prefix}/logs/anomaly/netflow.json {{" in text
    assert "@" not in text.replace("/etc/logrotate.d", "")          # every placeholder filled
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    if LOGROTATE is None:
        pytest.skip("logrotate is not installed (.ci/run installs it when it runs as root)")
    start = datetime(2022, 1, 24, tzinfo=timezone.utc)

    def anomaly(i: int) -> Anomaly:
        at = start + timedelta(minutes=5 * i)
        return Anomaly(scenario="alert_volume", detector="seasonal", window_start=at, window_end=at + timedelta(minutes=5),
                       bucket_minutes=5, score=9.0, threshold=3.0, severity="high", top_features=(), model_version="v1")

    out = prefix / "logs/anomaly/anomalies.json"
    writer = AnomalyWriter(out, prefix / "var/anomaly/state")
    now = start + timedelta(hours=1)
    assert writer.write([anomaly(0), anomaly(1)], now).written == 2
    mode = stat.S_IMODE(out.stat().st_mode)
    state = prefix / "logrotate.state"

    def rotate():
        proc = subprocess.run([LOGROTATE, "--force", "--state", str(state), str(conf)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    rotate()
    assert out.read_text() == "" and stat.S_IMODE(out.stat().st_mode) == mode    # `create`: same mode
    assert len(Path(f"{out}.1").read_text().splitlines()) == 2
    again = writer.write([anomaly(0), anomaly(1), anomaly(2)], now)              # a replay after the rotation
    assert (again.written, again.duplicates) == (1, 2)
    rotate()
    assert Path(f"{out}.2.gz").is_file()                                      # compressed one rotation later
    ids = [json.loads(line)["anomaly"]["id"] for line in Path(f"{out}.1").read_text().splitlines()]
    assert ids == [anomaly(2).id]


# ---------------------------------------------------------------- plans and refusals (no pip)

@needs_torch
def test_dry_run_changes_nothing(prefix, scratch_venv):
    before = snapshot(prefix)
    conf = (prefix / "etc/ossec.conf").read_bytes()

    proc = run("--prefix", str(prefix), "--venv", str(scratch_venv), "--dry-run")

    assert snapshot(prefix) == before
    assert (prefix / "etc/ossec.conf").read_bytes() == conf
    assert "[dry-run] would install launcher" in proc.stdout
    assert BEGIN in proc.stdout  # the block it would write is shown
    assert "Dry run: nothing was changed." in proc.stdout


def test_dry_run_with_a_new_virtualenv_plans_it_without_creating_it(prefix, tmp_path):
    venv = tmp_path / "not-yet"
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--python", sys.executable, "--dry-run")
    assert "[dry-run] would create the virtualenv" in proc.stdout
    assert "[dry-run] would install torch from https://download.pytorch.org/whl/cpu" in proc.stdout
    assert not venv.exists()


def test_a_second_install_sh_while_one_runs_says_so_and_changes_nothing(prefix):
    import fcntl
    before = snapshot(prefix)
    held = os.open(prefix, os.O_RDONLY | os.O_DIRECTORY)   # what a running install.sh holds
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        for args in (("--dry-run",), ("--no-restart",), ("--uninstall", "--yes")):
            proc = run("--prefix", str(prefix), *args, check=False)
            assert proc.returncode == 1, (args, proc.stdout)
            assert f"install.sh: another install.sh is running on {prefix}; wait for it to finish, then re-run." \
                in proc.stderr
            assert snapshot(prefix) == before
    finally:
        os.close(held)
    assert "nothing to uninstall" in run("--prefix", str(prefix), "--uninstall", "--yes").stdout


def test_uninstall_without_a_terminal_or_yes_refuses(prefix):
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--uninstall", check=False)
    assert proc.returncode != 0
    assert "re-run with --yes" in proc.stderr
    assert snapshot(prefix) == before


def test_install_that_would_restart_the_manager_needs_yes_without_a_terminal(prefix, tmp_path):
    control = prefix / "bin/wazuh-control"
    control.write_text("#!/bin/sh\necho 'wazuh-control must not run in this test' >&2\nexit 1\n")
    control.chmod(0o750)
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--venv", str(tmp_path / "venv"), check=False)
    assert proc.returncode != 0
    assert "--yes" in proc.stderr and "--no-restart" in proc.stderr
    assert snapshot(prefix) == before
    assert not (tmp_path / "venv").exists()


def run_with_terminal(*args: str, answer: str) -> subprocess.CompletedProcess:
    """Runs install.sh with a terminal on stdin, typing `answer` at its question."""
    master, slave = os.openpty()
    try:
        os.write(master, answer.encode() + b"\n")
        return subprocess.run(["bash", str(INSTALL), *args], stdin=slave, capture_output=True, text=True,
                              timeout=120)
    finally:
        os.close(master)
        os.close(slave)


def conf_with_block(prefix: Path) -> bytes:
    """ossec.conf as an earlier install left it: the original plus our block."""
    conf = prefix / "etc/ossec.conf"
    original = conf.read_bytes()
    block = (f"\n{BEGIN}\n<ossec_config>\n  <localfile>\n    <log_format>json</log_format>\n"
             f"    <location>{prefix}/logs/anomaly/anomalies.json</location>\n  </localfile>\n"
             f"</ossec_config>\n{END}\n")
    conf.write_bytes(original + block.encode())
    return original


def test_uninstall_asks_first_and_answering_no_changes_nothing(prefix):
    conf_with_block(prefix)
    before = snapshot(prefix)
    proc = run_with_terminal("--prefix", str(prefix), "--uninstall", answer="n")
    assert proc.returncode != 0
    assert "[y/N]" in proc.stdout and "nothing was removed" in proc.stderr
    assert snapshot(prefix) == before


def test_uninstall_answered_yes_removes_the_block_byte_for_byte(prefix):
    original = conf_with_block(prefix)
    proc = run_with_terminal("--prefix", str(prefix), "--uninstall", answer="y")
    assert proc.returncode == 0, proc.stderr
    assert (prefix / "etc/ossec.conf").read_bytes() == original


def test_uninstall_refuses_a_manifest_entry_outside_its_own_places(prefix):
    conf = prefix / "etc/ossec.conf"
    digest = hashlib.sha256(conf.read_bytes()).hexdigest()
    (prefix / "etc/anomaly").mkdir()
    (prefix / "etc/anomaly/.install-manifest").write_text(f"file\t{digest}\tetc/ossec.conf\n")
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--uninstall", "--yes", check=False)
    assert proc.returncode != 0
    assert "unexpected entry" in proc.stderr
    assert snapshot(prefix) == before


def test_refuses_a_directory_that_is_not_a_manager(tmp_path):
    proc = run("--prefix", str(tmp_path), "--no-restart", check=False)
    assert proc.returncode != 0
    assert "no etc/ossec.conf" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_refuses_an_agent_configuration(tmp_path):
    prefix = make_prefix(tmp_path, "<ossec_config>\n  <client>\n    <server><address>10.0.0.1</address></server>\n"
                                   "  </client>\n</ossec_config>\n")
    proc = run("--prefix", str(prefix), "--venv", str(tmp_path / "venv"), "--no-restart", check=False)
    assert proc.returncode != 0
    assert "agent" in proc.stderr
    assert not (tmp_path / "venv").exists()


def test_refuses_the_managers_own_framework_python(prefix, tmp_path):
    framework_python = prefix / "framework/python/bin/python3"
    framework_python.parent.mkdir(parents=True)
    framework_python.symlink_to(sys.executable)
    proc = run("--prefix", str(prefix), "--venv", str(tmp_path / "venv"), "--python", str(framework_python),
               "--no-restart", check=False)
    assert proc.returncode != 0
    assert "framework Python" in proc.stderr
    assert not (tmp_path / "venv").exists()


def test_rejects_an_interval_wazuh_does_not_understand(prefix):
    proc = run("--prefix", str(prefix), "--interval", "5 minutes", "--no-restart", check=False)
    assert proc.returncode != 0
    assert "--interval" in proc.stderr


def test_help_lists_every_option():
    proc = run("--help")
    for option in ("--prefix", "--venv", "--python", "--dry-run", "--uninstall", "--keep-data", "--no-restart",
                   "--yes", "--cuda", "--torch-index", "--find-links", "--allow-worker", "--interval", "--indexer",
                   "--realtime", "--active-response", "--ar-timeout", "--netflow-sensor"):
        assert option in proc.stdout


def test_every_option_a_message_of_install_sh_suggests_exists():
    """die/say lines tell the admin what to re-run with: each option named there is one install.sh takes."""
    import re
    text = "\n".join(p.read_text() for p in (INSTALL, *sorted((REPO / "lib").glob("*.sh"))))
    accepted = set(re.findall(r"^\s+(--[a-z-]+)[)|=]", text, re.M))
    messages = [line for line in text.splitlines() if re.search(r"\b(die|say)\b", line)]
    suggested = {opt for line in messages for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", line)}
    pip_options = {"--disable-pip-version-check", "--no-input", "--no-index", "--no-deps", "--no-build-isolation",
                   "--index-url"}
    assert len(suggested) > 10
    assert suggested - pip_options <= accepted, sorted(suggested - pip_options - accepted)


SHELL_SCRIPTS = ["install.sh", *sorted(f"lib/{p.name}" for p in (REPO / "lib").glob("*.sh")),
                 "scripts/opensearch.sh", "examples/sandbox.sh", ".ci/run", ".ci/venv.sh",
                 # templates install.sh fills in (@...@ placeholders): POSIX sh
                 "wazuh/wodles/anomaly/wazuh-anomaly.in", "wazuh/integrations/custom-anomaly.in",
                 "wazuh/active-response/bin/anomaly-response.in"]


def test_every_shell_script_passes_shellcheck():
    if shutil.which("shellcheck") is None:
        if os.environ.get("WAZUH_ANOMALY_CI") == "1":      # .ci/run installs it: never a silent skip there
            pytest.fail("shellcheck is not installed, and .ci/run should have installed it (apt-get install shellcheck)")
        pytest.skip("shellcheck is not installed")
    def shebang(path: Path) -> bytes:
        with path.open("rb") as handle:
            return handle.readline().strip()
    shipped = {str(p.relative_to(REPO)) for p in REPO.rglob("*") if p.is_file() and ".git" not in p.parts
               and shebang(p).startswith(b"#!") and shebang(p).endswith((b"/sh", b"/bash", b" bash"))}
    assert shipped == set(SHELL_SCRIPTS), "a shell script is missing from SHELL_SCRIPTS (or one is gone)"
    proc = subprocess.run(["shellcheck", *SHELL_SCRIPTS], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout
