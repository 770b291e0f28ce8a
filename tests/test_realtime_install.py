"""install.sh --realtime --active-response: the opt-in launchers, permissions for the
wazuh user, the <integration> and active-response blocks, and a clean uninstall."""
from __future__ import annotations

import json
import os
import stat
import subprocess

from test_install import block_of, make_prefix, make_venv, needs_torch, pip, run, snapshot


@pip
@needs_torch
def test_realtime_and_active_response_install_their_launchers_blocks_and_uninstall_cleanly(tmp_path):
    prefix = make_prefix(tmp_path)
    (prefix / "logs/integrations.log").write_text("")
    before = snapshot(prefix)
    venv = make_venv(tmp_path / "venv")
    run("--prefix", str(prefix), "--venv", str(venv), "--no-restart", "--realtime", "--active-response",
        "--ar-timeout", "600")

    for rel, run_it in (("integrations/custom-anomaly",
                         "-c 'import sys; from wazuh_anomaly.realtime.integration import main; sys.exit(main())'"),
                        ("active-response/bin/anomaly-response", "-m wazuh_anomaly.realtime.response")):
        path = prefix / rel
        assert stat.S_IMODE(path.stat().st_mode) == 0o750, rel
        assert f"exec '{venv}/bin/python' {run_it} --prefix '{prefix}' \"$@\"" in path.read_text()
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


def test_a_bad_ar_timeout_is_refused_before_anything_changes(tmp_path):
    prefix = make_prefix(tmp_path)
    before = snapshot(prefix)
    proc = run("--prefix", str(prefix), "--active-response", "--ar-timeout", "1h", check=False)
    assert proc.returncode == 1 and "--ar-timeout '1h' must be a number of seconds" in proc.stderr
    assert snapshot(prefix) == before
