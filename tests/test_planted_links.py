"""Root never follows what the `wazuh` user can plant.

The wodle and the active response run as root and open files in directories the wazuh
user can write (logs/alerts, logs/anomaly with the real-time path, var/anomaly/realtime,
logs/). Here those directories belong to `nobody` (or are group-writable), as they
belong to wazuh on a manager, and a symbolic or hard link to a root-only file is planted
where our files belong: each open must refuse it with one sentence naming the path, and
no byte of the root-only file may be read into, or written by, wazuh-anomaly.
"""
from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import sandbox_runner
from wazuh_anomaly.core import fileio
from wazuh_anomaly.core.errors import UnsafePath
from wazuh_anomaly.sources import AlertsFileSource, SourceUnreadable
from wazuh_anomaly.netflow.flows_source import FlowsFileSource

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="plants links as another user would: needs root")

SECRET = b'{"timestamp":"2024-03-02T00:00:01.000+0000","rule":{"id":"1","groups":["root-only-secret"]}}\n'
NOBODY = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else 0
NOGROUP = grp.getgrnam("nogroup").gr_gid if os.geteuid() == 0 else 0


def wazuh_owns(directory: Path, mode: int = 0o750) -> None:
    """As on a manager: the directory belongs to the wazuh user (here nobody)."""
    os.chown(directory, NOBODY, NOGROUP)
    os.chmod(directory, mode)


def wazuh_group_writes(directory: Path, mode: int = 0o2770) -> None:
    """root:wazuh and group-writable, as install.sh --realtime leaves logs/anomaly and var/anomaly/realtime."""
    os.chown(directory, 0, NOGROUP)
    os.chmod(directory, mode)


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    """A root-only file outside the manager's directories."""
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o700)
    path = outside / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


def unchanged(path: Path) -> bool:
    return path.read_bytes() == SECRET


# ------------------------------------------------------------------ reading the alerts (the wodle, root)

SCENARIO = """\
name: all_alerts
description: every alert (test)
bucket_minutes: 5
features:
  - {name: alerts, aggregation: count}
detectors: [seasonal]
training: {lookback_days: 2, min_history_hours: 1}
"""


def test_alerts_json_linked_to_a_root_only_file_is_refused_with_a_health_event_and_nothing_leaks(tmp_path, secret):
    prefix = tmp_path / "ossec"
    (prefix / "etc/anomaly/scenarios").mkdir(parents=True)
    (prefix / "etc/anomaly/scenarios/all_alerts.yaml").write_text(SCENARIO)
    alerts = prefix / "logs/alerts"
    alerts.mkdir(parents=True)
    (alerts / "alerts.json").symlink_to(secret)   # what the wazuh user can do in its own directory
    wazuh_owns(alerts)

    runner = sandbox_runner(prefix, datetime(2024, 3, 2, 6, tzinfo=timezone.utc).timestamp())
    runner.run()

    events = [json.loads(line) for line in (prefix / "logs/anomaly/anomalies.json").read_text().splitlines()]
    health = [e["anomaly"] for e in events if e["anomaly"]["kind"] == "health"]
    assert [h["health"] for h in health] == ["source_unreadable"]
    assert f"{alerts / 'alerts.json'}: refused, because it is a symbolic link" in health[0]["message"]
    everything = b"".join(p.read_bytes() for p in prefix.rglob("*") if p.is_file() and not p.is_symlink())
    assert b"root-only-secret" not in everything


def test_a_root_only_file_hard_linked_into_the_alerts_directory_is_refused(tmp_path, secret):
    alerts = tmp_path / "logs/alerts"
    (alerts / "2024/Mar").mkdir(parents=True)
    os.link(secret, alerts / "2024/Mar/ossec-alerts-02.json")
    for d in (alerts / "2024/Mar", alerts / "2024", alerts):
        wazuh_owns(d)
    source = AlertsFileSource(alerts)
    with pytest.raises(SourceUnreadable, match="ossec-alerts-02.json: refused, because it has 2 hard links"):
        list(source.read(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp(),
                         datetime(2024, 3, 3, tzinfo=timezone.utc).timestamp()))


def test_a_month_directory_replaced_by_a_link_is_refused(tmp_path, secret):
    alerts = tmp_path / "logs/alerts"
    (alerts / "2024").mkdir(parents=True)
    elsewhere = secret.parent / "Mar"
    elsewhere.mkdir()
    os.link(secret, elsewhere / "ossec-alerts-02.json")
    (alerts / "2024/Mar").symlink_to(elsewhere)
    for d in (alerts / "2024", alerts):
        wazuh_owns(d)
    with pytest.raises(SourceUnreadable, match="2024/Mar: refused, because it is a symbolic link in a directory other"):
        list(AlertsFileSource(alerts).read(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp(),
                                           datetime(2024, 3, 3, tzinfo=timezone.utc).timestamp()))


def test_the_flow_events_file_linked_elsewhere_is_refused(tmp_path, secret):
    logs = tmp_path / "logs/anomaly"
    logs.mkdir(parents=True)
    (logs / "netflow.json").symlink_to(secret)
    wazuh_group_writes(logs, 0o770)
    with pytest.raises(SourceUnreadable, match="netflow.json: refused, because it is a symbolic link"):
        list(FlowsFileSource(logs / "netflow.json").read(0.0, 2e9))


def test_the_pmacct_input_linked_to_a_root_only_file_is_refused_and_nothing_is_normalised(tmp_path, secret):
    from wazuh_anomaly.core.errors import WazuhAnomalyError
    from wazuh_anomaly.netflow.settings import NetflowSettings
    from wazuh_anomaly.netflow.stream import FileOutput, normalize_file
    spool = tmp_path / "pmacct"
    spool.mkdir()
    (spool / "flows.json").symlink_to(secret)
    wazuh_group_writes(spool, 0o770)          # a sensor's spool others can write into
    out = tmp_path / "out.json"
    with pytest.raises(WazuhAnomalyError, match="flows.json: refused, because it is a symbolic link"):
        normalize_file(spool / "flows.json", FileOutput(out), NetflowSettings(), from_start=True)
    assert not out.exists() or out.read_bytes() == b""
    assert unchanged(secret)


# ------------------------------------------------------------------ writing (the wodle, the active response)

def health_event():
    from wazuh_anomaly.core.findings import HealthEvent
    return HealthEvent("source_unreadable", "test event", datetime(2024, 3, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize("planted", ["anomalies.json", "anomalies.json.lock"])
def test_anomalies_file_or_its_lock_linked_to_a_root_file_is_never_written(tmp_path, secret, planted):
    from wazuh_anomaly.emit.emitter import AnomalyWriter
    logs = tmp_path / "logs/anomaly"
    logs.mkdir(parents=True)
    (logs / planted).symlink_to(secret)
    wazuh_group_writes(logs, 0o770)
    with pytest.raises(UnsafePath, match=f"{planted}: refused, because it is a symbolic link in a directory other"):
        AnomalyWriter(logs / "anomalies.json", tmp_path / "state").write([health_event()], datetime.now(timezone.utc))
    assert unchanged(secret)


def test_realtime_state_directory_swapped_for_a_link_is_refused_and_nothing_is_created_elsewhere(tmp_path):
    from wazuh_anomaly.realtime.store import StateStore
    base = tmp_path / "var/anomaly/realtime"
    base.mkdir(parents=True)
    elsewhere = tmp_path / "etc-of-the-system"
    elsewhere.mkdir()
    (base / "state").symlink_to(elsewhere)   # the wazuh group can rename and create in realtime/
    wazuh_group_writes(base)
    with pytest.raises(UnsafePath, match="realtime/state: refused, because it is a symbolic link"):
        with StateStore(str(base)) as store:
            store.get("new_sudo_command_for_user")["keys"] = {}
            store.mark("new_sudo_command_for_user")
    assert list(elsewhere.iterdir()) == []


def test_a_planted_temporary_file_is_replaced_never_written_through(tmp_path, secret):
    state = tmp_path / "realtime"
    state.mkdir()
    wazuh_group_writes(state)
    # the name atomic_write uses for its temporary file, hard-linked to a root-only file
    os.link(secret, state / f".detector.json.{os.getpid()}.tmp")
    fileio.atomic_write(state / "detector.json", b'{"ok":1}')
    assert unchanged(secret)
    assert (state / "detector.json").read_bytes() == b'{"ok":1}'


def test_the_active_response_log_is_never_appended_through_a_link(tmp_path, secret, capsys):
    from wazuh_anomaly.realtime.response import log
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "active-responses.log").symlink_to(secret)
    wazuh_owns(logs, 0o770)
    log(str(tmp_path), "add refused (rule 117113): test")
    assert unchanged(secret)
    err = capsys.readouterr().err
    assert "add refused (rule 117113): test" in err
    assert "active-responses.log: refused, because it is a symbolic link" in err


def test_the_run_log_is_never_appended_through_a_link(tmp_path, secret, capsys):
    from wazuh_anomaly.cli.app import _setup_logging
    from wazuh_anomaly.core.paths import Layout
    logs = tmp_path / "logs/anomaly"
    logs.mkdir(parents=True)
    (logs / "wazuh-anomaly.log").symlink_to(secret)
    wazuh_group_writes(logs, 0o770)
    _setup_logging(Layout(tmp_path), False, False)
    logging.getLogger("wazuh_anomaly").info("scored 3 buckets")
    assert unchanged(secret)
    assert "wazuh-anomaly.log: refused, because it is a symbolic link" in capsys.readouterr().err


def test_the_netflow_normaliser_never_appends_through_a_link(tmp_path, secret):
    from wazuh_anomaly.netflow.stream import append_atomically
    logs = tmp_path / "logs/anomaly"
    logs.mkdir(parents=True)
    (logs / "netflow.json").symlink_to(secret)
    wazuh_group_writes(logs, 0o770)
    with pytest.raises(UnsafePath, match="netflow.json: refused, because it is a symbolic link"):
        append_atomically(logs / "netflow.json", b'{"netflow":"true"}\n')
    assert unchanged(secret)


# ------------------------------------------------------------------ the helper itself

def test_links_in_directories_only_root_can_write_are_followed_as_before(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "f").write_bytes(b"x")
    (tmp_path / "via").symlink_to(real)     # tmp_path: root's own 0700 directory
    assert fileio.read_bytes(tmp_path / "via" / "f") == b"x"


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    os.mkfifo(d / "alerts.json")
    wazuh_owns(d)
    with pytest.raises(UnsafePath, match="alerts.json: refused, because it is not a regular file"):
        fileio.read_bytes(d / "alerts.json")


def test_a_world_writable_file_in_a_shared_directory_is_refused(tmp_path):
    d = tmp_path / "shared"
    d.mkdir()
    wazuh_group_writes(d)
    (d / "state.json").write_text("{}")
    os.chmod(d / "state.json", 0o666)
    with pytest.raises(UnsafePath, match=r"writable by everyone \(mode 0666\)"):
        fileio.read_bytes(d / "state.json")


def test_files_the_wazuh_user_owns_in_its_directory_are_read(tmp_path):
    """alerts.json belongs to wazuh and is hard-linked to the day's file: that is normal."""
    d = tmp_path / "alerts"
    d.mkdir()
    (d / "ossec-alerts-02.json").write_bytes(b"line\n")
    os.link(d / "ossec-alerts-02.json", d / "alerts.json")
    os.chown(d / "alerts.json", NOBODY, NOGROUP)
    wazuh_owns(d)
    assert fileio.read_bytes(d / "alerts.json") == b"line\n"


def test_makedirs_gives_exactly_the_mode_and_refuses_a_planted_parent(tmp_path):
    base = tmp_path / "realtime"
    base.mkdir()
    wazuh_group_writes(base)
    fileio.makedirs(base / "state", 0o2770)
    assert stat.S_IMODE((base / "state").stat().st_mode) == 0o2770
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (base / "models").symlink_to(elsewhere)
    with pytest.raises(UnsafePath):
        fileio.makedirs(base / "models" / "v1", 0o750)
    assert list(elsewhere.iterdir()) == []


def test_feedback_never_reads_a_rotated_copy_linked_to_a_root_file(tmp_path, secret):
    from wazuh_anomaly.ops.feedback import find_anomaly
    logs = tmp_path / "logs/anomaly"
    logs.mkdir(parents=True)
    secret.write_text(json.dumps({"anomaly": {"id": "0123456789abcdef0123", "kind": "anomaly",
                                              "summary": "root-only-secret"}}) + "\n")
    (logs / "anomalies.json.1").symlink_to(secret)
    wazuh_group_writes(logs, 0o770)
    with pytest.raises(UnsafePath, match="anomalies.json.1: refused, because it is a symbolic link"):
        find_anomaly(logs / "anomalies.json", "0123456789abcdef0123")


# ------------------------------------------------------------------ whatever the wazuh user plants

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

# What the wazuh user can put in a directory it writes: its own directories and files,
# links to a root-only file or directory outside, links inside, hard links to root's file.
PLANTS = st.lists(st.tuples(st.sampled_from(["dir", "file", "link_secret", "link_outside_dir", "link_inside",
                                             "hardlink_secret", "fifo"]),
                            st.integers(0, 20), st.sampled_from(["a", "b", "alerts.json", "state", "x.json"])),
                  min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plants=PLANTS)
def test_no_arrangement_of_links_makes_root_read_or_write_a_root_only_file(tmp_path_factory, plants):
    import tempfile
    root = Path(tempfile.mkdtemp(dir=tmp_path_factory.getbasetemp()))
    outside = root / "outside"
    outside.mkdir(mode=0o700)
    secret = outside / "secret"
    secret.write_bytes(SECRET)
    secret.chmod(0o600)
    shared = root / "shared"
    shared.mkdir()
    dirs, made = [shared], []
    for kind, parent, name in plants:
        where = dirs[parent % len(dirs)] / name
        if where.exists() or where.is_symlink():
            continue
        if kind == "dir":
            where.mkdir()
            dirs.append(where)
        elif kind == "file":
            where.write_bytes(b"wazuh's own\n")
            os.chown(where, NOBODY, NOGROUP)
        elif kind == "link_secret":
            where.symlink_to(secret)
        elif kind == "link_outside_dir":
            where.symlink_to(outside)
        elif kind == "link_inside":
            where.symlink_to(made[parent % len(made)] if made else shared)
        elif kind == "hardlink_secret":
            os.link(secret, where)
        else:
            os.mkfifo(where)
        made.append(where)
    for d in dirs:
        wazuh_owns(d, 0o770)
    for path in made + [p / "secret" for p in made]:
        try:
            data = fileio.read_bytes(path)
        except (UnsafePath, OSError):
            pass
        else:
            assert data != SECRET, path
        try:
            fd = fileio.open_append(path)
        except (UnsafePath, OSError):
            pass
        else:
            os.close(fd)
        try:
            fileio.atomic_write(path, b"new")
        except (UnsafePath, OSError):
            pass
        assert secret.read_bytes() == SECRET and stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert sorted(p.name for p in outside.iterdir()) == ["secret"], path
