"""`wazuh-anomaly logtest`: runs the .ini rule tests through a manager's logtest socket
(`queue/sockets/logtest`), or through the offline simulator with `--offline`.

Protocol (src/analysisd/logtest.c, framework/scripts/wazuh_logtest.py, v4.14.x):
AF_UNIX stream, one request per connection, each message framed by a 4-byte
little-endian length. `log_processing` needs `event`, `location` and a non-empty
`log_format`; analysisd only checks that log_format is a string and processes the
event as the raw queue message `1:<location>:<event>`, so "json" is accepted and
behaves like the CLI's "syslog" (the line has no syslog header to strip). A `token`
reuses a session, so the lines of one run accumulate for frequency rules.

The location of each request is the section's `location` (where its lines come from:
our rules only match their own file on the manager), or `location` given to run_cases
for sections that do not say, by default wazuh-logtest's own "stdin".
"""
from __future__ import annotations

import json
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..core.errors import WazuhAnomalyError
from .engine import SIMULATION_NOTE, STDIN_LOCATION, RuleEngine
from .inifile import Run, Section, read_ini

ORIGIN = {"name": "wazuh-anomaly", "module": "wazuh-anomaly"}
DEFAULT_LOCATION = STDIN_LOCATION   # for sections without a `location`, as wazuh-logtest without -l
MAX_REQUEST = 65535   # analysisd answers error 5 beyond this


class LogtestError(WazuhAnomalyError):
    """The logtest socket cannot be used."""


@dataclass
class CaseResult:
    """The outcome of one run (one `log N pass|fail` key of one section)."""

    file: Path
    section: str
    run: str
    expected: tuple[str, str, str]          # rule, level, decoder as in the .ini
    actual: tuple[str, str, str]
    description: str
    expect_match: bool
    lines: int
    messages: list[str] = field(default_factory=list)
    simulated: bool = False

    @property
    def passed(self) -> bool:
        same = self.actual == self.expected
        return same if self.expect_match else not same


def _error_for(path: Path, exc: OSError) -> LogtestError:
    if isinstance(exc, PermissionError):
        return LogtestError(f"Permission denied on {path}: run as root or as a user in the wazuh group.")
    if isinstance(exc, (FileNotFoundError, ConnectionRefusedError)):
        return LogtestError(f"No logtest socket answers at {path}: is wazuh-manager running? "
                            "is <rule_test> enabled in ossec.conf?")
    return LogtestError(f"Cannot talk to the logtest socket {path} ({exc.strerror or exc}); check that wazuh-analysisd is running.")


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(size - got)
        if not chunk:
            raise ConnectionResetError("connection closed before the whole reply arrived")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def request(socket_path: Path, command: str, parameters: dict, *, timeout: float = 30.0) -> dict:
    """One request on its own connection; the decoded `data` of the reply."""
    payload = json.dumps({"version": 1, "origin": ORIGIN, "command": command,
                          "parameters": parameters}, ensure_ascii=False).encode("utf-8")
    if len(payload) > MAX_REQUEST:
        raise LogtestError(f"A logtest request of {len(payload)} bytes exceeds the socket's {MAX_REQUEST}-byte limit; shorten the event.")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(struct.pack("<I", len(payload)) + payload)
            size = struct.unpack("<I", _recv_exact(sock, 4))[0]
            raw = _recv_exact(sock, size)
    except socket.timeout as exc:
        raise LogtestError(f"The logtest socket {socket_path} did not answer within {timeout:g} s; check wazuh-analysisd's log.") from exc
    except OSError as exc:
        raise _error_for(Path(socket_path), exc) from exc
    try:
        reply = json.loads(raw)
    except ValueError as exc:
        raise LogtestError(f"The logtest socket {socket_path} sent a reply that is not JSON; is it really wazuh-analysisd?") from exc
    if reply.get("error"):
        raise LogtestError(f"wazuh-analysisd refused the request (error {reply.get('error')}: {reply.get('message', 'no message')}).")
    return reply.get("data") or {}


def _outcome(data: dict) -> tuple[tuple[str, str, str], str]:
    output = data.get("output") or {}
    rule = output.get("rule") or {}
    decoder = (output.get("decoder") or {}).get("name", "")
    actual = (str(rule.get("id", "")), str(rule.get("level", "")) if rule else "", decoder)
    return actual, rule.get("description", "")


def _run_socket(socket_path: Path, section: Section, run: Run, location: str, timeout: float) -> CaseResult:
    token = None
    messages: list[str] = []
    data: dict = {}
    for line in run.lines:
        params = {"event": line, "log_format": "json", "location": location}
        if token:
            params["token"] = token
        data = request(socket_path, "log_processing", params, timeout=timeout)
        if data.get("codemsg", 0) < 0:
            raise LogtestError(f"wazuh-analysisd could not process a line of [{section.name}]: "
                               + "; ".join(data.get("messages", [])))
        messages.extend(m for m in data.get("messages", []) if m.startswith(("WARNING", "ERROR")))
        token = data.get("token", token)
    if token:
        try:
            request(socket_path, "remove_session", {"token": token}, timeout=timeout)
        except LogtestError:
            pass  # the session expires by itself (<rule_test><session_timeout>)
    actual, description = _outcome(data)
    return CaseResult(section.file, section.name, run.name, (section.rule, section.alert, section.decoder),
                      actual, description, run.expect_match, len(run.lines), messages)


def run_cases(socket_path: Path, ini_files: Iterable[Path], *, location: str = DEFAULT_LOCATION,
              timeout: float = 30.0) -> list[CaseResult]:
    """Every run of every .ini file through a real (or protocol-compatible) logtest socket."""
    results = []
    for ini in ini_files:
        for section in read_ini(Path(ini)):
            for run in section.runs:
                results.append(_run_socket(Path(socket_path), section, run, section.location or location, timeout))
    return results


def run_cases_offline(ini_files: Iterable[Path], rule_files: Iterable[Path], *,
                      location: str = DEFAULT_LOCATION) -> list[CaseResult]:
    """Every run through the offline simulator instead of a manager."""
    engine = RuleEngine(rule_files)
    results = []
    for ini in ini_files:
        for section in read_ini(Path(ini)):
            for run in section.runs:
                session = engine.session()
                alert = None
                for i, line in enumerate(run.lines):
                    alert = session.process(line, now=1_643_000_000.0 + i, location=section.location or location)
                actual = ("", "", "")
                if alert is not None:
                    actual = ("" if alert.rule_id is None else str(alert.rule_id),
                              "" if alert.level is None else str(alert.level), alert.decoder or "")
                results.append(CaseResult(section.file, section.name, run.name,
                                          (section.rule, section.alert, section.decoder), actual,
                                          (alert.description or "") if alert else "", run.expect_match,
                                          len(run.lines), list(engine.skipped), simulated=True))
    return results


def format_results(results: list[CaseResult]) -> str:
    """A pass/fail line per run, details for failures, and a closing count."""
    out = []
    if results and results[0].simulated:
        out.append(f"[{SIMULATION_NOTE}]")
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        seq = f" ({r.lines} lines, one session)" if r.lines > 1 else ""
        out.append(f"{mark} {r.file.name} [{r.section}] {r.run}{seq}")
        if not r.passed:
            want = "no match of" if not r.expect_match else "expected"
            out.append(f"     {want} rule {r.expected[0] or '-'} level {r.expected[1] or '-'} decoder {r.expected[2] or '-'}")
            out.append(f"     got      rule {r.actual[0] or '-'} level {r.actual[1] or '-'} decoder {r.actual[2] or '-'}"
                       + (f": {r.description}" if r.description else ""))
            out.extend(f"     {m}" for m in r.messages)
    passed = sum(r.passed for r in results)
    out.append(f"{passed} passed, {len(results) - passed} failed")
    return "\n".join(out)
