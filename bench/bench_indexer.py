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

Then the entity case (`--entities`, default 200,2000; 20,200 with --quick): generated
alerts of N agents, every agent in every 30-minute bucket of one day (an index per N), and a
scenario with one entity per agent (`entity.top: all`, two counts and a distinct). A fresh
worker per N pushes it down under tracemalloc and reports the peak of the fill, what the
aggregator keeps afterwards (its cells: the frame) and the difference, the transient
memory of paging, which must stay about one composite page whatever N.

  python bench/bench_indexer.py [--quick] [--repeats N] [--entities 200,2000] [--out FILE]
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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))   # the Filebeat-like loader
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


ENTITY_DAY = 1677628800.0        # 2023-03-01T00:00:00Z
ENTITY_INDEX = "bench-entity-agents-{n}"    # N agents' alerts: an index of their own
ENTITY_BUCKET_MINUTES = 30
ENTITY_SCENARIO = {
    "name": "bench_entities", "description": "every agent an entity", "bucket_minutes": ENTITY_BUCKET_MINUTES,
    "entity": {"field": "agent.name", "top": "all"},
    "features": [
        {"name": "alerts", "aggregation": "count"},
        {"name": "high", "aggregation": "count", "filter": {"rule.level": {"min": 8}}},
        {"name": "rules", "aggregation": "distinct", "field": "rule.id"},
    ]}


def entity_alerts(n: int, day: float):
    """(ts, alert) for n agents, 1 to 3 alerts of each agent in every bucket of the day."""
    step = ENTITY_BUCKET_MINUTES * 60
    for b in range(int(86400 // step)):
        for a in range(n):
            for k in range(1 + (a * 7 + b) % 3):
                ts = day + b * step + (a * 13 + k * 101) % step
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + ".000+0000"
                yield ts, {"timestamp": stamp, "id": f"bench-{n}-{b}-{a}-{k}",
                           "agent": {"id": f"{a:05d}", "name": f"agent-{a:05d}"},
                           "rule": {"id": str(5700 + (a + k) % 40), "level": 3 + (a + b + k) % 10,
                                    "groups": ["syslog"]}}


def entity_count(n: int) -> int:
    step = ENTITY_BUCKET_MINUTES * 60
    return sum(1 + (a * 7 + b) % 3 for b in range(int(86400 // step)) for a in range(n))


def entity_worker(n: int) -> None:
    """One measured push-down of the entity scenario for n agents; prints its numbers as JSON."""
    import tracemalloc
    from wazuh_anomaly.core.config import parse_scenario
    day = ENTITY_DAY
    from wazuh_anomaly.features.aggregate import FeatureAggregator
    from wazuh_anomaly.sources.indexer import IndexerSource

    class Counting:
        """The real client, counting round trips."""
        def __init__(self, client):
            self.client, self.round_trips = client, 0

        def __getattr__(self, name):
            return getattr(self.client, name)

        def search(self, **kwargs):
            self.round_trips += 1
            return self.client.search(**kwargs)

        def msearch(self, **kwargs):
            self.round_trips += 1
            return self.client.msearch(**kwargs)
    from dataclasses import replace
    env = server_env()
    spec = replace(spec_from(env), index=ENTITY_INDEX.format(n=n))
    client = Counting(IndexerSource(spec, Path("/nonexistent")).client)
    source = IndexerSource(spec, Path("/nonexistent"), client=client)
    client.info()
    scenario = parse_scenario(ENTITY_SCENARIO, "bench_entities.yaml")
    agg = FeatureAggregator(scenario, day, day + 86400)
    source.push_down([agg], day, day + 86400)          # untimed: the field mappings, a warm server
    agg = FeatureAggregator(scenario, day, day + 86400)
    client.round_trips = 0
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    source.push_down([agg], day, day + 86400)
    seconds = time.perf_counter() - started
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frames = agg.frames()
    cells = int(sum((frame.to_numpy().sum(axis=1) > 0).sum() for frame in frames.values()))
    print(json.dumps({"entities": len(frames), "cells": cells, "round_trips": client.round_trips,
                      "seconds": seconds, "peak_mib": (peak - before) / 2**20,
                      "kept_mib": (current - before) / 2**20, "transient_mib": (peak - current) / 2**20,
                      "alerts": int(sum(frame["alerts"].sum() for frame in frames.values()))}))


def ensure_entity_data(env: dict[str, str], sizes: list[int]) -> None:
    from alert_indices import ALERTS_TEMPLATE, index_alerts
    client = admin_client(env)
    params = {"ignore_unavailable": "true", "allow_no_indices": "true"}
    for n in sizes:
        index = ENTITY_INDEX.format(n=n)
        if client.count(index=index, params=params)["count"] != entity_count(n):
            client.indices.delete(index=index, params=params)
            client.indices.create(index=index, body=ALERTS_TEMPLATE["template"])
            index_alerts(client, entity_alerts(n, ENTITY_DAY), index=index)


def admin_client(env: dict[str, str]):
    from dataclasses import replace
    from wazuh_anomaly.core.indexer import make_client
    return make_client(replace(spec_from(env), password=Path(env["OPENSEARCH_PASSWORD_FILE"]).read_text()
                               if env.get("OPENSEARCH_PASSWORD_FILE") else ""), Path("/nonexistent"))


def ensure_data(env: dict[str, str]) -> None:
    from indexer_fixtures import ait_alerts
    from alert_indices import index_alerts, install_template
    client = admin_client(env)
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
    parser.add_argument("--entities", help="agents of the entity case, comma-separated "
                                               "(default 200,2000; 20,200 with --quick; 0: skip it)")
    parser.add_argument("--worker", choices=("pushdown", "raw", "entities"), help=argparse.SUPPRESS)
    parser.add_argument("--worker-n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "entities":
        entity_worker(args.worker_n)
        return 0
    if args.worker:
        worker(args.worker)
        return 0
    sizes = [int(n) for n in (args.entities or ("20,200" if args.quick else "200,2000")).split(",") if int(n) > 0]
    repeats = 1 if args.quick else args.repeats
    started_here = subprocess.run(["bash", str(SCRIPT), "status"], capture_output=True).returncode != 0
    done = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"OpenSearch could not be started: {done.stderr[-2000:]}")
    try:
        env = server_env()
        ensure_data(env)
        ensure_entity_data(env, sizes)
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
        entity_runs = []
        for n in sizes:
            measured = run_measured([sys.executable, __file__, "--worker", "entities", "--worker-n", str(n)],
                                    env=child_env)
            entity_runs.append({"agents": n, **measured.json_line()})
            if entity_runs[-1]["entities"] != n or entity_runs[-1]["alerts"] != entity_count(n):
                raise SystemExit(f"the entity case for {n} agents found {entity_runs[-1]['entities']} entities and "
                                 f"{entity_runs[-1]['alerts']} alerts, not {n} and {entity_count(n)}")
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
        "entities": entity_runs,
    }
    path = write_results(Path(args.out), results)
    print_table(f"features of {results['documents']} AIT alerts over 4 days, {len(results['scenarios'])} scenarios, "
                f"OpenSearch {results['opensearch_version']}, median of {repeats}",
                ["path", "seconds", "peak RSS MiB"],
                [["pushdown", results["pushdown"]["seconds"], results["pushdown"]["peak_rss_mib"]],
                 ["raw documents + local", results["raw"]["seconds"], results["raw"]["peak_rss_mib"]]])
    print(f"speedup {results['speedup']:.1f}x (target {results['target_speedup']:g}x)")
    if entity_runs:
        print_table("every agent an entity: one day, 30-minute buckets, push-down under tracemalloc",
                    ["agents", "cells", "round trips", "seconds", "peak MiB", "kept MiB", "transient MiB"],
                    [[r["agents"], r["cells"], r["round_trips"], r["seconds"], r["peak_mib"], r["kept_mib"],
                      r["transient_mib"]] for r in entity_runs])
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
