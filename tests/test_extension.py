"""The extension recipes of docs/architecture.md, proved: a detector, an aggregation and a
source are each one class registered by name, and a scenario that names them runs
through the real pipeline (train, then the scheduled run) without any edit to the
package. The three toys below are registered from this test module only."""
from __future__ import annotations

import json
import math
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from conftest import sandbox_runner
from wazuh_anomaly.core.config import load_scenario
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.core.registry import AGGREGATIONS, DETECTORS, SOURCES
from wazuh_anomaly.features.aggregations import Aggregation
from wazuh_anomaly.sources import SourceStats


# --------------------------------------------------------------------------- a detector

class ZScoreDetector:
    """How many standard deviations each feature is from its training mean; the score is
    the largest of them."""

    threshold_floor = None        # let the calibration decide alone
    uses_calendar = False         # no calendar columns
    needs_variation = False
    context_buckets = 0           # no history needed before a scored bucket

    def __init__(self, features: list[str]):
        self.features = list(features)
        self.mean_: np.ndarray | None = None
        self.std_: np.ndarray | None = None

    @classmethod
    def from_scenario(cls, scenario, features, *, device="cpu", threads=None) -> "ZScoreDetector":
        return cls(features)

    def fit(self, series) -> "ZScoreDetector":
        joined = pd.concat(list(series.values()))[self.features]
        self.mean_ = joined.mean().to_numpy()
        self.std_ = np.maximum(joined.std().to_numpy(), 1e-3)
        return self

    def score(self, frame: pd.DataFrame, entity=None) -> pd.DataFrame:
        z = np.abs((frame[self.features].to_numpy(dtype=float) - self.mean_) / self.std_)
        totals = z.sum(axis=1, keepdims=True)
        out = pd.DataFrame(np.divide(z, totals, out=np.zeros_like(z), where=totals > 0),
                           index=frame.index, columns=self.features)
        out.insert(0, "score", z.max(axis=1) if len(z) else np.zeros(0))
        return out

    def save(self, directory: Path) -> None:
        (directory / "zscore.json").write_text(json.dumps(
            {"features": self.features, "mean": self.mean_.tolist(), "std": self.std_.tolist()}))

    @classmethod
    def load(cls, directory: Path, features, *, device="cpu", threads=None) -> "ZScoreDetector":
        data = json.loads((directory / "zscore.json").read_text())
        assert data["features"] == list(features)
        detector = cls(features)
        detector.mean_, detector.std_ = np.asarray(data["mean"]), np.asarray(data["std"])
        return detector


# --------------------------------------------------------------------------- an aggregation

class Spread(Aggregation):
    """The highest minus the lowest value of a numeric field in the bucket."""

    unit = "spread"

    def new(self) -> list:
        return [math.inf, -math.inf]

    def add(self, acc: list, value: float) -> list:
        acc[0], acc[1] = min(acc[0], value), max(acc[1], value)
        return acc

    def final(self, acc: list) -> float:
        return 0.0 if acc[0] > acc[1] else acc[1] - acc[0]


# --------------------------------------------------------------------------- a source

class JsonLinesSource:
    """Events of <prefix>/toy/events.jsonl, each {"time": epoch seconds, ...}."""

    def __init__(self, path: Path):
        self.path = path
        self.line = 0

    @classmethod
    def from_config(cls, config, scenario=None, *, resume=True) -> "JsonLinesSource":
        return cls(config.layout.prefix / "toy" / "events.jsonl")

    @property
    def key(self) -> tuple:
        return ("toy_lines", str(self.path))

    def position(self) -> str:
        return f"{self.path}:{self.line}"

    def read(self, start, end, *, cursor=None, stats: SourceStats | None = None, slack_seconds=0.0):
        stats = stats if stats is not None else SourceStats()
        with self.path.open("rb") as handle:
            for self.line, line in enumerate(handle, 1):
                event = orjson.loads(line)
                if start <= event["time"] < end:
                    stats.alerts += 1
                    yield float(event["time"]), event


@pytest.fixture(autouse=True)
def toys():
    """The three toys, registered for this test only (the registries are shared)."""
    DETECTORS.register("zscore", ZScoreDetector)
    AGGREGATIONS.register("spread", Spread)
    SOURCES.register("toy_lines", JsonLinesSource)
    yield
    for registry, name in ((DETECTORS, "zscore"), (AGGREGATIONS, "spread"), (SOURCES, "toy_lines")):
        registry.unregister(name)


SCENARIO = """\
name: toy_readings
description: Sensor readings that suddenly scatter
source: toy_lines
bucket_minutes: 5
features:
  - name: spread
    aggregation: spread
    field: reading
  - name: readings
    aggregation: count
detectors: [zscore]
training:
  min_history_hours: 24
"""
T0 = datetime(2026, 2, 2, tzinfo=timezone.utc)
SCATTER = T0 + timedelta(days=3, hours=2, minutes=30)


def readings(start: datetime, hours: float, seed: int) -> list[dict]:
    """One reading a minute between 10 and 11; scattered between 10 and 60 for ten minutes
    from SCATTER."""
    rng = random.Random(seed)
    out = []
    for minute in range(int(hours * 60)):
        t = start + timedelta(minutes=minute)
        high = 60.0 if SCATTER <= t < SCATTER + timedelta(minutes=10) else 11.0
        out.append({"time": t.timestamp() + rng.uniform(0, 59), "reading": rng.uniform(10.0, high)})
    return out


def write(prefix: Path, events: list[dict]) -> None:
    path = prefix / "toy" / "events.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as handle:
        handle.write(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_a_registered_detector_aggregation_and_source_run_through_train_and_the_scheduled_run(tmp_path):
    prefix = tmp_path / "prefix"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (prefix / "etc" / "anomaly" / "scenarios" / "toy_readings.yaml").write_text(SCENARIO)
    write(prefix, readings(T0, 72, seed=1))

    first = sandbox_runner(prefix, (T0 + timedelta(days=3)).timestamp()).run()
    assert first.scenarios["toy_readings"].status == "trained", first.lines()
    model = next((prefix / "var" / "anomaly" / "models" / "toy_readings").glob("*/zscore.json"))
    assert json.loads(model.read_text())["features"] == ["spread", "readings"]

    write(prefix, readings(T0 + timedelta(days=3), 6, seed=2))
    second = sandbox_runner(prefix, (T0 + timedelta(days=3, hours=6)).timestamp()).run()
    scored = second.scenarios["toy_readings"]
    assert scored.status == "scored" and scored.buckets == 72, second.lines()
    found = [a for a in scored.anomalies if a.window_start <= SCATTER < a.window_end]
    assert len(scored.anomalies) <= 4, [a.window_start for a in scored.anomalies]   # the scatter, not every bucket
    assert found, [a.window_start for a in scored.anomalies]
    assert found[0].detector == "zscore" and found[0].top_features[0].name == "spread"
    written = [json.loads(line) for line in (prefix / "logs" / "anomaly" / "anomalies.json").read_text().splitlines()]
    assert any(e["anomaly"].get("scenario") == "toy_readings" and e["anomaly"]["detector"] == "zscore"
               for e in written)


def test_a_scenario_naming_an_unregistered_detector_is_told_the_registered_ones(tmp_path):
    path = tmp_path / "toy.yaml"
    path.write_text(SCENARIO.replace("[zscore]", "[isolation_forest]"))
    with pytest.raises(ConfigError, match=r"detectors' must list one or more of .*zscore"):
        load_scenario(path)
    path.write_text(SCENARIO.replace("aggregation: spread", "aggregation: p99"))
    with pytest.raises(ConfigError, match=r"must be one of .*spread, not 'p99'"):
        load_scenario(path)
    path.write_text(SCENARIO.replace("source: toy_lines", "source: kafka"))
    with pytest.raises(ConfigError, match=r"must be one of alerts, .*toy_lines, not 'kafka'"):
        load_scenario(path)


def test_backtest_scores_with_a_registered_detector_alone(tmp_path):
    from wazuh_anomaly.core.config import load_config, load_scenarios
    from wazuh_anomaly.core.paths import Layout
    from wazuh_anomaly.ops.backtest import BacktestError, TimeRange, backtest

    prefix = tmp_path / "prefix"
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (prefix / "etc" / "anomaly" / "scenarios" / "toy_readings.yaml").write_text(
        SCENARIO.replace("detectors: [zscore]", "detectors: [seasonal]"))
    write(prefix, readings(T0, 78, seed=1))
    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not errors
    train = TimeRange(T0.timestamp(), (T0 + timedelta(days=3)).timestamp())
    test = TimeRange(train.end, (T0 + timedelta(days=3, hours=6)).timestamp())
    now = (T0 + timedelta(days=4)).timestamp()
    result = backtest(load_config(layout), scenarios, ["toy_readings"], train, test, detector="zscore", now=now)
    assert list(result.variants) == ["zscore"]
    found = result.variants["zscore"].anomalies
    assert any(a.window_start <= SCATTER < a.window_end and a.detector == "zscore" for a in found)
    assert result.alerts_read == 6 * 60
    with pytest.raises(BacktestError, match=r"--detector 'lof' is not one of mvad, seasonal, .*zscore.*, both\."):
        backtest(load_config(layout), scenarios, ["toy_readings"], train, test, detector="lof", now=now)
