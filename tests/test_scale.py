"""Every entity of a scenario modelled at a small cost each (issue 16, part 1): every
entity by default, the cheap seasonal profile for all of them and MVAD for the busiest,
the entities scored together as one array, and the context kept for the next run bounded."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from wazuh_anomaly.core.config import parse_scenario
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.features.aggregate import FeatureAggregator
from wazuh_anomaly.pipeline.models import ModelBundle, context_entities

DAY = 86400
START = pd.Timestamp("2024-01-01", tz="UTC").timestamp()   # a Monday


def scenario(entity: dict | None = None, detectors=("seasonal",), **extra):
    data = {"name": "per_agent", "description": "per agent", "bucket_minutes": 60,
            "entity": {"field": "agent.name", **(entity or {})},
            "features": [{"name": "events", "aggregation": "count"},
                         {"name": "errors", "aggregation": "count", "filter": {"rule.level": {"min": 7}}}],
            "detectors": list(detectors), "training": {"min_history_hours": 1}, **extra}
    return parse_scenario(data, "per_agent.yaml")


def frames(entities: int, days: int, seed: int = 3) -> dict[str, pd.DataFrame]:
    """Hourly counts with a daily rhythm; each entity its own rate."""
    rng = np.random.default_rng(seed)
    index = pd.date_range(pd.Timestamp(START, unit="s", tz="UTC"), periods=24 * days, freq="60min", name="bucket")
    daily = 1.0 + 0.7 * np.sin(2 * np.pi * (np.asarray(index.hour) - 9) / 24)
    out = {}
    for i in range(entities):
        rate = rng.uniform(2, 40)
        values = rng.poisson(np.outer(daily * rate, [1.0, 0.1])).astype(float)
        out[f"agent-{i:03d}"] = pd.DataFrame(values, index=index, columns=["events", "errors"])
    return out


def test_a_scenario_models_every_entity_unless_it_says_how_many():
    assert scenario().entity.top is None
    assert scenario({"top": "all"}).entity.top is None
    assert scenario({"top": 5}).entity.top == 5
    agg = FeatureAggregator(scenario(), START, START + DAY)
    for i in range(300):
        agg.add(START + 60 * i, {"agent": {"name": f"agent-{i:03d}"}, "rule": {"level": 3}})
    assert len(agg.frames()) == 300
    capped = FeatureAggregator(scenario({"top": 5}), START, START + DAY)
    for i in range(300):
        capped.add(START + 60 * i, {"agent": {"name": f"agent-{i:03d}"}, "rule": {"level": 3}})
    assert len(capped.frames()) == 5


def test_entity_top_that_is_neither_a_number_nor_all_is_one_sentence():
    with pytest.raises(ConfigError, match=r"entity\.top.*number of entities or 'all'"):
        scenario({"top": "every"})


def test_frames_of_every_entity_equal_each_entitys_own_frame():
    agg = FeatureAggregator(scenario(), START, START + DAY)
    rng = np.random.default_rng(1)
    for k in range(2000):
        agg.add(START + float(rng.uniform(0, DAY)), {"agent": {"name": f"agent-{int(rng.integers(40)):02d}"},
                                                     "rule": {"level": int(rng.integers(1, 12))}})
    together = agg.frames()
    assert len(together) == 40
    for entity, frame in together.items():
        pd.testing.assert_frame_equal(frame, agg.frame(entity))


def test_scoring_every_entity_together_finds_the_same_anomalies_as_one_by_one():
    s = scenario()
    history = frames(60, 4)
    bundle = ModelBundle.train(s, history, trained_from=START, trained_to=START + 4 * DAY, now=START + 4 * DAY)
    today = frames(60, 5, seed=9)
    today = {e: f.iloc[-24:].copy() for e, f in today.items()}
    for e in ("agent-007", "agent-031", "agent-059"):
        today[e].iloc[10, 1] += 60     # a burst of errors
    first = today["agent-000"].index[0].timestamp()
    one_by_one = [a for e, f in today.items() for a in bundle.score(f, e, first=first)]
    together = bundle.score_many(today, first=first)
    key = lambda a: (a.entity_value, a.window_start, a.detector, round(a.score, 9), a.severity)  # noqa: E731
    assert sorted(map(key, together)) == sorted(map(key, one_by_one))
    assert {"agent-007", "agent-031", "agent-059"} <= {a.entity_value for a in together}
    # the drift check gets a bounded sample, not every entity's every score
    assert 0 < len(bundle.recent_scores["seasonal"]) <= 256 * 24


def test_mvad_models_only_the_busiest_entities_and_the_seasonal_profile_every_entity():
    s = scenario({"mvad_top": 2}, detectors=("mvad", "seasonal"),
                 mvad={"epochs": 1, "windows_per_epoch": 32, "min_steps": 1})
    history = frames(6, 3)
    busiest = sorted(history, key=lambda e: -history[e].to_numpy().sum())[:2]
    bundle = ModelBundle.train(s, history, trained_from=START, trained_to=START + 3 * DAY, now=START + 3 * DAY)
    assert sorted(bundle.meta["detector_entities"]["mvad"]) == sorted(busiest)
    quiet = next(e for e in history if e not in busiest)
    assert list(bundle.detectors_for(busiest[0])) == ["mvad", "seasonal"]
    assert list(bundle.detectors_for(quiet)) == ["seasonal"]
    frame = history[quiet].copy()
    frame.iloc[-1, 1] += 80
    found = bundle.score_many({quiet: frame, busiest[0]: history[busiest[0]]}, first=frame.index[-1].timestamp())
    assert [(a.entity_value, a.detector) for a in found] == [(quiet, "seasonal")]
    # only the busiest entities' context is kept for the next run, however many entities
    assert context_entities(s) == 2


FORGETFUL = """\
name: per_agent
description: Failed logins per agent (test)
bucket_minutes: 60
entity: {field: agent.name, forget_after_days: 2}
features:
  - {name: failures, aggregation: count}
  - {name: new_users, aggregation: rare, field: data.dstuser}
detectors: [seasonal]
training: {lookback_days: 6, min_history_hours: 24}
"""


def test_an_agent_silent_for_forget_after_days_is_dropped_from_model_and_state_at_the_next_training(tmp_path):
    import json
    from datetime import datetime, timedelta, timezone

    from conftest import sandbox_runner
    from wazuh_anomaly.core.state import ScenarioState
    from wazuh_anomaly.sources.sample import lay_out_alerts

    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    (tmp_path / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (tmp_path / "etc" / "anomaly" / "scenarios" / "per_agent.yaml").write_text(FORGETFUL)
    by_day: dict[str, list[bytes]] = {}
    for hour in range(6 * 24):
        ts = start + timedelta(hours=hour, minutes=7)
        agents = ["web-01"] + (["old-01"] if hour < 36 else [])     # old-01 removed after a day and a half
        for agent in agents:
            alert = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000+0000"), "rule": {"level": 5, "id": "1"},
                     "agent": {"id": "001", "name": agent}, "data": {"dstuser": f"u{hour % 3}"}}
            by_day.setdefault(alert["timestamp"][:10], []).append(json.dumps(alert).encode() + b"\n")
    lay_out_alerts(tmp_path / "logs" / "alerts", by_day)
    models = tmp_path / "var" / "anomaly" / "models" / "per_agent"

    def trained_entities() -> list:
        version = (models / "current").read_text().strip()
        return json.loads((models / version / "meta.json").read_text())["entities"]

    day2 = start + timedelta(days=2)
    sandbox_runner(tmp_path, day2.timestamp()).train(start=start.timestamp(), end=day2.timestamp())
    assert sorted(trained_entities()) == ["old-01", "web-01"]
    state = ScenarioState.load(tmp_path / "var" / "anomaly" / "state", "per_agent")
    assert set(state.vocabulary["new_users"]) == {"=old-01", "=web-01"}

    day5 = start + timedelta(days=5)    # old-01 silent since 36 h: more than 2 days
    sandbox_runner(tmp_path, day5.timestamp()).train(start=start.timestamp(), end=day5.timestamp())
    assert trained_entities() == ["web-01"]
    state = ScenarioState.load(tmp_path / "var" / "anomaly" / "state", "per_agent")
    assert set(state.vocabulary["new_users"]) == {"=web-01"}


def test_profiles_fitted_together_equal_each_entity_fitted_alone():
    from wazuh_anomaly.detectors.profile import SeasonalProfile

    history = frames(30, 3)
    history["agent-005"] = history["agent-005"].iloc[5:]      # another index: fitted on its own
    together = SeasonalProfile(["events", "errors"]).fit(history)
    for entity, frame in history.items():
        alone = SeasonalProfile(["events", "errors"]).fit({None: frame})
        np.testing.assert_allclose(together.medians[entity], alone.medians["*"])
        np.testing.assert_allclose(together.scales[entity], alone.scales["*"])


def test_training_scores_together_equal_each_entity_scored_alone():
    from wazuh_anomaly.detectors.seasonal import SeasonalDetector
    from wazuh_anomaly.pipeline.models import training_scores

    history = frames(40, 3)
    history["agent-003"] = history["agent-003"].iloc[7:]
    detector = SeasonalDetector(["events", "errors"]).fit(history)
    together = training_scores(detector, history, chunk=16)
    assert list(together) == list(history)
    for entity, frame in history.items():
        np.testing.assert_allclose(together[entity], detector.score(frame, entity)["score"].to_numpy())


from hypothesis import example, given, strategies as st  # noqa: E402

ANY_YAML = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                     st.text(max_size=12), st.lists(st.integers(), max_size=3),
                     st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@given(key=st.sampled_from(["top", "mvad_top", "forget_after_days"]), value=ANY_YAML)
@example(key="forget_after_days", value=float("nan"))
@example(key="top", value="every\nagent")
def test_any_yaml_value_of_the_entity_settings_is_accepted_or_refused_in_one_sentence(key, value):
    try:
        s = scenario({key: value})
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("per_agent.yaml: ") and f"entity.{key}" in message, message
        assert message.endswith(".") and ("\n" not in message or isinstance(value, str) and "\n" in value), message
        return
    spec = s.entity
    if key == "top":
        assert spec.top is None if value in (None, "all") else (isinstance(spec.top, int) and spec.top > 0)
    elif key == "mvad_top":
        assert isinstance(spec.mvad_top, int) and spec.mvad_top >= 0
    else:
        assert spec.forget_after_days > 0
