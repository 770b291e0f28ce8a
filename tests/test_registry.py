"""The registries of detectors, aggregations and sources (core/registry.py): built-ins
found without a list, one sentence for an unknown name, every source built from the
configuration the same way."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from conftest import REPO
from wazuh_anomaly.core.config import load_config, parse_scenario
from wazuh_anomaly.core.errors import ConfigError
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.core.registry import AGGREGATIONS, DETECTORS, SOURCES, Registry, UnknownName
from wazuh_anomaly.netflow.flows_source import FlowsFileSource
from wazuh_anomaly.sources import AlertsFileSource, SourceStats, make_source, source_for
from wazuh_anomaly.sources.indexer import IndexerSource
from wazuh_anomaly.sources.sample import SampleSource, install_sample_alerts

MINIMAL = {"name": "auth", "description": "logins", "features": [{"name": "logins", "filter": {"groups": "authentication_success"}}]}


def test_the_built_ins_are_found_without_a_list():
    assert DETECTORS.names()[:2] == ("mvad", "seasonal")
    assert AGGREGATIONS.names()[:6] == ("count", "distinct", "max", "mean", "sum", "rare")
    assert {"alerts_file", "indexer", "sample", "flows"} <= set(SOURCES.names())


def test_finding_the_detectors_imports_neither_torch_nor_the_mvad_library():
    code = ("import sys; from wazuh_anomaly.core.registry import DETECTORS; DETECTORS.get('mvad'); "
            "print(sorted(m for m in ('torch', 'anomaly_detector', 'mlflow') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=str(REPO / "integration"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unknown_name_is_one_sentence_naming_the_choices():
    with pytest.raises(UnknownName) as err:
        DETECTORS.get("isolation_forest")
    assert str(err.value) == "no detector is named 'isolation_forest'; choose one of mvad, seasonal, silence."
    assert isinstance(err.value, ConfigError)


def test_a_second_class_under_a_taken_name_is_refused():
    registry = Registry("widget")

    class One:
        pass

    class Two:
        pass
    registry.register("w", One)
    registry.register("w", One)             # the same class again (a module imported twice) is fine
    with pytest.raises(ValueError, match="already registered"):
        registry.register("w", Two)


def _config(tmp_path: Path):
    return load_config(Layout(tmp_path))


def test_the_installations_source_type_chooses_the_alert_source(tmp_path):
    config = _config(tmp_path)
    assert isinstance(make_source(config), AlertsFileSource)
    assert make_source(config).alerts_dir == config.alerts_dir
    indexer = make_source(dataclasses.replace(config, source_type="indexer"))
    assert isinstance(indexer, IndexerSource)      # built without connecting


def test_a_flow_scenario_reads_its_flows_file_and_keeps_a_cursor_only_when_resuming(tmp_path):
    config = _config(tmp_path)
    flows = parse_scenario({**MINIMAL, "source": "flows"}, "flows.yaml")
    source = source_for(config, flows)
    assert isinstance(source, FlowsFileSource)
    assert source.path == config.layout.logs_dir / "netflow.json"
    assert source.cursor_file is not None and source.cursor_file.parent == config.state_dir
    assert source_for(config, flows, resume=False).cursor_file is None
    own = parse_scenario({**MINIMAL, "source": "flows", "flows_file": str(tmp_path / "x.json")}, "flows.yaml")
    assert source_for(config, own).path == tmp_path / "x.json"
    assert "does not exist yet" in source.waiting_message("flow_baseline")


def test_the_sample_source_yields_what_the_installed_sample_holds(tmp_path):
    install_sample_alerts(tmp_path / "alerts")
    start = datetime(2022, 1, 22, tzinfo=timezone.utc).timestamp()
    end = start + 86400
    stats = SourceStats()
    got = list(SampleSource().read(start, end, stats=stats))
    expected = list(AlertsFileSource(tmp_path / "alerts").read(start, end))
    assert got and len(got) == len(expected) == stats.alerts
    assert sorted(a["id"] for _, a in got) == sorted(a["id"] for _, a in expected)
    assert all(start <= ts < end for ts, _ in got)


_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=12),
                       lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=2),
                       max_leaves=6)


@settings(max_examples=150, deadline=None)
@given(detectors=_values, aggregation=_values, source=_values)
def test_any_yaml_value_naming_a_detector_aggregation_or_source_is_accepted_or_refused_in_one_sentence(
        detectors, aggregation, source):
    data = {**MINIMAL, "detectors": detectors, "source": source,
            "features": [{"name": "logins", "aggregation": aggregation, "field": "data.x"}]}
    text = yaml.safe_dump(data)
    try:
        scenario = parse_scenario(yaml.safe_load(text), "scenario.yaml")
    except ConfigError as exc:
        # every problem of the file, one sentence per line, each naming the file
        for message in str(exc).splitlines():
            assert message.startswith("scenario.yaml: ") and message.endswith("."), message
        return
    assert set(scenario.detectors) <= set(DETECTORS.names())
    assert scenario.features[0].aggregation in AGGREGATIONS.names()
