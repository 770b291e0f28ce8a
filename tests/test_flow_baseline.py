"""Learned flow baselines: the flows source, the shipped flow_baseline scenario through the
runner (training, scoring, emitting), and the rules 117010-117013 it raises."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from conftest import REPO, sandbox_runner
from wazuh_anomaly.netflow.stream import FlowPipeline
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.ruleset import explain_all
from wazuh_anomaly.ops.runner import Runner
from wazuh_anomaly.sources import SourceStats
from wazuh_anomaly.netflow.flows_source import FlowsFileSource

START = datetime(2026, 3, 1, tzinfo=timezone.utc)
SHIPPED = REPO / "wazuh" / "etc" / "anomaly" / "scenarios" / "flow_baseline.yaml"


def raw(ts: datetime, src: str, dst: str, dport: int, bytes_: int, proto: str = "tcp") -> dict:
    return {"event_type": "purge", "peer_ip_src": "10.0.0.1", "ip_src": src, "ip_dst": dst, "port_src": 50000,
            "port_dst": dport, "tcp_flags": "27", "ip_proto": proto, "packets": max(1, bytes_ // 1200),
            "bytes": bytes_, "timestamp_start": ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
            "timestamp_end": ts.strftime("%Y-%m-%d %H:%M:%S.%f")}


def office_flows(hours: float, seed: int = 3) -> list[dict]:
    """A small office: web and DNS traffic with a daily cycle, a few inbound connections."""
    rng = random.Random(seed)
    out = []
    for minute in range(int(hours * 60)):
        t = START + timedelta(minutes=minute)
        busy = 1 + 3 * (8 <= t.hour < 18)
        for _ in range(rng.randint(0, busy)):
            host = f"10.0.1.{rng.randint(2, 20)}"
            out.append(raw(t + timedelta(seconds=rng.randint(0, 59)), host, f"198.51.100.{rng.randint(1, 30)}",
                           443, rng.randint(2_000, 60_000)))
            out.append(raw(t + timedelta(seconds=rng.randint(0, 59)), host, "10.0.0.53", 53, 180, "udp"))
        if rng.random() < 0.1:
            out.append(raw(t, f"203.0.113.{rng.randint(1, 9)}", "10.0.1.80", 443, 4000))
    return out


def exfiltration(at: datetime) -> list[dict]:
    return [raw(at + timedelta(seconds=5 * i), "10.0.1.7", f"192.0.2.{i % 60}", 443, 40_000_000) for i in range(150)]


def write_flows(path: Path, records: list[dict]) -> None:
    pipeline = FlowPipeline(NetflowSettings())
    records = sorted(records, key=lambda r: r["timestamp_start"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as fh:
        for r in records:
            fh.write(orjson.dumps(pipeline.event(r)) + b"\n")


def prefix_with(tmp_path: Path, scenario_text: str) -> Path:
    scenarios = tmp_path / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "flow_baseline.yaml").write_text(scenario_text)
    return tmp_path


def runner(prefix: Path, now: datetime) -> Runner:
    return sandbox_runner(prefix, now.timestamp())


def test_flows_source_yields_events_in_range_skips_bad_lines_and_resumes(tmp_path):
    path = tmp_path / "netflow.json"
    write_flows(path, office_flows(2))
    with path.open("a") as fh:
        fh.write("not json\n")
    source = FlowsFileSource(path, cursor_file=tmp_path / "cursor.json")
    start, end = START.timestamp(), (START + timedelta(hours=1)).timestamp()
    stats = SourceStats()
    events = list(source.read(start, end, stats=stats, slack_seconds=0))
    assert events and all(start <= ts < end for ts, _ in events)
    assert all(e["netflow"] == "true" for _, e in events)
    assert stats.skipped == {"not_a_flow_event": 1}
    # the next range starts where the cursor points: the first hour is not read again
    again = SourceStats()
    later = list(source.read(end, end + 3600, stats=again, slack_seconds=0))
    assert later and again.lines < stats.lines


def test_logrotated_copies_compressed_or_not_are_read_oldest_first(tmp_path):
    import gzip

    path = tmp_path / "netflow.json"
    flows = sorted(office_flows(4), key=lambda r: r["timestamp_start"])
    quarter = len(flows) // 4
    parts = [flows[:quarter], flows[quarter:2 * quarter], flows[2 * quarter:3 * quarter], flows[3 * quarter:]]
    # what logrotate with compress + delaycompress leaves: .3.gz and .2.gz, then .1, then the live file
    for part, name in zip(parts, ("netflow.json.3", "netflow.json.2", "netflow.json.1", "netflow.json")):
        write_flows(tmp_path / name, part)
    for name in ("netflow.json.3", "netflow.json.2"):
        plain = tmp_path / name
        (tmp_path / f"{name}.gz").write_bytes(gzip.compress(plain.read_bytes()))
        plain.unlink()
    # an older copy whose compression was cut short (a full disk): read up to the break
    write_flows(tmp_path / "old", [raw(START - timedelta(days=1, seconds=i), "10.0.1.2", "198.51.100.1", 443, 900)
                                   for i in range(2000)])
    archive = gzip.compress((tmp_path / "old").read_bytes())
    (tmp_path / "netflow.json.4.gz").write_bytes(archive[: len(archive) // 2])
    source = FlowsFileSource(path)
    assert [p.name for p in source.files()] == ["netflow.json.4.gz", "netflow.json.3.gz", "netflow.json.2.gz",
                                                "netflow.json.1", "netflow.json"]
    stats = SourceStats()
    start, end = START.timestamp(), (START + timedelta(hours=4)).timestamp()
    times = [ts for ts, _ in source.read(start, end, stats=stats, slack_seconds=0)]
    assert len(times) == len(flows) and times == sorted(times)
    assert stats.skipped == {"damaged_archive": 1}
    assert "netflow.json.4.gz: not a complete gzip file" in stats.examples["damaged_archive"]


def test_flow_scenario_waits_silently_while_no_flow_file_exists(tmp_path):
    prefix = prefix_with(tmp_path, SHIPPED.read_text())
    report = runner(prefix, START + timedelta(days=3)).run()
    assert "flow_baseline" not in report.scenarios
    assert not any(h.scenario == "flow_baseline" for h in report.health)


def _train_and_score(tmp_path: Path, scenario_text: str):
    prefix = prefix_with(tmp_path, scenario_text)
    flows = prefix / "logs" / "anomaly" / "netflow.json"
    write_flows(flows, office_flows(72))
    train = runner(prefix, START + timedelta(days=3)).run()
    assert train.scenarios["flow_baseline"].status == "trained", train.lines()
    attack = START + timedelta(days=3, hours=2, minutes=3)
    day_four = [r for r in office_flows(80, seed=9) if r["timestamp_start"] >= "2026-03-04"]
    write_flows(flows, day_four + exfiltration(attack))
    report = runner(prefix, START + timedelta(days=3, hours=6)).run()
    found = [a for a in report.anomalies if a.scenario == "flow_baseline"]
    lines = [json.loads(x) for x in (prefix / "logs" / "anomaly" / "anomalies.json").read_text().splitlines()]
    return found, lines, attack


def test_exfiltration_burst_is_a_flow_baseline_anomaly_raising_117010_to_117013(tmp_path):
    text = SHIPPED.read_text().replace("detectors: [mvad, seasonal]", "detectors: [seasonal]")
    found, lines, attack = _train_and_score(tmp_path, text)
    assert found, "the exfiltration burst was not found"
    assert any(a.window_start <= attack < a.window_end for a in found)
    assert any(f.name == "bytes_out" for a in found for f in a.top_features[:2])
    events = [e for e in lines if e["anomaly"].get("scenario") == "flow_baseline"]
    alerts = explain_all(events)
    fired = {a.rule_id for a in alerts}
    assert fired & {117010, 117011, 117012, 117013}
    assert fired <= {117010, 117011, 117012, 117013, 117014}   # 117014: the burst spans 3+ buckets


@pytest.mark.slow
def test_shipped_flow_baseline_with_mvad_finds_the_exfiltration(tmp_path):
    found, lines, attack = _train_and_score(tmp_path, SHIPPED.read_text())
    assert any(a.window_start <= attack < a.window_end for a in found)
