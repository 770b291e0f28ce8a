"""`wazuh-anomaly realtime serve`: the real-time detectors as one long-running process that
follows alerts.json itself.

The fault test replays the attack day of the bundled AIT sample into a real alerts.json
while the real service runs as its own process: it is killed with SIGKILL at random
points (also in the middle of a batch and of its recovery), and alerts.json is rotated
the ways Wazuh and logrotate rotate it (renamed into logs/alerts/YYYY/Mon, renamed
beside it, copied and truncated), sometimes while the service is down. The findings
must be exactly those of an uninterrupted run: none lost, none written twice.
"""
from __future__ import annotations

import collections
import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from conftest import AIT_ALERTS, REPO

ENV = {**os.environ, "PYTHONPATH": str(REPO / "integration")}
ATTACK_DAY = "2022-01-24"
MONTHS = ("", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def cli(prefix: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), *args],
                          capture_output=True, text=True, env=ENV, timeout=timeout)


def start_service(prefix: Path, *extra: str, log_name: str = "service.log", batch: int = 50) -> subprocess.Popen:
    log = open(prefix / log_name, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "realtime", "serve",
                                 "--from-start", "--poll", "0.05", "--batch", str(batch), *extra],
                                stdout=log, stderr=log, env=ENV)
    finally:
        log.close()


def findings(prefix: Path) -> collections.Counter:
    """id -> how many times it is in anomalies.json (findings only, not health events)."""
    path = prefix / "logs/anomaly/anomalies.json"
    out: collections.Counter = collections.Counter()
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        body = json.loads(line)["anomaly"]          # every line is whole JSON: no torn write
        if body["kind"] in ("rare_value", "rare_event"):
            out[(body["id"], body["scenario"], body["entity"]["value"], body["observed"]["value"])] += 1
    return out


def health(prefix: Path) -> list[dict]:
    path = prefix / "logs/anomaly/anomalies.json"
    if not path.exists():
        return []
    return [e["anomaly"] for e in map(json.loads, path.read_text().splitlines()) if e["anomaly"]["kind"] == "health"]


@pytest.fixture(scope="module")
def sample_days(tmp_path_factory) -> tuple[Path, list[bytes]]:
    """A manager prefix that learned the three days before the attack, and the attack day's lines."""
    base = tmp_path_factory.mktemp("learned")
    prefix = base / "prefix"
    (prefix / "etc/anomaly").mkdir(parents=True)
    (prefix / "logs/alerts").mkdir(parents=True)
    shutil.copy(REPO / "wazuh/etc/anomaly/realtime.yaml", prefix / "etc/anomaly/realtime.yaml")
    shutil.copy(REPO / "wazuh/etc/anomaly/config.yaml", prefix / "etc/anomaly/config.yaml")
    before, attack = [], []
    with gzip.open(AIT_ALERTS, "rb") as fh:
        for line in fh:
            (attack if line[14:24] == ATTACK_DAY.encode() else before).append(line)
    (base / "before.json").write_bytes(b"".join(before))
    learned = cli(prefix, "realtime", "learn", "--alerts", str(base / "before.json"))
    assert learned.returncode == 0, learned.stderr
    return prefix, attack


def fresh(sample_days, to: Path) -> tuple[Path, list[bytes]]:
    prefix, attack = sample_days
    shutil.copytree(prefix, to)
    return to, attack


def reporting_at_once(sample_days, to: Path) -> tuple[Path, list[bytes]]:
    """A manager prefix whose detectors report from the first alert (learn_days: 0): every
    first value of the day is a finding, so findings come all through the replay."""
    _, attack = sample_days
    (to / "etc/anomaly").mkdir(parents=True)
    (to / "logs/alerts").mkdir(parents=True)
    text = (REPO / "wazuh/etc/anomaly/realtime.yaml").read_text()
    assert "\nlearn_days: 7\n" in text
    (to / "etc/anomaly/realtime.yaml").write_text(text.replace("\nlearn_days: 7\n", "\nlearn_days: 0\n"))
    shutil.copy(REPO / "wazuh/etc/anomaly/config.yaml", to / "etc/anomaly/config.yaml")
    return to, attack


def uninterrupted(prefix: Path, attack: list[bytes]) -> collections.Counter:
    (prefix / "logs/alerts/alerts.json").write_bytes(b"".join(attack))
    done = cli(prefix, "realtime", "serve", "--from-start", "--idle-exit", "0.5")
    assert done.returncode == 0, done.stderr
    return findings(prefix)


def test_an_uninterrupted_replay_of_the_attack_day_raises_the_first_seen_findings(sample_days, tmp_path):
    reference = uninterrupted(*fresh(sample_days, tmp_path / "p"))
    assert set(reference.values()) == {1}
    seen = {(scenario, entity, value) for _, scenario, entity, value in reference}
    # the scans: sshd "insecure connection attempt (scan)" new on scanned agents
    assert any(scenario == "new_rule_for_agent" and value == "5706" for scenario, _, value in seen)
    assert len(reference) >= 20
    checkpoint = json.loads((tmp_path / "p/var/anomaly/realtime/service.json").read_text())
    assert checkpoint["stats"]["alerts"] == len(sample_days[1]) and "states" not in checkpoint
    status = cli(tmp_path / "p", "realtime", "status")
    assert status.returncode == 0, status.stderr
    assert (f"service: {tmp_path / 'p/logs/alerts/alerts.json'} read to line {len(sample_days[1])} "
            f"(byte {sum(map(len, sample_days[1]))})") in status.stdout
    assert f"{len(sample_days[1])} alerts judged, {len(reference)} findings written" in status.stdout


def checkpoint_offset(prefix: Path) -> int:
    try:
        doc = json.loads((prefix / "var/anomaly/realtime/service.json").read_text())
    except (FileNotFoundError, ValueError):
        return -1
    alerts = prefix / "logs/alerts/alerts.json"
    mark = doc["position"]["file"]
    st = os.stat(alerts)
    return mark["offset"] if mark["id"] == f"{st.st_dev}:{st.st_ino}" else -1


def test_kill_9_at_random_points_and_rotations_lose_and_repeat_no_finding(sample_days, tmp_path):
    reference = uninterrupted(*reporting_at_once(sample_days, tmp_path / "reference"))
    assert len(reference) >= 300
    prefix, attack = reporting_at_once(sample_days, tmp_path / "faulty")
    alerts = prefix / "logs/alerts/alerts.json"
    alerts.write_bytes(b"")
    today = time.localtime()
    dated = prefix / "logs/alerts" / str(today.tm_year) / MONTHS[today.tm_mon]
    dated.mkdir(parents=True)
    rng = random.Random(16)
    chunks, i = [], 0
    while i < len(attack):
        n = rng.choice((1, 7, 50, 300, 900))
        chunks.append(attack[i:i + n])
        i += n
    rotate_at = {len(chunks) // 5: "wazuh", 2 * len(chunks) // 5: "rename",
                 3 * len(chunks) // 5: "copytruncate", 4 * len(chunks) // 5: "copytruncate-while-down"}
    kills = 0
    service = start_service(prefix)

    def ensure_running():
        nonlocal service
        if service is None or service.poll() is not None:
            service = start_service(prefix)

    def wait_for_read_from_current_file():
        # logrotate runs hours apart from the reader's polls: the file has been read from
        deadline = time.monotonic() + 120
        ensure_running()
        while checkpoint_offset(prefix) <= 0:
            assert time.monotonic() < deadline, (prefix / "service.log").read_text()[-2000:]
            time.sleep(0.05)

    try:
        for n, chunk in enumerate(chunks):
            with open(alerts, "ab") as fh:
                fh.write(b"".join(chunk))
            how = rotate_at.get(n)
            if how:
                wait_for_read_from_current_file()
                if how == "copytruncate-while-down":
                    service.send_signal(signal.SIGKILL)
                    service.wait()
                    service = None
                    kills += 1           # this chunk was written after its last read: only the copy holds it
                if how == "wazuh":
                    os.rename(alerts, dated / f"ossec-alerts-{today.tm_mday:02d}.json")
                    alerts.write_bytes(b"")
                elif how == "rename":
                    os.rename(alerts, alerts.with_name("alerts.json.1"))
                    alerts.write_bytes(b"")
                else:
                    target = alerts.with_name(f"alerts.json.{n}")
                    shutil.copy2(alerts, target)
                    with open(alerts, "r+b") as fh:
                        fh.truncate(0)
            roll = rng.random()
            if service is not None and roll < 0.12:
                # SIGKILL at a random moment: starting, recovering, reading, mid-batch, idle
                time.sleep(rng.uniform(0.0, 0.8))
                service.send_signal(signal.SIGKILL)
                service.wait()
                kills += 1
                service = None if rng.random() < 0.5 else start_service(prefix)   # down a while: a backlog
            elif service is None and roll < 0.4:
                service = start_service(prefix)
            time.sleep(rng.uniform(0.0, 0.03))
        if service is not None:
            service.send_signal(signal.SIGKILL)
            service.wait()
            kills += 1
        done = cli(prefix, "realtime", "serve", "--from-start", "--idle-exit", "1.0", "--batch", "50")
        assert done.returncode == 0, done.stderr
    finally:
        if service is not None and service.poll() is None:
            service.kill()
            service.wait()
    got = findings(prefix)
    assert kills >= 5
    lost = set(reference) - set(got)
    extra = set(got) - set(reference)
    duplicated = {k: n for k, n in got.items() if n > 1}
    assert not lost and not extra and not duplicated, (
        f"{len(lost)} lost, {len(extra)} extra, {len(duplicated)} duplicated of {len(reference)}; {kills} kills; "
        f"health {health(prefix)}; log {(prefix / 'service.log').read_text()[-1500:]}; "
        f"lost {sorted(lost)[:5]}")
    assert not [h for h in health(prefix) if h["health"] == "source_unreadable"], health(prefix)
    checkpoint = json.loads((prefix / "var/anomaly/realtime/service.json").read_text())
    assert "states" not in checkpoint


def test_a_second_service_for_the_same_manager_is_refused_in_one_sentence(sample_days, tmp_path):
    prefix, _ = fresh(sample_days, tmp_path / "p")
    (prefix / "logs/alerts/alerts.json").write_bytes(b"")
    first = start_service(prefix)
    try:
        deadline = time.monotonic() + 60
        while "following" not in (prefix / "service.log").read_text() and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = cli(prefix, "realtime", "serve")
        assert second.returncode != 0
        assert "another 'wazuh-anomaly realtime serve' is running" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        assert first.wait(60) == 0


def test_a_committed_batch_whose_states_were_not_all_written_is_completed_at_start(sample_days, tmp_path):
    # Killed between the checkpoint (the commit) and the state files: the next start
    # writes the committed states before reading on.
    prefix, attack = fresh(sample_days, tmp_path / "p")
    alerts = prefix / "logs/alerts/alerts.json"
    alerts.write_bytes(b"".join(attack[:10]))
    st = os.stat(alerts)
    committed = {"keys": {"27": {"since": 1.0, "values": ["committed-value"]}}, "started": 1.0, "learn_end": 2.0}
    checkpoint = {"version": 1, "input": str(alerts),
                  "position": {"file": {"id": f"{st.st_dev}:{st.st_ino}", "offset": st.st_size, "line": 10,
                                        "head": _fingerprint(alerts, min(1024, st.st_size))}},
                  "states": {"new_rule_for_agent": committed}}
    (prefix / "var/anomaly/realtime/service.json").write_text(json.dumps(checkpoint))
    done = cli(prefix, "realtime", "serve", "--idle-exit", "0.2")
    assert done.returncode == 0, done.stderr
    state = json.loads((prefix / "var/anomaly/realtime/state/new_rule_for_agent.json").read_text())
    assert state["keys"]["27"]["values"] == ["committed-value"]
    assert "0 alerts judged" in done.stdout                 # the 10 lines were before the position
    assert "states" not in json.loads((prefix / "var/anomaly/realtime/service.json").read_text())


def _fingerprint(path: Path, length: int) -> str:
    from wazuh_anomaly.core.follow import head_fingerprint
    fd = os.open(path, os.O_RDONLY)
    try:
        return head_fingerprint(fd, length)
    finally:
        os.close(fd)


def test_bad_and_over_long_lines_cost_only_themselves_and_are_raised_in_one_health_event(sample_days, tmp_path):
    prefix, attack = fresh(sample_days, tmp_path / "p")
    huge = b'{"timestamp":"2022-01-24T03:00:00.000+0000","full_log":"' + b"x" * (5 << 20) + b'"}\n'
    (prefix / "logs/alerts/alerts.json").write_bytes(attack[0] + b"not json\n" + huge + b"[1,2]\n" + attack[1])
    done = cli(prefix, "realtime", "serve", "--from-start", "--idle-exit", "0.3")
    assert done.returncode == 0, done.stderr
    assert "2 alerts judged" in done.stdout
    assert "skipped 3 alert lines: 1 not JSON (first at " in done.stdout
    alerts_file = prefix / "logs/alerts/alerts.json"
    assert f"1 longer than 4,194,304 bytes (first at {alerts_file}:3)" in done.stdout
    events = [h for h in health(prefix) if h["health"] == "malformed_input"]
    assert len(events) == 1 and "skipped 3 alert lines" in events[0]["message"]


def test_a_first_start_begins_at_the_end_and_a_restart_before_any_alert_skips_nothing(sample_days, tmp_path):
    prefix, attack = fresh(sample_days, tmp_path / "p")
    alerts = prefix / "logs/alerts/alerts.json"
    alerts.write_bytes(b"".join(attack[:100]))                 # history: not judged again
    first = cli(prefix, "realtime", "serve", "--idle-exit", "0.2")
    assert first.returncode == 0 and "0 alerts judged" in first.stdout, first.stderr
    with open(alerts, "ab") as fh:                               # written while it was stopped
        fh.write(b"".join(attack[100:103]))
    second = cli(prefix, "realtime", "serve", "--idle-exit", "0.2")
    assert second.returncode == 0 and "3 alerts judged" in second.stdout, second.stderr


def test_a_line_written_while_the_service_runs_is_judged_while_it_runs(sample_days, tmp_path):
    # How fast is bench/realtime_service.py's business (p50/p99 delay); here only that the
    # running service picks up a line appended after it started, with no restart.
    prefix, attack = fresh(sample_days, tmp_path / "p")
    alerts = prefix / "logs/alerts/alerts.json"
    alerts.write_bytes(b"")
    service = start_service(prefix)
    try:
        deadline = time.monotonic() + 60
        while "following" not in (prefix / "service.log").read_text():
            assert time.monotonic() < deadline and service.poll() is None
            time.sleep(0.05)
        new_rule = dict(json.loads(attack[0]), rule={"id": "999001", "level": 5, "groups": ["test"]},
                        agent={"id": "001", "name": "web"}, id="1.999")
        written = time.monotonic()
        with open(alerts, "ab") as fh:
            fh.write(json.dumps(new_rule).encode() + b"\n")
        # Judged and committed: a lone first-seen rule is held back by the alert budget
        # (docs/budget.md), so the commit, not a finding, shows it was read.
        from wazuh_anomaly.realtime.service import read_checkpoint
        while ((read_checkpoint(str(prefix)) or {}).get("stats") or {}).get("alerts", 0) < 1:
            assert time.monotonic() - written < 120 and service.poll() is None, (prefix / "service.log").read_text()
            time.sleep(0.01)
        mark = (read_checkpoint(str(prefix)) or {}).get("position", {}).get("file", {})
        assert mark.get("offset") == alerts.stat().st_size
    finally:
        service.send_signal(signal.SIGTERM)
        assert service.wait(60) == 0


# Whatever a line of alerts.json holds (bytes that are not UTF-8, JSON that is not an
# object, objects of any shape): it costs only itself, counted, and the batch commits.
ODD_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                          max_leaves=8)
ODD_ALERTS = st.fixed_dictionaries({}, optional={
    "timestamp": st.one_of(st.just("2022-01-24T03:00:00.000+0000"), st.text(max_size=30), ODD_VALUES),
    "rule": st.one_of(st.fixed_dictionaries({"id": st.text(max_size=6), "level": ODD_VALUES,
                                             "groups": st.lists(st.text(max_size=8), max_size=3)}), ODD_VALUES),
    "agent": st.one_of(st.fixed_dictionaries({"id": st.text(max_size=4)}), ODD_VALUES),
    "data": ODD_VALUES, "id": ODD_VALUES,
})
ODD_LINES = st.lists(st.one_of(st.binary(max_size=60).filter(lambda b: b"\n" not in b),
                               ODD_ALERTS.map(lambda a: json.dumps(a).encode()),
                               ODD_VALUES.map(lambda v: json.dumps(v).encode())), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=ODD_LINES)
def test_any_line_in_alerts_json_costs_only_itself_and_the_batch_still_commits(sample_days, tmp_path_factory, lines):
    from wazuh_anomaly.realtime import config as rt_config
    from wazuh_anomaly.realtime.engine import RealtimeEngine
    from wazuh_anomaly.realtime.service import RealtimeService
    prefix, _ = fresh(sample_days, tmp_path_factory.mktemp("odd") / "p")
    service = RealtimeService(str(prefix), str(prefix / "logs/alerts/alerts.json"))
    service.engine = RealtimeEngine(rt_config.load(service.paths.config, service.paths.cache), service.paths.models)
    batch = [(f"alerts.json:{i + 1}", line) for i, line in enumerate(lines)]
    position = {"file": {"id": "1:1", "offset": sum(len(l) + 1 for l in lines), "line": len(lines), "head": "0:x"}}
    service.commit(batch, position)
    import orjson                  # strict JSON (RFC 8259: no NaN, no lone surrogate), as the service reads it
    objects = 0
    for line in lines:
        try:
            objects += type(orjson.loads(line)) is dict
        except ValueError:
            pass
    stats = service.stats
    assert stats.alerts == objects and stats.lines == len(lines)
    assert stats.alerts + sum(stats.skipped.values()) + sum(1 for l in lines if not l.strip()) >= len(lines)
    checkpoint = json.loads((prefix / "var/anomaly/realtime/service.json").read_text())
    assert checkpoint["position"] == position and "states" not in checkpoint
