"""The logtest client against a local server speaking analysisd's logtest protocol.

The server is a thread on a unix socket with the same framing (4-byte little-endian
length + JSON, one request per connection, sessions by 8-character token) that answers
from the offline simulator, so the client's bytes on the wire are what a manager gets.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import tempfile
import secrets
import socket
import struct
import threading
from pathlib import Path

import pytest

from wazuh_anomaly.ruleset.engine import RuleEngine
from wazuh_anomaly.ruleset.inifile import read_ini
from wazuh_anomaly.ruleset.logtest import (
    DEFAULT_LOCATION,
    LogtestError,
    format_results,
    request,
    run_cases,
    run_cases_offline,
)
from wazuh_anomaly.ruleset.rulefile import load_order

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "rules" / "wazuh_anomaly_rules.xml"
INI = REPO / "tests" / "ruleset" / "wazuh_anomaly_rules.ini"
ALL_RULES = load_order([REPO / "rules"])
ALL_INI = sorted((REPO / "tests" / "ruleset").glob("*.ini"))
ANOMALIES = "/var/ossec/logs/anomaly/anomalies.json"


def recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise ConnectionError
        data += chunk
    return data


class LogtestServer:
    """analysisd's logtest socket, answered by the simulator."""

    def __init__(self, path: Path, rules: list[Path], *, error: int = 0):
        self.path = path
        self.engine = RuleEngine(rules)
        self.sessions = {}
        self.requests: list[dict] = []
        self.error = error
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, 0o660)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                size = struct.unpack("<I", recv_exact(conn, 4))[0]
                req = json.loads(recv_exact(conn, size))
                self.requests.append(req)
                reply = json.dumps(self._answer(req)).encode()
                conn.sendall(struct.pack("<I", len(reply)) + reply)

    def _answer(self, req: dict) -> dict:
        if self.error:
            return {"error": self.error, "message": "Error parsing JSON", "data": {}}
        params = req["parameters"]
        if req["command"] == "remove_session":
            self.sessions.pop(params["token"], None)
            return {"error": 0, "data": {"codemsg": 0, "messages": ["INFO: (7206): The session was closed"]}}
        for key in ("event", "log_format", "location"):   # w_logtest_check_input_request
            if not params.get(key):
                return {"error": 0, "data": {"codemsg": -1, "messages": [f"ERROR: (7308): '{key}' JSON field is required"]}}
        messages = []
        token = params.get("token")
        if token not in self.sessions:
            token = secrets.token_hex(4)
            self.sessions[token] = self.engine.session()
            messages.append(f"INFO: (7202): Session initialized with token '{token}'")
        # analysisd processes "1:<location>:<event>" (OS_CleanMSG): the location is the event's own
        alert = self.sessions[token].process(params["event"], location=params["location"])
        output = {"decoder": {"name": alert.decoder}, "location": params["location"],
                  "full_log": params["event"]}
        if alert.rule_id is not None:
            output["rule"] = {"id": str(alert.rule_id), "level": alert.level,
                              "description": alert.description, "groups": alert.groups}
        return {"error": 0, "data": {"token": token, "messages": messages, "codemsg": 0,
                                     "output": output, "alert": alert.alert}}

    def close(self):
        self.sock.close()


@pytest.fixture
def server(tmp_path):
    srv = LogtestServer(tmp_path / "logtest", [RULES])
    yield srv
    srv.close()


def test_every_case_passes_through_a_server_speaking_the_logtest_protocol(server):
    results = run_cases(server.path, [INI])
    assert results and all(r.passed for r in results), format_results(results)
    assert format_results(results).endswith(f"{len(results)} passed, 0 failed")


def test_requests_have_the_analysisd_shape_and_reuse_the_token_within_a_run(server, tmp_path):
    # The shipped cases are one line each (no rule depends on the lines before); a run
    # of several lines, as Wazuh's format allows, shares one session.
    sections = read_ini(INI)[:3]
    multi = tmp_path / "multi.ini"
    multi.write_text("[three lines in one session]\n" + "".join(f"log 1 pass = {s.runs[0].lines[0]}\n" for s in sections)
                     + f"rule = {sections[-1].rule}\nalert = {sections[-1].alert}\ndecoder = json\n"
                     + f"location = {ANOMALIES}\n", encoding="utf-8")
    results = run_cases(server.path, [INI, multi])
    assert results[-1].lines == 3 and results[-1].passed
    processing = [r for r in server.requests if r["command"] == "log_processing"]
    first = processing[0]
    assert first["version"] == 1
    assert first["origin"] == {"name": "wazuh-anomaly", "module": "wazuh-anomaly"}
    assert first["parameters"]["log_format"] == "json"
    assert first["parameters"]["location"] == ANOMALIES
    # every request carries its section's location (where the line comes from)
    sent = {r["parameters"]["location"] for r in processing}
    assert sent == {s.location for s in read_ini(INI)} and DEFAULT_LOCATION not in sent
    assert "token" not in first["parameters"]
    # the three-line run: lines 2 and 3 carry the token the server gave line 1
    tokens = [r["parameters"].get("token") for r in processing]
    assert any(t is None and a is not None and a == b for t, a, b in zip(tokens, tokens[1:], tokens[2:]))
    removed = [r for r in server.requests if r["command"] == "remove_session"]
    assert len(removed) == sum(1 for t in tokens if t is None)
    assert server.sessions == {}


def test_a_wrong_expectation_is_reported_as_a_failure_with_what_fired(server, tmp_path):
    # the event of rule 117100 (decoded, no alert): the section is found by name, not position
    line = INI.read_text().split("[Anomaly event of a kind without rules is decoded but not alerted]\nlog 1 pass = ")[1].splitlines()[0]
    ini = tmp_path / "wrong.ini"
    ini.write_text(f"[expects too much]\nlog 1 pass = {line}\nrule = 117113\nalert = 12\ndecoder = json\n"
                   f"location = {ANOMALIES}\n"
                   f"\n[must not match]\nlog 1 fail = {line}\nrule = 117100\nalert = 0\ndecoder = json\n"
                   f"location = {ANOMALIES}\n")
    results = run_cases(server.path, [ini])
    assert [r.passed for r in results] == [False, False]
    text = format_results(results)
    assert "FAIL wrong.ini [expects too much] log 1 pass" in text
    assert "expected rule 117113 level 12 decoder json" in text
    assert "got      rule 117100 level 0 decoder json" in text
    assert text.endswith("0 passed, 2 failed")


def test_forged_lines_give_no_alert_through_the_logtest_protocol(tmp_path):
    # Every family: the forged sections (an agent's file, a syslog sender, another file)
    # travel with their location like any request, and no rule of ours answers them.
    srv = LogtestServer(tmp_path / "logtest", ALL_RULES)
    try:
        results = run_cases(srv.path, ALL_INI)
    finally:
        srv.close()
    assert results and all(r.passed for r in results), format_results(results)
    forged = [r for r in results if not r.expect_match]
    assert {r.file.name for r in forged} == {p.name for p in ALL_INI}
    assert all(r.actual[0] == "" and r.actual[2] == "json" for r in forged), format_results(forged)
    locations = {r["parameters"]["location"] for r in srv.requests if r["command"] == "log_processing"}
    assert "[003] (web-01) any->/var/ossec/logs/anomaly/anomalies.json" in locations
    assert "[003] (web-01) any->/var/ossec/logs/anomaly/netflow.json" in locations
    assert "192.0.2.7" in locations


def test_a_section_without_location_is_sent_as_stdin_and_our_rules_ignore_it(server, tmp_path):
    line = next(s for s in read_ini(INI) if s.rule == "117113" and s.runs[0].expect_match).runs[0].lines[0]
    ini = tmp_path / "noloc.ini"
    ini.write_text(f"[no location]\nlog 1 pass = {line}\nrule = 117113\nalert = 12\ndecoder = json\n")
    (result,) = run_cases(server.path, [ini])
    assert server.requests[0]["parameters"]["location"] == "stdin"
    assert not result.passed and result.actual == ("", "", "json")


def test_offline_mode_gives_the_same_results_and_says_it_is_a_simulation(server):
    online = run_cases(server.path, [INI])
    offline = run_cases_offline([INI], [RULES])
    assert [(r.section, r.actual) for r in offline] == [(r.section, r.actual) for r in online]
    assert format_results(offline).startswith("[simulated by wazuh-anomaly's offline rule engine")


def test_missing_socket_is_one_sentence_naming_the_manager_and_rule_test(tmp_path):
    with pytest.raises(LogtestError) as err:
        run_cases(tmp_path / "nothing-here", [INI])
    msg = str(err.value)
    assert msg.count(". ") == 0 and "is wazuh-manager running?" in msg and "<rule_test>" in msg
    assert str(tmp_path / "nothing-here") in msg


def _connect_as_nobody(path: str, ini: str, queue) -> None:
    os.setgid(65534)
    os.setuid(65534)
    try:
        run_cases(Path(path), [Path(ini)])
        queue.put("no error")
    except LogtestError as exc:
        queue.put(str(exc))
    except Exception as exc:  # anything else must show up as a failed assertion, not an empty queue
        queue.put(f"unexpected {type(exc).__name__}: {exc}")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to an unprivileged user")
def test_permission_denied_says_to_run_as_root_or_wazuh(server):
    os.chmod(server.path.parent, 0o700)          # like queue/sockets: not for other users
    # The cases themselves are readable by anyone, wherever the checkout lives.
    fd, ini = tempfile.mkstemp(suffix=".ini", dir="/tmp")
    os.write(fd, INI.read_bytes())
    os.close(fd)
    os.chmod(ini, 0o644)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_connect_as_nobody, args=(str(server.path), ini, queue))
    child.start()
    child.join(30)
    os.unlink(ini)
    assert queue.get(timeout=5) == f"Permission denied on {server.path}: run as root or as a user in the wazuh group."


def test_an_error_reply_from_analysisd_is_raised_with_its_message(tmp_path):
    srv = LogtestServer(tmp_path / "logtest", [RULES], error=2)
    try:
        with pytest.raises(LogtestError, match="error 2: Error parsing JSON"):
            request(srv.path, "log_processing", {"event": "{}", "log_format": "json", "location": "x"})
    finally:
        srv.close()


def test_requests_over_the_socket_limit_are_refused_before_sending(server):
    with pytest.raises(LogtestError, match="exceeds the socket's 65535-byte limit"):
        request(server.path, "log_processing", {"event": "x" * 70_000, "log_format": "json", "location": "x"})
    assert server.requests == []


REAL_SOCKET = os.environ.get("WAZUH_ANOMALY_LOGTEST_SOCKET")


@pytest.mark.skipif(not REAL_SOCKET, reason="set WAZUH_ANOMALY_LOGTEST_SOCKET to a real manager's logtest socket "
                                            "(with the three rules/*.xml files installed in its etc/rules)")
def test_every_case_passes_on_a_real_wazuh_analysisd():
    results = run_cases(Path(REAL_SOCKET), ALL_INI)
    assert results and all(r.passed for r in results), format_results(results)
    # forged lines: decoded, and no rule of ours matches. The stock ruleset may still answer
    # as it would for any text (rule 1002, level 2, for a line saying "failures").
    forged = [r for r in results if not r.expect_match]
    assert forged and all(r.actual[2] == "json" and not r.actual[0].startswith("117") for r in forged), \
        format_results(forged)
    offline = run_cases_offline(ALL_INI, ALL_RULES)
    genuine = [r for r in results if r.expect_match]
    assert [(r.section, r.actual) for r in offline if r.expect_match] == [(r.section, r.actual) for r in genuine]
    assert all(r.actual == ("", "", "json") for r in offline if not r.expect_match)
