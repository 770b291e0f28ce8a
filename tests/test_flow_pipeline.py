"""A flow scenario goes through the same pipeline as an alert scenario in every command:
`backtest` and `report` read the normalised NetFlow events the scenario names, never the
manager's alerts (issue 13). The flows are the synthetic pmacct records of
netflow/generate.py, normalised by the real FlowPipeline."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from conftest import REPO
from wazuh_anomaly.core.config import load_config, load_scenarios
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.netflow import generate
from wazuh_anomaly.netflow.settings import NetflowSettings
from wazuh_anomaly.netflow.stream import FlowPipeline
from wazuh_anomaly.ops.backtest import TimeRange, backtest
from wazuh_anomaly.ops.report import report_from_installation
from wazuh_anomaly.ops.runner import Runner

SHIPPED = REPO / "wazuh" / "etc" / "anomaly" / "scenarios" / "flow_baseline.yaml"
DAY = timedelta(days=1)
T0 = generate.START                                   # 2026-03-02 10:00 UTC
TRAIN = TimeRange(T0.timestamp(), (T0 + 3 * DAY).timestamp())
TEST = TimeRange((T0 + 3 * DAY).timestamp(), (T0 + 3 * DAY + timedelta(hours=8)).timestamp())
BURST = T0 + 3 * DAY + timedelta(hours=4)             # the exfiltration, inside the test range
NOW = T0 + 3 * DAY + timedelta(hours=9)


def _moved(records: list[dict], delta: timedelta) -> list[dict]:
    """The generator's records, started `delta` later."""
    out = []
    for r in records:
        moved = dict(r)
        for key in ("timestamp_start", "timestamp_end"):
            at = datetime.strptime(r[key], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc) + delta
            moved[key] = at.strftime("%Y-%m-%d %H:%M:%S.%f")
        out.append(moved)
    return out


def flow_records() -> list[dict]:
    """Three days and eight hours of ordinary outbound traffic (the generator's control,
    a host calling one server at random times), with one burst of large outbound flows
    (the generator's high_outbound) four hours into the last day."""
    settings = NetflowSettings()
    ordinary = generate.raw_records("random_traffic", 1000, seed=1, settings=settings)
    burst = _moved(generate.raw_records("high_outbound", 5, settings=settings), BURST - T0)
    return sorted(ordinary + burst, key=lambda r: r["timestamp_start"])


def flow_prefix(root: Path) -> Path:
    """An installation with the shipped flow_baseline scenario (seasonal only, for speed),
    its flow events in logs/anomaly/netflow.json and no alert at all."""
    scenarios = root / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    text = SHIPPED.read_text().replace("detectors: [mvad, seasonal]", "detectors: [seasonal]")
    (scenarios / "flow_baseline.yaml").write_text(text)
    flows = root / "logs" / "anomaly" / "netflow.json"
    flows.parent.mkdir(parents=True)
    pipeline = FlowPipeline(NetflowSettings())
    flows.write_bytes(b"".join(orjson.dumps(pipeline.event(r)) + b"\n" for r in flow_records()))
    return root


def _installation(prefix: Path):
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors
    return load_config(layout), scenarios


def _in_burst(anomaly) -> bool:
    return anomaly.window_start <= BURST + timedelta(minutes=2) < anomaly.window_end


def test_backtest_of_a_flow_scenario_reads_its_flow_events_and_finds_the_burst(tmp_path):
    prefix = flow_prefix(tmp_path / "prefix")
    config, scenarios = _installation(prefix)
    result = backtest(config, scenarios, ["flow_baseline"], TRAIN, TEST, now=NOW.timestamp())
    assert result.alerts_read > 0                    # flow events of the test range, not alerts
    frame = result.series["flow_baseline"].frames[None]
    assert frame["flows_out"].sum() > 0
    found = result.variants["configured"].anomalies
    assert any(_in_burst(a) for a in found), [a.window_start for a in found]
    assert any(f.name == "bytes_out" for a in found if _in_burst(a) for f in a.top_features[:2])
    # Nothing of the installation was touched: no model, no state, no cursor under its prefix.
    assert not (prefix / "var").exists()


def test_report_of_a_flow_scenario_draws_its_flow_events(tmp_path):
    prefix = flow_prefix(tmp_path / "prefix")
    config, scenarios = _installation(prefix)
    runner = Runner(config, scenarios, now=TEST.start)
    assert runner.train(start=TRAIN.start, end=TRAIN.end).scenarios["flow_baseline"].status == "trained"
    written = Runner(config, scenarios, now=NOW.timestamp()).detect(TEST.start, TEST.end).anomalies
    assert any(_in_burst(a) for a in written)
    page = report_from_installation(config, scenarios, ["flow_baseline"], start="2026-03-05T10:00:00Z",
                                    end="2026-03-05T18:00:00Z", out=tmp_path / "report", now=NOW.timestamp())
    html = page.read_text()
    assert "No alert matched this scenario" not in html
    assert "bytes_out" in html and any(a.id in html for a in written if _in_burst(a))
    assert not any("alerts:" in line for line in html.splitlines() if "class=\"note\"" in line)


@pytest.fixture(autouse=True)
def _matplotlib():
    pytest.importorskip("matplotlib")
