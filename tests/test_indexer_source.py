"""The indexer as a source: the same feature frames as the alerts file, computed by the
server (pushdown) or from raw documents (PIT + search_after), on a real OpenSearch."""
from __future__ import annotations

import weakref
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from indexer_fixtures import ait_indexed, opensearch  # noqa: F401 (fixtures)
from wazuh_anomaly.core.config import load_scenarios, parse_scenario
from wazuh_anomaly.features.aggregate import FeatureAggregator, aggregate
from wazuh_anomaly.sources.indexer import IndexerSource

REPO = Path(__file__).resolve().parents[1]
START = pd.Timestamp("2022-01-21", tz="UTC").timestamp()
END = pd.Timestamp("2022-01-25", tz="UTC").timestamp()


def shipped_scenarios():
    scenarios, errors = load_scenarios(REPO / "wazuh" / "etc" / "anomaly" / "scenarios")
    assert not errors
    return scenarios


def file_frames(scenario, alerts):
    return aggregate(scenario, alerts, START, END).frames()


def indexer_frames(source, scenario):
    agg = FeatureAggregator(scenario, START, END)
    rest, span = source.push_down([agg], START, END)
    for a in rest:
        for ts, alert in source.read(START, END):
            a.add(ts, alert)
    return agg.frames(), rest, span


def assert_same_frames(expected, got):
    assert list(got) == list(expected)          # same entities, busiest first
    for entity, frame in expected.items():
        pd.testing.assert_frame_equal(got[entity], frame, check_exact=False, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", ["alert_volume", "authentication_failures", "file_integrity",
                                  "privilege_use", "web_attacks", "rule_diversity"])
def test_indexer_gives_the_same_feature_frame_as_the_alerts_file(opensearch, ait_indexed, name):
    scenario = next(s for s in shipped_scenarios() if s.name == name)
    source = IndexerSource(opensearch.spec(), Path("/nonexistent"))
    got, rest, span = indexer_frames(source, scenario)
    expected = file_frames(scenario, ait_indexed)
    assert_same_frames(expected, got)
    # rare values need the documents in time order: only rule_diversity is read raw
    assert (rest != []) == scenario.has_rare_features
    assert span[2] == len(ait_indexed)


def test_every_aggregation_and_condition_kind_matches_without_an_entity(opensearch, ait_indexed):
    scenario = parse_scenario({
        "name": "kinds", "description": "every aggregation and condition kind", "bucket_minutes": 10,
        "features": [
            {"name": "n", "aggregation": "count"},
            {"name": "high", "aggregation": "count", "filter": {"rule.level": {"min": 7}}},
            {"name": "not_aminer", "aggregation": "count", "filter": {"rule.groups": {"not": ["aminer"]}}},
            {"name": "prefixed", "aggregation": "count", "filter": {"rule.id": {"prefix": "51"}}},
            {"name": "not_prefixed", "aggregation": "count", "filter": {"rule.id": {"not_prefix": ["51", "57"]}}},
            {"name": "no_srcip", "aggregation": "count", "filter": {"data.srcip": {"exists": False}}},
            {"name": "agents", "aggregation": "distinct", "field": "agent.name"},
            {"name": "rules", "aggregation": "distinct", "field": "rule.id", "filter": {"level": {"max": 5}}},
            {"name": "top_level", "aggregation": "max", "field": "rule.level"},
            {"name": "level_sum", "aggregation": "sum", "field": "rule.level"},
            {"name": "level_mean", "aggregation": "mean", "field": "rule.level"},
            {"name": "fired", "aggregation": "max", "field": "rule.firedtimes", "filter": {"agent": "cloud_share"}},
        ]}, "kinds.yaml")
    source = IndexerSource(opensearch.spec(buckets_per_request=100), Path("/nonexistent"))
    got, rest, _ = indexer_frames(source, scenario)
    assert rest == []
    expected = file_frames(scenario, ait_indexed)
    assert_same_frames(expected, got)
    frame = got[None]
    assert len(frame) == 4 * 144                # every 10-minute bucket of 4 days, empty ones as zeros
    assert frame["n"].sum() == len(ait_indexed)


def test_raw_documents_are_all_read_past_ten_thousand_hits(opensearch, ait_indexed):
    source = IndexerSource(opensearch.spec(page_size=3000), Path("/nonexistent"))
    times = [ts for ts, _ in source.read(START, END, fields=["rule.id"])]
    assert len(times) == len(ait_indexed) > 10_000
    assert times == sorted(times)
    assert source.stats.alerts == len(ait_indexed)


def test_all_scenarios_pushed_down_together_match_the_alerts_file(opensearch, ait_indexed):
    # one push_down for every scenario: their requests share each round trip (_msearch),
    # and a composite that needs a second page (authentication_failures) gets it later
    scenarios = [s for s in shipped_scenarios() if not s.has_rare_features]
    source = IndexerSource(opensearch.spec(buckets_per_request=300), Path("/nonexistent"))
    aggregators = [FeatureAggregator(s, START, END) for s in scenarios]
    rest, span = source.push_down(aggregators, START, END)
    assert rest == []
    assert span[2] == len(ait_indexed)
    for scenario, agg in zip(scenarios, aggregators):
        assert_same_frames(file_frames(scenario, ait_indexed), agg.frames())
        assert source.last_paths[scenario.name] == "pushdown"


def test_a_search_the_indexer_refuses_among_several_is_one_clear_error(opensearch, ait_indexed):
    from wazuh_anomaly.sources.alerts_file import SourceUnreadable
    source = IndexerSource(opensearch.spec(), Path("/nonexistent"))
    fine = {"size": 0, "query": {"match_all": {}}}
    # terms on a text field: the indexer refuses this one search of the round trip
    refused = {"size": 0, "aggs": {"t": {"terms": {"field": "full_log"}}}}
    with pytest.raises(SourceUnreadable) as caught:
        source._msearch([(fine, "counting"), (refused, "computing the features of scenario x")])
    message = str(caught.value)
    assert "refused the request (computing the features of scenario x)" in message
    assert "full_log" in message                # the indexer's reason
    assert "\n" not in message


def test_more_entities_than_the_top_keeps_only_the_busiest_like_the_alerts_file(opensearch, ait_indexed):
    # 11 agents, top 3: the first round's cells of every entity are dropped and the top
    # three's are asked for (the shipped scenarios have fewer entities than their top)
    from dataclasses import replace
    shipped = next(s for s in shipped_scenarios() if s.name == "alert_volume")
    scenario = replace(shipped, entity=replace(shipped.entity, top=3))
    source = IndexerSource(opensearch.spec(), Path("/nonexistent"))
    got, rest, _ = indexer_frames(source, scenario)
    assert rest == []
    expected = file_frames(scenario, ait_indexed)
    assert len(expected) == 3
    assert_same_frames(expected, got)


class _TrackedBucket(dict):
    """A composite (entity, time) bucket as the client received it, counted while alive."""


class _CountingClient:
    """The real client; each (entity, time) bucket of an answer becomes a _TrackedBucket,
    so the test can count how many of them the source still holds."""

    def __init__(self, client):
        self._client = client
        self.live = 0                            # tracked buckets not yet freed
        self.cell_pages = 0
        self.rankings = 0                        # requests that rank the entities (a composite over the entity alone)
        self.live_at_request: list[int] = []

    def __getattr__(self, name):
        return getattr(self._client, name)

    def _track(self, answer: dict) -> None:
        for agg in (answer.get("aggregations") or {}).values():
            buckets = agg.get("buckets") if isinstance(agg, dict) else None
            if isinstance(buckets, list) and buckets and "t" in buckets[0].get("key", {}):
                agg["buckets"] = [_TrackedBucket(b) for b in buckets]
                for bucket in agg["buckets"]:
                    weakref.finalize(bucket, self._freed)
                self.live += len(buckets)
                self.cell_pages += 1

    def _freed(self) -> None:
        self.live -= 1

    def _asked(self, body: dict) -> None:
        self.live_at_request.append(self.live)
        self.rankings += any(len(agg.get("composite", {}).get("sources", ())) == 1
                             for agg in body.get("aggs", {}).values())

    def search(self, **kwargs):
        self._asked(kwargs["body"])
        answer = self._client.search(**kwargs)
        self._track(answer)
        return answer

    def msearch(self, **kwargs):
        for body in kwargs["body"][1::2]:        # header and body lines alternate
            self._asked(body)
        answer = self._client.msearch(**kwargs)
        for response in answer["responses"]:
            self._track(response)
        return answer


@pytest.mark.parametrize("top, page", [(None, 40), (5, 40), (100, 40), (100, 100)])
def test_entity_cells_stream_one_composite_page_at_a_time(opensearch, ait_indexed, monkeypatch, top, page):
    # 60 rule ids x 5-minute buckets over 4 days: 2,209 cells in pages of 40 or 100; the
    # ranking of a finite top takes two pages of 40 (its first page's cells are dropped) or
    # one of 100 (60 entities, fewer than the top: its first page's cells are used)
    import wazuh_anomaly.sources.indexer as indexer_source
    monkeypatch.setattr(indexer_source, "COMPOSITE_PAGE", page)
    shipped = next(s for s in shipped_scenarios() if s.name == "alert_volume")
    scenario = replace(shipped, entity=replace(shipped.entity, field="rule.id", top=top))
    client = _CountingClient(opensearch.client())
    held: list[int] = []

    class Recording(FeatureAggregator):
        def put(self, entity, bucket, values, volume):
            held.append(client.live)        # buckets received and still alive, this one included
            super().put(entity, bucket, values, volume)

    source = IndexerSource(opensearch.spec(), Path("/nonexistent"), client=client)
    agg = Recording(scenario, START, END)
    rest, _ = source.push_down([agg], START, END)
    assert rest == []
    expected = file_frames(scenario, ait_indexed)
    assert len(expected) == min(top or 60, 60)
    assert_same_frames(expected, agg.frames())
    assert client.cell_pages > 20 and len(held) > 20 * page
    assert max(held) <= page, f"the client held {max(held)} cells at once, more than a page of {page}"
    assert max(client.live_at_request) <= page
    # every entity wanted: the volumes come with the cells, no ranking is asked for
    assert (client.rankings == 0) == (top is None)
