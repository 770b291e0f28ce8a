"""bench/bench_run_memory.py runs end to end in --quick mode: a scheduled run with the
real-time part installed trains the due real-time models and reports its peak memory
(never asserted against the target here: the quick data is tiny)."""
from __future__ import annotations

from test_bench_smoke import common_keys, positive, run_bench


def test_run_memory_bench_quick_measures_a_run_that_trains_the_realtime_models(tmp_path):
    results = run_bench("bench_run_memory.py", tmp_path / "run_memory.json")
    common_keys(results, "run_memory")
    positive(results, "run.peak_rss_mib", "run.wall_seconds", "target_mib")
    # the 4,000 quick alerts hold command events enough for the command model, no FIM event
    assert results["run"]["realtime_models_after"] == ["command_rare.json"]
    assert isinstance(results["meets_target"], bool)
