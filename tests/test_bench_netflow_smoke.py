"""bench/bench_netflow.py runs end to end in --quick mode and writes the numbers it promises
(speed is never asserted: the machines are shared; see bench/README.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO, need_shared_data


def test_netflow_bench_quick_writes_all_three_rates_and_the_ratio(tmp_path):
    need_shared_data("pmacct")
    out = tmp_path / "netflow.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_netflow.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(out) in done.stdout
    results = json.loads(out.read_text())
    assert results["benchmark"] == "netflow" and results["quick"] is True and results["records"] == 20_000
    for kind in ("normalize", "with_detections", "naive"):
        for key in ("records_per_second", "records_per_wall_second", "cpu_seconds", "seconds", "peak_rss_mib"):
            value = results[kind][key]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (kind, key, value)
    assert results["ratio_to_naive"] > 0 and results["target_records_per_second"] == 50_000
    assert isinstance(results["meets_target"], bool)


def test_netflow_bench_prints_and_writes_the_ratio_with_every_detection_for_both_kinds_of_time(tmp_path):
    need_shared_data("pmacct")
    out = tmp_path / "netflow.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_netflow.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["target_ratio_to_bare_json_loads"] == 0.6
    for times in ("distinct", "repeated"):
        d = results["with_detections_by_times"][times]
        for key in ("file_with_detections_records_per_second", "bare_json_loads_records_per_second",
                    "ratio_to_bare_json_loads", "python_file_with_detections_records_per_second",
                    "python_ratio_to_bare_json_loads", "compiled_speedup"):
            assert isinstance(d[key], float) and math.isfinite(d[key]) and d[key] > 0, (times, key)
        assert isinstance(d["meets_ratio_target"], bool)
        assert d["compiled"] is True        # CI builds the compiled fast path; the bench measures it
        assert f"{times} timestamps: `netflow normalize` with every detection" in done.stdout
        assert f"{d['ratio_to_bare_json_loads']:.2f}x" in done.stdout
