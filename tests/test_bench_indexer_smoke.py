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
    # the entity case (20 and 200 agents with --quick): the frame grows with the agents,
    # the memory of paging stays about one composite page
    small, large = results["entities"]
    assert (small["agents"], large["agents"]) == (20, 200)
    assert (small["entities"], large["entities"]) == (20, 200) and large["cells"] == 200 * 48
    for run in (small, large):
        assert run["round_trips"] >= 1 and run["seconds"] > 0 and 0 < run["kept_mib"] <= run["peak_mib"]
    assert large["kept_mib"] > 5 * small["kept_mib"]
    # the password reaches the workers through the environment, never their command line
    assert opensearch.password not in done.stdout + done.stderr
