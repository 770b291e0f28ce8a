"""bench/bench_integration.py runs end to end in --quick mode and writes the numbers it
promises (speed itself is never asserted: the machines are shared and noisy)."""
from __future__ import annotations

import pytest

from conftest import SHARED_DATA
from test_bench_smoke import common_keys, positive, run_bench

needs_alerts = pytest.mark.skipif(not (SHARED_DATA / "wazuh-alerts" / "wazuh_attack_lines.json").exists(),
                                  reason="real alerts not found under ../shared/data/wazuh-alerts")


@needs_alerts
def test_integration_bench_quick_times_both_paths_against_a_bare_interpreter(tmp_path):
    results = run_bench("bench_integration.py", tmp_path / "integration.json", timeout=600)
    common_keys(results, "integration")
    assert results["repeats"] == 5
    positive(results, "baseline.median_ms", "known.median_ms", "known.ratio", "finding.median_ms", "finding.ratio",
             "finding.lines_written", "target_ms", "target_ratio")
    assert results["heavy_modules_loaded"] == []
    assert isinstance(results["meets_target"], bool)
    assert results["meets_target"] == all(results[k]["median_ms"] < 60 and results[k]["ratio"] <= 3 for k in ("known", "finding"))
