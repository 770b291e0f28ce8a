"""Configuration: the global config.yaml and the scenario files, as a specification.

Every shipped file loads; every key left out takes its documented default; every mistake
a user can make is one ConfigError sentence that names the file and the dotted key.
"""
from __future__ import annotations

import multiprocessing
import os
import re
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from wazuh_anomaly.core.config import (
    Condition,
    Config,
    EntitySpec,
    FeatureSpec,
    MvadSpec,
    RunSpec,
    Scenario,
    SeasonalSpec,
    SeveritySpec,
    TrainingSpec,
    load_config,
    load_scenario,
    load_scenarios,
    parse_scenario,
)
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.core.registry import AGGREGATIONS as AGGREGATION_REGISTRY

REPO = Path(__file__).resolve().parents[1]
SHIPPED_ETC = REPO / "wazuh" / "etc" / "anomaly"
SHIPPED_SCENARIOS = sorted((SHIPPED_ETC / "scenarios").glob("*.yaml"))
SHIPPED_CONFIG = SHIPPED_ETC / "config.yaml"

MINIMAL = {"name": "logins", "description": "Logins per host", "features": [{"name": "logins"}]}


def scenario_file(tmp_path: Path, data, name: str = "scenario.yaml") -> Path:
    """A scenario file as a user would write it (a mapping, or raw YAML text)."""
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def with_(**changes) -> dict:
    return {**MINIMAL, **changes}


def feature(**item) -> dict:
    return with_(features=[{"name": "f", **item}])


def config_error(call, *args) -> str:
    with pytest.raises(ConfigError) as err:
        call(*args)
    return str(err.value)


def assert_one_sentence(msg: str, path: Path) -> None:
    assert msg.startswith(f"{path}: "), msg
    assert "\n" not in msg and "Traceback" not in msg and msg.endswith("."), msg


# --- the shipped files ------------------------------------------------------------------


def test_seven_alert_scenarios_and_the_flow_baseline_are_shipped():
    assert [p.stem for p in SHIPPED_SCENARIOS] == [
        "alert_volume", "authentication_failures", "file_integrity", "flow_baseline", "privilege_use",
        "rule_diversity", "silence", "web_attacks"]
    assert load_scenario(SHIPPED_ETC / "scenarios" / "flow_baseline.yaml").source == "flows"


@pytest.mark.parametrize("path", [p for p in SHIPPED_SCENARIOS if p.stem != "flow_baseline"], ids=lambda p: p.stem)
def test_every_shipped_scenario_loads_named_like_its_file_with_an_entity(path):
    s = load_scenario(path)
    assert s.name == path.stem and s.source_file == path and s.enabled
    assert s.description and s.features and 1440 % s.bucket_minutes == 0
    # every agent (silence: the 50 busiest; its detector scores entity by entity)
    assert s.entity is not None and s.entity.field == "agent.name" and s.entity.top == (50 if s.name == "silence" else None)
    assert s.detectors == (("silence",) if s.name == "silence" else ("mvad", "seasonal"))


def test_the_shipped_scenario_directory_loads_without_errors():
    scenarios, errors = load_scenarios(SHIPPED_ETC / "scenarios")
    assert errors == []
    assert [s.name for s in scenarios] == [p.stem for p in SHIPPED_SCENARIOS]


def test_shipped_config_yaml_shows_exactly_the_defaults(tmp_path):
    # its header promises "the value shown is the default"
    layout = Layout(tmp_path)
    shipped = load_config(layout, SHIPPED_CONFIG)
    assert shipped.config_file == SHIPPED_CONFIG
    assert replace(shipped, config_file=None) == load_config(layout)


def test_installed_config_yaml_is_found_under_the_prefix(tmp_path):
    layout = Layout(tmp_path)
    layout.etc_dir.mkdir(parents=True)
    shutil.copy(SHIPPED_CONFIG, layout.config_file)
    assert load_config(layout).config_file == layout.config_file


# --- defaults ---------------------------------------------------------------------------


def test_a_minimal_scenario_takes_every_default(tmp_path):
    path = scenario_file(tmp_path, MINIMAL)
    assert load_scenario(path) == Scenario(
        name="logins", description="Logins per host", source_file=path,
        features=(FeatureSpec("logins", "count", None, ()),),
        enabled=True, bucket_minutes=5, entity=None, detectors=("mvad", "seasonal"), combine="any",
        training=TrainingSpec(), mvad=MvadSpec(), seasonal=SeasonalSpec(), severity=SeveritySpec(), mitre=())


def test_documented_default_values():
    assert TrainingSpec() == TrainingSpec(lookback_days=14.0, min_history_hours=24.0, retrain_every_days=7.0,
                                          max_model_age_days=21.0, drift_buckets=288, drift_threshold=0.3,
                                          drift_tail_ratio=5.0)
    assert SeveritySpec() == SeveritySpec(quantile=0.999, medium=2.0, high=3.0, critical=4.0)
    assert SeasonalSpec() == SeasonalSpec(weekday=False, direction="up", min_scale=1.0)
    assert RunSpec() == RunSpec(grace_seconds=120, max_catchup_buckets=288, auto_train=True, no_data_hours=6.0,
                                threads=1, device="cpu", keep_models=5)


def test_null_values_mean_the_default_and_empty_sections_are_allowed():
    s = parse_scenario(with_(bucket_minutes=None, training=None, mvad={}, severity=None, mitre=None), "s.yaml")
    assert s.bucket_minutes == 5 and s.training == TrainingSpec() and s.mvad == MvadSpec() and s.mitre == ()


def test_a_partial_section_keeps_the_defaults_of_the_keys_left_out():
    s = parse_scenario(with_(training={"lookback_days": 7}, severity={"high": 3}), "s.yaml")
    assert s.training == TrainingSpec(lookback_days=7.0)
    assert isinstance(s.training.lookback_days, float)   # a whole number is accepted where a number is asked
    assert s.severity == SeveritySpec(high=3.0)


def test_entity_top_defaults_to_every_entity():
    assert parse_scenario(with_(entity={"field": "data.srcip"}), "s.yaml").entity == EntitySpec("data.srcip", None)


def test_description_is_stripped_and_derived_properties():
    s = parse_scenario(with_(description="  Logins\n", bucket_minutes=15,
                             features=[{"name": "a"}, {"name": "b", "aggregation": "max", "field": "rule.level"}]),
                       "s.yaml")
    assert s.description == "Logins" and s.bucket_seconds == 900 and s.feature_names == ["a", "b"]


def test_every_setting_can_be_given(tmp_path):
    data = {
        "name": "full", "description": "All keys", "enabled": False, "bucket_minutes": 10,
        "entity": {"field": "data.srcip", "top": 5},
        "features": [{"name": "n", "aggregation": "mean", "field": "data.bytes", "filter": {"groups": "web"}}],
        "detectors": ["seasonal"], "combine": "all",
        "training": {"lookback_days": 3, "min_history_hours": 12, "retrain_every_days": 1, "max_model_age_days": 2},
        "mvad": {"sliding_window": 16, "epochs": 2, "batch_size": 8, "interval": 2, "windows_per_epoch": 64,
                 "lr": 0.01, "seed": 1, "min_steps": 5},
        "seasonal": {"weekday": True, "direction": "both", "min_scale": 0.5},
        "severity": {"quantile": 0.99, "medium": 1, "high": 2, "critical": 3},
        "mitre": ["T1110", "T1059.004"],
    }
    s = load_scenario(scenario_file(tmp_path, data))
    assert (s.enabled, s.bucket_minutes, s.entity, s.detectors, s.combine) == (
        False, 10, EntitySpec("data.srcip", 5), ("seasonal",), "all")
    assert s.training == TrainingSpec(3.0, 12.0, 1.0, 2.0)
    assert s.mvad == MvadSpec(16, 2, 8, 2, 64, 0.01, 1, 5)
    assert s.seasonal == SeasonalSpec(True, "both", 0.5)
    assert s.severity == SeveritySpec(0.99, 1.0, 2.0, 3.0)
    assert s.mitre == ("T1110", "T1059.004")


# --- filters ----------------------------------------------------------------------------


def parsed_filter(flt: dict) -> tuple[Condition, ...]:
    return parse_scenario(feature(filter=flt), "s.yaml").features[0].filter


@pytest.mark.parametrize("short, field", [("groups", "rule.groups"), ("rule_id", "rule.id"), ("level", "rule.level"),
                                          ("decoder", "decoder.name"), ("agent", "agent.name")])
def test_shorthand_filter_keys_name_alert_fields(short, field):
    assert parsed_filter({short: "x"}) == (Condition(field, equals=("x",)),)


def test_filter_values_scalars_and_lists_are_any_of_as_text():
    assert parsed_filter({"rule.level": 7, "rule.groups": ["sshd", "pam"], "data.x": 1.5}) == (
        Condition("rule.level", equals=("7",)), Condition("rule.groups", equals=("sshd", "pam")),
        Condition("data.x", equals=("1.5",)))


def test_filter_mappings_hold_min_max_prefix_regex_exists_and_not():
    assert parsed_filter({"rule.level": {"min": 5, "max": 7.5}, "data.url": {"prefix": "/wp-", "regex": r"\.php$"},
                          "data.srcip": {"exists": True, "not": ["10.0.0.1", "10.0.0.2"]}, "data.dstuser": {"not": "root"},
                          "rule.id": {"not": 5501}}) == (
        Condition("rule.level", min=5.0, max=7.5), Condition("data.url", prefix="/wp-", regex=r"\.php$"),
        Condition("data.srcip", exists=True, not_in=("10.0.0.1", "10.0.0.2")), Condition("data.dstuser", not_in=("root",)),
        Condition("rule.id", not_in=("5501",)))


def test_exists_false_is_a_condition_of_its_own():
    assert parsed_filter({"data.srcip": {"exists": False}}) == (Condition("data.srcip", exists=False),)


# --- every user error: one sentence naming the file and the dotted key ------------------

ERRORS = [
    # (id, scenario data, dotted key named, words of the message)
    ("unknown key with hint", with_(bucket_minute=5), "bucket_minute", "did you mean 'bucket_minutes'?"),
    ("unknown nested key with hint", with_(training={"lookback_day": 3}), "training.lookback_day",
     "did you mean 'training.lookback_days'?"),
    ("unknown feature key with hint", feature(agregation="max", field="rule.level"), "features[0].agregation",
     "did you mean 'features[0].aggregation'?"),
    ("unknown condition key with hint", feature(filter={"rule.level": {"mn": 5}}), "features[0].filter.rule.level.mn",
     "did you mean 'features[0].filter.rule.level.min'?"),
    ("unknown key without a near one", with_(colour="blue"), "colour", "is not a known setting"),
    ("text for a whole number", with_(bucket_minutes="5"), "bucket_minutes", "must be a whole number, not '5'"),
    ("fraction for a whole number", with_(bucket_minutes=2.5), "bucket_minutes", "must be a whole number"),
    ("text for true/false", with_(enabled="sometimes"), "enabled", "must be true or false"),
    ("number for true/false", with_(enabled=1), "enabled", "must be true or false"),
    ("true/false for a number", with_(training={"lookback_days": True}), "training.lookback_days", "must be a number"),
    ("text for a number", with_(training={"lookback_days": "two weeks"}), "training.lookback_days", "must be a number"),
    ("mapping for a list", with_(features={"name": "x"}), "features", "must be a list"),
    ("text for a list", with_(mitre="T1110"), "mitre", "must be a list"),
    ("number for text", with_(name=5), "name", "must be text"),
    ("missing name", {"description": "d", "features": [{"name": "a"}]}, "name", "is required"),
    ("missing description", {"name": "a", "features": [{"name": "a"}]}, "description", "is required"),
    ("missing features", {"name": "a", "description": "d"}, "features", "is required"),
    ("no features", with_(features=[]), "features", "at least one feature"),
    ("bad scenario name", with_(name="Brute-Force"), "name", "lower-case letters"),
    ("bad feature name", feature(name="Alerts Low"), "features[0].name", "lower-case letters"),
    ("feature without name", with_(features=[{"aggregation": "count"}]), "features[0].name", "is required"),
    ("feature not a mapping", with_(features=["logins"]), "features[0]", "must be a mapping"),
    ("duplicate feature name", with_(features=[{"name": "a"}, {"name": "b"}, {"name": "a"}]), "features[2].name",
     "repeats the feature name 'a'"),
    ("bad aggregation", feature(aggregation="median", field="rule.level"), "features[0].aggregation",
     # every registered aggregation (the built-ins first, then those such as p95 a module adds)
     f"must be one of {', '.join(AGGREGATION_REGISTRY.names())}, not 'median'"),
    *[(f"{agg} without field", feature(aggregation=agg), "features[0].field", f"is required for aggregation '{agg}'")
      for agg in ("distinct", "max", "mean", "sum", "rare")],
    *[(f"bucket_minutes {m}", with_(bucket_minutes=m), "bucket_minutes", "must divide a day evenly")
      for m in (7, 0, -5, 2880)],
    *[(f"MITRE id {t!r}", with_(mitre=["T1110", t]), "mitre", "is not a MITRE ATT&CK id")
      for t in ("T110", "t1110", "T1110.1", "T1110.0001", "TA0006", 1110)],
    ("bad regex", feature(filter={"data.url": {"regex": "(unclosed"}}), "features[0].filter.data.url.regex",
     "is not a valid regular expression"),
    ("filter not a mapping", feature(filter=["rule.groups"]), "features[0].filter", "must be a mapping"),
    ("filter key not a field", feature(filter={"rule groups": "sshd"}), "features[0].filter.rule groups",
     "is not a dotted field name"),
    ("filter key read as a number", feature(filter={5401: "x"}), "features[0].filter.5401", "is not a dotted field name"),
    ("empty filter list", feature(filter={"rule.groups": []}), "features[0].filter.rule.groups", "non-empty list"),
    ("filter list of mappings", feature(filter={"rule.groups": [{"a": 1}]}), "features[0].filter.rule.groups",
     "non-empty list"),
    ("true/false filter value", feature(filter={"rule.mail": True}), "features[0].filter.rule.mail",
     "must be a value, a list of values or a mapping"),
    ("empty condition", feature(filter={"rule.level": {}}), "features[0].filter.rule.level", "needs at least one of"),
    ("text for filter min", feature(filter={"rule.level": {"min": "high"}}), "features[0].filter.rule.level.min",
     "must be a number"),
    ("entity without field", with_(entity={"top": 5}), "entity.field", "is required"),
    ("entity as text", with_(entity="agent.name"), "entity", "must be a mapping"),
    ("entity top zero", with_(entity={"field": "agent.name", "top": 0}), "entity.top", "must be more than zero"),
    ("unknown entity key", with_(entity={"field": "agent.name", "limit": 5}), "entity.limit", "is not a known setting"),
    ("unknown detector", with_(detectors=["mvad", "isolation_forest"]), "detectors", "one or more of mvad, seasonal"),
    ("no detector", with_(detectors=[]), "detectors", "one or more of mvad, seasonal"),
    ("bad combine", with_(combine="most"), "combine", "must be 'any' or 'all'"),
    ("training lookback zero", with_(training={"lookback_days": 0}), "training.lookback_days", "more than zero"),
    ("negative history", with_(training={"min_history_hours": -1}), "training.min_history_hours", "more than zero"),
    ("small sliding window", with_(mvad={"sliding_window": 4}), "mvad.sliding_window", "at least 8"),
    ("zero epochs", with_(mvad={"epochs": 0}), "mvad.epochs", "more than zero"),
    ("bad seasonal direction", with_(seasonal={"direction": "down"}), "seasonal.direction", "must be 'up' or 'both'"),
    ("zero min_scale", with_(seasonal={"min_scale": 0}), "seasonal.min_scale", "more than zero"),
    *[(f"quantile {q}", with_(severity={"quantile": q}), "severity.quantile", "at least 0.5 and below 1")
      for q in (1, 1.5, 0.4, 0, -0.9)],
    ("medium above high", with_(severity={"medium": 3, "high": 2}), "severity.medium", "increasing"),
    ("high above critical", with_(severity={"high": 5, "critical": 4}), "severity.medium", "increasing"),
    ("medium below one", with_(severity={"medium": 0.5}), "severity.medium", "at least 1"),
    ("top level a list", [MINIMAL], None, "the top level must be a mapping"),
]


@pytest.mark.parametrize("data, key, words", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_a_user_error_is_one_sentence_naming_file_and_key(tmp_path, data, key, words):
    path = scenario_file(tmp_path, data)
    msg = config_error(load_scenario, path)
    assert_one_sentence(msg, path)
    if key is not None:
        assert f"'{key}'" in msg or f"{path}: {key} " in msg, msg
    assert words in msg, msg


def test_severity_tiers_out_of_order_name_all_three_with_their_values(tmp_path):
    path = scenario_file(tmp_path, with_(severity={"medium": 3, "high": 2}))
    assert config_error(load_scenario, path) == (
        f"{path}: key 'severity.medium' (3), 'severity.high' (2) and 'severity.critical' (4) must be increasing "
        "multiples of the threshold, all at least 1.")


def test_severity_tiers_may_be_equal():
    assert parse_scenario(with_(severity={"medium": 2, "high": 2, "critical": 2}), "s.yaml").severity.high == 2.0


@pytest.mark.parametrize("minutes", [1, 5, 10, 15, 30, 60, 120, 1440])
def test_bucket_minutes_that_divide_a_day_are_accepted(minutes):
    assert parse_scenario(with_(bucket_minutes=minutes), "s.yaml").bucket_seconds == minutes * 60


@pytest.mark.parametrize("technique", ["T1110", "T1059.004", "T1595.002"])
def test_mitre_technique_and_sub_technique_ids_are_accepted(technique):
    assert parse_scenario(with_(mitre=[technique]), "s.yaml").mitre == (technique,)


# --- reading the files ------------------------------------------------------------------


@pytest.mark.parametrize("text, line", [
    ("name: x\ndescription: d\nfeatures:\n  - name: a\n   aggregation: count\n", 5),
    ("name: x\ndescription: d\nfeatures:\n\t- name: a\n", 4),
    ("name: [x\ndescription: d\n", 2),
])
def test_invalid_yaml_names_the_file_and_line(tmp_path, text, line):
    path = scenario_file(tmp_path, text)
    msg = config_error(load_scenario, path)
    assert_one_sentence(msg, path)
    assert f"at line {line}, column " in msg and msg.endswith("fix the YAML syntax.")


def test_a_missing_scenario_file_is_a_config_error(tmp_path):
    msg = config_error(load_scenario, tmp_path / "nope.yaml")
    assert_one_sentence(msg, tmp_path / "nope.yaml")
    assert "file not found" in msg


def test_a_directory_in_place_of_a_file_is_a_config_error(tmp_path):
    (tmp_path / "dir.yaml").mkdir()
    msg = config_error(load_scenario, tmp_path / "dir.yaml")
    assert_one_sentence(msg, tmp_path / "dir.yaml")
    assert "cannot be read (Is a directory)" in msg


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: x\ndescription: Anmeldungen f\u00fcr Benutzer\n".encode("latin-1"))
    msg = config_error(load_scenario, path)
    assert_one_sentence(msg, path)
    assert "is not UTF-8 text" in msg


def test_an_empty_scenario_file_asks_for_its_name(tmp_path):
    path = scenario_file(tmp_path, "# nothing yet\n")
    assert "key 'name' is required" in config_error(load_scenario, path)


# Permissions: root reads everything, so as root the loader runs in a child that is nobody.

def _as_nobody(queue, call, *args) -> None:
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    try:
        result = call(*args)
        queue.put(("ok", repr(result)))
    except ConfigError as exc:
        queue.put(("ConfigError", str(exc)))
    except BaseException as exc:  # the point of the test: anything else is a bug
        queue.put((type(exc).__name__, str(exc)))


def unprivileged(call, *args) -> tuple[str, str]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_as_nobody, args=(queue, call, *args))
    child.start()
    child.join(30)
    return queue.get(timeout=5)


@pytest.fixture
def open_dir():
    """A scratch directory others may enter (pytest's tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="wazuh-anomaly-config-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    shutil.rmtree(path)


def test_an_unreadable_scenario_file_is_a_config_error_naming_it(open_dir):
    path = scenario_file(open_dir, MINIMAL)
    path.chmod(0o600)
    kind, msg = unprivileged(load_scenario, path)
    assert kind == "ConfigError", msg
    assert_one_sentence(msg, path)
    assert "cannot be read (Permission denied); run as root or fix its permissions." in msg


def test_an_unreadable_scenario_directory_is_reported_not_taken_for_no_scenarios(open_dir):
    directory = open_dir / "scenarios"
    directory.mkdir()
    scenario_file(directory, MINIMAL).chmod(0o644)
    directory.chmod(0o700)
    kind, result = unprivileged(load_scenarios, directory)
    assert kind == "ok", result
    assert result == repr(([], [ConfigError(
        f"{directory}: cannot be read (Permission denied); run as root or fix its permissions.")]))


def test_a_config_dir_the_user_cannot_enter_is_a_config_error_not_defaults(open_dir):
    layout = Layout(open_dir)
    layout.etc_dir.mkdir(parents=True)
    shutil.copy(SHIPPED_CONFIG, layout.config_file)
    layout.etc_dir.chmod(0o700)
    kind, msg = unprivileged(load_config, layout)
    assert kind == "ConfigError", msg
    assert_one_sentence(msg, layout.config_file)
    assert "cannot be read (Permission denied)" in msg


# --- a directory of scenarios -----------------------------------------------------------


def test_a_broken_scenario_file_does_not_stop_the_others(tmp_path):
    scenario_file(tmp_path, with_(name="a_first"), "a.yaml")
    scenario_file(tmp_path, with_(bucket_minutes=7), "b.yaml")
    scenario_file(tmp_path, "name: [oops\n", "c.yaml")
    scenario_file(tmp_path, with_(name="d_last"), "d.yml")
    scenarios, errors = load_scenarios(tmp_path)
    assert [s.name for s in scenarios] == ["a_first", "d_last"]
    assert [str(e).split(":")[0] for e in errors] == [str(tmp_path / "b.yaml"), str(tmp_path / "c.yaml")]
    assert "bucket_minutes" in str(errors[0]) and "line 2" in str(errors[1])


def test_a_scenario_name_used_twice_is_reported_naming_both_files_and_the_first_kept(tmp_path):
    first = scenario_file(tmp_path, with_(description="first"), "a.yaml")
    second = scenario_file(tmp_path, with_(description="second"), "b.yaml")
    scenarios, errors = load_scenarios(tmp_path)
    assert [(s.name, s.description) for s in scenarios] == [("logins", "first")]
    assert [str(e) for e in errors] == [
        f"{second}: scenario name 'logins' is already used by {first}; rename one."]


def test_only_yaml_files_are_scenarios(tmp_path):
    scenario_file(tmp_path, MINIMAL, "logins.yaml")
    for other in ("README.md", "logins.yaml.bak", "logins.yaml~", "notes.txt"):
        (tmp_path / other).write_text("not: [a scenario\n")
    (tmp_path / "old").mkdir()
    scenario_file(tmp_path / "old", with_(name="old_one"), "old.yaml")
    scenarios, errors = load_scenarios(tmp_path)
    assert [s.name for s in scenarios] == ["logins"] and errors == []


def test_a_missing_scenario_directory_is_one_error(tmp_path):
    scenarios, errors = load_scenarios(tmp_path / "scenarios")
    assert scenarios == [] and [str(e) for e in errors] == [
        f"{tmp_path / 'scenarios'}: scenario directory not found; run install.sh or create it."]


def test_an_empty_scenario_directory_has_no_scenarios_and_no_errors(tmp_path):
    assert load_scenarios(tmp_path) == ([], [])


# --- the global configuration -----------------------------------------------------------


def test_without_a_config_file_everything_is_default_and_under_the_prefix(tmp_path):
    layout = Layout(tmp_path / "ossec")
    config = load_config(layout)
    assert config == Config(
        layout=layout, alerts_dir=tmp_path / "ossec/logs/alerts",
        anomalies_file=tmp_path / "ossec/logs/anomaly/anomalies.json",
        models_dir=tmp_path / "ossec/var/anomaly/models", state_dir=tmp_path / "ossec/var/anomaly/state",
        source_type="alerts_file", run=RunSpec(), config_file=None)


def test_an_empty_config_file_means_all_defaults(tmp_path):
    layout = Layout(tmp_path)
    path = scenario_file(tmp_path, "# all defaults\n", "config.yaml")
    assert load_config(layout, path) == replace(load_config(layout), config_file=path)


def test_config_values_override_the_defaults(tmp_path):
    path = scenario_file(tmp_path, {
        "source": {"alerts_dir": "/srv/alerts"}, "output": {"anomalies_file": "/srv/out.json"},
        "models_dir": "/srv/models", "state_dir": "/srv/state",
        "run": {"grace_seconds": 0, "max_catchup_buckets": 10, "auto_train": False, "no_data_hours": 1,
                "threads": 8, "device": "cuda", "keep_models": 1}}, "config.yaml")
    config = load_config(Layout(tmp_path), path)
    assert (config.alerts_dir, config.anomalies_file, config.models_dir, config.state_dir) == (
        Path("/srv/alerts"), Path("/srv/out.json"), Path("/srv/models"), Path("/srv/state"))
    assert config.run == RunSpec(0, 10, False, 1.0, 8, "cuda", 1)


def test_a_config_file_given_explicitly_must_exist(tmp_path):
    msg = config_error(load_config, Layout(tmp_path), tmp_path / "missing.yaml")
    assert_one_sentence(msg, tmp_path / "missing.yaml")
    assert "file not found; run install.sh or pass --config." in msg


CONFIG_ERRORS = [
    ("unknown key with hint", {"run": {"thread": 4}}, "run.thread", "did you mean 'run.threads'?"),
    ("unknown top-level key", {"model_dir": "/x"}, "model_dir", "did you mean 'models_dir'?"),
    ("other source type", {"source": {"type": "kafka"}}, "source.type", "must be 'alerts_file' (the manager's own alerts.json) or 'indexer'"),
    ("bad device", {"run": {"device": "gpu"}}, "run.device", "must be 'cpu' or 'cuda'"),
    ("zero threads", {"run": {"threads": 0}}, "run.threads", "more than zero"),
    ("negative grace", {"run": {"grace_seconds": -1}}, "run.grace_seconds", "zero or more"),
    ("text for whole number", {"run": {"max_catchup_buckets": "many"}}, "run.max_catchup_buckets", "whole number"),
    ("number for a path", {"state_dir": 5}, "state_dir", "must be text"),
    ("section as text", {"output": "/tmp/x.json"}, "output", "must be a mapping"),
    ("top level a list", ["run"], None, "the top level must be a mapping"),
]


@pytest.mark.parametrize("data, key, words", [e[1:] for e in CONFIG_ERRORS], ids=[e[0] for e in CONFIG_ERRORS])
def test_a_config_error_is_one_sentence_naming_file_and_key(tmp_path, data, key, words):
    path = scenario_file(tmp_path, data, "config.yaml")
    msg = config_error(load_config, Layout(tmp_path), path)
    assert_one_sentence(msg, path)
    if key is not None:
        assert f"'{key}'" in msg or f"{path}: {key} " in msg, msg
    assert words in msg, msg


def test_invalid_yaml_in_the_default_config_file_is_not_taken_for_defaults(tmp_path):
    layout = Layout(tmp_path)
    layout.etc_dir.mkdir(parents=True)
    layout.config_file.write_text("run:\n  threads: [4\n")
    msg = config_error(load_config, layout)
    assert_one_sentence(msg, layout.config_file)
    assert "at line 3" in msg


def test_indexer_and_shipping_blocks_have_typed_defaults_and_one_sentence_errors(tmp_path):
    from wazuh_anomaly.core.config import IndexerSpec, ShippingSpec
    layout = Layout(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text("source: {type: indexer}\nindexer: {hosts: 'https://indexer-1:9200', password: s3cret}\n"
                    "shipping: {enabled: true, scenarios: [web_attacks]}\n")
    config = load_config(layout, path)
    assert config.source_type == "indexer"
    assert config.indexer.hosts == ("https://indexer-1:9200",) and config.indexer.ca == IndexerSpec.ca
    assert config.indexer.verify is True and "s3cret" not in repr(config)
    assert config.shipping.enabled and config.shipping.scenarios == ("web_attacks",)
    assert config.shipping.prefix == ShippingSpec.prefix
    for text, words in (("indexer: {hosts: [indexer-1]}", "indexer.hosts' must list URLs"),
                        ("indexer: {client_cert: /c.pem}", "indexer.client_key' must be set together"),
                        ("indexer: {precision_threshold: 50000}", "at most 40000"),
                        ("shipping: {rollover_age: soon}", "shipping.rollover_age' must be a duration"),
                        ("shipping: {prefix: Wazuh Anomaly}", "shipping.prefix' must be a lower-case"),
                        ("shipping: {enabeld: true}", "did you mean 'shipping.enabled'")):
        path.write_text(text + "\n")
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_config(layout, path)


# --- every problem of a file at once; nothing a file holds gives a traceback ------------


def test_every_problem_of_a_scenario_file_is_reported_together_one_sentence_each(tmp_path):
    path = scenario_file(tmp_path, with_(bucket_minutes="5", colour="blue", training={"lookback_days": 0},
                                         features=[{"name": "a", "aggregation": "max"}, {"name": "B"}],
                                         seasonal={"direction": "down"}))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    problems = err.value.problems
    assert str(err.value) == "\n".join(problems)
    for sentence in problems:
        assert_one_sentence(sentence, path)
    named = sorted(re.search(r"key '([^']+)'", p).group(1) for p in problems)
    assert named == ["bucket_minutes", "colour", "features[0].field", "features[1].name",
                     "seasonal.direction", "training.lookback_days"], problems


def test_a_bad_bucket_size_is_reported_with_the_problems_of_the_features(tmp_path):
    path = scenario_file(tmp_path, with_(bucket_minutes=7, features=[{"name": "a", "aggregation": "median"}]))
    with pytest.raises(ConfigError) as err:
        load_scenario(path)
    assert sorted(re.search(r"key '([^']+)'", p).group(1) for p in err.value.problems) == [
        "bucket_minutes", "features[0].aggregation"], err.value.problems


def test_every_problem_of_config_yaml_is_reported_together(tmp_path):
    path = scenario_file(tmp_path, {"run": {"threads": 0, "device": "gpu"}, "shipping": {"enabeld": True},
                                    "indexer": {"hosts": ["indexer-1"]}}, "config.yaml")
    with pytest.raises(ConfigError) as err:
        load_config(Layout(tmp_path), path)
    named = sorted(re.search(r"key '([^']+)'", p).group(1) for p in err.value.problems)
    assert named == ["indexer.hosts", "run.device", "run.threads", "shipping.enabeld"], err.value.problems


def _yaml_values():
    from hypothesis import strategies as st
    keys = st.sampled_from(["name", "description", "features", "filter", "aggregation", "field", "entity", "top",
                            "training", "lookback_days", "severity", "medium", "quantile", "detectors", "mitre",
                            "rule.level", "groups", "min", "max", "not", "regex", "exists", "calendar", "run",
                            "indexer", "hosts", "shipping", "source", "type"]) | st.text(max_size=8) | st.integers()
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
                        max_leaves=25)


def _only_config_errors(call, path) -> None:
    try:
        call()
    except ConfigError as exc:
        assert exc.problems and str(exc) == "\n".join(exc.problems)
        for sentence in exc.problems:
            assert_one_sentence(sentence, path)


def test_random_yaml_structures_give_a_scenario_or_config_error_sentences_never_a_traceback(tmp_path, monkeypatch):
    from hypothesis import HealthCheck, given, settings, strategies as st
    from wazuh_anomaly.netflow.settings import load_netflow_settings
    monkeypatch.delenv("WAZUH_ANOMALY_INTERNAL_NETWORKS", raising=False)
    path = tmp_path / "s.yaml"

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(_yaml_values(), st.dictionaries(st.sampled_from(sorted(MINIMAL) + ["entity", "severity"]),
                                                     _yaml_values(), max_size=4).map(lambda d: {**MINIMAL, **d})))
    def check(data):
        _only_config_errors(lambda: parse_scenario(data, path), path)
        _only_config_errors(lambda: load_config(Layout(tmp_path), _written(path, data)), path)
        _only_config_errors(lambda: load_netflow_settings(Layout(tmp_path), _written(path, data)), path)

    check()


def _written(path: Path, data) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_the_configuration_reference_is_generated_from_the_schema_and_current():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gen_config_docs", REPO / "scripts" / "gen-config-docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert gen.MARKER in text, "docs/configuration.md lost its GENERATED marker"
    assert text == gen.render(gen.hand_written_part(text)), "stale: run scripts/gen-config-docs.py"
    # every key of the schema is in it, with its default
    for key in ("`run.threads`", "`severity.quantile`", "`features[].max_seen`", "`thresholds.dos_packets`",
                "`detectors.<name>.learn_until`", "`models.<name>.trees`", "`never_block`"):
        assert key in text, key


def test_not_prefix_excludes_values_and_an_absent_field_passes():
    from wazuh_anomaly.core.filters import compile_filter
    (cond,) = parsed_filter({"data.audit.exe": {"not_prefix": ["/usr/lib/", "/snap/"]}})
    assert cond == Condition("data.audit.exe", not_prefix=("/usr/lib/", "/snap/"))
    test = compile_filter([cond])
    assert not test({"data": {"audit": {"exe": "/usr/lib/x"}}}) and test({"data": {"audit": {"exe": "/bin/sh"}}})
    assert test({"data": {}})


@pytest.mark.parametrize("old, new", [("min_level", "level: {min: ...}"), ("not_groups", "rule.groups: {not: [...]}"),
                                      ("ignore", "<field>: {not: [...]}"), ("rule_ids", "rule_id: [...]")])
def test_the_old_real_time_filter_keys_are_refused_with_the_new_spelling(tmp_path, old, new):
    path = scenario_file(tmp_path, feature(filter={old: 7}))
    msg = config_error(load_scenario, path)
    assert_one_sentence(msg, path)
    assert f"key 'features[0].filter.{old}' is no longer a filter key; write {new}" in msg


def test_detector_and_aggregation_names_come_from_the_registries_when_they_register():
    from wazuh_anomaly.core.registry import AGGREGATIONS, DETECTORS
    data = with_(detectors=["toy_detector"], features=[{"name": "f", "aggregation": "p99", "field": "data.bytes"}])
    msg = config_error(parse_scenario, data, "s.yaml")
    assert "key 'detectors' must list one or more of " in msg and "not 'p99'" in msg

    class ToyDetector:
        uses_calendar = False

    class P99:
        needs_field = True
    DETECTORS.register("toy_detector", ToyDetector)
    AGGREGATIONS.register("p99", P99)
    try:
        s = parse_scenario(data, "s.yaml")
        assert s.detectors == ("toy_detector",) and s.features[0].aggregation == "p99"
    finally:
        DETECTORS.unregister("toy_detector")
        AGGREGATIONS.unregister("p99")


def test_the_cli_prints_each_problem_of_a_config_file_on_its_own_line(tmp_path):
    import subprocess
    import sys
    (tmp_path / "etc/anomaly/scenarios").mkdir(parents=True)
    (tmp_path / "etc/anomaly/config.yaml").write_text("run: {threads: 0, devic: cpu}\n")
    done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(tmp_path), "status"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "integration")})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    path = tmp_path / "etc/anomaly/config.yaml"
    assert done.stderr.splitlines() == [
        f"wazuh-anomaly: {path}: key 'run.threads' must be more than zero, not 0.",
        f"wazuh-anomaly: {path}: key 'run.devic' is not a known setting (did you mean 'run.device'?)."]
