"""Shared fixtures: where the shared real data lives, and small generated series."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings

# The library's side effects (telemetry, progress bars) stay off in tests too.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

# Property tests draw the same examples in every CI run (no luck either way); a
# developer's run explores new ones (set CI=true to reproduce CI's).
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The AIT-ADS russellmitchell alerts and labels ship with the package (the sample-data
# command's copy, the same files as ../shared/data/ait-ads): the tests on them always run.
AIT_ALERTS = REPO / "integration" / "wazuh_anomaly" / "data" / "sample" / "russellmitchell.alerts.json.gz"
AIT_LABELS = AIT_ALERTS.with_name("russellmitchell.labels.json")


@pytest.fixture(autouse=True)
def the_opensearch_server_is_shared_while_a_test_uses_it(request):
    """Under pytest-xdist (`.ci/run`: -n 2 --dist loadfile) two workers use the one real
    OpenSearch: each test on it holds the server's lock shared, and the test that stops and
    restarts the server (marked restarts_opensearch) holds it alone, so no test of the
    other worker ever sees the server down."""
    if "opensearch" not in request.fixturenames or request.node.get_closest_marker("restarts_opensearch"):
        yield
        return
    with request.getfixturevalue("opensearch").lock(exclusive=False):
        yield


@pytest.fixture(autouse=True)
def cli_log_handlers_are_removed_after_each_test():
    """cli.main adds its console handler on every call; one left behind would write into
    a later test's closed capture and print a logging traceback there."""
    logger = logging.getLogger("wazuh_anomaly")
    before = list(logger.handlers)
    yield
    for handler in [h for h in logger.handlers if h not in before]:
        logger.removeHandler(handler)
        handler.close()


def sandbox_runner(prefix: Path, now: float, *, strict: bool = True):
    """A Runner with a sandbox prefix's config and scenario files, at `now` (seconds);
    strict: every scenario file must load (else the runner reports the broken ones)."""
    from wazuh_anomaly.core.config import load_config, load_scenarios
    from wazuh_anomaly.core.paths import Layout
    from wazuh_anomaly.ops.runner import Runner

    layout = Layout(prefix)
    scenarios, errors = load_scenarios(layout.scenarios_dir)
    assert not (strict and errors), errors
    return Runner(load_config(layout), scenarios, config_errors=errors, now=now)


def need_shared_data(path: str) -> Path:
    """A file of ../shared/data that does not ship with the package (the pmacct flows, the
    wazuh-alerts exports); the test is skipped without it."""
    full = SHARED_DATA / path
    if not full.exists():
        pytest.skip(f"real data not found at {full} (../shared beside the repo)")
    return full


@pytest.fixture
def seasonal_frame() -> pd.DataFrame:
    """Three days of 5-minute buckets with a daily cycle and Poisson noise, 3 features."""
    rng = np.random.default_rng(7)
    index = pd.date_range("2024-03-01", periods=3 * 288, freq="5min", tz="UTC", name="bucket")
    hour = index.hour.to_numpy()
    base = 3 + 2 * np.sin(2 * np.pi * hour / 24)
    data = np.column_stack([rng.poisson(base), rng.poisson(base / 2), rng.poisson(1, len(index))])
    return pd.DataFrame(data.astype(float), index=index, columns=["logins", "failures", "distinct_users"])
