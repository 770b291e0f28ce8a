"""Shared fixtures: where the shared real data lives, and small generated series."""
from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

# The library's side effects (telemetry, progress bars) stay off in tests too.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("TQDM_DISABLE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
# The AIT-ADS russellmitchell alerts and labels ship with the package (the sample-data
# command's copy, the same files as ../shared/data/ait-ads): the tests on them always run.
AIT_ALERTS = REPO / "integration" / "wazuh_anomaly" / "data" / "sample" / "russellmitchell.alerts.json.gz"
AIT_LABELS = AIT_ALERTS.with_name("russellmitchell.labels.json")


def _shares_a_fixture(item) -> bool:
    """Whether the test uses one of our module-, class- or session-scoped fixtures (a model
    trained once for the whole file, say)."""
    info = getattr(item, "_fixtureinfo", None)
    for defs in (info.name2fixturedefs.values() if info else ()):
        fixture = defs[-1]
        if fixture.scope != "function" and Path(inspect.getfile(fixture.func)).parent == REPO / "tests":
            return True
    return False


def pytest_collection_modifyitems(config, items):
    """Groups for pytest-xdist (`.ci/run`: -n 2 --dist loadgroup): every test on the one
    real OpenSearch runs on the same worker, one after the other (the shipping test stops
    and restarts the server, which no test of another worker may see); the tests of a file
    that share a fixture run on one worker, so the fixture is built once, not once per
    worker. Every other test goes to whichever worker is free."""
    for item in items:
        if "opensearch" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("opensearch"))
        elif _shares_a_fixture(item):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


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
    from wazuh_anomaly.config import load_config, load_scenarios
    from wazuh_anomaly.paths import Layout
    from wazuh_anomaly.runner import Runner

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
