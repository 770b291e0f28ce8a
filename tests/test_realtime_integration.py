"""integrations/custom-anomaly end to end: argv as wazuh-integratord passes it, one new
process per alert, findings in anomalies.json, light imports, concurrent runs, and the
acceptance on real alerts (learn on the no-attack lines, find the attack)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, SHARED_DATA

ALERTS = SHARED_DATA / "wazuh-alerts"
ATTACK = ALERTS / "wazuh_attack_lines.json"
NO_ATTACK = ALERTS / "wazuh_no_attack_lines.json"
ENV = {**os.environ, "PYTHONPATH": str(REPO / "integration")}
HEAVY = ("numpy", "pandas", "torch", "yaml", "pydantic", "sklearn", "scipy")


def need_wazuh_alerts():
    if not ATTACK.exists():
        pytest.skip(f"real alerts not found at {ALERTS}")


@pytest.fixture
def prefix(tmp_path) -> Path:
    """A sandbox manager prefix with the shipped realtime.yaml."""
    (tmp_path / "etc/anomaly").mkdir(parents=True)
    (tmp_path / "logs").mkdir()
    shutil.copy(REPO / "wazuh/etc/anomaly/realtime.yaml", tmp_path / "etc/anomaly/realtime.yaml")
    shutil.copy(REPO / "wazuh/etc/anomaly/config.yaml", tmp_path / "etc/anomaly/config.yaml")
    (tmp_path / "logs/integrations.log").write_text("")
    return tmp_path


def integratord_argv(alert_file: Path, options: str = "") -> list[str]:
    # integrations <alertfile> <api_key> <hook_url> <debug> <optfile> <timeout> <retries> "> /dev/null 2>&1"
    return [str(alert_file), "", "", "", options, "10", "3", "> /dev/null 2>&1"]


def integration(prefix: Path, alert: dict, tmp: Path, name: str = "a", **kw) -> subprocess.CompletedProcess:
    alert_file = tmp / f"custom-anomaly-1700000000-{name}.alert"
    alert_file.write_text(json.dumps(alert) + "\n")
    return subprocess.run([sys.executable, "-m", "wazuh_anomaly.realtime.integration", "--prefix", str(prefix),
                           *integratord_argv(alert_file, **kw)], capture_output=True, text=True, env=ENV, timeout=60)


def cli(prefix: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), *args],
                          capture_output=True, text=True, env=ENV, timeout=300)


def anomalies(prefix: Path) -> list[dict]:
    path = prefix / "logs/anomaly/anomalies.json"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def sudo_alert(command: str, ts: str = "2022-01-18T13:14:49.000+0000") -> dict:
    return {"timestamp": ts, "id": "1.2", "rule": {"id": "5402", "level": 3, "groups": ["syslog", "sudo"]},
            "agent": {"id": "27", "name": "intranet"},
            "data": {"srcuser": "phopkins", "dstuser": "root", "command": command}}


# Standard modules the finding path does without: importing them costs more than the rest
# of the work on one alert (typing and dataclasses build classes). json (and the re it
# imports) is the price of reading JSON with public APIs only; orjson would also import
# dataclasses, inspect and ast, which this list keeps out (fastjson.py has the numbers).
SLOW_STDLIB = ("typing", "dataclasses", "pathlib", "hashlib", "contextlib", "inspect", "ast", "uuid")


def test_integration_handles_an_alert_without_importing_numpy_pandas_torch_or_yaml(prefix, tmp_path):
    # learn one sudo command, then the handler meets a new one (the path that writes a finding)
    first = integration(prefix, sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000"), tmp_path)
    assert first.returncode == 0, first.stderr
    alert_file = tmp_path / "new.alert"
    alert_file.write_text(json.dumps(sudo_alert("/bin/cat /etc/shadow")))
    code = f"""
import sys
from wazuh_anomaly.realtime.integration import main
rc = main(["--prefix", {str(prefix)!r}, {str(alert_file)!r}, "", "", "", "", "10", "3"])
print(rc, sorted(m for m in {HEAVY!r} if m in sys.modules))
print(sorted(m for m in {SLOW_STDLIB!r} if m in sys.modules))
"""
    env = {**ENV, "WAZUH_ANOMALY_PREFIX": str(prefix)}
    # learn mode ends for the sudo detector so that the second alert is judged
    state = prefix / "var/anomaly/realtime/state/new_sudo_command_for_user.json"
    doc = json.loads(state.read_text())
    doc["learn_end"] = doc["started"] + 1
    state.write_text(json.dumps(doc))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split("\n")[0] == "0 []"
    # nor what costs most of a finding's time on top of the interpreter (bench_integration.py)
    assert out.split("\n")[1] == "[]"
    (event,) = [e for e in anomalies(prefix) if e["anomaly"]["scenario"] == "new_sudo_command_for_user"]
    assert event["anomaly"]["observed"]["value"] == "/bin/cat /etc/shadow"


def test_a_finding_is_a_schema_v1_line_with_the_alerts_identity(prefix, tmp_path):
    alert = sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000")
    assert integration(prefix, alert, tmp_path).returncode == 0
    cli(prefix, "realtime", "learn", "--alerts", str(tmp_path / "custom-anomaly-1700000000-a.alert"))
    done = integration(prefix, sudo_alert("/bin/cat /etc/shadow"), tmp_path, name="b")
    assert done.returncode == 0, done.stderr
    events = anomalies(prefix)
    assert {e["anomaly"]["scenario"] for e in events} == {"new_sudo_command_for_user"}
    a = events[0]["anomaly"]
    assert events[0]["integration"] == "anomaly" and a["schema"] == 1 and a["kind"] == "rare_value"
    assert a["entity"] == {"field": "data.srcuser", "value": "phopkins"}
    assert a["alert"] == {"id": "1.2", "rule_id": "5402", "agent": "intranet (27)"}
    assert events[0]["dstuser"] == "phopkins"
    # the same alert again: nothing new (learned, and the id is remembered)
    assert integration(prefix, sudo_alert("/bin/cat /etc/shadow"), tmp_path, name="c").returncode == 0
    assert len(anomalies(prefix)) == 1


def test_options_restrict_the_detectors_and_bad_options_are_one_error_line(prefix, tmp_path):
    opts = tmp_path / "custom-anomaly-1.options"
    opts.write_text('{"detectors": ["new_rule_for_agent"]}\n')
    assert integration(prefix, sudo_alert("x"), tmp_path, options=str(opts)).returncode == 0
    states = sorted(p.stem for p in (prefix / "var/anomaly/realtime/state").iterdir())
    assert states == ["new_rule_for_agent"]
    opts.write_text("detectors=all\n")
    done = integration(prefix, sudo_alert("x"), tmp_path, options=str(opts))
    assert done.returncode == 1
    logged = (prefix / "logs/integrations.log").read_text().splitlines()
    assert len(logged) == 1 and "custom-anomaly: <options> of custom-anomaly must be JSON" in logged[0]


def test_a_non_json_alert_file_asks_for_alert_format_json(prefix, tmp_path):
    alert_file = tmp_path / "x.alert"
    alert_file.write_text("alertdate='2022 Jan 18'\nruleid='5402'\n")
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.realtime.integration", "--prefix", str(prefix),
                           *integratord_argv(alert_file)], capture_output=True, text=True, env=ENV)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "add <alert_format>json</alert_format>" in (prefix / "logs/integrations.log").read_text()


def test_concurrent_runs_lose_no_learned_value_and_write_no_duplicate(prefix, tmp_path):
    # learn mode already over: every new command of the 24 below is reported exactly once
    base = sudo_alert("/usr/bin/true", "2022-01-01T00:00:00.000+0000")
    integration(prefix, base, tmp_path, name="base")
    state = prefix / "var/anomaly/realtime/state/new_sudo_command_for_user.json"
    doc = json.loads(state.read_text())
    doc["learn_end"] = doc["started"] + 1
    state.write_text(json.dumps(doc))
    commands = [f"/usr/bin/cmd{i % 12}" for i in range(24)]          # each command twice
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda ic: integration(prefix, sudo_alert(ic[1]), tmp_path, name=f"c{ic[0]}"),
                                enumerate(commands)))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results if r.returncode]
    learned = json.loads(state.read_text())["keys"]["phopkins"]["values"]
    assert sorted(learned) == sorted({"/usr/bin/true", *commands})
    reported = [e["anomaly"]["observed"]["value"] for e in anomalies(prefix)
                if e["anomaly"]["scenario"] == "new_sudo_command_for_user"]
    assert sorted(reported) == sorted(set(commands))


def test_real_alerts_first_seen_findings_on_the_attack_lines_none_on_the_no_attack_lines(prefix, tmp_path):
    need_wazuh_alerts()
    learned = cli(prefix, "realtime", "learn", "--alerts", str(NO_ATTACK))
    assert learned.returncode == 0, learned.stderr
    assert "learned from 100 alerts" in learned.stdout
    for name, path in (("no_attack", NO_ATTACK), ("attack", ATTACK)):
        for i, alert in enumerate(lines(path)):
            done = integration(prefix, alert, tmp_path, name=f"{name}{i}")
            assert done.returncode == 0, done.stderr
        if name == "no_attack":
            assert anomalies(prefix) == [], "nothing new on the lines it learned from"
    events = [e["anomaly"] for e in anomalies(prefix)]
    seen = {(a["scenario"], a.get("entity", {}).get("value"), a["observed"]["value"]) for a in events}
    # the privilege escalation step: phopkins reads /root and /etc/shadow through sudo
    assert ("new_sudo_command_for_user", "phopkins", "/bin/cat /etc/shadow") in seen
    assert ("new_sudo_command_for_user", "phopkins", "/bin/ls -laR /root/") in seen
    # the scans: sshd "insecure connection attempt (scan)" is new for the scanned agents
    assert {("new_rule_for_agent", agent, "5706") for agent in ("1", "29", "6")} <= seen
    # the web scans (WPScan, Dirb) on the intranet server: new rules and levels
    assert ("new_rule_for_agent", "27", "31151") in seen
    assert ("rule_level_out_of_range", "27", "10") in seen
    # the account switch www -> phopkins of the escalation
    assert any(s == "new_privilege_pair" and "www" in v for s, _, v in seen)
    # every line raises a rule of the real-time ruleset
    from wazuh_anomaly.ruleset import explain_all
    alerts = explain_all(anomalies(prefix))
    assert all(117200 <= a.rule_id <= 117299 and a.level >= 5 for a in alerts), [(a.rule_id, a.level) for a in alerts]


def test_the_rule_cases_file_is_current():
    from rulecases.realtime_cases import INI_FILE_NAME, render_cases
    assert (REPO / "tests/ruleset" / INI_FILE_NAME).read_text() == render_cases(), \
        "run: scripts/update-rule-cases.py"


def test_every_realtime_rule_has_a_case_and_every_case_passes_offline():
    from wazuh_anomaly.ruleset.logtest import run_cases_offline
    from rulecases.realtime_cases import build_cases
    from wazuh_anomaly.ruleset.rulefile import load_order, read_rule_file
    rule_files = load_order([REPO / "rules"])
    assert [p.name for p in rule_files][-1] == "wazuh_anomaly_rules_realtime.xml", "loads after its parent 117100"
    ids = {r.id for r in read_rule_file(REPO / "rules/wazuh_anomaly_rules_realtime.xml").rules}
    assert ids == {c.rule for c in build_cases()}
    results = run_cases_offline([REPO / "tests/ruleset/wazuh_anomaly_rules_realtime.ini"], rule_files)
    assert results and all(r.passed for r in results)


def test_rare_event_fields_name_every_field_a_realtime_event_carries():
    from wazuh_anomaly.realtime.events import RARE_EVENT_FIELDS
    from rulecases.realtime_cases import build_cases

    def flat(d, prefix=""):
        out = set()
        for k, v in d.items():
            out |= flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
        return out
    lines = [line for c in build_cases() for line in c.lines]
    # a line shortened to fit Wazuh's limits names what was cut
    from wazuh_anomaly.core import jsonio as fastjson
    from wazuh_anomaly.core.eventtext import fit_line
    lines.append(fit_line(json.loads(lines[0]), fastjson.dumps_strict, max_bytes=len(lines[0].encode()) - 1))
    seen = set().union(*(flat(json.loads(line)) for line in lines))
    assert seen == RARE_EVENT_FIELDS


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to run as another user")
def test_the_integration_works_as_an_unprivileged_user_with_the_installed_permissions():
    """As on a manager: root learns (CLI), the integration runs as the wazuh user (here
    nobody:nogroup) with root:GROUP 2770 state, 0660 anomalies.json and lock (install.sh --realtime)."""
    import tempfile
    tmp_path = Path(tempfile.mkdtemp(prefix="wa-unprivileged-"))   # pytest's own tmp is root-only
    try:
        _run_as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _run_as_nobody(tmp_path: Path) -> None:
    import grp
    import pwd
    prefix = tmp_path / "ossec"
    (prefix / "etc/anomaly").mkdir(parents=True)
    (prefix / "logs").mkdir()
    shutil.copy(REPO / "wazuh/etc/anomaly/realtime.yaml", prefix / "etc/anomaly/realtime.yaml")
    uid, gid = pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    base = prefix / "var/anomaly/realtime"
    (prefix / "var/anomaly").mkdir(parents=True)
    base.mkdir()
    (prefix / "logs/anomaly").mkdir()
    for d, mode in ((prefix / "var", 0o755), (prefix / "var/anomaly", 0o750), (base, 0o2770), (prefix / "logs/anomaly", 0o770)):
        os.chown(d, 0, gid)
        os.chmod(d, mode)
    for name in ("anomalies.json", "anomalies.json.lock"):
        f = prefix / "logs/anomaly" / name
        f.write_text("")
        os.chown(f, 0, gid)
        os.chmod(f, 0o660)
    os.chmod(prefix / "etc/anomaly/realtime.yaml", 0o644)
    for p in (tmp_path, prefix, prefix / "etc", prefix / "etc/anomaly", prefix / "logs"):
        os.chmod(p, 0o755)
    learn_file = tmp_path / "learn.json"
    learn_file.write_text(json.dumps(sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000")) + "\n")
    assert cli(prefix, "realtime", "learn", "--alerts", str(learn_file)).returncode == 0   # as root
    alert_file = tmp_path / "custom-anomaly-1-x.alert"
    alert_file.write_text(json.dumps(sudo_alert("/bin/cat /etc/shadow")))
    os.chmod(alert_file, 0o644)
    # The package as install.sh leaves it, readable by the wazuh user: this checkout may
    # sit in a directory only root can enter (a mktemp -d clone is 0700).
    code_dir = tmp_path / "integration"
    shutil.copytree(REPO / "integration" / "wazuh_anomaly", code_dir / "wazuh_anomaly",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in [code_dir, *code_dir.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    code = ("import sys; sys.path.insert(0, %r); from wazuh_anomaly.realtime.integration import main; "
            "sys.exit(main())") % str(code_dir)
    done = subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", sys.executable, "-c", code,
                           "--prefix", str(prefix), *integratord_argv(alert_file)],
                          capture_output=True, text=True, env={k: v for k, v in ENV.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr
    (event,) = anomalies(prefix)
    assert event["anomaly"]["observed"]["value"] == "/bin/cat /etc/shadow"
    learned = json.loads((base / "state/new_sudo_command_for_user.json").read_text())
    assert learned["keys"]["phopkins"]["values"] == ["/usr/bin/id", "/bin/cat /etc/shadow"]


def test_an_alert_without_findings_imports_neither_json_nor_re_nor_dataclasses(prefix, tmp_path):
    """The common case (nothing new) stays at the bare interpreter's imports plus ours."""
    first = integration(prefix, sudo_alert("/usr/bin/id", "2022-01-01T00:00:00.000+0000"), tmp_path)
    assert first.returncode == 0, first.stderr             # writes the config cache and the state
    alert_file = tmp_path / "again.alert"
    alert_file.write_text(json.dumps(sudo_alert("/usr/bin/id", "2022-01-01T00:00:05.000+0000")))
    code = f"""
import sys
from wazuh_anomaly.realtime.integration import main
rc = main(["--prefix", {str(prefix)!r}, {str(alert_file)!r}, "", "", "", "", "10", "3"])
print(rc, sorted(m for m in ("datetime", *{SLOW_STDLIB!r}, *{HEAVY!r}) if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.strip() == "0 []"


def test_realtime_validate_compiles_the_configuration_so_no_alert_imports_pydantic_or_yaml(prefix, tmp_path):
    assert cli(prefix, "realtime", "validate").returncode == 0
    assert (prefix / "var/anomaly/realtime/config.json").exists()
    alert_file = tmp_path / "first.alert"
    alert_file.write_text(json.dumps(sudo_alert("/usr/bin/id")))
    code = f"""
import sys
from wazuh_anomaly.realtime.integration import main
rc = main(["--prefix", {str(prefix)!r}, {str(alert_file)!r}, "", "", "", "", "10", "3"])
print(rc, sorted(m for m in ("pydantic", "yaml") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, check=True).stdout
    assert out.strip() == "0 []"
