"""Features from the Wazuh indexer: aggregation pushdown against pulling the raw documents.

The AIT alerts (4 days, 45,544 alerts) are indexed into a real OpenSearch 2.19
(scripts/opensearch.sh, TLS + basic auth) as wazuh-alerts-4.x-YYYY.MM.DD. Then, each in a
fresh process, two untimed warm-up rounds of both (`--warmup`), then `--repeats` times, back
to back on the same server:

  pushdown  IndexerSource.push_down: every shipped scenario without `rare` features
            computed by the indexer (date_histogram / composite + sub-aggregations)
  raw       the same scenarios from every document of the 4 days pulled with PIT +
            search_after (full _source, as a client without pushdown must) and
            aggregated locally by FeatureAggregator

Both give the same feature frames (checked here through a checksum; the exact equality
is tests/test_indexer_source.py). Reported: the median seconds of each, the median of
the per-repeat ratios raw/pushdown (target >= 10), and each worker's peak RSS.

  /work/venv/bin/python bench/bench_indexer.py [--quick] [--repeats N] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from measure import (REPO, RESULTS, SCENARIOS_DIR, median, peak_rss_mib, print_table, python_env,  # noqa: E402
                     run_measured, write_results)

SCRIPT = REPO / "scripts" / "opensearch.sh"
START = 1642723200.0            # 2022-01-21T00:00:00Z
END = START + 4 * 86400         # 2022-01-25T00:00:00Z
AIT_COUNT = 45544


def server_env() -> dict[str, str]:
    done = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def spec_from(env: dict[str, str]):
    from wazuh_anomaly.core.config import IndexerSpec
    return IndexerSpec(hosts=(env["OPENSEARCH_URL"],), ca=env.get("OPENSEARCH_CA", ""),
                       username=env.get("OPENSEARCH_USER", ""), keystore=False, timeout_seconds=120)


def scenarios():
    from wazuh_anomaly.core.config import load_scenarios
    found, errors = load_scenarios(SCENARIOS_DIR)
    if errors:
        raise SystemExit(str(errors[0]))
    return [s for s in found if not s.has_rare_features]


def worker(path: str) -> None:
    """One measured pass; prints {"seconds", "peak_rss_mib", "checksum", "documents"}."""
    from wazuh_anomaly.features.aggregate import FeatureAggregator
    from wazuh_anomaly.sources.indexer import IndexerSource
    env = server_env()
    source = IndexerSource(spec_from(env), Path("/nonexistent"))
    chosen = scenarios()
    source.client.info()  # connect (TLS handshake, auth) before the clock starts
    started = time.perf_counter()
    aggregators = [FeatureAggregator(s, START, END) for s in chosen]
    documents = 0
    if path == "pushdown":
        rest, span = source.push_down(aggregators, START, END)
        assert rest == [], "every chosen scenario is pushed down"
        documents = span[2]
    else:
        adders = [a.add for a in aggregators]
        for ts, alert in source.read(START, END):
            documents += 1
            for add in adders:
                add(ts, alert)
    checksum = 0.0
    for agg in aggregators:
        for frame in agg.frames().values():
            checksum += float(frame.to_numpy().sum())
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_mib": peak_rss_mib(), "checksum": round(checksum, 6),
                      "documents": documents}))


def ensure_data(env: dict[str, str]) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from indexer_fixtures import ait_alerts
    from alert_indices import index_alerts, install_template
    from wazuh_anomaly.core.indexer import make_client
    spec = spec_from(env)
    from dataclasses import replace
    client = make_client(replace(spec, password=Path(env["OPENSEARCH_PASSWORD_FILE"]).read_text()
                                 if env.get("OPENSEARCH_PASSWORD_FILE") else ""), Path("/nonexistent"))
    pattern = "wazuh-alerts-4.x-2022.01.*"
    params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
    if client.count(index=pattern, params=params)["count"] != AIT_COUNT:
        client.indices.delete(index=pattern, params=params)
        install_template(client)
        index_alerts(client, ait_alerts())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat (the smoke test)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds of both paths first (default 2)")
    parser.add_argument("--out", default=str(RESULTS / "indexer.json"))
    parser.add_argument("--worker", choices=("pushdown", "raw"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker)
        return 0
    repeats = 1 if args.quick else args.repeats
    started_here = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode != 0
    done = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"OpenSearch could not be started: {done.stderr[-2000:]}")
    try:
        env = server_env()
        ensure_data(env)
        child_env = python_env()
        if env.get("OPENSEARCH_PASSWORD_FILE"):
            # the password goes to the workers through the environment, never argv
            child_env["WAZUH_ANOMALY_INDEXER_PASSWORD"] = Path(env["OPENSEARCH_PASSWORD_FILE"]).read_text()
        runs: dict[str, list[dict]] = {"pushdown": [], "raw": []}
        # untimed: a server just (re)started runs its first searches before the JIT has
        # compiled them, several times slower; both paths get the same warm-up
        for _ in range(0 if args.quick else args.warmup):
            for path in ("pushdown", "raw"):
                run_measured([sys.executable, __file__, "--worker", path], env=child_env)
        for _ in range(repeats):
            for path in ("pushdown", "raw"):
                measured = run_measured([sys.executable, __file__, "--worker", path], env=child_env)
                runs[path].append(measured.json_line())
    finally:
        if started_here and not os.environ.get("WAZUH_ANOMALY_OPENSEARCH_KEEP"):
            subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True)
    checksums = {r["checksum"] for path in runs for r in runs[path]}
    if len(checksums) != 1:
        raise SystemExit(f"pushdown and raw documents disagree: checksums {sorted(checksums)}")
    ratios = [raw["seconds"] / push["seconds"] for push, raw in zip(runs["pushdown"], runs["raw"])]
    results = {
        "benchmark": "indexer", "quick": args.quick, "repeats": repeats,
        "warmup_rounds": 0 if args.quick else args.warmup,
        "range": {"start": "2022-01-21T00:00:00Z", "end": "2022-01-25T00:00:00Z"},
        "documents": runs["raw"][0]["documents"],
        "scenarios": [s.name for s in scenarios()],
        "opensearch_version": env.get("OPENSEARCH_VERSION"),
        "pushdown": {"seconds": median([r["seconds"] for r in runs["pushdown"]]),
                     "peak_rss_mib": median([r["peak_rss_mib"] for r in runs["pushdown"]])},
        "raw": {"seconds": median([r["seconds"] for r in runs["raw"]]),
                "peak_rss_mib": median([r["peak_rss_mib"] for r in runs["raw"]])},
        "speedup": median(ratios),
        "target_speedup": 10.0,
        "checksum": checksums.pop(),
    }
    path = write_results(Path(args.out), results)
    print_table(f"features of {results['documents']} AIT alerts over 4 days, {len(results['scenarios'])} scenarios, "
                f"OpenSearch {results['opensearch_version']}, median of {repeats}",
                ["path", "seconds", "peak RSS MiB"],
                [["pushdown", results["pushdown"]["seconds"], results["pushdown"]["peak_rss_mib"]],
                 ["raw documents + local", results["raw"]["seconds"], results["raw"]["peak_rss_mib"]]])
    print(f"speedup {results['speedup']:.1f}x (target {results['target_speedup']:g}x)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
