"""bench/bench_indexer.py runs end to end in --quick mode against the real server and
writes the numbers it promises (speed is never asserted here: bench/README.md)."""
from __future__ import annotations

import json
import math
import subprocess
import sys

from indexer_fixtures import REPO, ait_indexed, opensearch  # noqa: F401 (fixtures)


def test_indexer_bench_quick_writes_both_paths_and_their_ratio(opensearch, ait_indexed, tmp_path):
    out = tmp_path / "indexer.json"
    done = subprocess.run([sys.executable, str(REPO / "bench" / "bench_indexer.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=900, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert str(out) in done.stdout
    results = json.loads(out.read_text())
    assert results["benchmark"] == "indexer" and results["quick"] is True
    assert results["documents"] == 45544
    assert "rule_diversity" not in results["scenarios"] and "alert_volume" in results["scenarios"]
    for value in (results["pushdown"]["seconds"], results["raw"]["seconds"], results["pushdown"]["peak_rss_mib"],
                  results["raw"]["peak_rss_mib"], results["speedup"], results["checksum"]):
        assert isinstance(value, float) and math.isfinite(value) and value > 0
    # the password reaches the workers through the environment, never their command line
    assert opensearch.password not in done.stdout + done.stderr
