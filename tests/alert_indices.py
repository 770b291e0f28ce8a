"""Alerts into daily `wazuh-alerts-4.x-YYYY.MM.DD` indices with a Wazuh-like mapping.

What Filebeat's Wazuh module does on a manager, for the tests and the benchmark
(developer tooling, so it is not part of the package): every string is a `keyword`
(Wazuh's template maps them so), `timestamp` is a `date`, rule.level and firedtimes are
numbers. Each alert's `_id` is its Wazuh alert id, so loading twice never duplicates.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterable

TEMPLATE_NAME = "wazuh-anomaly-test-alerts"

ALERTS_TEMPLATE = {
    "index_patterns": ["wazuh-alerts-4.x-*"],
    "priority": 1,
    "template": {
        "settings": {"number_of_shards": 2, "number_of_replicas": 0, "refresh_interval": "1s",
                     "mapping.total_fields.limit": 10000},
        "mappings": {
            "date_detection": False,
            "dynamic_templates": [{"string_as_keyword": {"match_mapping_type": "string",
                                                         "mapping": {"type": "keyword"}}}],
            "properties": {
                "timestamp": {"type": "date", "format": "date_optional_time||epoch_millis"},
                "@timestamp": {"type": "date"},
                "rule": {"properties": {"level": {"type": "long"}, "firedtimes": {"type": "long"},
                                        "id": {"type": "keyword"}, "groups": {"type": "keyword"},
                                        "description": {"type": "keyword"}}},
                "agent": {"properties": {"id": {"type": "keyword"}, "name": {"type": "keyword"},
                                         "ip": {"type": "keyword"}}},
                "data": {"properties": {"srcip": {"type": "keyword"}, "dstuser": {"type": "keyword"},
                                        "srcport": {"type": "keyword"}}},
                "full_log": {"type": "text"},
            },
        },
    },
}


def index_name(ts: float) -> str:
    return "wazuh-alerts-4.x-" + datetime.fromtimestamp(ts, timezone.utc).strftime("%Y.%m.%d")


def install_template(client, body: dict | None = None) -> None:
    client.indices.put_index_template(name=TEMPLATE_NAME, body=body or ALERTS_TEMPLATE)


def index_alerts(client, alerts: Iterable[tuple[float, dict]], *, batch: int = 2000, index: str | None = None) -> int:
    """Bulk-index (ts, alert) pairs into their daily index (or into `index`, which must
    exist); returns how many were sent."""
    from opensearchpy import helpers

    def actions():
        for ts, alert in alerts:
            yield {"_index": index or index_name(ts), "_id": str(alert.get("id") or f"{ts}"), "_source": alert}
    sent = 0
    for ok, item in helpers.streaming_bulk(client, actions(), chunk_size=batch, raise_on_error=True,
                                           request_timeout=120):
        sent += 1
    client.indices.refresh(index=index or "wazuh-alerts-4.x-*")
    return sent
