"""AlertsFileSource: the manager's own alert files as the default source.

Real data: the AIT-ADS russellmitchell alert stream (45,544 alerts, 2022-01-21..24 UTC, bundled
with the package) and Wazuh 3.x/4.x alerts from ../shared/data (see its README). The alert layout on disk
is built the way a manager writes it (WAZUH.md section 7).
"""
from __future__ import annotations

import gzip
import json
import os
import random
import shutil
import tracemalloc
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import AIT_ALERTS, SHARED_DATA
from wazuh_anomaly.core.errors import WazuhAnomalyError
from wazuh_anomaly.sources import (
    SKIP_REASONS,
    AlertsFileSource,
    ReadCursor,
    SourceStats,
    SourceUnreadable,
    parse_wazuh_timestamp,
)

WAZUH_ALERTS = SHARED_DATA / "wazuh-alerts"
# Wazuh 3.x/4.x alert exports of ../shared/data (the AIT alerts ship with the package).
needs_wazuh_alerts = pytest.mark.skipif(
    not WAZUH_ALERTS.exists(), reason=f"real alert exports not found at {WAZUH_ALERTS} (../shared beside the repo)"
)

DAY = 86400
JAN21 = datetime(2022, 1, 21, tzinfo=timezone.utc).timestamp()
JAN24 = JAN21 + 3 * DAY
EVERYTHING = (0.0, 4e9)


def reference_ts(text: str) -> float:
    """The timestamp as the standard library reads it, independent of our fast parser."""
    text = text.replace("Z", "+00:00")
    if text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    return datetime.fromisoformat(text).timestamp()


# --- data and layout helpers ------------------------------------------------------------


@pytest.fixture(scope="module")
def ait_lines() -> list[tuple[float, bytes]]:
    """(timestamp, raw line) of every AIT alert, straight from the source file."""
    with gzip.open(AIT_ALERTS, "rb") as f:
        return [(reference_ts(json.loads(line)["timestamp"]), line.rstrip(b"\n")) for line in f]


def by_utc_day(lines):
    days: dict[int, list[bytes]] = {}
    for ts, raw in lines:
        days.setdefault(datetime.fromtimestamp(ts, timezone.utc).day, []).append(raw)
    return days


def write_lines(path: Path, lines, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    if compress:
        with gzip.open(path, "wb", compresslevel=1) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    return path


def build_manager_layout(root: Path, lines) -> Path:
    """logs/alerts as a manager leaves it on Jan 24: two compressed days, one not yet
    compressed, today's file and alerts.json hard-linked to it."""
    alerts_dir = root / "logs" / "alerts"
    jan = alerts_dir / "2022" / "Jan"
    days = by_utc_day(lines)
    write_lines(jan / "ossec-alerts-21.json.gz", days[21], compress=True)
    write_lines(jan / "ossec-alerts-22.json.gz", days[22], compress=True)
    write_lines(jan / "ossec-alerts-23.json", days[23])
    today = write_lines(jan / "ossec-alerts-24.json", days[24])
    os.link(today, alerts_dir / "alerts.json")
    return alerts_dir


@pytest.fixture(scope="module")
def manager_alerts(ait_lines, tmp_path_factory) -> Path:
    """A read-only manager layout shared by the tests that do not change files."""
    return build_manager_layout(tmp_path_factory.mktemp("ossec"), ait_lines)


def alert_line(ts: str, n: int = 0, **extra) -> bytes:
    alert = {"timestamp": ts, "rule": {"level": 3, "id": "5501"}, "id": f"test.{n}", **extra}
    return json.dumps(alert, separators=(",", ":")).encode()


def ids(pairs) -> list[str]:
    return [alert["id"] for _, alert in pairs]


# --- timestamps -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2022-01-24T03:57:12.345+0000",       # Wazuh 4.x alerts.json
        "2022-01-24T03:57:12+0000",           # no fraction
        "2022-01-24T03:57:12.345Z",           # indexer / ISO with Z
        "2022-01-24T03:57:12Z",
        "2022-01-24T04:57:12.345+01:00",      # offset with colon
        "2022-01-24T04:57:12.345+0100",       # manager in CET
        "2022-01-23T22:27:12.345-0530",       # negative offset with minutes
        "2020-03-04T13:55:05.224939+0000",    # Wazuh 3.x: microseconds
        "2022-01-17T09:44:35.000000Z",        # @timestamp of an indexer export
        "2022-12-31T23:59:59.999+0000",
        "2024-02-29T12:00:00.000+0000",       # leap day
    ],
)
def test_timestamp_forms_written_by_wazuh_parse_to_utc_epoch(text):
    assert parse_wazuh_timestamp(text) == pytest.approx(reference_ts(text), abs=1e-6)


def test_timestamps_in_different_offsets_for_the_same_instant_are_equal():
    assert (
        parse_wazuh_timestamp("2022-01-24T03:57:12.345+0000")
        == parse_wazuh_timestamp("2022-01-24T04:57:12.345+01:00")
        == parse_wazuh_timestamp("2022-01-24T03:57:12.345Z")
        == 1642996632.345
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "2022-01-24",
        "2022-01-24T03:57",
        "2022-01-24T03:57:12.345",            # no offset: ambiguous local time
        "2022-01-24 03:57:12.345+0000",       # not the Wazuh shape
        "2022-13-01T00:00:00.000+0000",       # month 13
        "2022-02-30T00:00:00.000+0000",       # no such day
        "2022-01-24T24:00:00.000+0000",
        "2022-01-24T03:60:00.000+0000",
        "2022-01-24T03:57:60.000+0000",
        "2022-01-24T03:57: 1.000+0000",
        "2022-01-24T03:57:12.3e5+0000",
        "2022-01-24T03:57:12.+0000",
        "2022-01-24T03:57:12.345+2500",
        "2022-01-24T03:57:12.345+0000 ",
        "２０２２-01-24T03:57:12.345+0000",   # full-width digits
    ],
)
def test_garbage_timestamps_raise_value_error(text):
    with pytest.raises(ValueError):
        parse_wazuh_timestamp(text)


@needs_wazuh_alerts
def test_wazuh_3x_alerts_timestamps_parse():
    path = WAZUH_ALERTS / "ossec_insect.json"
    for line in path.read_text().splitlines():
        text = json.loads(line)["timestamp"]
        assert parse_wazuh_timestamp(text) == pytest.approx(reference_ts(text), abs=1e-6)


# --- reading the manager layout --------------------------------------------------------


def test_whole_history_yields_every_alert_once_in_file_order(manager_alerts, ait_lines):
    source = AlertsFileSource(manager_alerts)
    got = list(source.read(*EVERYTHING))
    assert ids(got) == [json.loads(raw)["id"] for _, raw in ait_lines]
    assert [ts for ts, _ in got] == pytest.approx([ts for ts, _ in ait_lines], abs=1e-6)
    # alerts.json is the same inode as ossec-alerts-24.json: read once
    assert source.stats.files == 4
    assert source.stats.alerts == len(ait_lines) == 45544
    assert source.stats.skipped == {}


def test_counts_per_utc_day_equal_the_source_file(manager_alerts, ait_lines):
    expected = Counter(datetime.fromtimestamp(ts, timezone.utc).day for ts, _ in ait_lines)
    source = AlertsFileSource(manager_alerts)
    for day in (21, 22, 23, 24):
        start = JAN21 + (day - 21) * DAY
        got = list(source.read(start, start + DAY))
        assert len(got) == expected[day], day
        assert all(start <= ts < start + DAY for ts, _ in got)
    assert expected == {21: 8585, 22: 7452, 23: 9691, 24: 19816}


def test_range_is_half_open_at_exact_alert_timestamps(manager_alerts, ait_lines):
    source = AlertsFileSource(manager_alerts)
    rng = random.Random(7)
    for _ in range(5):
        start = rng.choice(ait_lines)[0]   # boundaries fall exactly on alert timestamps
        end = rng.choice(ait_lines)[0]
        start, end = min(start, end), max(start, end)
        expected = [json.loads(raw)["id"] for ts, raw in ait_lines if start <= ts < end]
        assert ids(source.read(start, end)) == expected
    one = ait_lines[1000][0]
    assert ids(source.read(one, one)) == []


def test_a_range_on_one_day_opens_only_that_day_and_its_neighbours(manager_alerts):
    source = AlertsFileSource(manager_alerts)
    listing = [f.path.name for f in source.files(JAN21, JAN21 + 3600)]
    assert listing == ["ossec-alerts-21.json.gz", "ossec-alerts-22.json.gz", "alerts.json"]
    listing = [f.path.name for f in source.files(JAN24 + 3600, JAN24 + 7200)]
    assert listing == ["ossec-alerts-23.json", "ossec-alerts-24.json", "alerts.json"]


def test_files_named_by_local_date_are_found_for_the_utc_range(tmp_path):
    # A CET manager writes 2022-01-24T23:30Z into the file of its local Jan 25.
    alerts_dir = tmp_path / "logs" / "alerts"
    jan = alerts_dir / "2022" / "Jan"
    write_lines(jan / "ossec-alerts-25.json", [alert_line("2022-01-25T00:30:00.000+0100", 1)])
    write_lines(jan / "ossec-alerts-27.json", [alert_line("2022-01-27T00:30:00.000+0100", 2)])
    source = AlertsFileSource(alerts_dir)
    assert ids(source.read(JAN24 + 23 * 3600, JAN24 + DAY)) == ["test.1"]
    assert source.stats.files == 1  # the 27th is not even opened


def test_plain_json_is_read_instead_of_its_gz_while_monitord_compresses(tmp_path, ait_lines):
    alerts_dir = build_manager_layout(tmp_path, ait_lines)
    jan = alerts_dir / "2022" / "Jan"
    days = by_utc_day(ait_lines)
    # half-written .gz next to the complete .json
    write_lines(jan / "ossec-alerts-23.json.gz", days[23][:10], compress=True)
    source = AlertsFileSource(alerts_dir)
    day23 = list(source.read(JAN21 + 2 * DAY, JAN21 + 3 * DAY))
    assert len(day23) == 9691
    assert "ossec-alerts-23.json.gz" not in [f.path.name for f in source.files(*EVERYTHING)]


def test_size_rotations_are_read_oldest_first_and_other_files_ignored(tmp_path, ait_lines):
    alerts_dir = tmp_path / "logs" / "alerts"
    jan = alerts_dir / "2022" / "Jan"
    day23 = by_utc_day(ait_lines)[23]
    write_lines(jan / "ossec-alerts-23.json", day23[:3000])
    write_lines(jan / "ossec-alerts-23-001.json.gz", day23[3000:6000], compress=True)
    write_lines(jan / "ossec-alerts-23-002.json", day23[6000:])
    # what else lives there: signatures, the plain-text alerts.log rotations, strays
    (jan / "ossec-alerts-23.json.sum").write_text("sha1 deadbeef\n")
    (jan / "ossec-alerts-23-001.json.gz.sum").write_text("sha1 deadbeef\n")
    write_lines(jan / "ossec-alerts-23.log", [b"** Alert 1642896000.1: - syslog"])
    write_lines(jan / "ossec-archive-23.json", [alert_line("2022-01-23T12:00:00.000+0000", 99)])
    write_lines(jan / "notes.json", [alert_line("2022-01-23T12:00:00.000+0000", 98)])
    source = AlertsFileSource(alerts_dir)
    got = list(source.read(*EVERYTHING))
    assert ids(got) == [json.loads(raw)["id"] for raw in day23]
    assert [f.path.name for f in source.files(*EVERYTHING)] == [
        "ossec-alerts-23.json",
        "ossec-alerts-23-001.json.gz",
        "ossec-alerts-23-002.json",
        "alerts.json",
    ]
    assert source.stats.files == 3  # alerts.json does not exist here


def test_without_the_dated_tree_only_alerts_json_is_read(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    write_lines(alerts_dir / "alerts.json", [alert_line("2022-01-24T10:00:00.000+0000", n) for n in range(3)])
    source = AlertsFileSource(alerts_dir)
    assert ids(source.read(*EVERYTHING)) == ["test.0", "test.1", "test.2"]
    assert [f.path.name for f in source.files(*EVERYTHING)] == ["alerts.json"]


@needs_wazuh_alerts
def test_wazuh_3x_alert_file_is_read_completely(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    alerts_dir.mkdir(parents=True)
    shutil.copy(WAZUH_ALERTS / "ossec_insect.json", alerts_dir / "alerts.json")
    source = AlertsFileSource(alerts_dir)
    got = list(source.read(*EVERYTHING))
    assert len(got) == 497
    assert source.stats.skipped == {}
    assert got[0][0] == pytest.approx(reference_ts("2020-03-04T13:55:05.224939+0000"), abs=1e-6)


@needs_wazuh_alerts
def test_alerts_exported_from_the_indexer_use_their_at_timestamp(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    (alerts_dir / "2022" / "Jan").mkdir(parents=True)
    shutil.copy(WAZUH_ALERTS / "wazuh_attack_lines.json", alerts_dir / "2022" / "Jan" / "ossec-alerts-17.json")
    source = AlertsFileSource(alerts_dir)
    got = list(source.read(*EVERYTHING))
    assert len(got) == 100  # the last line has no newline: a finished file, so it counts
    assert got[0][0] == reference_ts(got[0][1]["@timestamp"])
    # as the live alerts.json, the same unterminated line is one still being written
    os.link(alerts_dir / "2022" / "Jan" / "ossec-alerts-17.json", alerts_dir / "alerts.json")
    assert len(list(source.read(*EVERYTHING))) == 99
    assert source.stats.incomplete_tail == 1 and source.stats.skipped == {}


# --- bad input --------------------------------------------------------------------------


def malformed_file(path: Path) -> dict[str, int]:
    """Good alerts around every kind of bad line; returns the expected skip counts."""
    good = lambda n: alert_line(f"2022-01-24T10:00:{n:02d}.000+0000", n)  # noqa: E731
    lines = [
        good(0),
        b'{"timestamp":"2022-01-24T10:00:01.000+0000","rule":{"level":3',   # cut JSON
        good(1),
        b'[{"timestamp":"2022-01-24T10:00:02.000+0000"}]',                   # an array
        good(2),
        b'{"timestamp":"2022-01-24T10:00:03.000+0000","full_log":"caf\xe9 \xff"}',  # latin-1, not UTF-8
        good(3),
        b'{"timestamp":"2022-01-24T10:00:04.000+0000","full_log":"' + b"A" * 200_000 + b'"}',  # 200 KB
        good(4),
        b'{"rule":{"level":3},"id":"no.ts"}',                                # no timestamp
        good(5),
        b"",                                                                 # empty line
        good(6),
        b'{"timestamp":"yesterday","id":"bad.ts"}',                          # unparseable timestamp
        good(7),
        b'{"timestamp":12345,"id":"num.ts"}',                                # not even a string
        good(8),
        b"   ",                                                              # blanks
        good(9),
    ]
    write_lines(path, lines)
    return {"bad_json": 1, "not_object": 1, "invalid_utf8": 1, "line_too_long": 1,
            "no_timestamp": 1, "empty_line": 2, "bad_timestamp": 2}


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 4096, 97])
def test_malformed_lines_are_counted_by_reason_and_the_good_ones_around_them_yielded(tmp_path, chunk_bytes):
    alerts_dir = tmp_path / "logs" / "alerts"
    expected = malformed_file(alerts_dir / "alerts.json")
    source = AlertsFileSource(alerts_dir)
    source.CHUNK_BYTES = chunk_bytes  # lines split across chunk boundaries behave the same
    got = list(source.read(*EVERYTHING))
    assert ids(got) == [f"test.{n}" for n in range(10)]
    assert source.stats.skipped == expected
    assert set(expected) <= set(SKIP_REASONS)
    assert source.stats.lines == 19
    assert source.stats.examples["not_object"].startswith(f"{alerts_dir / 'alerts.json'}:4")
    assert source.stats.examples["line_too_long"].startswith(f"{alerts_dir / 'alerts.json'}:8")
    message = source.stats.describe()
    assert "skipped 9 malformed lines" in message and f"{alerts_dir / 'alerts.json'}:2" in message


def test_an_over_long_line_is_never_held_in_memory(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    alerts_dir.mkdir(parents=True)
    path = alerts_dir / "alerts.json"
    with open(path, "wb") as f:
        f.write(alert_line("2022-01-24T10:00:00.000+0000", 0) + b"\n")
        f.write(b'{"timestamp":"2022-01-24T10:00:01.000+0000","full_log":"')
        f.truncate(256 * 1024 * 1024)  # a sparse 256 MB line, read for real
        f.seek(0, os.SEEK_END)
        f.write(b'"}\n' + alert_line("2022-01-24T10:00:02.000+0000", 2) + b"\n")
    source = AlertsFileSource(alerts_dir)
    tracemalloc.start()
    try:
        got = ids(source.read(*EVERYTHING))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == ["test.0", "test.2"]
    assert source.stats.skipped == {"line_too_long": 1}
    assert peak < 8 * 1024 * 1024


def test_missing_alerts_directory_raises_source_unreadable_naming_it(tmp_path):
    missing = tmp_path / "var" / "ossec" / "logs" / "alerts"
    with pytest.raises(SourceUnreadable, match=str(missing)) as caught:
        list(AlertsFileSource(missing).read(*EVERYTHING))
    assert isinstance(caught.value, WazuhAnomalyError)
    assert "prefix" in str(caught.value)


def test_a_directory_where_an_alerts_file_belongs_raises_source_unreadable(tmp_path):
    # Documented choice: an unreadable file stops the read instead of being skipped,
    # because a silently missing file would look like a drop in activity.
    alerts_dir = tmp_path / "logs" / "alerts"
    (alerts_dir / "2022" / "Jan" / "ossec-alerts-23.json").mkdir(parents=True)
    write_lines(alerts_dir / "alerts.json", [alert_line("2022-01-24T10:00:00.000+0000")])
    with pytest.raises(SourceUnreadable, match="ossec-alerts-23.json: refused, because it is not a regular file"):
        list(AlertsFileSource(alerts_dir).read(*EVERYTHING))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_a_file_without_read_permission_raises_source_unreadable(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    path = write_lines(alerts_dir / "alerts.json", [alert_line("2022-01-24T10:00:00.000+0000")])
    path.chmod(0)
    with pytest.raises(SourceUnreadable, match="permission denied"):
        list(AlertsFileSource(alerts_dir).read(*EVERYTHING))


def test_a_damaged_gz_is_counted_and_its_readable_part_used(tmp_path, ait_lines):
    alerts_dir = build_manager_layout(tmp_path, ait_lines)
    gz = alerts_dir / "2022" / "Jan" / "ossec-alerts-22.json.gz"
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) // 2])  # cut mid-stream
    source = AlertsFileSource(alerts_dir)
    got = list(source.read(JAN21 + DAY, JAN21 + 2 * DAY))
    assert 0 < len(got) < 7452
    assert ids(got) == [json.loads(raw)["id"] for raw in by_utc_day(ait_lines)[22][: len(got)]]
    assert source.stats.skipped == {"corrupt_gzip": 1}
    assert "ossec-alerts-22.json.gz" in source.stats.examples["corrupt_gzip"]


def test_datetimes_are_refused_as_range_bounds(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    alerts_dir.mkdir(parents=True)
    with pytest.raises(TypeError, match="epoch seconds"):
        list(AlertsFileSource(alerts_dir).read(datetime.now(timezone.utc), 4e9))


# --- rotation while reading -------------------------------------------------------------


def test_alerts_json_renamed_and_recreated_mid_read_is_still_read_to_its_end(tmp_path, ait_lines):
    alerts_dir = tmp_path / "logs" / "alerts"
    day24 = by_utc_day(ait_lines)[24]
    current = write_lines(alerts_dir / "alerts.json", day24)
    reader = AlertsFileSource(alerts_dir).read(*EVERYTHING)
    first = next(reader)
    # the manager rotates: the old file moves away, a new alerts.json starts
    current.rename(alerts_dir / "alerts.json.rotated")
    write_lines(alerts_dir / "alerts.json", [alert_line("2022-01-25T00:00:01.000+0000", 1)])
    rest = list(reader)
    assert ids([first] + rest) == [json.loads(raw)["id"] for raw in day24]


def test_midnight_rotation_between_listing_and_opening_reads_the_gz(tmp_path, ait_lines):
    alerts_dir = build_manager_layout(tmp_path, ait_lines)
    jan = alerts_dir / "2022" / "Jan"
    reader = AlertsFileSource(alerts_dir)
    stream = reader.read(*EVERYTHING)
    got = [next(stream)]  # files are listed; reading the 21st
    # midnight: analysisd moves alerts.json to a new file, monitord compresses the 24th
    (alerts_dir / "alerts.json").unlink()
    write_lines(jan / "ossec-alerts-25.json", [alert_line("2022-01-25T00:00:01.000+0000", 25)])
    os.link(jan / "ossec-alerts-25.json", alerts_dir / "alerts.json")
    day24 = jan / "ossec-alerts-24.json"
    with open(day24, "rb") as src, gzip.open(jan / "ossec-alerts-24.json.gz", "wb", compresslevel=1) as dst:
        shutil.copyfileobj(src, dst)
    day24.unlink()
    got += list(stream)
    assert ids(got) == [json.loads(raw)["id"] for _, raw in ait_lines] + ["test.25"]
    assert reader.stats.files == 5 and reader.stats.files_vanished == 0


# --- resuming with a cursor ---------------------------------------------------------------


def disordered_day(pairs, boundaries, rng) -> list[tuple[float, bytes]]:
    """The alerts with those up to 5 minutes around each boundary shuffled, as
    analysisd writes them when decoders lag."""
    out = list(pairs)
    for b in boundaries:
        near = [i for i, (ts, _) in enumerate(out) if abs(ts - b) < 300]
        moved = [out[i] for i in near]
        rng.shuffle(moved)
        for i, pair in zip(near, moved):
            out[i] = pair
    return out


def test_reading_consecutive_ranges_with_a_cursor_yields_each_alert_exactly_once(tmp_path, ait_lines):
    alerts_dir = tmp_path / "logs" / "alerts"
    day24 = [(ts, raw) for ts, raw in ait_lines if ts >= JAN24]
    boundaries = [JAN24 + h * 3600 for h in range(1, 24)] + [JAN24 + DAY]
    disordered = disordered_day(day24, boundaries[:-1], random.Random(1))
    assert disordered != day24  # there really is disorder at the boundaries
    stamps = [ts for ts, _ in disordered]
    lines = [raw for _, raw in disordered]
    last_before = {end: max(i for i, ts in enumerate(stamps) if ts < end) for end in boundaries}
    path = alerts_dir / "alerts.json"
    alerts_dir.mkdir(parents=True)
    path.touch()
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    starts = [0]  # byte offset of each line
    for raw in lines:
        starts.append(starts[-1] + len(raw) + 1)
    got, written, resume_line = [], 0, 0
    for start, end in zip([JAN24] + boundaries, boundaries):
        # the manager has written every alert before `end`, and some after it
        upto = last_before[end] + 1
        with open(path, "ab") as f:
            f.write(b"".join(raw + b"\n" for raw in lines[written:upto]))
        written = upto
        stats = SourceStats()
        part = list(source.read(start, end, cursor=cursor, stats=stats))
        assert all(start <= ts < end for ts, _ in part)
        got += part
        # resumed at the first line the previous run saw within the slack before its end
        assert stats.bytes == starts[upto] - starts[resume_line]
        resume_line = next((i for i in range(upto) if stamps[i] >= end - 600), upto)
        cursor = ReadCursor.from_dict(json.loads(json.dumps(cursor.to_dict())))  # persisted between runs
    assert sorted(ids(got)) == sorted(json.loads(raw)["id"] for _, raw in day24)
    assert len(got) == len(day24) == 19816


def test_cursor_resume_picks_up_appended_alerts_including_late_ones_within_the_slack(tmp_path, ait_lines):
    alerts_dir = tmp_path / "logs" / "alerts"
    day24 = [raw for ts, raw in ait_lines if ts >= JAN24]
    b = JAN24 + 12 * 3600
    before = [raw for raw in day24 if reference_ts(json.loads(raw)["timestamp"]) < b]
    after = [raw for raw in day24 if reference_ts(json.loads(raw)["timestamp"]) >= b]
    # at the first read the file holds everything before b plus the first alerts after b,
    # written before some alerts of the last minutes before b (out of order)
    early, late = after[:20], before[-30:]
    path = write_lines(alerts_dir / "alerts.json", before[:-30] + early + late)
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    first = list(source.read(JAN24, b, cursor=cursor))
    with open(path, "ab") as f:  # the manager keeps appending
        f.write(b"".join(raw + b"\n" for raw in after[20:]))
    second = list(source.read(b, JAN24 + DAY, cursor=cursor))
    assert ids(first) == [json.loads(raw)["id"] for raw in before[:-30] + late]
    assert ids(second) == [json.loads(raw)["id"] for raw in after]
    # the second read started at the first line of the last 10 minutes before b
    consumed = sum(len(raw) + 1 for raw in before if reference_ts(json.loads(raw)["timestamp"]) < b - 600)
    assert source.stats.bytes == path.stat().st_size - consumed


def test_a_line_still_being_written_is_left_for_the_next_read(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    path = alerts_dir / "alerts.json"
    whole = alert_line("2022-01-24T10:00:01.000+0000", 1)
    write_lines(path, [alert_line("2022-01-24T10:00:00.000+0000", 0)])
    with open(path, "ab") as f:
        f.write(whole[:25])  # analysisd is mid-write
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    middle = JAN24 + 10 * 3600 + 0.5
    assert ids(source.read(JAN24, middle, cursor=cursor, slack_seconds=0)) == ["test.0"]
    assert source.stats.incomplete_tail == 1 and source.stats.skipped == {}
    with open(path, "ab") as f:
        f.write(whole[25:] + b"\n")
    assert ids(source.read(middle, JAN24 + DAY, cursor=cursor, slack_seconds=0)) == ["test.1"]
    assert source.stats.bytes == len(whole) + 1  # resumed at the start of the unfinished line
    assert source.stats.skipped == {} and source.stats.incomplete_tail == 0


def test_a_truncated_file_is_read_from_the_start(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    path = write_lines(alerts_dir / "alerts.json", [alert_line(f"2022-01-24T10:{m:02d}:00.000+0000", m) for m in range(30)])
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    list(source.read(JAN24, JAN24 + 11 * 3600, cursor=cursor))
    assert next(iter(cursor.files.values()))["offset"] == path.stat().st_size
    # same inode, same first line, but cut short and written on: shorter than the offset
    first_line = len(alert_line("2022-01-24T10:00:00.000+0000", 0)) + 1
    with open(path, "r+b") as f:
        f.truncate(first_line)
        f.seek(first_line)
        f.write(alert_line("2022-01-24T11:05:00.000+0000", 99) + b"\n")
    assert ids(source.read(JAN24 + 11 * 3600, JAN24 + DAY, cursor=cursor)) == ["test.99"]


def test_a_reused_inode_with_other_content_is_read_from_the_start(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    path = write_lines(alerts_dir / "alerts.json", [alert_line("2022-01-24T10:00:00.000+0000", 0)])
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    list(source.read(JAN24, JAN24 + 11 * 3600, cursor=cursor))
    # rewritten in place, longer than before: only the head tells it is another file
    with open(path, "r+b") as f:
        f.write(b"".join(alert_line(f"2022-01-24T11:0{n}:00.000+0000", 10 + n) + b"\n" for n in range(5)))
    assert ids(source.read(JAN24 + 11 * 3600, JAN24 + DAY, cursor=cursor)) == [f"test.{10 + n}" for n in range(5)]


def test_a_range_starting_before_the_cursor_resume_point_ignores_the_cursor(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    write_lines(alerts_dir / "alerts.json", [alert_line(f"2022-01-24T10:{m:02d}:00.000+0000", m) for m in range(60)])
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    list(source.read(JAN24, JAN24 + 10 * 3600 + 3000, cursor=cursor))  # up to 10:50
    assert cursor.resume_from == JAN24 + 10 * 3600 + 3000 - 600
    # a re-read from 10:30 (before 10:40, the resume point) must still see 10:30..10:39
    got = ids(source.read(JAN24 + 10 * 3600 + 1800, JAN24 + DAY, cursor=cursor))
    assert got == [f"test.{m}" for m in range(30, 60)]


def test_an_abandoned_iteration_leaves_the_cursor_unchanged(tmp_path):
    alerts_dir = tmp_path / "logs" / "alerts"
    write_lines(alerts_dir / "alerts.json", [alert_line(f"2022-01-24T10:{m:02d}:00.000+0000", m) for m in range(60)])
    source = AlertsFileSource(alerts_dir)
    cursor = ReadCursor()
    stream = source.read(JAN24, JAN24 + DAY, cursor=cursor)
    next(stream)
    stream.close()  # the consumer crashed or stopped early
    assert cursor == ReadCursor()


def test_a_cursor_that_cannot_be_understood_means_a_full_read():
    assert ReadCursor.from_dict({"version": 99}) == ReadCursor()
    assert ReadCursor.from_dict("garbage") == ReadCursor()
    assert ReadCursor.from_dict({"version": 1, "resume_from": 5.0, "files": {"1:2": {"offset": "x"}}}).files == {}
