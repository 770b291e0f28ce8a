"""Shipping anomalies to indexer data streams on a real OpenSearch: exactly once, through
replays, a server stopped mid-shipment, and refusals that are kept, never lost."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from indexer_fixtures import opensearch, script  # noqa: F401 (fixtures)
from wazuh_anomaly.core.config import ShippingSpec, load_config, parse_scenario
from wazuh_anomaly.core.findings import Anomaly, FeatureContribution
from wazuh_anomaly.core.paths import Layout
from wazuh_anomaly.emit.shipping import Shipper, stream_name

T0 = datetime(2022, 1, 24, tzinfo=timezone.utc)


def scenario(name="ship_test"):
    return parse_scenario({"name": name, "description": "shipping test", "features": [
        {"name": "logins", "aggregation": "count"}, {"name": "users", "aggregation": "distinct", "field": "data.dstuser"}]},
        f"{name}.yaml")


def anomalies(n, name="ship_test"):
    out = []
    for i in range(n):
        start = T0 + timedelta(minutes=5 * i)
        out.append(Anomaly(scenario=name, detector="seasonal", window_start=start, window_end=start + timedelta(minutes=5),
                           bucket_minutes=5, score=5.0 + i % 7, threshold=3.0, severity="medium",
                           top_features=(FeatureContribution("logins", 40.0 + i, 3.0, 0.8, 9.0),
                                         FeatureContribution("users", 4.0, 1.0, 0.2, 2.0)),
                           model_version="v1", entity_field="agent.name", entity_value=f"agent-{i % 3}"))
    return out


def config_for(tmp_path: Path, server, **shipping):
    prefix = tmp_path / "ossec"
    (prefix / "etc" / "anomaly").mkdir(parents=True)
    config = load_config(Layout(prefix))
    from dataclasses import replace
    return replace(config, indexer=server.spec(), shipping=replace(ShippingSpec(enabled=True), **shipping))


def stream_docs(server, stream):
    client = server.client()
    client.indices.refresh(index=stream)
    hits = client.search(index=stream, body={"size": 10000, "_source": ["anomaly.id"]})["hits"]["hits"]
    return [h["_source"]["anomaly"]["id"] for h in hits]


def fresh_prefix(tmp_path):
    import uuid
    return f"wa-test-{uuid.uuid4().hex[:10]}"


def test_anomalies_go_to_a_data_stream_and_a_replay_never_duplicates(opensearch, tmp_path, caplog):
    prefix = fresh_prefix(tmp_path)
    config = config_for(tmp_path, opensearch, prefix=prefix)
    shipper = Shipper(config, [scenario()])
    first = shipper.ship(anomalies(30))
    assert (first.spooled, first.delivered, first.already, first.pending) == (30, 30, 0, 0)
    assert first.health == []
    again = Shipper(config, [scenario()]).ship(anomalies(30))
    assert (again.delivered, again.already) == (0, 30)
    stream = stream_name(prefix, "ship_test")
    ids = stream_docs(opensearch, stream)
    assert sorted(ids) == sorted(a.id for a in anomalies(30))
    client = opensearch.client()
    assert client.indices.get_data_stream(name=stream)["data_streams"][0]["name"] == stream
    mapping = client.indices.get_mapping(index=stream)
    props = next(iter(mapping.values()))["mappings"]["properties"]
    assert props["anomaly"]["properties"]["features"]["properties"]["logins"]["type"] == "double"
    assert props["@timestamp"]["type"] == "date"
    assert shipper.spool.files() == []
    # This server has no index-management plugin (not on Maven Central): ISM is skipped with a warning.
    assert not shipper.has_ism()
    assert "no index-management plugin" in caplog.text


def test_a_replay_after_the_stream_rolled_over_is_not_written_twice(opensearch, tmp_path):
    # A crash after _bulk succeeded but before the spool file was removed, then a rollover
    # (ISM's, by age): the replay goes to a new write index, where a 409 cannot catch it.
    prefix = fresh_prefix(tmp_path)
    config = config_for(tmp_path, opensearch, prefix=prefix)
    first = Shipper(config, [scenario()]).ship(anomalies(12))
    assert (first.delivered, first.already) == (12, 0)
    stream = stream_name(prefix, "ship_test")
    client = opensearch.client()
    client.indices.rollover(alias=stream)
    assert len(client.indices.get_data_stream(name=stream)["data_streams"][0]["indices"]) == 2
    client.indices.refresh(index=stream)
    again = Shipper(config, [scenario()]).ship(anomalies(15))      # the 12 again, and 3 new
    assert (again.delivered, again.already, again.pending) == (3, 12, 0)
    ids = stream_docs(opensearch, stream)
    assert len(ids) == len(set(ids)) == 15


def test_only_the_configured_scenarios_are_shipped(opensearch, tmp_path):
    config = config_for(tmp_path, opensearch, prefix=fresh_prefix(tmp_path), scenarios=("other",))
    result = Shipper(config, [scenario()]).ship(anomalies(5))
    assert (result.spooled, result.delivered) == (0, 0)


def test_wrong_password_keeps_every_anomaly_in_the_spool_with_a_health_event(opensearch, tmp_path):
    from dataclasses import replace
    config = config_for(tmp_path, opensearch, prefix=fresh_prefix(tmp_path))
    bad = replace(config, indexer=replace(config.indexer, password="not-the-password", retries=0))
    result = Shipper(bad, [scenario()]).ship(anomalies(10))
    assert result.delivered == 0 and result.pending == 10
    assert [h.check for h in result.health] == ["shipping_failed"]
    assert "rejected the username or password" in result.health[0].message
    assert opensearch.password not in result.health[0].message
    # the right password later delivers all of them, once
    later = Shipper(config, [scenario()]).deliver()
    assert later.delivered == 10


def test_a_feature_mapped_as_another_type_is_refused_clearly_and_kept(opensearch, tmp_path):
    prefix = fresh_prefix(tmp_path)
    config = config_for(tmp_path, opensearch, prefix=prefix)
    stream = stream_name(prefix, "ship_test")
    client = opensearch.client()
    # an admin's own template wins (higher priority) and maps a feature as a boolean
    client.indices.put_index_template(name=f"{prefix}-theirs", body={
        "index_patterns": [stream], "data_stream": {}, "priority": 900,
        "template": {"mappings": {"properties": {"anomaly": {"properties": {"features": {"properties": {
            "logins": {"type": "boolean"}}}}}}}}})
    try:
        shipper = Shipper(config, [scenario()])
        result = shipper.ship(anomalies(4))
        assert result.rejected == 4 and result.delivered == 0
        assert [h.check for h in result.health] == ["shipping_rejected"]
        assert "mapper_parsing_exception" in result.health[0].message
        assert len(shipper.spool.items_in(shipper.spool.rejected)) == 4     # kept, not lost
        from wazuh_anomaly.emit.shipping import check_shipping
        lines = check_shipping(config, [scenario()])
        assert not lines[-1].ok and "logins is boolean" in lines[-1].message
    finally:
        client.indices.delete_data_stream(name=stream)
        client.indices.delete_index_template(name=f"{prefix}-theirs")


class StopsTheServerAfter:
    """The real client, which stops the real server as soon as `batches` bulk requests have
    been answered: the shipment is cut between two batches, every time at the same place."""

    def __init__(self, client, server, batches: int):
        self._client, self._server, self._left = client, server, batches

    def __getattr__(self, name):
        return getattr(self._client, name)

    def bulk(self, *args, **kwargs):
        answer = self._client.bulk(*args, **kwargs)
        self._left -= 1
        if self._left == 0:
            self._server.stop()
        return answer


@pytest.mark.restarts_opensearch
def test_server_stopped_mid_shipment_then_restarted_delivers_each_anomaly_exactly_once(opensearch, tmp_path):
    from dataclasses import replace
    prefix = fresh_prefix(tmp_path)
    config = config_for(tmp_path, opensearch, prefix=prefix, batch_size=50)
    config = replace(config, indexer=replace(config.indexer, retries=1, timeout_seconds=5))
    batch = anomalies(3000)
    client = StopsTheServerAfter(opensearch.client(), opensearch, batches=2)
    with opensearch.lock(exclusive=True):        # no other test runs on the server meanwhile
        try:
            first = Shipper(config, [scenario()], client=client).ship(batch)
            assert (first.delivered, first.already, first.pending) == (100, 0, 2900)
            assert "shipping_failed" in [h.check for h in first.health]
        finally:
            opensearch.start()
    second = Shipper(config, [scenario()]).deliver()
    assert (second.delivered, second.already, second.pending) == (2900, 0, 0)
    ids = stream_docs(opensearch, stream_name(prefix, "ship_test"))
    assert len(ids) == len(set(ids)) == 3000
    assert set(ids) == {a.id for a in batch}


def test_an_installed_policy_as_ism_returns_it_counts_as_the_same_and_a_changed_one_does_not(tmp_path):
    # The shape of GET _plugins/_ism/policies/<id> (OpenSearch's ISM documentation): ISM adds
    # each action's retry, rollover's copy_alias and the template's last_updated_time.
    from copy import deepcopy
    from dataclasses import replace

    from wazuh_anomaly.emit.shipping import _same_policy, ism_policy

    (tmp_path / "etc/anomaly").mkdir(parents=True)
    config = load_config(Layout(tmp_path))
    config = replace(config, shipping=replace(config.shipping, enabled=True))
    wanted = ism_policy(config)["policy"]
    returned = deepcopy(wanted)
    returned.update({"policy_id": "wazuh-anomaly-policy", "last_updated_time": 1725270084128, "schema_version": 21,
                     "error_notification": None})
    for state in returned["states"]:
        for action in state["actions"]:
            action["retry"] = {"count": 3, "backoff": "exponential", "delay": "1m"}
            if "rollover" in action:
                action["rollover"]["copy_alias"] = False
    returned["ism_template"][0]["last_updated_time"] = 1725270084128
    assert _same_policy(returned, wanted)
    older = deepcopy(returned)
    older["states"][0]["transitions"][0]["conditions"]["min_index_age"] = "30d"   # delete_after_days changed
    assert not _same_policy(older, wanted)
    fewer = deepcopy(returned)
    fewer["states"] = fewer["states"][:1]
    assert not _same_policy(fewer, wanted)
