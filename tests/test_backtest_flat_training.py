"""Backtest of a scenario whose training range holds none of its events (every feature
zero while learning), with every detector choice: as configured, seasonal, mvad, both.

On the bundled AIT-ADS data no web request reaches the manager before the attack day,
so a web scenario learns from a flat line of zeros. MVAD cannot learn from a flat line
beside another detector, so training leaves it out; the backtest must still run, say
so, and the seasonal baseline must still flag the first web burst. MVAD is real and
small (two epochs).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import AIT_LABELS
from wazuh_anomaly.cli import app as cli
from wazuh_anomaly.core.config import load_config, load_scenarios
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.ops.backtest import backtest, load_labels, parse_range
from wazuh_anomaly.sources.sample import install_sample_alerts

TRAIN = "2022-01-21..2022-01-24"
TEST = "2022-01-24..2022-01-25"
WEB_ONLY = """\
name: web_only
description: Web requests and web scans (none before the attack day)
enabled: true
bucket_minutes: 5
features:
  - name: web_requests
    aggregation: count
    filter:
      rule.groups: [web]
  - name: web_scans
    aggregation: count
    filter:
      rule.groups: [web_scan]
detectors: [mvad, seasonal]
mvad:
  epochs: 2
  windows_per_epoch: 128
  min_steps: 4
"""


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("flat")
    scenarios = root / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    (scenarios / "web_only.yaml").write_text(WEB_ONLY)
    install_sample_alerts(root / "logs" / "alerts")
    return root


def _backtest(prefix: Path, detector: str | None):
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors
    return backtest(load_config(layout), scenarios, ["web_only"], parse_range(TRAIN, "--train"),
                    parse_range(TEST, "--test"), phases=load_labels(AIT_LABELS), detector=detector)


def _web_burst_found(variant) -> bool:
    return any(a.scenario == "web_only" and a.top_features and a.top_features[0].name == "web_requests"
               and a.top_features[0].expected == 0 for a in variant.anomalies)


@pytest.mark.parametrize("detector, variants", [(None, ["configured"]), ("seasonal", ["seasonal"]),
                                                ("both", ["seasonal", "mvad"])])
def test_a_scenario_trained_on_zeros_flags_the_first_burst(prefix, detector, variants):
    result = _backtest(prefix, detector)
    assert list(result.variants) == variants
    lead = result.variants[variants[0]]
    assert _web_burst_found(lead)


def test_both_detectors_on_zeros_runs_and_says_mvad_was_not_trained(prefix):
    result = _backtest(prefix, "both")
    assert result.variants["mvad"].alerts == []
    assert ("web_only: mvad not trained (no variation in the training data); the mvad column has no anomaly "
            "from this scenario") in result.table()


def test_mvad_alone_on_zeros_trains_on_the_flat_line_and_scores(prefix):
    result = _backtest(prefix, "mvad")
    assert list(result.variants) == ["mvad"]
    assert "web_only: trained" in result.table()
    # A flat training line makes any web request a departure from it.
    assert _web_burst_found(result.variants["mvad"])


@pytest.mark.parametrize("detector", ["both", "mvad", "seasonal", None])
def test_the_command_exits_0_for_every_detector_choice(prefix, detector, capsys):
    argv = ["--prefix", str(prefix), "backtest", "--scenario", "web_only", "--train", TRAIN, "--test", TEST,
            "--labels", str(AIT_LABELS)] + (["--detector", detector] if detector else [])
    assert cli.main(argv) == 0, capsys.readouterr().err
