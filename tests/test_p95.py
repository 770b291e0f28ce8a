"""The p95 aggregation (features/percentile.py), added through the "Add an aggregation"
recipe of docs/architecture.md: alerts in, each bucket's 95th percentile out, per entity,
with a bounded memory per bucket and unusable values counted like the other aggregations."""
from __future__ import annotations

import random

import numpy as np
import pytest

from test_features import alert, at, frame, scenario
from wazuh_anomaly.core.registry import AGGREGATIONS
from wazuh_anomaly.features.aggregate import aggregate
from wazuh_anomaly.core.indexer import pushdown_reason

P95 = {"name": "bytes_p95", "aggregation": "p95", "field": "data.bytes"}


def test_p95_is_the_linear_95th_percentile_of_each_bucket():
    first = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]
    alerts = [(at("00:00", i), alert(data={"bytes": b})) for i, b in enumerate(first)]
    alerts += [(at("00:11"), alert(data={"bytes": "7"}))]        # text numbers are read as numbers
    got = frame(scenario(P95), alerts, at("00:00"), at("00:15"))["bytes_p95"].tolist()
    assert got == [pytest.approx(np.percentile(first, 95)), 0.0, 7.0]
    assert got[0] == pytest.approx(590.5)     # 90 + 0.55 * (1000 - 90): one outlier does not decide it


def test_p95_is_computed_per_entity():
    s = scenario(P95, entity={"field": "agent.name"})
    alerts = [(at("00:00", i), alert(agent="web01", data={"bytes": i})) for i in range(101)]
    alerts += [(at("00:01"), alert(agent="db01", data={"bytes": 5}))]
    agg = aggregate(s, alerts, at("00:00"), at("00:05"))
    assert agg.frame("web01")["bytes_p95"].tolist() == [pytest.approx(95.0)]
    assert agg.frame("db01")["bytes_p95"].tolist() == [5.0]


@pytest.mark.parametrize("value", ["n/a", "nan", "inf", True, {"v": 1}, [1, 2], float("nan"), float("-inf")])
def test_values_that_are_not_finite_numbers_are_counted_as_unusable_and_left_out(value):
    alerts = [(at("00:00"), alert(data={"bytes": value})), (at("00:01"), alert(data={"bytes": 8}))]
    agg = aggregate(scenario(P95), alerts, at("00:00"), at("00:05"))
    assert agg.frame()["bytes_p95"].tolist() == [8.0]
    assert agg.unusable == {"data.bytes": 1}


def test_a_bucket_with_many_values_keeps_at_most_1000_of_them_and_stays_close_and_deterministic():
    rng = random.Random(7)
    values = [rng.lognormvariate(8, 1.5) for _ in range(40_000)]
    p95 = AGGREGATIONS.get("p95")()

    def run():
        acc = p95.new()
        for v in values:
            acc = p95.add(acc, v)
        return acc

    acc = run()
    assert len(acc[2]) == p95.keep == 1000 and acc[0] == len(values)
    exact = float(np.percentile(values, 95))
    assert p95.final(acc) == pytest.approx(exact, rel=0.15)
    assert p95.final(run()) == p95.final(acc)       # same values, same order: the same number


def test_a_scenario_with_p95_is_read_document_by_document_from_the_indexer():
    reason = pushdown_reason(scenario({"name": "flows", "aggregation": "count"}, P95))
    assert reason is not None and "p95" in reason and "raw documents" in reason
    assert pushdown_reason(scenario({"name": "flows", "aggregation": "count"})) is None


def test_the_report_labels_p95_by_its_field():
    assert AGGREGATIONS.get("p95")().describe("network.bytes", 5) == "95th percentile of network.bytes"
