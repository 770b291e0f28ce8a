"""NetFlow normaliser throughput: records per second on one core, against a naive
per-line `json.loads` + `json.dumps` loop over the same lines in the same run.

Input: the real pmacct records of the shared data (pmacctd print plugin) plus the
generator's nfacctd-style records of every scenario, replicated to --records lines with
the addresses and ports varied (so the address cache sees a realistic spread). Each
implementation runs in its own fresh process (one core), alternately, --repeats times:

- normalize: parse, normalise (direction, protocol, service, flags, ISO times), serialise
  (`FlowPipeline` without detections): the throughput the target is about;
- with_detections: the same plus every sliding-window flow detection (what
  `wazuh-anomaly netflow normalize` runs);
- naive: json.loads then json.dumps of each line, nothing else (the floor of any Python
  normaliser built on the standard library).

And, for the issue-15 target, the same records with their times rewritten two ways
(`distinct`: each its own nfacctd time; `repeated`: pmacctd's one-minute bin, 50,000
records to a bin), each through

- file_with_detections: `normalize_file` exactly as `wazuh-anomaly netflow normalize`
  runs it: every detection (port scan, brute force, beaconing, lateral movement, DNS,
  inbound, unusual and high outbound, DoS: none can be switched off), events appended to
  a file, the resume offset and detection windows journaled and saved after every
  delivery (stream.DELIVERY_LINES / _BYTES / _SECONDS), the settings built inside the
  timing;
- bare_loads: `json.loads` of each line and nothing else;

and the ratio of the two printed per kind of time (target >= 0.6). `file_with_detections`
runs the compiled fast path (wazuh_anomaly.netflow.flowfast; build it with
`python setup.py build_ext --inplace`: the bench says when it is missing);
`file_with_detections_python` the same command on the Python code alone, for comparison.

Target: at least 50,000 records/s for `normalize` on one core. Rates are records per CPU
second of the worker (one core's work; the shared machine makes wall time wait for a
core), with the wall-clock rate alongside.

    python bench/bench_netflow.py            # 300,000 records, 3 repeats, ~1 min
    python bench/bench_netflow.py --quick    # a few seconds, for the smoke test
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import measure

sys.path.insert(0, str(measure.REPO / "integration"))   # this checkout's package, not an installed one
TARGET_RECORDS_PER_SECOND = 50_000
TARGET_RATIO_TO_BARE_LOADS = 0.6   # with every detection, against json.loads alone, same run (issue 15)
TIMES = ("distinct", "repeated")


def build_input(path: Path, records: int, data_dir: Path | None) -> int:
    from wazuh_anomaly.netflow.generate import SCENARIOS, raw_records
    base: list[dict] = []
    pmacct = Path(data_dir or measure.SHARED_DATA) / "pmacct"
    for f in sorted(pmacct.glob("*.json")):
        base.extend(json.loads(line) for line in f.read_text().splitlines() if line.strip())
    for name in SCENARIOS:
        base.extend(raw_records(name, 5))
    rng = random.Random(11)
    with path.open("w", encoding="utf-8") as out:
        for i in range(records):
            r = dict(base[i % len(base)])
            r["ip_src"] = _vary(r["ip_src"], rng)
            if "port_src" in r and r["port_src"]:
                r["port_src"] = 1024 + (r["port_src"] + i) % 64000
            out.write(json.dumps(r) + "\n")
    return len(base)


def timed_input(source: Path, path: Path, kind: str) -> None:
    """The same records with their times rewritten. `distinct`: every record its own time
    (nfacctd's timestamp_start/end, a millisecond apart); `repeated`: every record stamped
    with its one-minute bin as pmacctd writes them, 50,000 records to a bin (a busy link)."""
    from datetime import datetime, timezone
    start = 1772445600.0
    with source.open("rb") as src, path.open("w", encoding="utf-8") as out:
        for i, line in enumerate(src):
            r = json.loads(line)
            for key in ("timestamp_start", "timestamp_end", "stamp_inserted", "stamp_updated", "peer_ip_src"):
                r.pop(key, None)
            if kind == "distinct":
                at = start + i * 0.001
                r["peer_ip_src"] = "10.0.0.1"
                r["timestamp_start"] = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
                r["timestamp_end"] = datetime.fromtimestamp(at + 0.5, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
            else:
                at = start + (i // 50_000) * 60
                r["stamp_inserted"] = datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            out.write(json.dumps(r) + "\n")


def _vary(ip: str, rng: random.Random) -> str:
    if ":" in ip:
        return ip
    head, _, _ = ip.rpartition(".")
    return f"{head}.{rng.randint(1, 254)}"


def worker(kind: str, input_path: Path) -> dict:
    if kind.startswith("file_with_detections"):     # what `wazuh-anomaly netflow normalize` runs: file in, file out, state
        from wazuh_anomaly.netflow.settings import NetflowSettings
        from wazuh_anomaly.netflow.stream import FileOutput, compiled_available, normalize_file, state_file_for
        compiled = kind == "file_with_detections"
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "netflow.json"
            started, cpu = time.perf_counter(), time.process_time()
            stats = normalize_file(input_path, FileOutput(out), NetflowSettings(),
                                   state_file=state_file_for(Path(tmp) / "state", input_path), compiled=compiled)
            seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        assert stats.skipped == 0, stats.describe()
        assert stats.tagged, "no detection fired: the run would not measure the detections' work"
        return {"records": stats.records, "seconds": seconds, "cpu_seconds": cpu_seconds,
                "records_per_second": stats.records / cpu_seconds, "records_per_wall_second": stats.records / seconds,
                "peak_rss_mib": measure.peak_rss_mib(), "tags": stats.tags,
                "compiled": compiled and compiled_available()}
    lines = input_path.read_bytes().splitlines()
    if kind == "bare_loads":                # the floor: json.loads of each line, nothing else
        started, cpu = time.perf_counter(), time.process_time()
        for line in lines:
            json.loads(line)
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        return {"records": len(lines), "seconds": seconds, "cpu_seconds": cpu_seconds,
                "records_per_second": len(lines) / cpu_seconds, "records_per_wall_second": len(lines) / seconds,
                "peak_rss_mib": measure.peak_rss_mib()}
    if kind == "naive":
        started, cpu = time.perf_counter(), time.process_time()
        out = [json.dumps(json.loads(line)) for line in lines]
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        written = len(out)
    else:
        from wazuh_anomaly.netflow.settings import NetflowSettings
        from wazuh_anomaly.netflow.stream import BATCH_LINES, FlowPipeline
        pipeline = FlowPipeline(NetflowSettings(), detect=kind == "with_detections")
        where = [("bench", line) for line in lines]
        started, cpu = time.perf_counter(), time.process_time()
        for i in range(0, len(where), BATCH_LINES):
            pipeline.process(where[i:i + BATCH_LINES])
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
        written = pipeline.stats.records
        assert pipeline.stats.skipped == 0, pipeline.stats.describe()
    # CPU seconds: on a shared machine a process waits for a core; what one core does is CPU time.
    return {"records": written, "seconds": seconds, "cpu_seconds": cpu_seconds,
            "records_per_second": written / cpu_seconds, "records_per_wall_second": written / seconds,
            "peak_rss_mib": measure.peak_rss_mib()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20,000 records, one repeat")
    parser.add_argument("--data", type=Path, help="shared data directory (holds pmacct/)")
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "netflow.json")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.input)))
        return 0
    if args.quick:
        args.records, args.repeats = 20_000, 1
    kinds = ("normalize", "with_detections", "naive")
    runs: dict[str, list[dict]] = {k: [] for k in kinds}
    full_kinds = ("file_with_detections", "file_with_detections_python", "bare_loads")
    timed_runs = {times: {kind: [] for kind in full_kinds} for times in TIMES}
    env = measure.python_env()
    with tempfile.TemporaryDirectory() as tmp:
        input_path = Path(tmp) / "flows.json"
        distinct = build_input(input_path, args.records, args.data)
        timed = {}
        for times in TIMES:
            timed[times] = Path(tmp) / f"flows-{times}.json"
            timed_input(input_path, timed[times], times)
        for _ in range(args.repeats):
            for kind in kinds:
                # one core: the worker is single-threaded Python
                done = measure.run_measured([sys.executable, __file__, "--worker", kind, "--input", str(input_path)],
                                            env=env, cwd=str(measure.REPO))
                runs[kind].append(done.json_line())
            for times in TIMES:
                for kind in full_kinds:
                    done = measure.run_measured([sys.executable, __file__, "--worker", kind, "--input",
                                                 str(timed[times])], env=env, cwd=str(measure.REPO))
                    timed_runs[times][kind].append(done.json_line())
    summary = {}
    for kind in kinds:
        rates = [r["records_per_second"] for r in runs[kind]]
        summary[kind] = {"records_per_second": measure.median(rates),
                         "records_per_wall_second": measure.median([r["records_per_wall_second"] for r in runs[kind]]),
                         "cpu_seconds": measure.median([r["cpu_seconds"] for r in runs[kind]]),
                         "seconds": measure.median([r["seconds"] for r in runs[kind]]),
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in runs[kind])}
    ratios = [n["records_per_second"] / b["records_per_second"] for n, b in zip(runs["normalize"], runs["naive"])]
    detections = {}
    for times in TIMES:
        full, bare = timed_runs[times]["file_with_detections"], timed_runs[times]["bare_loads"]
        python = timed_runs[times]["file_with_detections_python"]
        ratio = measure.median([f["records_per_second"] / b["records_per_second"] for f, b in zip(full, bare)])
        python_ratio = measure.median([f["records_per_second"] / b["records_per_second"] for f, b in zip(python, bare)])
        assert full[0]["tags"] == python[0]["tags"], "the compiled and the Python path tagged differently"
        detections[times] = {
            "compiled": all(f["compiled"] for f in full),
            "file_with_detections_records_per_second": measure.median([f["records_per_second"] for f in full]),
            "python_file_with_detections_records_per_second": measure.median([f["records_per_second"] for f in python]),
            "bare_json_loads_records_per_second": measure.median([b["records_per_second"] for b in bare]),
            "ratio_to_bare_json_loads": ratio, "meets_ratio_target": ratio >= TARGET_RATIO_TO_BARE_LOADS,
            "python_ratio_to_bare_json_loads": python_ratio,
            "compiled_speedup": measure.median([f["records_per_second"] / p["records_per_second"]
                                                for f, p in zip(full, python)]),
            "tags": full[0]["tags"],
            "peak_rss_mib": max(f["peak_rss_mib"] for f in full)}
    results = {
        "benchmark": "netflow", "quick": args.quick, "repeats": args.repeats, "records": args.records,
        "distinct_base_records": distinct, **summary,
        "ratio_to_naive": measure.median(ratios),
        "target_records_per_second": TARGET_RECORDS_PER_SECOND,
        "meets_target": summary["normalize"]["records_per_second"] >= TARGET_RECORDS_PER_SECOND,
        "with_detections_by_times": detections,
        "target_ratio_to_bare_json_loads": TARGET_RATIO_TO_BARE_LOADS,
    }
    path = measure.write_results(args.out, results)
    measure.print_table(f"NetFlow normaliser, {args.records:,} records, median of {args.repeats}",
                        ["implementation", "records/CPU s", "records/wall s", "CPU s", "peak RSS MiB"],
                        [[k, summary[k]["records_per_second"], summary[k]["records_per_wall_second"],
                          summary[k]["cpu_seconds"], summary[k]["peak_rss_mib"]]
                         for k in kinds])
    print(f"normalize / naive speed: {results['ratio_to_naive']:.2f}x; target {TARGET_RECORDS_PER_SECOND:,} records/s "
          f"{'met' if results['meets_target'] else 'NOT met'}")
    for times in TIMES:
        d = detections[times]
        print(f"{times} timestamps: `netflow normalize` with every detection (file in, file out, state saved per "
              f"delivery) {d['file_with_detections_records_per_second']:,.0f} records/CPU s"
              f"{'' if d['compiled'] else ' (WITHOUT the compiled fast path: it is not built)'}, bare json.loads loop "
              f"{d['bare_json_loads_records_per_second']:,.0f}: {d['ratio_to_bare_json_loads']:.2f}x "
              f"(target {TARGET_RATIO_TO_BARE_LOADS}x {'met' if d['meets_ratio_target'] else 'NOT met'}); "
              f"the Python path alone {d['python_file_with_detections_records_per_second']:,.0f} records/CPU s, "
              f"{d['python_ratio_to_bare_json_loads']:.2f}x (compiled: {d['compiled_speedup']:.1f}x faster)")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
