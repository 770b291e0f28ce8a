"""A real OpenSearch server for the tests, started through scripts/opensearch.sh.

Tests that use it fail when it cannot be started; only a developer may skip them
locally with WAZUH_ANOMALY_SKIP_OPENSEARCH=1 (ignored under .ci/run, which sets
WAZUH_ANOMALY_REQUIRE_OPENSEARCH=1, and when CI is set).
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from wazuh_anomaly.core.config import IndexerSpec
from wazuh_anomaly.sources import parse_wazuh_timestamp

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "opensearch.sh"
SHARED_AIT = REPO.parent / "shared" / "data" / "ait-ads" / "russellmitchell.alerts.json.gz"
BUNDLED_AIT = REPO / "integration" / "wazuh_anomaly" / "data" / "sample" / "russellmitchell.alerts.json.gz"
AIT_COUNT = 45544


def script(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)


@dataclass
class Server:
    url: str
    ca: str
    user: str
    password: str
    client_cert: str
    client_key: str
    lock_file: Path

    @contextlib.contextmanager
    def lock(self, *, exclusive: bool):
        """The server's lock across test processes (xdist workers): shared while a test uses
        the server, exclusive to stop it or to (re)load the alerts every test reads."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def spec(self, **changes) -> IndexerSpec:
        base = IndexerSpec(hosts=(self.url,), ca=self.ca, username=self.user, password=self.password,
                           keystore=False, timeout_seconds=30, retries=2)
        return replace(base, **changes)

    def client(self, **changes):
        from wazuh_anomaly.core.indexer import make_client
        return make_client(self.spec(**changes), Path("/nonexistent"))

    def stop(self) -> None:
        assert script("stop").returncode == 0

    def start(self) -> None:
        done = script("start")
        assert done.returncode == 0, done.stderr[-2000:]


def _env() -> dict[str, str]:
    done = script("env")
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture(scope="session")
def opensearch() -> Server:
    required = os.environ.get("CI") or os.environ.get("WAZUH_ANOMALY_REQUIRE_OPENSEARCH") == "1"
    if os.environ.get("WAZUH_ANOMALY_SKIP_OPENSEARCH") == "1" and not required:
        pytest.skip("WAZUH_ANOMALY_SKIP_OPENSEARCH=1: the real-OpenSearch tests are skipped (never in CI)")
    was_running = script("status").returncode == 0
    done = script("start")
    if done.returncode != 0:
        pytest.fail(f"OpenSearch could not be started by scripts/opensearch.sh: {done.stderr[-3000:]}")
    env = _env()
    password = Path(env["OPENSEARCH_PASSWORD_FILE"]).read_text() if env.get("OPENSEARCH_PASSWORD_FILE") else ""
    # beside the node's pid file: one lock per server, whatever process runs the tests
    lock_file = Path(env["OPENSEARCH_PID_FILE"]).parent.parent / "tests.lock"
    yield Server(env["OPENSEARCH_URL"], env.get("OPENSEARCH_CA", ""), env.get("OPENSEARCH_USER", ""), password,
                 env.get("OPENSEARCH_CLIENT_CERT", ""), env.get("OPENSEARCH_CLIENT_KEY", ""), lock_file)
    if not was_running and not os.environ.get("WAZUH_ANOMALY_OPENSEARCH_KEEP"):
        script("stop")


def ait_alerts() -> list[tuple[float, dict]]:
    path = SHARED_AIT if SHARED_AIT.exists() else BUNDLED_AIT
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            alert = json.loads(line)
            out.append((parse_wazuh_timestamp(alert["timestamp"]), alert))
    return out


@pytest.fixture(scope="session")
def ait_indexed(opensearch: Server) -> list[tuple[float, dict]]:
    """The AIT alerts in wazuh-alerts-4.x-2022.01.21..24 (loaded once; reloaded if incomplete)."""
    from alert_indices import index_alerts, install_template
    alerts = ait_alerts()
    client = opensearch.client()
    pattern = "wazuh-alerts-4.x-2022.01.*"
    with opensearch.lock(exclusive=True):      # another worker may be checking or loading them too
        count = client.count(index=pattern, params={"ignore_unavailable": "true", "allow_no_indices": "true"})["count"]
        if count != AIT_COUNT:
            client.indices.delete(index=pattern, params={"ignore_unavailable": "true", "allow_no_indices": "true"})
            install_template(client)
            index_alerts(client, alerts)
        assert client.count(index=pattern)["count"] == AIT_COUNT
    return alerts
