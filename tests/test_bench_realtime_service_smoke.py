"""bench/realtime_service.py runs end to end in --quick mode and writes the numbers it
promises (speed itself is never asserted: the machines are shared and noisy)."""
from __future__ import annotations

from test_bench_smoke import common_keys, positive, run_bench


def test_realtime_service_bench_quick_measures_rate_delay_memory_and_the_per_alert_baseline(tmp_path):
    results = run_bench("realtime_service.py", tmp_path / "realtime_service.json", timeout=900)
    common_keys(results, "realtime_service")
    positive(results, "burst.alerts_per_second", "burst.alerts_per_cpu_second", "burst.cpu_seconds",
             "paced.achieved_rate", "paced.delay_p50_seconds", "paced.delay_p99_seconds", "paced.findings",
             "long.rss_end_mib", "long.rss_max_mib", "long.alerts_per_second",
             "baseline_per_alert.alerts_per_second", "baseline_per_alert.median_ms_per_alert",
             "speedup_vs_per_alert", "target_alerts_per_second", "target_p99_seconds")
    assert results["burst"]["alerts"] == 3000 and results["paced"]["alerts"] == 1300
    assert results["paced"]["rate"] == 260
    assert results["paced"]["delay_p50_seconds"] <= results["paced"]["delay_p99_seconds"] <= results["paced"]["delay_max_seconds"]
    assert results["long"]["samples"] and results["long"]["rss_max_mib"] >= results["long"]["rss_end_mib"]
    assert results["meets_target"] == (results["burst"]["alerts_per_second"] >= 2000
                                       and results["paced"]["delay_p99_seconds"] <= 2)
