"""Silence as a finding: the shipped `silence` scenario on generated alerts of three
agents, trained and scored by the ordinary scheduled run (real files, real state).

- web-01 sends syslog and web alerts day and night; on the test day it stops for two
  hours (10:00-12:00) and comes back: one finding in those two hours.
- office-01 sends only in office hours; its nights are quiet: never a finding.
- db-01 sends a little all day and is removed at 14:00: one finding, and no more
  however many scheduled runs follow.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, sandbox_runner
from wazuh_anomaly.core.errors import ModelError
from wazuh_anomaly.detectors import SilenceDetector, detector_class
from wazuh_anomaly.pipeline.models import ModelBundle
from wazuh_anomaly.core.config import load_scenario
from wazuh_anomaly.sources.sample import lay_out_alerts

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
TEST_DAY = START + timedelta(days=8)
STOP, BACK = TEST_DAY + timedelta(hours=10), TEST_DAY + timedelta(hours=12)
REMOVED = TEST_DAY + timedelta(hours=14)
LAST_RUN = TEST_DAY + timedelta(days=1, hours=16)
SHIPPED = REPO / "wazuh" / "etc" / "anomaly" / "scenarios" / "silence.yaml"


def _alert(ts: datetime, agent: str, groups: list[str]) -> dict:
    return {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
            "rule": {"level": 3, "id": "5501", "groups": groups, "description": "test"},
            "agent": {"id": "001", "name": agent}, "location": "/var/log/messages", "decoder": {"name": "test"}}


def generated_alerts() -> list[dict]:
    rng = np.random.default_rng(7)
    out = []
    for bucket in range(int((LAST_RUN - START).total_seconds() // 300)):
        t0 = START + timedelta(minutes=5 * bucket)
        office_hours = 8 <= t0.hour < 18
        rates = {"web-01": (1.5, ["syslog", "sshd"]), "web-01 ": (2.0, ["web", "accesslog"]),
                 "office-01": (2.0 if office_hours else 0.01, ["syslog", "pam"]),
                 "db-01": (0.8, ["syslog", "postgresql"])}
        for name, (rate, groups) in rates.items():
            agent = name.strip()
            if agent == "web-01" and STOP <= t0 < BACK or agent == "db-01" and t0 >= REMOVED:
                continue
            for _ in range(rng.poisson(rate)):
                out.append(_alert(t0 + timedelta(seconds=int(rng.integers(0, 300))), agent, groups))
    out.sort(key=lambda a: a["timestamp"])
    return out


@pytest.fixture(scope="module")
def findings(tmp_path_factory) -> list[dict]:
    """Train at the start of the test day, then a scheduled run every 30 minutes for 40 hours;
    every silence line written to the anomalies file."""
    prefix = tmp_path_factory.mktemp("silence")
    scenarios = prefix / "etc" / "anomaly" / "scenarios"
    scenarios.mkdir(parents=True)
    shutil.copy(SHIPPED, scenarios)
    by_day: dict[str, list[bytes]] = {}
    for a in generated_alerts():
        by_day.setdefault(a["timestamp"][:10], []).append(json.dumps(a).encode() + b"\n")
    lay_out_alerts(prefix / "logs" / "alerts", by_day)
    now = TEST_DAY + timedelta(minutes=2)
    report = sandbox_runner(prefix, now.timestamp()).run()
    assert report.scenarios["silence"].status == "trained", report.lines()
    while now < LAST_RUN:
        now += timedelta(minutes=30)
        report = sandbox_runner(prefix, now.timestamp()).run()
        assert report.scenarios["silence"].status in ("scored", "up-to-date"), report.lines()
    lines = [json.loads(x) for x in (prefix / "logs" / "anomaly" / "anomalies.json").read_text().splitlines()]
    return [x["anomaly"] for x in lines if x["anomaly"].get("scenario") == "silence"]


def _of(findings: list[dict], agent: str) -> list[dict]:
    return [f for f in findings if f.get("entity", {}).get("value") == agent]


def _start(finding: dict) -> datetime:
    return datetime.strptime(finding["window"]["start"], "%Y-%m-%dT%H:%M:%S.%f%z")


def test_an_agent_that_stops_for_two_hours_is_found_once(findings):
    found = _of(findings, "web-01")
    assert len(found) == 1, found
    # found once it has lasted the hour a silence must last (MIN_SILENCE_SECONDS), not later
    assert STOP + timedelta(minutes=45) <= _start(found[0]) < STOP + timedelta(hours=1)
    assert found[0]["detector"] == "silence" and found[0]["top_features"][0]["actual"] == 0
    assert "=0 (expected" in found[0]["summary"] and found[0]["summary"].endswith("on agent web-01")


def test_a_silence_shorter_than_an_hour_is_never_reported():
    from wazuh_anomaly.detectors.silence import SilenceDetector
    train = _frame(7, 3.0)
    detector = SilenceDetector(["alerts", "syslog"]).fit({"host": train})
    day = _frame(1, 3.0, seed=11)
    day.index = day.index + pd.Timedelta(days=7)
    short = day.copy()
    short.iloc[120:130] = 0.0                      # 50 quiet minutes where a rate of 3 a bucket is normal
    assert detector.score(short, "host")["score"].max() <= 1.0
    long = day.copy()
    long.iloc[120:140] = 0.0                       # 100 quiet minutes
    scores = detector.score(long, "host")["score"]
    assert (scores > 1.0).sum() == 1 and scores.idxmax() >= long.index[120] + pd.Timedelta(minutes=55)


def test_normal_night_time_quiet_is_not_found(findings):
    assert _of(findings, "office-01") == []


def test_a_removed_agent_stays_quiet_and_gives_one_finding_not_one_per_run(findings):
    found = _of(findings, "db-01")
    assert len(found) == 1, found
    assert REMOVED <= _start(found[0]) < REMOVED + timedelta(hours=2)


def test_nothing_else_is_found(findings):
    assert len(findings) == 2


# --------------------------------------------------------------------------- the model itself

def _frame(days: int, rate: float, seed: int = 3) -> pd.DataFrame:
    index = pd.date_range(START, periods=days * 288, freq="5min", tz="UTC")
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"alerts": rng.poisson(rate, len(index)).astype(float),
                         "syslog": rng.poisson(rate / 2, len(index)).astype(float)}, index=index)


def test_silence_is_registered_like_the_other_detectors():
    assert detector_class("silence") is SilenceDetector


def test_the_threshold_follows_the_budget_and_the_number_of_series():
    frame = _frame(3, 2.0)
    one = SilenceDetector(["alerts", "syslog"]).fit({"a": frame})
    many = SilenceDetector(["alerts", "syslog"]).fit({f"a{i}": frame for i in range(100)})
    # 0.1 findings a day over 2 series x 288 buckets; 100 times the series: 2 more decades.
    assert one.base_threshold == pytest.approx(-np.log10(0.1 / (2 * 288)))
    assert many.base_threshold == pytest.approx(one.base_threshold + 2)


def test_a_silence_already_seen_while_learning_raises_the_threshold():
    frame = _frame(4, 2.0)
    quiet = frame.copy()
    quiet.iloc[400:440] = 0                                 # 200 minutes of nothing while learning
    plain = SilenceDetector(["alerts", "syslog"]).fit({"a": frame})
    guarded = SilenceDetector(["alerts", "syslog"]).fit({"a": quiet})
    assert guarded.threshold_["a"][0] > plain.threshold_["a"][0]
    assert guarded.score(quiet, "a")["score"].max() < 1.0    # its own history never crosses


def test_an_entity_unknown_to_the_model_is_never_silent():
    frame = _frame(2, 2.0)
    detector = SilenceDetector(["alerts", "syslog"]).fit({"a": frame})
    gone = frame.copy()
    gone.iloc[300:] = 0
    assert detector.score(gone, "a")["score"].max() > 1.0
    assert detector.score(gone, "b")["score"].max() == 0.0


def test_the_model_is_json_and_loads_back_to_the_same_scores(tmp_path):
    frame = _frame(3, 1.0)
    detector = SilenceDetector(["alerts", "syslog"]).fit({"a": frame, "b": _frame(3, 0.2, seed=4)})
    detector.save(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["silence.json"]
    json.loads((tmp_path / "silence.json").read_text())
    loaded = SilenceDetector.load(tmp_path, ["alerts", "syslog"])
    gone = frame.copy()
    gone.iloc[500:] = 0
    pd.testing.assert_frame_equal(loaded.score(gone, "a"), detector.score(gone, "a"), atol=1e-5)


def test_a_damaged_silence_model_is_refused_in_one_sentence(tmp_path):
    scenario = load_scenario(SHIPPED)
    frame = pd.concat([_frame(2, 1.0)] * 1, axis=1)
    frame = pd.DataFrame({f: frame["alerts"] for f in scenario.feature_names}, index=frame.index)
    bundle = ModelBundle.train(scenario, {"web-01": frame}, trained_from=0, trained_to=1)
    directory = bundle.save(tmp_path)
    data = json.loads((directory / "silence.json").read_text())
    data["entities"]["web-01"]["alpha"] = data["entities"]["web-01"]["alpha"][:3]
    (directory / "silence.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"cannot be loaded \(ValueError: silence model of 'web-01' has shapes"):
        ModelBundle.load(tmp_path, scenario)


def test_on_stationary_data_with_a_daily_cycle_false_silences_stay_within_the_budget(monkeypatch):
    """40 series (20 agents x 2 log types), a daily cycle, 14 days to learn, 30 days scored:
    chance silences stay within twice the scenario's 0.1 a day."""
    rng = np.random.default_rng(5)
    index = pd.date_range(START, periods=288 * 44, freq="5min", tz="UTC")
    rate = 0.3 * (1 + 0.8 * np.sin(2 * np.pi * index.hour / 24))
    frames = {f"a{i}": pd.DataFrame({"alerts": rng.poisson(2 * rate), "syslog": rng.poisson(rate)},
                                    index=index).astype(float) for i in range(20)}

    def per_day(detector: SilenceDetector) -> float:
        detector.fit({k: f.iloc[:288 * 14] for k, f in frames.items()})
        return sum(int((detector.score(f.iloc[288 * 13:], k)["score"].iloc[288:] > 1).sum())
                   for k, f in frames.items()) / 30

    assert per_day(SilenceDetector(["alerts", "syslog"])) <= 2 * 0.1
    # Without the budget and the guard from history (a fixed 1-in-1000 test per bucket) the
    # same data raises silences every day: what holds them is the design, not the data.
    monkeypatch.setattr("wazuh_anomaly.detectors.silence.HISTORY_GUARD", 0.0)
    assert per_day(SilenceDetector(["alerts", "syslog"], alerts_per_day=0.001 * 40 * 288)) > 1


def test_after_two_weeks_quiet_weekends_are_normal_and_a_quiet_weekday_morning_is_not():
    index = pd.date_range(START, periods=288 * 28, freq="5min", tz="UTC")      # 4 weeks from a Friday
    working = (index.weekday < 5) & (index.hour >= 8) & (index.hour < 18)
    rng = np.random.default_rng(11)
    counts = np.where(working, rng.poisson(2.0, len(index)), rng.poisson(0.01, len(index))).astype(float)
    frame = pd.DataFrame({"alerts": counts, "syslog": counts}, index=index)
    detector = SilenceDetector(["alerts", "syslog"]).fit({"office": frame.iloc[:288 * 21]})
    assert detector.weekly
    week = frame.iloc[288 * 21:].copy()                  # the fourth week: Friday to Thursday
    assert detector.score(week, "office")["score"].max() <= 1.0     # its weekend is as quiet as every weekend
    monday = week.index[(week.index.weekday == 0) & (week.index.hour >= 10) & (week.index.hour < 12)]
    week.loc[monday] = 0
    flagged = detector.score(week, "office")["score"]
    assert list(flagged.index[(flagged > 1).to_numpy()].weekday) == [0]


# --------------------------------------------------------------------------- properties

from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_TRAINED = SilenceDetector(["alerts", "syslog"]).fit({"a": _frame(2, 1.5, seed=9)})
_L = _TRAINED.context_buckets


@st.composite
def activity(draw):
    """A frame of 2*L..3*L buckets: random counts with random silences cut into them."""
    n = draw(st.integers(2 * _L, 3 * _L))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    values = rng.poisson(draw(st.sampled_from([0.2, 1.5, 4.0])), size=(n, 2)).astype(float)
    for _ in range(draw(st.integers(0, 4))):
        start = draw(st.integers(0, n - 1))
        length = draw(st.integers(1, _L + 40))
        columns = draw(st.sampled_from([[0], [1], [0, 1]]))
        values[start:start + length, columns] = 0
    index = pd.date_range(START + timedelta(days=3), periods=n, freq="5min", tz="UTC")
    return pd.DataFrame(values, index=index, columns=["alerts", "syslog"]), draw(st.integers(_L, n - 1))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(activity())
def test_consecutive_runs_flag_exactly_what_one_pass_flags(case):
    """A run scores its new buckets with a day of context before them: cut anywhere, two
    runs raise the same silences as one pass over the whole range, never one twice."""
    frame, cut = case
    whole = _TRAINED.score(frame, "a")["score"]
    first = _TRAINED.score(frame.iloc[:cut], "a")["score"]
    second = _TRAINED.score(frame.iloc[cut - _L:], "a")["score"].iloc[_L:]
    assert np.all(np.isfinite(whole)) and np.all(whole >= 0)
    flagged_whole = list(whole.index[(whole > 1).to_numpy()][whole.index[(whole > 1).to_numpy()] >= frame.index[_L]])
    flagged_runs = [t for s in (first.iloc[_L:], second) for t in s.index[(s > 1).to_numpy()]]
    assert flagged_runs == flagged_whole
    # at most one finding per silence: never two flagged buckets in one run of empty buckets
    empty = (frame.to_numpy() == 0).all(axis=1)
    rows = np.flatnonzero((whole > 1).to_numpy())
    for a, b in zip(rows, rows[1:]):
        assert not empty[a + 1:b + 1].all() or not empty[a]


def test_the_silence_detector_takes_its_scenarios_share_of_the_alert_budget():
    import dataclasses
    from wazuh_anomaly.core.config import load_scenario
    from wazuh_anomaly.core.registry import DETECTORS
    shipped = load_scenario(REPO / "wazuh" / "etc" / "anomaly" / "scenarios" / "silence.yaml")
    for share in (0.05, 0.5):
        scenario = dataclasses.replace(shipped, alerts_per_day=share)
        detector = DETECTORS.get("silence").from_scenario(scenario, scenario.feature_names)
        assert detector.alerts_per_day == share
