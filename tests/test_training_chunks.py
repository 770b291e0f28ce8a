"""Training streams entities (issue 16): the frames of a chunk of entities are built,
fitted and scored, then let go; the model is the same whatever the chunk size, and the
memory of the frames is bounded by the chunk, not by the number of entities."""
from __future__ import annotations

import json
import tracemalloc
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import sandbox_runner
from wazuh_anomaly.core.chunks import in_chunks
from wazuh_anomaly.core.config import parse_scenario
from wazuh_anomaly.detectors import profile as profile_module
from wazuh_anomaly.detectors.base import Calibration, ScoreTally
from wazuh_anomaly.features.aggregate import FeatureAggregator
from wazuh_anomaly.pipeline.models import ModelBundle
from wazuh_anomaly.sources.sample import lay_out_alerts

DAY = 86400
START = datetime(2024, 3, 4, tzinfo=timezone.utc)    # a Monday

SCENARIO = """\
name: per_agent
description: per agent
bucket_minutes: 60
entity: {field: agent.name, top: all, mvad_top: 2}
features:
  - {name: events, aggregation: count}
  - {name: errors, aggregation: count, filter: {rule.level: {min: 7}}}
  - {name: new_users, aggregation: rare, field: data.dstuser}
detectors: [mvad, seasonal]
mvad: {epochs: 1, min_steps: 1, windows_per_epoch: 32, sliding_window: 16}
training: {min_history_hours: 1}
"""


def _history(prefix, agents: int = 13, days: int = 9) -> None:
    """`days` days of alerts of `agents` agents, each its own rate and user names."""
    rng = np.random.default_rng(5)
    by_day: dict[str, list[bytes]] = {}
    for hour in range(days * 24):
        for a in range(agents):
            for k in range(int(rng.poisson(0.3 + a * 0.4))):
                ts = START + timedelta(hours=hour, minutes=int(rng.integers(60)))
                alert = {"timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                         "rule": {"level": int(rng.choice([3, 5, 8])), "id": "1"},
                         "agent": {"id": f"{a:03d}", "name": f"agent-{a:02d}"},
                         "data": {"dstuser": f"u{int(rng.integers(4 + a))}"}}
                by_day.setdefault(alert["timestamp"][:10], []).append(json.dumps(alert).encode() + b"\n")
    lay_out_alerts(prefix / "logs" / "alerts", by_day)


def _trained_files(prefix) -> dict[str, bytes]:
    """Every file of the saved model and the scenario's state, without the wall times."""
    models = prefix / "var" / "anomaly" / "models" / "per_agent"
    current = models / (models / "current").read_text().strip()
    files = {}
    for path in sorted(current.iterdir()):
        data = path.read_bytes()
        if path.name == "meta.json":
            meta = json.loads(data)
            meta.pop("fit")
            data = json.dumps(meta, sort_keys=True).encode()
        files[path.name] = data
    files["state"] = (prefix / "var" / "anomaly" / "state" / "scenarios" / "per_agent.json").read_bytes()
    return files


def test_training_in_chunks_of_one_a_few_or_every_entity_saves_the_same_model_and_state(tmp_path, monkeypatch):
    # A pooled profile from a sample of entities (every 3rd of 13), as past 500 entities.
    monkeypatch.setattr(profile_module, "POOLED_SAMPLE", 5)
    (tmp_path / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (tmp_path / "etc" / "anomaly" / "scenarios" / "per_agent.yaml").write_text(SCENARIO)
    _history(tmp_path)
    end = START + timedelta(days=9)
    saved = {}
    for chunk in (1, 4, 10_000):
        for old in ("models", "state"):
            path = tmp_path / "var" / "anomaly" / old
            if path.exists():
                import shutil
                shutil.rmtree(path)
        runner = sandbox_runner(tmp_path, end.timestamp())
        runner.training_chunk = chunk
        runner.train(start=START.timestamp(), end=end.timestamp())
        saved[chunk] = _trained_files(tmp_path)
    meta = json.loads(saved[1]["meta.json"])
    assert len(meta["entities"]) == 13 and meta["detector_entities"]["mvad"] == ["agent-12", "agent-11"]
    assert {"seasonal.json", "profile.json", "vocabulary.json", "mvad.pt"} <= set(saved[1])
    for chunk in (4, 10_000):
        assert saved[chunk].keys() == saved[1].keys()
        for name in saved[1]:
            assert saved[chunk][name] == saved[1][name], (chunk, name)


def _aggregator(s, entities: int, days: int) -> FeatureAggregator:
    """An aggregator filled the way the indexer source fills it (put), `entities` agents."""
    agg = FeatureAggregator(s, START.timestamp(), START.timestamp() + days * DAY)
    rng = np.random.default_rng(7)
    hours = np.arange(agg.n_buckets)
    daily = 1.0 + 0.7 * np.sin(2 * np.pi * (hours % 24 - 9) / 24)
    for e in range(entities):
        counts = rng.poisson(daily * rng.uniform(0.2, 6.0))
        for b in np.flatnonzero(counts):
            agg.put(f"agent-{e:04d}", int(b), [float(counts[b]), float(counts[b] // 4)], int(counts[b]))
    return agg


def _seasonal_scenario():
    return parse_scenario({"name": "fleet", "description": "fleet", "bucket_minutes": 60,
                           "entity": {"field": "agent.name"},
                           "features": [{"name": "events", "aggregation": "count"},
                                        {"name": "errors", "aggregation": "count",
                                         "filter": {"rule.level": {"min": 7}}}],
                           "detectors": ["seasonal"]}, "fleet.yaml")


def test_a_model_trained_from_frames_built_in_chunks_equals_one_trained_on_every_frame_at_once():
    s = _seasonal_scenario()
    agg = _aggregator(s, 40, 9)
    every = agg.frames()                       # the frames of every entity, held at once
    at_once = ModelBundle.train(s, every, trained_from=agg.start, trained_to=agg.end, now=agg.end)
    chosen = agg.compact()
    chunked = ModelBundle.train(s, agg.series(chosen, chunk=3), trained_from=agg.start, trained_to=agg.end,
                                now=agg.end)
    del chunked.meta["fit"], at_once.meta["fit"]     # wall times
    assert chunked.meta == at_once.meta
    assert json.dumps(chunked.profile.to_json()) == json.dumps(at_once.profile.to_json())
    assert (json.dumps(chunked.detectors["seasonal"].profile_.to_json())
            == json.dumps(at_once.detectors["seasonal"].profile_.to_json()))


def _training_peak(s, agg, chosen, chunk: int) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        ModelBundle.train(s, agg.series(chosen, chunk=chunk), trained_from=agg.start, trained_to=agg.end,
                          now=agg.end)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_frames_built_at_once_are_bounded_by_the_chunk_not_by_the_entities(monkeypatch):
    s = _seasonal_scenario()
    agg = _aggregator(s, 1200, 14)
    chosen = agg.compact()
    built: list[int] = []
    series = agg.series(chosen, chunk=50)
    build = series._build
    monkeypatch.setattr(series, "_build", lambda entities: built.append(len(entities)) or build(entities))
    ModelBundle.train(s, series, trained_from=agg.start, trained_to=agg.end, now=agg.end)
    assert built and max(built) <= 50
    # Every frame at once (one chunk of all 1,200) against 50 at a time: the frames of
    # 1,200 entities x 336 hours are most of the first peak and a 24th of them the second.
    whole = _training_peak(s, agg, chosen, len(chosen))
    streamed = _training_peak(s, agg, chosen, 50)
    assert streamed * 3 < whole, (streamed, whole)


def test_compacting_the_cells_keeps_every_frame_and_the_rare_vocabulary():
    s = parse_scenario({"name": "users", "description": "users", "bucket_minutes": 60,
                        "entity": {"field": "agent.name"},
                        "features": [{"name": "events", "aggregation": "count"},
                                     {"name": "new_users", "aggregation": "rare", "field": "data.dstuser"}],
                        "detectors": ["seasonal"]}, "users.yaml")
    rng = np.random.default_rng(3)
    alerts = [(START.timestamp() + float(rng.uniform(0, 3 * DAY)),
               {"agent": {"name": f"a{int(rng.integers(6))}"}, "data": {"dstuser": f"u{int(rng.integers(9))}"}})
              for _ in range(800)]
    plain = FeatureAggregator(s, START.timestamp(), START.timestamp() + 3 * DAY)
    packed = FeatureAggregator(s, START.timestamp(), START.timestamp() + 3 * DAY)
    for ts, alert in alerts:
        plain.add(ts, alert)
        packed.add(ts, alert)
    expected = plain.frames()
    last_seen = plain.last_seen()
    chosen = packed.compact()
    assert chosen == list(expected)
    assert packed.last_seen() == last_seen
    got = dict(packed.series(chosen).items())
    for entity in expected:
        pd.testing.assert_frame_equal(got[entity], expected[entity])
    assert packed.vocabulary_after() == plain.vocabulary_after()
    cut = START.timestamp() + DAY
    later = packed.series(chosen, start=cut)
    for entity in chosen:
        whole = expected[entity]
        pd.testing.assert_frame_equal(later[entity], whole[whole.index >= pd.Timestamp(cut, unit="s", tz="UTC")])


def test_chunks_of_a_plain_dict_keep_its_order():
    frames = {f"e{i}": pd.DataFrame({"x": [float(i)]}) for i in range(7)}
    parts = list(in_chunks(frames, 3))
    assert [list(p) for p in parts] == [["e0", "e1", "e2"], ["e3", "e4", "e5"], ["e6"]]


scores = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=64),
                            st.integers(0, 4).map(float)), min_size=1, max_size=300)


@settings(max_examples=300, deadline=None)
@given(scores, st.integers(1, 5))
def test_a_tally_of_scores_gives_numpys_quantiles_and_median_and_the_same_calibration(values, parts):
    x = np.asarray(values, dtype=float)
    finite = x[np.isfinite(x)] + 0.0
    tally = ScoreTally()
    for part in np.array_split(x, parts):
        tally.add(part)
    assert tally.n == finite.size
    if not finite.size:
        with pytest.raises(ValueError):
            Calibration.from_scores(tally)
        return
    q = np.linspace(0.0, 1.0, 101)
    assert np.quantile(finite, q).tobytes() == np.asarray(tally.quantile(q)).tobytes()
    for level in (0.25, 0.5, 0.75, 0.98, 0.999):
        assert np.float64(np.quantile(finite, level)).tobytes() == np.float64(tally.quantile(level)).tobytes()
    assert np.float64(np.median(finite)).tobytes() == np.float64(tally.median()).tobytes()
    sorted_ = np.sort(finite)
    u = float(np.quantile(sorted_, 0.9))
    assert tally.above(u).tobytes() == sorted_[sorted_ > u].tobytes()


def test_training_shows_its_progress_on_a_terminal_one_chunk_of_entities_at_a_time(monkeypatch):
    import io

    from wazuh_anomaly.core import progress

    s = _seasonal_scenario()
    agg = _aggregator(s, 120, 8)
    chosen = agg.compact()
    screen = io.StringIO()
    monkeypatch.setattr(progress, "REDRAW_SECONDS", 0.0)
    progress.show_on(screen)
    try:
        ModelBundle.train(s, agg.series(chosen, chunk=50), trained_from=agg.start, trained_to=agg.end, now=agg.end)
    finally:
        progress.show_on(None)
    shown = screen.getvalue()
    for done in ("50/120", "100/120", "120/120"):
        assert f"scoring entities {done}" in shown, shown[-500:]
