"""The benchmarks in bench/ run end to end in --quick mode and write the numbers they promise.

Speed is never asserted here (the machines are shared and noisy): only that each script
finishes, writes its JSON with the expected keys, and that every figure is a sane
positive number. The real numbers come from running the scripts (bench/README.md).
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"


def run_bench(script: str, out: Path, *extra: str, timeout: int = 900) -> dict:
    done = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    assert str(out) in done.stdout, "the script names the file it wrote"
    return json.loads(out.read_text(encoding="utf-8"))


def positive(results: dict, *paths: str) -> None:
    """Each dotted path holds a finite number above zero."""
    for path in paths:
        value = results
        for key in path.split("."):
            assert key in value, f"{path} missing from the results"
            value = value[key]
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path} = {value!r}"
        assert math.isfinite(value) and value > 0, f"{path} = {value!r}"


def common_keys(results: dict, benchmark: str) -> None:
    assert results["benchmark"] == benchmark
    assert results["quick"] is True
    assert {"created", "machine", "repeats"} <= set(results)
    positive(results, "machine.cpus", "repeats")


def test_ingest_bench_quick_writes_both_rates_and_checks_equal_frames(tmp_path):
    results = run_bench("bench_ingest.py", tmp_path / "ingest.json")
    common_keys(results, "ingest")
    positive(results, "alerts", "bytes", "days", "speedup", "memory_ratio", "target_speedup",
             *(f"{impl}.{key}" for impl in ("ours", "naive", "ours_read_only")
               for key in ("alerts_per_second", "seconds", "peak_rss_mib")))
    assert results["alerts"] == 3000
    assert results["ours"]["alerts_per_second"] == pytest.approx(results["alerts"] / results["ours"]["seconds"])
    shipped = sorted(p.stem for p in (REPO / "wazuh" / "etc" / "anomaly" / "scenarios").glob("*.yaml")
                     if p.stem != "flow_baseline")   # reads NetFlow events, not alerts
    assert sorted(results["frames_equal_for"]) == shipped
    # the equality is not vacuous: the frames compared hold real counts
    assert sum(c["nonzero_cells"] for c in results["frames_equal_for"].values()) > 0
    assert isinstance(results["meets_target"], bool)


def test_ingest_bench_times_another_checkouts_source_against_ours(tmp_path):
    # the checkout itself as its own baseline: the ratio is measured, whatever it is
    results = run_bench("bench_ingest.py", tmp_path / "ingest.json", "--baseline", str(REPO))
    versus = results["read_only_vs_baseline"]
    assert versus["baseline"] == str(REPO) and len(versus["speed_ratio_each"]) == results["repeats"]
    positive(results, "read_only_vs_baseline.speed_ratio", "baseline_read_only.alerts_per_second")
    done = subprocess.run([sys.executable, str(BENCH / "bench_ingest.py"), "--quick", "--baseline", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode != 0 and "not a checkout of this repository" in done.stderr


def test_ingest_comparison_rejects_a_baseline_whose_frames_differ():
    import pandas as pd
    sys.path.insert(0, str(BENCH))
    try:
        from bench_ingest import compare_frames
    finally:
        sys.path.remove(str(BENCH))
    index = pd.date_range("2022-01-24", periods=3, freq="5min", tz="UTC", name="bucket")
    ours = {"s": {"web01": pd.DataFrame({"alerts": [1.0, 0.0, 2.0]}, index=index)}}
    same = {"s": {"web01": pd.DataFrame({"alerts": [1.0, 0.0, 2.0]}, index=index)}}
    other = {"s": {"web01": pd.DataFrame({"alerts": [1.0, 1.0, 2.0]}, index=index)}}
    renamed = {"s": {"web02": pd.DataFrame({"alerts": [1.0, 0.0, 2.0]}, index=index)}}
    assert compare_frames(ours, same) == {"s": {"entities": 1, "nonzero_cells": 2}}
    with pytest.raises(SystemExit, match="differ"):
        compare_frames(ours, other)
    with pytest.raises(SystemExit, match="entities differ"):
        compare_frames(ours, renamed)


def test_train_bench_quick_writes_mvad_time_steps_and_the_seasonal_baseline(tmp_path):
    results = run_bench("bench_train.py", tmp_path / "train.json")
    common_keys(results, "train")
    assert results["rows"] == 7 * 288
    assert results["threads"] == 2 and results["mvad"]["torch_threads"] == 2
    positive(results, "mvad.seconds", "mvad.steps", "mvad.seconds_per_step", "mvad.peak_rss_mib",
             "mvad.import_seconds", "mvad.train_windows", "seasonal.seconds", "seasonal.peak_rss_mib",
             "mvad_over_seasonal")
    assert results["mvad"]["seconds_per_step"] == pytest.approx(results["mvad"]["seconds"] / results["mvad"]["steps"])


@pytest.mark.slow
def test_run_bench_quick_times_a_cold_run_that_scores_one_bucket_per_scenario(tmp_path):
    results = run_bench("bench_run.py", tmp_path / "run.json")
    common_keys(results, "run")
    assert results["scenarios"] == ["alert_volume", "file_integrity"]
    assert results["buckets_scored_per_scenario"] == 1
    for name in results["scenarios"]:
        assert any(line.startswith(f"{name}: scored, 1 buckets scored")
                   for line in results["run"]["report"]), results["run"]["report"]
    positive(results, "run.wall_seconds", "run.peak_rss_mib", "import_torch.wall_seconds",
             "import_torch.peak_rss_mib", "run_over_import_torch", "rss_over_import_torch", "setup.seconds")
    assert isinstance(results["meets_target"], bool)
