"""The scoring run with `source: indexer` and shipping on, on a real OpenSearch holding the
AIT alerts: the same anomalies as with the alerts files, and the data stream holds
exactly what anomalies.json holds."""
from __future__ import annotations

import gzip
import json
import textwrap
from collections import defaultdict
from pathlib import Path

from conftest import sandbox_runner
from indexer_fixtures import SHARED_AIT, BUNDLED_AIT, ait_indexed, opensearch  # noqa: F401 (fixtures)
from wazuh_anomaly.ops.runner import Runner, parse_time
from wazuh_anomaly.sources.sample import lay_out_alerts
from wazuh_anomaly.emit.shipping import stream_name

SCENARIO = textwrap.dedent("""\
    name: volume_test
    description: Alert volume per agent (test)
    bucket_minutes: 15
    entity: {field: agent.name, top: 20}
    features:
      - {name: alerts, aggregation: count}
      - {name: high, aggregation: count, filter: {rule.level: {min: 8}}}
      - {name: rules, aggregation: distinct, field: rule.id}
      - {name: top_level, aggregation: max, field: rule.level}
    detectors: [seasonal]
    training: {lookback_days: 3, min_history_hours: 24}
    """)


def sandbox(tmp_path: Path, name: str, config: str) -> Path:
    prefix = tmp_path / name
    (prefix / "etc" / "anomaly" / "scenarios").mkdir(parents=True)
    (prefix / "etc" / "anomaly" / "scenarios" / "volume_test.yaml").write_text(SCENARIO)
    (prefix / "etc" / "anomaly" / "config.yaml").write_text(config)
    return prefix


def indexer_config(server) -> str:
    """config.yaml reading the alerts from `server` (the test OpenSearch)."""
    return textwrap.dedent(f"""\
        source: {{type: indexer}}
        indexer:
          hosts: ["{server.url}"]
          ca: {server.ca}
          username: {server.user}
          password: "{server.password}"
          keystore: false
        """)


def runner(prefix: Path) -> Runner:
    return sandbox_runner(prefix, parse_time("2022-01-25T00:30:00Z"))


def anomalies_json(prefix: Path) -> list[dict]:
    path = prefix / "logs" / "anomaly" / "anomalies.json"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_indexer_source_finds_the_same_anomalies_and_ships_each_once(opensearch, ait_indexed, tmp_path):
    # the alerts files of a manager
    file_prefix = sandbox(tmp_path, "file", "")
    by_day = defaultdict(list)
    with gzip.open(SHARED_AIT if SHARED_AIT.exists() else BUNDLED_AIT, "rb") as handle:
        for line in handle:
            by_day[line[14:24].decode()].append(line)
    lay_out_alerts(file_prefix / "logs" / "alerts", by_day)
    # the same alerts in the indexer, anomalies shipped to a data stream
    shipping_prefix = f"wa-run-{tmp_path.name[-12:].lower().replace('_', '-')}".rstrip("-")
    idx_prefix = sandbox(tmp_path, "indexer",
                         indexer_config(opensearch) + f"shipping: {{enabled: true, prefix: {shipping_prefix}}}\n")
    for prefix in (file_prefix, idx_prefix):
        r = runner(prefix)
        trained = r.train(start=parse_time("2022-01-21T00:00:00Z"), end=parse_time("2022-01-24T00:00:00Z"))
        assert trained.scenarios["volume_test"].status == "trained", trained.lines()
        report = r.detect(parse_time("2022-01-24T00:00:00Z"), parse_time("2022-01-25T00:00:00Z"))
        assert report.health == [], [h.message for h in report.health]
    by_file = anomalies_json(file_prefix)
    by_indexer = anomalies_json(idx_prefix)
    assert len(by_file) > 0          # the attack day raises some (3 at the time of writing)
    strip = lambda events: [{k: v for k, v in e["anomaly"].items() if k not in ("detected_at", "model_version")}
                            for e in events]
    assert strip(by_indexer) == strip(by_file)
    client = opensearch.client()
    stream = stream_name(shipping_prefix, "volume_test")
    client.indices.refresh(index=stream)
    shipped = client.search(index=stream, body={"size": 1000, "_source": ["anomaly.id"]})["hits"]["hits"]
    assert sorted(h["_id"] for h in shipped) == sorted(e["anomaly"]["id"] for e in by_indexer)


def test_no_alerts_for_hours_is_a_health_event_that_names_the_indexer(opensearch, ait_indexed, tmp_path):
    prefix = sandbox(tmp_path, "quiet", indexer_config(opensearch))
    first = parse_time("2022-02-10T00:03:00Z")     # weeks after the last AIT alert
    for now in (first, first + 7 * 3600):            # no_data_hours is 6
        report = sandbox_runner(prefix, now).run()
    messages = [h.message for h in report.health if h.check == "no_data"]
    assert len(messages) == 1, [(h.check, h.message) for h in report.health]
    assert messages[0].startswith("no alert in the indexer's wazuh-alerts-* for 7")
    assert "alerts.json" not in messages[0]
