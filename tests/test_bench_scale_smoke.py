"""bench/bench_scale.py runs end to end in --quick mode and writes the numbers it promises
(speed is never asserted: the machines are shared; see bench/README.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from conftest import REPO


def test_scale_bench_quick_trains_and_runs_every_agent_at_both_spreads(tmp_path):
    out = tmp_path / "scale.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_scale.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert str(out) in done.stdout
    results = json.loads(out.read_text())
    assert results["benchmark"] == "scale" and results["quick"] is True
    assert [(r["spread"], r["agents"]) for r in results["rows"]] == [("total", 5), ("per-agent", 5)]
    for row in results["rows"]:
        assert row["alerts"] > 0 and row["model_bytes"] > 0 and row["anomaly_lines"] >= 0
        assert row["train"]["series"] == 5          # every agent modelled
        assert [row[s]["buckets_scored"] for s in ("first_run", "catchup_run", "five_minute_run")] == [1, 144, 1]
        for step in ("train", "first_run", "catchup_run", "five_minute_run"):
            for key in ("wall_seconds", "peak_rss_mib"):
                value = row[step][key]
                assert isinstance(value, float) and math.isfinite(value) and value > 0, (step, key, value)
