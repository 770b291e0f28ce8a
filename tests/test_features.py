"""Features: alerts streamed into bucket x feature frames, as a specification.

Generated alerts give exact expected values; the real AIT-ADS alert stream (bundled with
the package; see ../shared/data/README.md) checks the one-pass == split-runs property for every shipped
scenario and concrete numbers computed independently with pandas.
"""
from __future__ import annotations

import gzip
import json
import os
import random
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from conftest import AIT_ALERTS
from wazuh_anomaly.core.config import Scenario, load_scenario, parse_scenario
from wazuh_anomaly.features.aggregate import FeatureAggregator, aggregate, align_down, align_up
from wazuh_anomaly.sources import AlertsFileSource, parse_wazuh_timestamp

REPO = Path(__file__).resolve().parents[1]
SHIPPED_SCENARIOS = sorted((REPO / "wazuh" / "etc" / "anomaly" / "scenarios").glob("*.yaml"))

MIN = 60
T0 = datetime(2022, 1, 24, tzinfo=timezone.utc).timestamp()   # midnight UTC


def at(hhmm: str, seconds: float = 0.0) -> float:
    """Epoch seconds of a UTC time of day on 2022-01-24."""
    h, m = map(int, hhmm.split(":"))
    return T0 + h * 3600 + m * MIN + seconds


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def scenario(*features: dict, bucket_minutes: int = 5, entity: dict | None = None) -> Scenario:
    """A scenario as a user would declare it (parsed, so the YAML shape is what is tested)."""
    data = {"name": "test", "description": "test", "bucket_minutes": bucket_minutes, "features": list(features)}
    if entity is not None:
        data["entity"] = entity
    return parse_scenario(data, "test.yaml")


def alert(*, level=3, groups=("syslog",), rule_id="1002", agent="web01", decoder="sshd", data=None, **top) -> dict:
    """A Wazuh 4.x alert; agent=None leaves agent.name out."""
    a = {"rule": {"level": level, "id": rule_id, "groups": list(groups)},
         "agent": {"id": "001"} if agent is None else {"id": "001", "name": agent},
         "decoder": {"name": decoder}, **top}
    if data is not None:
        a["data"] = data
    return a


def frame(s: Scenario, alerts, start: float, end: float, entity=None) -> pd.DataFrame:
    return aggregate(s, alerts, start, end).frame(entity)


def expected(start: str, rows: list[list[float]], columns: list[str], minutes: int = 5) -> pd.DataFrame:
    index = pd.DatetimeIndex([utc(start) + pd.Timedelta(minutes=minutes * i) for i in range(len(rows))], name="bucket")
    return pd.DataFrame(np.array(rows, dtype=float).reshape(len(rows), len(columns)), index=index, columns=columns)


# --- buckets ----------------------------------------------------------------------------


def test_buckets_are_utc_multiples_of_the_bucket_size():
    agg = FeatureAggregator(scenario({"name": "n"}, bucket_minutes=60), T0, T0 + 86400)
    index = agg.index()
    assert str(index.tz) == "UTC" and index.name == "bucket" and len(index) == 24
    assert index[0] == utc("2022-01-24 00:00") and index[-1] == utc("2022-01-24 23:00")
    assert (np.diff(index.asi8) == 3600 * 10**9).all()


@pytest.mark.parametrize("minutes, down, up", [(5, "03:55", "04:00"), (15, "03:45", "04:00"), (60, "03:00", "04:00"),
                                               (1440, "00:00", "24:00")])
def test_align_down_and_up_snap_to_bucket_boundaries(minutes, down, up):
    ts = at("03:57", 12.345)
    assert (align_down(ts, minutes * MIN), align_up(ts, minutes * MIN)) == (at(down), at(up))
    assert align_down(at(down), minutes * MIN) == align_up(at(down), minutes * MIN) == at(down)


def test_an_alert_on_a_boundary_belongs_to_the_bucket_it_starts():
    s = scenario({"name": "n"})
    got = frame(s, [(at("00:04", 59.999), alert()), (at("00:05"), alert()), (at("00:05", 0.001), alert())],
                at("00:00"), at("00:10"))
    assert got["n"].tolist() == [1.0, 2.0]


def test_empty_buckets_are_zero_rows_not_gaps():
    s = scenario({"name": "n"}, {"name": "top", "aggregation": "max", "field": "rule.level"})
    got = frame(s, [(at("00:10", 30), alert(level=4)), (at("00:45", 1), alert(level=9))], at("00:00"), at("01:00"))
    assert len(got) == 12 and not got.isna().any().any() and (got.dtypes == float).all()
    assert got["n"].tolist() == [0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert got["top"].tolist() == [0, 0, 4, 0, 0, 0, 0, 0, 0, 9, 0, 0]


def test_a_range_with_no_alert_at_all_is_all_zeros():
    got = frame(scenario({"name": "n"}), [], at("00:00"), at("00:30"))
    assert got.shape == (6, 1) and (got["n"] == 0).all()


@pytest.mark.parametrize("start, end", [(at("00:00", 1), at("01:00")), (at("00:00"), at("00:59")),
                                        (at("00:00", 0.5), at("01:00"))])
def test_a_range_not_on_bucket_boundaries_is_refused(start, end):
    with pytest.raises(ValueError, match="not aligned"):
        FeatureAggregator(scenario({"name": "n"}), start, end)


def test_a_15_minute_scenario_refuses_a_range_aligned_to_5_minutes_only():
    with pytest.raises(ValueError, match="not aligned to 900-second buckets"):
        FeatureAggregator(scenario({"name": "n"}, bucket_minutes=15), at("00:05"), at("01:00"))


def test_alerts_outside_the_range_are_ignored():
    s = scenario({"name": "n"})
    alerts = [(at("00:00", -0.001), alert()), (at("00:00"), alert()), (at("00:09", 59.9), alert()),
              (at("00:10"), alert()), (at("05:00"), alert()), (0.0, alert())]
    agg = aggregate(s, alerts, at("00:00"), at("00:10"))
    assert agg.frame()["n"].tolist() == [1, 1]
    assert (agg.alerts_seen, agg.alerts_matched) == (2, 2)


# --- aggregations -----------------------------------------------------------------------

ALL_KINDS = [
    {"name": "alerts"},
    {"name": "sources", "aggregation": "distinct", "field": "data.srcip"},
    {"name": "top_level", "aggregation": "max", "field": "rule.level"},
    {"name": "mean_bytes", "aggregation": "mean", "field": "data.bytes"},
    {"name": "sum_bytes", "aggregation": "sum", "field": "data.bytes"},
]


def test_count_distinct_max_mean_and_sum_have_exact_values_per_bucket():
    alerts = [
        (at("00:00", 1), alert(level=3, data={"srcip": "10.0.0.1", "bytes": 100})),
        (at("00:01", 2), alert(level=7, data={"srcip": "10.0.0.1", "bytes": "250.5"})),
        (at("00:04", 59), alert(level="10", data={"srcip": "10.0.0.2", "bytes": "n/a"})),
        (at("00:12"), alert(level=12, data={"srcip": "10.0.0.3", "bytes": 0})),
        (at("00:13"), alert(level=2)),
    ]
    got = frame(scenario(*ALL_KINDS), alerts, at("00:00"), at("00:15"))
    pd.testing.assert_frame_equal(got, expected("2022-01-24 00:00", [
        [3, 2, 10, 175.25, 350.5],
        [0, 0, 0, 0, 0],
        [2, 1, 12, 0, 0],
    ], [f["name"] for f in ALL_KINDS]), check_freq=False)


def test_max_of_negative_values_is_negative_and_max_without_values_is_zero():
    s = scenario({"name": "lowest", "aggregation": "max", "field": "data.delta"})
    alerts = [(at("00:00"), alert(data={"delta": -5})), (at("00:01"), alert(data={"delta": "-3"})),
              (at("00:06"), alert(data={"delta": "none"}))]
    assert frame(s, alerts, at("00:00"), at("00:10"))["lowest"].tolist() == [-3.0, 0.0]


def test_distinct_over_a_list_field_counts_each_element_once():
    s = scenario({"name": "groups", "aggregation": "distinct", "field": "rule.groups"})
    alerts = [(at("00:00"), alert(groups=["sshd", "authentication_failed"])),
              (at("00:01"), alert(groups=["sshd", "invalid_login"])),
              (at("00:02"), alert(groups=[]))]
    assert frame(s, alerts, at("00:00"), at("00:05"))["groups"].tolist() == [3.0]


def test_distinct_compares_values_as_text():
    s = scenario({"name": "rules", "aggregation": "distinct", "field": "rule.id"})
    alerts = [(at("00:00"), alert(rule_id="5710")), (at("00:01"), alert(rule_id=5710)), (at("00:02"), alert(rule_id="5711"))]
    assert frame(s, alerts, at("00:00"), at("00:05"))["rules"].tolist() == [2.0]


@pytest.mark.parametrize("value", ["n/a", "", "nan", "inf", "-Infinity", True, False, None, {"v": 1}, [1, 2],
                                   float("nan"), float("inf")])
def test_values_that_are_not_finite_numbers_are_skipped(value):
    s = scenario(*ALL_KINDS[2:])
    alerts = [(at("00:00"), alert(level=value, data={"bytes": value})),
              (at("00:01"), alert(level=4, data={"bytes": "8"}))]
    assert frame(s, alerts, at("00:00"), at("00:05")).iloc[0].tolist() == [4.0, 8.0, 8.0]


@pytest.mark.parametrize("text, number", [("7", 7.0), (" 7 ", 7.0), ("7.25", 7.25), ("-2", -2.0), ("1e3", 1000.0)])
def test_numbers_written_as_text_are_coerced(text, number):
    s = scenario({"name": "total", "aggregation": "sum", "field": "data.n"})
    assert frame(s, [(at("00:00"), alert(data={"n": text}))], at("00:00"), at("00:05"))["total"].tolist() == [number]


def test_a_missing_field_counts_for_count_but_adds_nothing_to_the_others():
    s = scenario(*ALL_KINDS)
    got = frame(s, [(at("00:00"), {"rule": {"id": "1"}})], at("00:00"), at("00:05"))
    assert got.iloc[0].tolist() == [1.0, 0.0, 0.0, 0.0, 0.0]


def test_a_field_nested_three_levels_deep_is_read():
    s = scenario({"name": "euid", "aggregation": "distinct", "field": "data.audit.euid"})
    alerts = [(at("00:00"), alert(data={"audit": {"euid": "0"}})), (at("00:01"), alert(data={"audit": {"euid": "1000"}})),
              (at("00:02"), alert(data={"audit": "flat"})), (at("00:03"), alert(data={"audit": {}}))]
    assert frame(s, alerts, at("00:00"), at("00:05"))["euid"].tolist() == [2.0]


# --- filters ----------------------------------------------------------------------------


def matches(flt: dict, a: dict) -> bool:
    """Whether a feature with this filter counts this alert."""
    got = frame(scenario({"name": "n", "filter": flt}), [(at("00:00"), a)], at("00:00"), at("00:05"))
    return bool(got["n"].iloc[0])


FILTERS = [
    # list fields: any of the values in any element
    ("any-of hits one element", {"rule.groups": ["ids", "suricata"]}, alert(groups=["attack", "suricata"]), True),
    ("any-of misses every element", {"rule.groups": ["ids", "suricata"]}, alert(groups=["web", "accesslog"]), False),
    ("single value on a list field", {"rule.groups": "web"}, alert(groups=["web", "accesslog"]), True),
    ("any-of on an empty list", {"rule.groups": ["web"]}, alert(groups=[]), False),
    # scalars: equality as text, whatever the YAML or JSON type
    ("text equals text", {"rule.id": "5710"}, alert(rule_id="5710"), True),
    ("YAML number equals JSON text", {"rule.id": 5710}, alert(rule_id="5710"), True),
    ("YAML number equals JSON number", {"rule.level": 7}, alert(level=7), True),
    ("one of several scalars", {"rule.id": ["5710", "5712"]}, alert(rule_id="5712"), True),
    ("equality is exact", {"rule.id": "571"}, alert(rule_id="5710"), False),
    ("equality is case sensitive", {"agent.name": "Web01"}, alert(agent="web01"), False),
    ("equality on a missing field", {"data.srcip": "10.0.0.1"}, alert(), False),
    # numeric ranges, inclusive, on numbers and numbers in text
    ("min inclusive", {"rule.level": {"min": 7}}, alert(level=7), True),
    ("below min", {"rule.level": {"min": 7}}, alert(level=6), False),
    ("max inclusive", {"rule.level": {"max": 4}}, alert(level=4), True),
    ("above max", {"rule.level": {"max": 4}}, alert(level=5), False),
    ("inside min and max, as text", {"rule.level": {"min": 5, "max": 7}}, alert(level="7"), True),
    ("outside min and max, as text", {"rule.level": {"min": 5, "max": 7}}, alert(level="8"), False),
    ("fractions", {"data.score": {"min": 0.5}}, alert(data={"score": "0.75"}), True),
    ("range on text that is no number", {"rule.level": {"min": 0}}, alert(level="high"), False),
    ("range on a missing field", {"data.bytes": {"min": 0}}, alert(), False),
    ("range on a list", {"rule.groups": {"min": 0}}, alert(groups=["1"]), False),
    # prefix and regex: on the text, any element of a list
    ("prefix", {"data.url": {"prefix": "/wp-"}}, alert(data={"url": "/wp-login.php"}), True),
    ("prefix is not contains", {"data.url": {"prefix": "/wp-"}}, alert(data={"url": "/blog/wp-login.php"}), False),
    ("prefix on a list", {"rule.groups": {"prefix": "authentication_"}}, alert(groups=["pam", "authentication_failed"]), True),
    ("prefix on a number", {"rule.id": {"prefix": "57"}}, alert(rule_id=5710), True),
    ("regex searches anywhere", {"data.url": {"regex": r"union\s+select"}}, alert(data={"url": "/?q=1 union  select"}), True),
    ("regex anchored", {"data.url": {"regex": r"^/admin"}}, alert(data={"url": "/x/admin"}), False),
    ("regex on a list", {"rule.groups": {"regex": "^win_"}}, alert(groups=["windows", "win_authentication_failed"]), True),
    ("regex on a missing field", {"data.url": {"regex": "."}}, alert(), False),
    # exists
    ("exists true, present", {"data.srcip": {"exists": True}}, alert(data={"srcip": "10.0.0.1"}), True),
    ("exists true, absent", {"data.srcip": {"exists": True}}, alert(data={}), False),
    ("exists true, no data at all", {"data.srcip": {"exists": True}}, alert(), False),
    ("exists true, empty text counts as present", {"data.srcip": {"exists": True}}, alert(data={"srcip": ""}), True),
    ("exists true, JSON null is absent", {"data.srcip": {"exists": True}}, alert(data={"srcip": None}), False),
    ("exists false, absent", {"data.srcip": {"exists": False}}, alert(), True),
    ("exists false, present", {"data.srcip": {"exists": False}}, alert(data={"srcip": "10.0.0.1"}), False),
    ("exists true and not", {"data.srcip": {"exists": True, "not": "127.0.0.1"}}, alert(), False),
    # not
    ("not, other value", {"data.dstuser": {"not": "root"}}, alert(data={"dstuser": "alice"}), True),
    ("not, that value", {"data.dstuser": {"not": "root"}}, alert(data={"dstuser": "root"}), False),
    ("not, one of a list", {"rule.id": {"not": ["5501", "5502"]}}, alert(rule_id="5502"), False),
    ("not on a list field excludes any element", {"rule.groups": {"not": "noise"}}, alert(groups=["sshd", "noise"]), False),
    ("not on a missing field matches", {"data.dstuser": {"not": "root"}}, alert(), True),
    ("not with a YAML number", {"rule.id": {"not": 5501}}, alert(rule_id="5501"), False),
    ("not and prefix together", {"data.url": {"prefix": "/", "not": "/"}}, alert(data={"url": "/"}), False),
    # shorthand keys read the same fields as their long form
    ("groups", {"groups": ["sshd"]}, alert(groups=["syslog", "sshd"]), True),
    ("groups misses", {"groups": ["sshd"]}, alert(groups=["syslog"]), False),
    ("rule_id", {"rule_id": "5710"}, alert(rule_id="5710"), True),
    ("rule_id misses", {"rule_id": "5710"}, alert(rule_id="5711"), False),
    ("level", {"level": {"min": 10}}, alert(level=12), True),
    ("level misses", {"level": {"min": 10}}, alert(level=9), False),
    ("decoder", {"decoder": "sshd"}, alert(decoder="sshd"), True),
    ("decoder misses", {"decoder": "sshd"}, alert(decoder="pam"), False),
    ("agent", {"agent": ["web01", "web02"]}, alert(agent="web02"), True),
    ("agent misses", {"agent": ["web01", "web02"]}, alert(agent="db01"), False),
    # several conditions: all must hold
    ("all conditions hold", {"groups": "sshd", "level": {"min": 5}}, alert(groups=["sshd"], level=5), True),
    ("one condition fails", {"groups": "sshd", "level": {"min": 5}}, alert(groups=["sshd"], level=4), False),
]


@pytest.mark.parametrize("flt, a, counted", [c[1:] for c in FILTERS], ids=[c[0] for c in FILTERS])
def test_filter(flt, a, counted):
    assert matches(flt, a) is counted


def test_each_feature_applies_its_own_filter_and_features_with_the_same_filter_agree():
    s = scenario({"name": "failed", "filter": {"groups": "authentication_failed"}},
                 {"name": "failed_users", "aggregation": "distinct", "field": "data.dstuser",
                  "filter": {"groups": "authentication_failed"}},
                 {"name": "ok", "filter": {"groups": "authentication_success"}},
                 {"name": "everything"})
    alerts = [(at("00:00"), alert(groups=["authentication_failed"], data={"dstuser": "root"})),
              (at("00:01"), alert(groups=["authentication_failed"], data={"dstuser": "admin"})),
              (at("00:02"), alert(groups=["authentication_failed"], data={"dstuser": "root"})),
              (at("00:03"), alert(groups=["authentication_success"], data={"dstuser": "alice"})),
              (at("00:04"), alert(groups=["syslog"]))]
    assert frame(s, alerts, at("00:00"), at("00:05")).iloc[0].tolist() == [3.0, 2.0, 1.0, 5.0]


# --- entity split -----------------------------------------------------------------------


def per_agent(top: int = 2) -> Scenario:
    return scenario({"name": "n", "filter": {"level": {"min": 3}}}, entity={"field": "agent.name", "top": top})


def test_each_entity_gets_its_own_frame_and_the_top_n_busiest_are_kept():
    alerts = [(at("00:00"), alert(agent="a"))] * 3 + [(at("00:06"), alert(agent="b"))] * 5 + \
             [(at("00:01"), alert(agent="c"))] + [(at("00:02"), alert(agent="a", level=1))] * 10  # filtered out
    agg = aggregate(per_agent(), alerts, at("00:00"), at("00:10"))
    assert agg.entities() == ["b", "a", "c"]
    frames = agg.frames()
    assert list(frames) == ["b", "a"]
    assert frames["b"]["n"].tolist() == [0, 5] and frames["a"]["n"].tolist() == [3, 0]
    assert agg.frame("c")["n"].tolist() == [1, 0]            # beyond the top, still computed on request
    assert agg.frame("nobody")["n"].tolist() == [0, 0]
    assert list(agg.frames(top=10)) == ["b", "a", "c"]


def test_entities_with_equal_volume_are_ranked_by_name():
    alerts = [(at("00:00"), alert(agent=name)) for name in ("zulu", "alpha", "mike")]
    assert aggregate(per_agent(top=2), alerts, at("00:00"), at("00:05")).entities() == ["alpha", "mike", "zulu"]


def test_volume_counts_only_alerts_that_some_feature_counted():
    alerts = [(at("00:00"), alert(agent="quiet", level=1))] * 50 + [(at("00:00"), alert(agent="busy"))]
    agg = aggregate(per_agent(top=1), alerts, at("00:00"), at("00:05"))
    assert agg.entities() == ["busy"] and agg.alerts_matched == 1 and agg.alerts_seen == 51


@pytest.mark.parametrize("agent_field", [None, "", {"name": "x"}, ["a", "b"]], ids=["absent", "empty", "mapping", "list"])
def test_alerts_without_the_entity_field_are_counted_apart_and_in_no_frame(agent_field):
    a = alert(agent="x")
    if agent_field is None:
        del a["agent"]["name"]
    else:
        a["agent"]["name"] = agent_field
    agg = aggregate(per_agent(), [(at("00:00"), a), (at("00:00"), alert(agent="web01"))], at("00:00"), at("00:05"))
    assert agg.alerts_without_entity == 1 and agg.alerts_seen == 2 and agg.alerts_matched == 1
    assert agg.entities() == ["web01"] and agg.frame(None)["n"].tolist() == [0]


def test_a_numeric_entity_value_is_named_by_its_text():
    s = scenario({"name": "n"}, entity={"field": "data.srcport"})
    agg = aggregate(s, [(at("00:00"), alert(data={"srcport": 22}))], at("00:00"), at("00:05"))
    assert agg.entities() == ["22"] and agg.frame("22")["n"].tolist() == [1]


def test_without_an_entity_split_there_is_one_frame_for_the_whole_stream():
    agg = aggregate(scenario({"name": "n"}), [(at("00:00"), alert(agent="a")), (at("00:00"), alert(agent=None))],
                    at("00:00"), at("00:05"))
    assert agg.entities() == [None] and list(agg.frames()) == [None]
    assert agg.frames()[None]["n"].tolist() == [2] and agg.alerts_without_entity == 0


# --- one pass == consecutive runs -------------------------------------------------------


def random_alerts(rng: random.Random, start: float, end: float, n: int) -> list[tuple[float, dict]]:
    out = []
    for _ in range(n):
        ts = rng.uniform(start, end)
        ts = rng.choice([ts, align_down(ts, 300)])    # many exactly on boundaries
        out.append((ts, alert(level=rng.choice([1, 3, 5, "7", 10, "x"]), agent=rng.choice(["a", "b", "c", None, ""]),
                              groups=rng.sample(["sshd", "web", "ids", "pam"], rng.randint(0, 2)),
                              data={"srcip": f"10.0.0.{rng.randint(1, 6)}", "bytes": rng.choice([1, "2.5", 40, "-"])})))
    rng.shuffle(out)                                  # files are only roughly time-ordered
    return out


def concatenated(agg_parts: list[FeatureAggregator], entity) -> pd.DataFrame:
    return pd.concat([p.frame(entity) for p in agg_parts])


def assert_split_equals_one_pass(s: Scenario, one: FeatureAggregator, parts: list[FeatureAggregator]) -> None:
    for entity in one.entities():
        pd.testing.assert_frame_equal(concatenated(parts, entity), one.frame(entity), check_freq=False)
    assert sum(p.alerts_seen for p in parts) == one.alerts_seen
    assert sum(p.alerts_matched for p in parts) == one.alerts_matched
    assert sum(p.alerts_without_entity for p in parts) == one.alerts_without_entity
    merged: dict = {}
    for p in parts:
        for e, v in p.entity_volume.items():
            merged[e] = merged.get(e, 0) + v
    assert merged == dict(one.entity_volume)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("minutes", [5, 15])
def test_one_pass_equals_consecutive_runs_split_at_bucket_boundaries(seed, minutes):
    rng = random.Random(seed)
    step = minutes * MIN
    s = scenario(*ALL_KINDS, {"name": "ids", "filter": {"groups": ["ids", "web"], "level": {"min": 3}}},
                 bucket_minutes=minutes, entity={"field": "agent.name"})
    start, end = at("00:00"), at("06:00")
    alerts = random_alerts(rng, start - 3600, end + 3600, 3000)
    cuts = sorted({start, end, *(align_down(rng.uniform(start, end), step) for _ in range(rng.randint(1, 6)))})
    parts = [aggregate(s, alerts, a, b) for a, b in zip(cuts, cuts[1:])]
    one = aggregate(s, alerts, start, end)
    assert one.alerts_matched > 1000
    assert_split_equals_one_pass(s, one, parts)


# --- real data: the AIT-ADS russellmitchell alert stream --------------------------------

DAYS = (datetime(2022, 1, 21, tzinfo=timezone.utc).timestamp(), datetime(2022, 1, 25, tzinfo=timezone.utc).timestamp())
# consecutive runs; 03:45-04:00 on the 24th holds the burst of the attack (10,894 alerts in 03:55 alone)
CUTS = [DAYS[0], DAYS[0] + 86400, at("13:30") - 86400, at("03:45"), at("04:00"), at("04:15"), DAYS[1]]


@pytest.fixture(scope="module")
def ait_raw() -> list[dict]:
    with gzip.open(AIT_ALERTS, "rb") as f:
        return [orjson.loads(line) for line in f]


@pytest.fixture(scope="module")
def alerts_dir(ait_raw, tmp_path_factory) -> Path:
    """logs/alerts as a manager writes it: one file per UTC day, the older ones compressed."""
    root = tmp_path_factory.mktemp("ossec") / "logs" / "alerts"
    jan = root / "2022" / "Jan"
    jan.mkdir(parents=True)
    days: dict[int, list[str]] = {}
    for a in ait_raw:
        days.setdefault(int(a["timestamp"][8:10]), []).append(json.dumps(a, separators=(",", ":")))
    for day, lines in days.items():
        text = ("\n".join(lines) + "\n").encode()
        if day < 24:
            with gzip.open(jan / f"ossec-alerts-{day:02d}.json.gz", "wb") as f:
                f.write(text)
        else:
            (jan / f"ossec-alerts-{day:02d}.json").write_bytes(text)
    os.link(jan / "ossec-alerts-24.json", root / "alerts.json")
    return root


SHIPPED = {p.stem: load_scenario(p) for p in SHIPPED_SCENARIOS if load_scenario(p).source == "alerts"}  # not flow_baseline


@pytest.fixture(scope="module")
def one_pass_and_runs(alerts_dir) -> tuple[dict, dict]:
    """Every shipped scenario aggregated over the four days in one read, and in one read per run."""
    source = AlertsFileSource(alerts_dir)
    one = {name: FeatureAggregator(s, *DAYS) for name, s in SHIPPED.items()}
    for ts, a in source.read(*DAYS):
        for agg in one.values():
            agg.add(ts, a)
    runs: dict[str, list[FeatureAggregator]] = {name: [] for name in SHIPPED}
    vocabulary: dict[str, dict] = {name: {} for name in SHIPPED}
    for start, end in zip(CUTS, CUTS[1:]):
        # Each run starts from the rare-value vocabulary the previous run left, as the runner does.
        parts = {name: FeatureAggregator(s, start, end, vocabulary=vocabulary[name]) for name, s in SHIPPED.items()}
        for ts, a in AlertsFileSource(alerts_dir).read(start, end):
            for agg in parts.values():
                agg.add(ts, a)
        for name, agg in parts.items():
            for entity in agg.entities():
                agg.frame(entity)
            vocabulary[name] = agg.vocabulary_after()
            runs[name].append(agg)
    return one, runs


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_real_alerts_one_pass_equals_consecutive_runs_for_every_shipped_scenario(name, one_pass_and_runs):
    one, runs = one_pass_and_runs
    assert one[name].alerts_seen == 45544 and one[name].alerts_without_entity == 0
    assert_split_equals_one_pass(SHIPPED[name], one[name], runs[name])
    if name != "file_integrity":   # the data set has no syscheck alert: all zeros there
        assert one[name].alerts_matched > 0


@pytest.fixture(scope="module")
def ait_frame(ait_raw) -> pd.DataFrame:
    """The raw alerts as pandas reads them, timestamps parsed by pandas, not by our parser (30 lack decoder.name)."""
    df = pd.DataFrame({
        "timestamp": [a["timestamp"] for a in ait_raw], "agent.name": [a["agent"]["name"] for a in ait_raw],
        "rule.id": [a["rule"]["id"] for a in ait_raw], "rule.level": [a["rule"]["level"] for a in ait_raw],
        "rule.groups": [a["rule"]["groups"] for a in ait_raw], "decoder.name": [a.get("decoder", {}).get("name") for a in ait_raw]})
    df["bucket"] = pd.to_datetime(df["timestamp"], format="%Y-%m-%dT%H:%M:%S.%f%z", utc=True).dt.floor("5min")
    return df


def independent_alert_volume(df: pd.DataFrame) -> pd.DataFrame:
    level = df["rule.level"].astype(float)
    columns = pd.DataFrame({
        "agent": df["agent.name"], "bucket": df["bucket"],
        "alerts_low": level <= 4, "alerts_medium": level.between(5, 7), "alerts_high": level.between(8, 11),
        "alerts_critical": level >= 12,
        "ids_alerts": df["rule.groups"].map(lambda g: bool({"ids", "suricata"} & set(g))),
    })
    return columns.groupby(["agent", "bucket"]).sum().astype(float)


def independent_rule_diversity(df: pd.DataFrame) -> pd.DataFrame:
    by = df.groupby(["agent.name", "bucket"])
    groups = df[["agent.name", "bucket", "rule.groups"]].explode("rule.groups").groupby(["agent.name", "bucket"])
    # rare_rules: rule ids this agent raised in at most 2 earlier buckets, counted in time order.
    rare = {}
    for agent, rules in df.groupby(["agent.name", "bucket"])["rule.id"].apply(set).groupby(level=0):
        earlier: dict[str, int] = {}
        for (_, bucket), ids in rules.sort_index().items():
            rare[(agent, bucket)] = sum(1 for r in ids if earlier.get(r, 0) <= 2)
            for r in ids:
                earlier[r] = earlier.get(r, 0) + 1
    out = pd.DataFrame({
        "distinct_rules": by["rule.id"].nunique(), "distinct_groups": groups["rule.groups"].nunique(),
        "distinct_decoders": by["decoder.name"].nunique(), "rare_rules": pd.Series(rare),
        "max_level": by["rule.level"].max(),
    }).astype(float)
    out.index.names = ["agent", "bucket"]
    return out


@pytest.fixture(scope="module")
def real_stream(ait_raw) -> list[tuple[float, dict]]:
    return [(parse_wazuh_timestamp(a["timestamp"]), a) for a in ait_raw]


def test_real_numbers_for_intranet_server_at_0355_on_jan_24(real_stream, ait_frame):
    bucket = utc("2022-01-24 03:55")
    for name, want in [
        ("alert_volume", {"alerts_low": 3, "alerts_medium": 10343, "alerts_high": 548, "alerts_critical": 0,
                          "ids_alerts": 6}),
        ("rule_diversity", {"distinct_rules": 15, "distinct_groups": 16, "distinct_decoders": 5, "max_level": 10,
                            "rare_rules": 12}),
    ]:
        # From the start of the data, so that rare_rules sees the same history as the pandas version.
        got = aggregate(SHIPPED[name], real_stream, *DAYS).frame("intranet_server").loc[bucket]
        independent = {"alert_volume": independent_alert_volume,
                       "rule_diversity": independent_rule_diversity}[name](ait_frame).loc[("intranet_server", bucket)]
        assert got.to_dict() == {k: float(v) for k, v in want.items()} == independent.to_dict()


@pytest.mark.parametrize("name, independent", [("alert_volume", independent_alert_volume),
                                               ("rule_diversity", independent_rule_diversity)])
def test_real_frames_equal_a_pandas_groupby_of_the_raw_alerts_for_every_agent(name, independent, one_pass_and_runs,
                                                                               ait_frame):
    agg = one_pass_and_runs[0][name]     # read through AlertsFileSource
    want = independent(ait_frame)
    assert agg.entities() == sorted(ait_frame["agent.name"].unique(),
                                    key=lambda e: (-int((ait_frame["agent.name"] == e).sum()), e))
    for entity in agg.entities():
        got = agg.frame(entity)
        expected_frame = want.loc[entity].reindex(got.index, fill_value=0.0)
        pd.testing.assert_frame_equal(got, expected_frame, check_freq=False, check_names=False)


def test_the_rule_groups_shortcut_gives_the_same_counts_as_testing_every_filter():
    """Every feature filters on rule.groups, so alerts in none of those groups are skipped
    early; odd shapes of rule.groups (a string, numbers, missing) must count the same."""
    s = scenario({"name": "auth", "aggregation": "count", "filter": {"rule.groups": ["authentication_failed", "5"]}},
                 {"name": "users", "aggregation": "distinct", "field": "data.dstuser",
                  "filter": {"groups": ["sudo"], "level": {"min": 3}}})
    alerts = [alert(groups=["syslog", "authentication_failed"]), alert(groups=["web"]),
              alert(groups=[5]), {**alert(), "rule": {"level": 3, "groups": "sudo"}, "data": {"dstuser": "root"}},
              {**alert(), "rule": {"level": 3}}, alert(groups=["sudo"], data={"dstuser": "alice"}),
              alert(groups=[True, "sudo"], level=1, data={"dstuser": "bob"})]
    agg = aggregate(s, [(at("00:01"), a) for a in alerts], at("00:00"), at("00:05"))
    assert agg._gate == frozenset({"authentication_failed", "5", "sudo"})
    assert agg.frame().iloc[0].to_dict() == {"auth": 2.0, "users": 2.0}
    assert agg.alerts_matched == 4
