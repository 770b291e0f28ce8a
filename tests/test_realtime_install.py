"""install.sh --realtime (the service), --realtime-per-alert (the integration) and
--active-response: the opt-in launchers and unit, permissions for the wazuh user, the
<integration> and active-response blocks, and a clean uninstall."""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from wazuh_anomaly.core.paths import LAYOUT

from test_install import REPO, block_of, make_prefix, make_venv, needs_torch, pip, run, snapshot


@pip
@needs_torch
def test_realtime_and_active_response_install_their_launchers_blocks_and_uninstall_cleanly(tmp_path):
    prefix = make_prefix(tmp_path)
    (prefix / "logs/integrations.log").write_text("")
    before = snapshot(prefix)
    venv = make_venv(tmp_path / "venv")
    run("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--realtime-per-alert", "--active-response",
        "--ar-timeout", "600")

    for rel, run_it in (("integrations/custom-anomaly",
                         "-c 'import sys; from wazuh_anomaly.realtime.integration import main; sys.exit(main())'"),
                        ("active-response/bin/anomaly-response", "-m wazuh_anomaly.realtime.response")):
        path = prefix / rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o750, rel
        assert f"exec '{venv}/bin/python' {run_it} --prefix '{prefix}' \"$@\"" in path.read_text()
    # Every path of the layout install.sh makes is there with the layout's mode (with --realtime) ...
    made = {e.path: e.realtime_mode for e in LAYOUT.values()
            if e.kind in ("dir", "data", "file", "log") and e.path not in before   # not the manager's etc/rules
            and e.name != "realtime_unit"}                                       # the service's, not installed here
    assert not (prefix / LAYOUT["realtime_unit"].path).exists()
    for rel, mode in made.items():
        assert stat.S_IMODE((prefix / rel).stat().st_mode) == mode, rel
    # ... and every directory it made is one of them, a parent of one, or one of the shipped config's.
    manifest = [line.split("\t") for line in (prefix / "etc/anomaly/.install-manifest").read_text().splitlines()
                if not line.startswith("#")]
    shipped = {f"etc/anomaly/{p.relative_to(REPO / 'wazuh/etc/anomaly')}" for p in (REPO / "wazuh/etc/anomaly").rglob("*")
               if p.is_dir()}
    for kind, _, rel in manifest:
        if kind in ("dir", "data"):
            assert rel in made or rel in shipped or any(p.startswith(rel + "/") for p in made), rel
    assert stat.S_IMODE((prefix / "var/anomaly/realtime").stat().st_mode) == 0o2770
    assert stat.S_IMODE((prefix / "var/anomaly/realtime/state").stat().st_mode) == 0o2770
    assert stat.S_IMODE((prefix / "logs/anomaly").stat().st_mode) == 0o770
    for rel in ("logs/anomaly/anomalies.json", "logs/anomaly/anomalies.json.lock"):
        assert stat.S_IMODE((prefix / rel).stat().st_mode) == 0o660, rel

    block = block_of(prefix / "etc/ossec.conf")
    integration = block.find("integration")
    assert integration.findtext("name") == "custom-anomaly" and integration.findtext("alert_format") == "json"
    assert integration.findtext("level") == "3"
    assert block.find("command").findtext("executable") == "anomaly-response"
    ar = block.find("active-response")
    assert ar.findtext("rules_id") == "117113,117114,117240,117280" and ar.findtext("timeout") == "600"

    # the installed launcher handles an alert as integratord would run it
    alert = tmp_path / "custom-anomaly-1-1.alert"
    alert.write_text(json.dumps({"timestamp": "2022-01-18T13:14:49.000+0000", "rule": {"id": "5402", "level": 3,
                                 "groups": ["sudo"]}, "agent": {"id": "27"}, "data": {"srcuser": "u", "command": "id"}}))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([str(prefix / "integrations/custom-anomaly"), str(alert), "", "", "", "", "10", "3",
                           "> /dev/null 2>&1"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (prefix / "var/anomaly/realtime/state/new_sudo_command_for_user.json").exists()

    run("--prefix", str(prefix), "--uninstall", "--yes", "--no-restart")
    assert snapshot(prefix) == before


@pip
@needs_torch
def test_realtime_installs_the_service_unit_whose_command_follows_alerts_json_and_uninstalls_cleanly(tmp_path):
    prefix = make_prefix(tmp_path)
    (prefix / "logs/alerts").mkdir(parents=True, exist_ok=True)
    alert = {"timestamp": "2022-01-18T13:14:49.000+0000", "id": "1.1", "rule": {"id": "5402", "level": 3,
             "groups": ["sudo"]}, "agent": {"id": "27"}, "data": {"srcuser": "u", "command": "id"}}
    (prefix / "logs/alerts/alerts.json").write_text(json.dumps(alert) + "\n")     # the manager's, not ours
    before = snapshot(prefix)
    venv = make_venv(tmp_path / "venv")
    proc = run("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--realtime")
    assert "not starting the real-time service: no systemd here" in proc.stdout        # a sandbox prefix

    unit = prefix / LAYOUT["realtime_unit"].path
    assert stat.S_IMODE(unit.stat().st_mode) == 0o640
    text = unit.read_text()
    assert "@" not in text.replace("multi-user.target", "")                         # every placeholder filled
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    assert (fields["User"], fields["Group"], fields["Restart"]) == ("wazuh", "wazuh", "always")
    assert fields["ExecStart"] == f"{prefix}/wodles/anomaly/wazuh-anomaly realtime serve"
    verify_unit(unit)
    # the service replaces the per-alert integration: no <integration> block, no launcher
    assert block_of(prefix / "etc/ossec.conf").find("integration") is None
    assert not (prefix / "integrations/custom-anomaly").exists()
    for rel, mode in (("var/anomaly/realtime", 0o2770), ("logs/anomaly", 0o770), ("logs/anomaly/anomalies.json", 0o660)):
        assert stat.S_IMODE((prefix / rel).stat().st_mode) == mode, rel

    # ExecStart as systemd would run it (plus a replay's options): it follows alerts.json
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run([*fields["ExecStart"].split(" "), "--from-start", "--idle-exit", "0.3"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "1 alerts judged" in done.stdout
    assert (prefix / "var/anomaly/realtime/service.json").exists()

    run("--prefix", str(prefix), "--uninstall", "--yes", "--no-restart")
    assert snapshot(prefix) == before


def verify_unit(unit: Path) -> None:
    """systemd's own check of a unit file (syntax, every directive known, ExecStart an
    executable): what `systemctl link` and `enable --now` would refuse or warn about."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return      # the rest of the test still runs; .ci/run installs systemd for this check
    with tempfile.TemporaryDirectory() as tmp:
        # systemd-analyze wants the unit's own name; the installed file already has it
        named = Path(tmp) / "wazuh-anomaly-realtime.service"
        shutil.copyfile(unit, named)
        done = subprocess.run([analyze, "verify", str(named)], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"})
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_the_shipped_unit_template_passes_systemd_analyze_verify_once_rendered(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (.ci/run installs systemd)")
    launcher = tmp_path / "wazuh-anomaly"
    launcher.write_text("#!/bin/sh\nexit 0\n")
    launcher.chmod(0o755)
    text = (REPO / "wazuh/systemd/wazuh-anomaly-realtime.service.in").read_text()
    unit = tmp_path / "wazuh-anomaly-realtime.service"
    unit.write_text(text.replace("@LAUNCHER@", str(launcher)).replace("@PREFIX@", str(tmp_path)))
    verify_unit(unit)
    # a directive systemd does not know is caught (the check can fail)
    unit.write_text(unit.read_text().replace("Nice=5", "Nice=5\nProtectEverything=yes"))
    with pytest.raises(AssertionError):
        verify_unit(unit)


def test_the_service_and_the_per_alert_integration_are_refused_together(tmp_path):
    prefix = make_prefix(tmp_path)
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--no-restart", "--realtime", "--realtime-per-alert", check=False)
    assert proc.returncode == 1
    assert "choose --realtime (the service) or --realtime-per-alert (the integration), not both" in proc.stderr
    assert snapshot(prefix) == before


def test_a_bad_ar_timeout_is_refused_before_anything_changes(tmp_path):
    prefix = make_prefix(tmp_path)
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--active-response", "--ar-timeout", "1h", check=False)
    assert proc.returncode == 1 and "--ar-timeout '1h' must be a number of seconds" in proc.stderr
    assert snapshot(prefix) == before


def _python_for(uid: int, gid: int) -> str:
    """An interpreter the unprivileged user can run (the test runner's may sit in root's home)."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        probe = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", candidate, "-c", ""],
                               capture_output=True)
        if probe.returncode == 0:
            return candidate
    pytest.skip("no Python the unprivileged user can run")


@pip
@needs_torch
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as another user")
def test_installing_twice_keeps_the_shared_modes_and_the_wazuh_group_still_writes_findings():
    """Re-running install.sh --realtime once turned var/anomaly/realtime from 2770 into
    2750, and every finding of the integration (user wazuh) failed with "Permission denied"."""
    import grp
    import pwd
    from test_realtime_integration import ENV, integratord_argv, sudo_alert
    root = Path(tempfile.mkdtemp(prefix="wa-reinstall-"))   # pytest's own tmp is root-only
    try:
        os.chmod(root, 0o755)
        prefix = make_prefix(root)
        venv = make_venv(root / "venv")
        for _ in range(2):
            run("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--realtime")
        for rel, mode in (("var/anomaly/realtime", 0o2770), ("var/anomaly/realtime/state", 0o2770),
                          ("logs/anomaly", 0o770), ("logs/anomaly/anomalies.json", 0o660),
                          ("logs/anomaly/anomalies.json.lock", 0o660), ("var/anomaly", 0o750)):
            assert stat.S_IMODE((prefix / rel).stat().st_mode) == mode, rel

        # The wazuh user and group (here nobody:nogroup): install.sh chowns root:wazuh what it makes.
        uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
        for rel in ("etc/anomaly", "etc/anomaly/realtime.yaml", "var", "var/anomaly", "var/anomaly/realtime",
                    "var/anomaly/realtime/state", "logs/anomaly", "logs/anomaly/anomalies.json",
                    "logs/anomaly/anomalies.json.lock"):
            os.chown(prefix / rel, 0, gid)
        learn = root / "learn.json"
        learn.write_text(json.dumps(sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000")) + "\n")
        done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "realtime", "learn",
                               "--alerts", str(learn)], capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stderr                                  # as root, the CLI
        alert = root / "custom-anomaly-1-x.alert"
        alert.write_text(json.dumps(sudo_alert("/bin/cat /etc/shadow")))
        os.chmod(alert, 0o644)
        python = _python_for(uid, gid)
        # The package as install.sh leaves it, readable by the wazuh user: this checkout may
        # sit in a directory only root can enter (a clone in a 0700 mktemp -d).
        code_dir = root / "code"
        shutil.copytree(REPO / "integration" / "wazuh_anomaly", code_dir / "wazuh_anomaly",
                        ignore=shutil.ignore_patterns("__pycache__", "sample"))
        for path in [code_dir, *code_dir.rglob("*")]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        code = ("import sys; sys.path.insert(0, %r); from wazuh_anomaly.realtime.integration import main; "
                "sys.exit(main())") % str(code_dir)
        done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", python, "-c", code,
                               "--prefix", str(prefix), *integratord_argv(alert)],
                              capture_output=True, text=True, env={k: v for k, v in ENV.items() if k != "PYTHONPATH"})
        assert done.returncode == 0, done.stderr                                  # as wazuh, the integration
        events = [json.loads(line) for line in (prefix / "logs/anomaly/anomalies.json").read_text().splitlines()]
        assert [e["anomaly"]["observed"]["value"] for e in events] == ["/bin/cat /etc/shadow"]
    finally:
        shutil.rmtree(root)


@pip
@needs_torch
def test_a_link_planted_where_install_sh_keeps_its_files_stops_a_reinstall_and_its_target_is_untouched(tmp_path):
    """The wazuh group can write var/anomaly/realtime and logs/anomaly: a re-run of install.sh
    (root) must not chmod, chown or create through a link planted there."""
    prefix = make_prefix(tmp_path)
    venv = make_venv(tmp_path / "venv")
    args = ("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--realtime")
    run(*args)
    system_dir = tmp_path / "system"
    system_dir.mkdir(mode=0o755)
    secret = tmp_path / "secret"
    secret.write_text("root only")
    secret.chmod(0o600)

    state = prefix / "var/anomaly/realtime/state"
    state.rmdir()
    state.symlink_to(system_dir)
    before = snapshot(prefix)
    proc = run(*args, check=False)
    assert proc.returncode == 1
    assert (f"install.sh: {state} is a symbolic link where install.sh expects its own file or directory; the wazuh "
            f"user can write there, so check who made it, remove it and re-run.") in proc.stderr
    assert stat.S_IMODE(system_dir.stat().st_mode) == 0o755 and list(system_dir.iterdir()) == []
    assert snapshot(prefix) == before

    state.unlink()
    state.mkdir()
    lock = prefix / "logs/anomaly/anomalies.json.lock"
    lock.unlink()
    lock.symlink_to(secret)
    proc = run(*args, check=False)
    assert proc.returncode == 1 and f"install.sh: {lock} is a symbolic link" in proc.stderr
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and secret.read_text() == "root only"
