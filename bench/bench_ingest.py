"""Ingest rate of the manager's alert files: ours against a naive json.loads + pandas baseline.

The AIT-ADS alerts are laid out as a manager's logs/alerts tree (past days as
ossec-alerts-DD.json.gz, yesterday plain, today plain and hard-linked to alerts.json),
optionally replicated --scale times with the dates shifted by the data's span. Then,
each in its own fresh process, alternately, --repeats times:

- ours: one AlertsFileSource.read pass feeding a FeatureAggregator per shipped scenario
  (what `run` does), then every scenario's frames;
- read_only: our source alone, no features (where our time goes; not compared);
- naive: every line json.loads'ed, pd.json_normalize, then the same features per
  scenario with pandas masks, explode and groupby.

The first repeat of each also writes its frames, and the two are compared for every
scenario before anything is reported: the baseline computes the same thing.
Times cover the ingest and the features (imports excluded, they are the same pandas);
peak RSS is the whole worker process.

With --baseline DIR (another checkout of the repository, e.g. `git worktree add /tmp/main
main`), that checkout's source is also read alone (read_only, its package first on the
path), alternately with ours, and the speed ratio of our read to its read (CPU seconds,
paired per repeat) is reported: a change to the reading code is measured against the
code before it, on the same tree, in the same run.

    python bench/bench_ingest.py                 # about a minute
    python bench/bench_ingest.py --quick         # a few seconds, for the smoke test
    python bench/bench_ingest.py --baseline /tmp/main --repeats 6
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import measure
from alerts_tree import build_alerts_tree, day_range, read_ait_lines, replicate_by_day

TARGET_SPEEDUP = 5.0


# --------------------------------------------------------------------------- ours

def ours(alerts_dir: Path, scenarios, start: float, end: float):
    """One pass over the source feeding every scenario's aggregator, as `run` does."""
    from wazuh_anomaly.features.aggregate import FeatureAggregator
    from wazuh_anomaly.sources import AlertsFileSource

    aggregators = [FeatureAggregator(s, start, end) for s in scenarios]
    adds = [a.add for a in aggregators]
    n = 0
    for ts, alert in AlertsFileSource(alerts_dir).read(start, end):
        n += 1
        for add in adds:
            add(ts, alert)
    return n, {a.scenario.name: a.frames() for a in aggregators}


def ours_read_only(alerts_dir: Path, scenarios, start: float, end: float):
    """The source alone, no features: splits our time between reading and aggregating."""
    from wazuh_anomaly.sources import AlertsFileSource

    n = 0
    for _ in AlertsFileSource(alerts_dir).read(start, end):
        n += 1
    return n, {}


# --------------------------------------------------------------------------- naive baseline

def naive_files(alerts_dir: Path) -> list[Path]:
    """Every alerts file of the tree once (alerts.json is a hard link to today's file)."""
    seen, files = set(), []
    for folder, _, names in sorted(os.walk(alerts_dir)):
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith((".json", ".json.gz")):
                info = path.stat()
                if (info.st_dev, info.st_ino) not in seen:
                    seen.add((info.st_dev, info.st_ino))
                    files.append(path)
    return files


def naive(alerts_dir: Path, scenarios, start: float, end: float):
    """What one would write first: load every alert, one DataFrame, pandas per scenario."""
    import pandas as pd

    records = []
    for path in naive_files(alerts_dir):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    records.append(json.loads(line))
    df = pd.json_normalize(records)
    del records
    times = pd.to_datetime(df["timestamp"], format="ISO8601", utc=True)
    inside = (times >= pd.Timestamp(start, unit="s", tz="UTC")) & (times < pd.Timestamp(end, unit="s", tz="UTC"))
    df, times = df[inside], times[inside]
    return len(df), {s.name: naive_frames(df, times, s, start, end) for s in scenarios}


def _column(df, field: str):
    import pandas as pd
    return df[field] if field in df.columns else pd.Series(None, index=df.index, dtype=object)


def _text(v) -> str:
    """JSON true/false as Wazuh writes them (what the features compare), anything else as str."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _is_value(v) -> bool:
    """A scalar the features count (our _as_strings drops None, NaN for absent, dicts and lists)."""
    return v is not None and v == v and not isinstance(v, (dict, list))


def _condition_mask(df, cond):
    import math
    import pandas as pd
    if cond.not_in or cond.prefix is not None or cond.regex is not None:
        raise NotImplementedError("the naive baseline implements only the condition kinds of the shipped scenarios")
    col = _column(df, cond.field)
    mask = pd.Series(True, index=df.index)
    if cond.exists is not None:
        mask &= col.notna() == cond.exists
    if cond.equals:
        exploded = col.explode()
        hits = exploded[exploded.map(_is_value)].map(_text).isin(cond.equals)
        mask &= hits.groupby(level=0).any().reindex(df.index, fill_value=False)
    if cond.min is not None or cond.max is not None:
        number = pd.to_numeric(col, errors="coerce")
        lo = -math.inf if cond.min is None else cond.min
        hi = math.inf if cond.max is None else cond.max
        mask &= number.between(lo, hi)
    return mask


def _rare_counts(grouped, max_seen: int):
    """Per (entity, bucket): values the entity had in at most max_seen earlier buckets."""
    import pandas as pd
    sets = grouped.apply(set)
    out = {}
    for entity, per_bucket in sets.groupby(level=0):
        earlier: dict[str, int] = {}
        for key, values in per_bucket.sort_index().items():
            out[key] = float(sum(1 for v in values if earlier.get(v, 0) <= max_seen))
            for v in values:
                earlier[v] = earlier.get(v, 0) + 1
    return pd.Series(out, dtype=float)


def naive_frames(df, times, scenario, start: float, end: float) -> dict:
    import numpy as np
    import pandas as pd

    step = f"{scenario.bucket_minutes}min"
    index = pd.date_range(pd.Timestamp(start, unit="s", tz="UTC"), pd.Timestamp(end, unit="s", tz="UTC"),
                          freq=step, inclusive="left", name="bucket")
    bucket = times.dt.floor(step)
    if scenario.entity is not None:
        raw = _column(df, scenario.entity.field)
        valid = raw.map(lambda v: _is_value(v) and v != "")
        entity = raw[valid].map(str)
    else:
        valid = pd.Series(True, index=df.index)
        entity = pd.Series("", index=df.index)
    df, bucket = df[valid], bucket[valid]
    contributed = pd.Series(False, index=df.index)
    tables = {}
    for feature in scenario.features:
        mask = pd.Series(True, index=df.index)
        for cond in feature.filter:
            mask &= _condition_mask(df, cond)
        if feature.aggregation == "count":
            values = pd.Series(1.0, index=df.index)[mask]
        else:
            col = _column(df, feature.field)[mask]
            if feature.aggregation in ("distinct", "rare"):
                values = col.explode()
                values = values[values.map(_is_value)].map(_text)
            else:
                values = pd.to_numeric(col[col.map(lambda v: not isinstance(v, bool))], errors="coerce").dropna()
        contributed[values.index.unique()] = True
        grouped = values.groupby([entity[values.index], bucket[values.index]])
        if feature.aggregation == "rare":
            tables[feature.name] = _rare_counts(grouped, feature.max_seen)
            continue
        agg = {"count": "sum", "distinct": "nunique", "max": "max", "sum": "sum", "mean": "mean"}[feature.aggregation]
        tables[feature.name] = getattr(grouped, agg)()
    volume = contributed.groupby(entity).sum()
    volume = volume[volume > 0]
    ranked = sorted(volume.index, key=lambda e: (-volume[e], e))
    if scenario.entity is None:
        ranked, top = [""], None
    else:
        top = scenario.entity.top
    frames = {}
    for name in ranked[:top]:
        frame = pd.DataFrame(np.zeros((len(index), len(scenario.features))), index=index,
                             columns=[f.name for f in scenario.features])
        for feature_name, table in tables.items():
            if len(table) and name in table.index.get_level_values(0):
                frame[feature_name] = table.xs(name, level=0).reindex(index, fill_value=0.0).astype(float)
        frames[None if scenario.entity is None else name] = frame
    return frames


# --------------------------------------------------------------------------- comparison

def compare_frames(ours_frames: dict, naive_frames_: dict) -> dict[str, dict]:
    """Per scenario, how much was compared (entities, non-zero cells); raises naming the first difference."""
    import pandas as pd
    equal = {}
    for scenario, frames in ours_frames.items():
        other = naive_frames_[scenario]
        if list(frames) != list(other):
            raise SystemExit(f"scenario {scenario}: entities differ between ours and the baseline: "
                             f"{list(frames)[:5]} vs {list(other)[:5]}")
        for entity, frame in frames.items():
            try:
                pd.testing.assert_frame_equal(frame, other[entity], check_freq=False)
            except AssertionError as exc:
                raise SystemExit(f"scenario {scenario}, entity {entity}: ours and the baseline differ: {exc}")
        equal[scenario] = {"entities": len(frames),
                           "nonzero_cells": int(sum((f.to_numpy() != 0).sum() for f in frames.values()))}
    return equal


# --------------------------------------------------------------------------- processes

def worker(args) -> None:
    """One measured ingest in this fresh process; prints its numbers as one JSON line."""
    import pandas  # noqa: F401  - imported before the clock starts, as in both real programs
    from wazuh_anomaly.core.config import load_scenarios

    scenarios, errors = load_scenarios(Path(args.scenarios))
    if errors:
        raise SystemExit(str(errors[0]))
    scenarios = [s for s in scenarios if s.enabled and s.source == "alerts"]   # flow scenarios read netflow.json
    implementation = {"ours": ours, "naive": naive, "read_only": ours_read_only}[args.worker]
    rss_before = measure.current_rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    n_alerts, frames = implementation(Path(args.tree), scenarios, args.start, args.end)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    peak = measure.peak_rss_mib()
    if args.dump:
        with open(args.dump, "wb") as f:
            pickle.dump(frames, f)
    print(json.dumps({"alerts": n_alerts, "seconds": seconds, "cpu_seconds": cpu_seconds,
                      "rss_before_mib": rss_before, "peak_rss_mib": peak,
                      "scenarios": [s.name for s in scenarios],
                      "frames": sum(len(f) for f in frames.values())}))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="shared data directory (default ../shared/data beside the repo)")
    parser.add_argument("--scale", type=int, default=None, help="copies of the AIT alerts, dates shifted (default 2; 1 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="runs of each implementation (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small slice of the data, for the smoke test")
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "ingest.json")
    parser.add_argument("--scenarios", type=Path, default=measure.SCENARIOS_DIR)
    parser.add_argument("--baseline", type=Path,
                        help="another checkout of the repository: its source read alone, alternately with ours, "
                             "for the speed ratio of ours to it")
    parser.add_argument("--worker", choices=("ours", "naive", "read_only"), help=argparse.SUPPRESS)
    parser.add_argument("--tree", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--end", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--dump", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    scale = args.scale or (1 if args.quick else 2)
    repeats = args.repeats or (1 if args.quick else 3)
    limit = 3000 if args.quick else None
    source = measure.ait_alerts(args.data)
    lines = read_ait_lines(source, limit)
    days = replicate_by_day(lines, scale)
    start, end = day_range(days)
    env = measure.python_env()
    runs: dict[str, list[dict]] = {"ours": [], "naive": [], "read_only": []}
    envs = {name: env for name in runs}
    if args.baseline:
        if not (args.baseline / "integration" / "wazuh_anomaly").is_dir():
            raise SystemExit(f"{args.baseline}: not a checkout of this repository (no integration/wazuh_anomaly)")
        runs["baseline_read_only"] = []
        envs["baseline_read_only"] = dict(env, PYTHONPATH=str(args.baseline.resolve() / "integration") + os.pathsep
                                          + env["PYTHONPATH"])
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        alerts_dir = build_alerts_tree(tmp, days)
        n_days = len(days)
        del lines, days  # the workers are measured, not this process, but keep it small anyway
        tree_bytes = sum(p.stat().st_size for p in naive_files(alerts_dir))
        for repeat in range(repeats):
            # the baseline's read and ours swap places every repeat: neither always runs first
            names = list(runs)
            if repeat % 2 and args.baseline:
                names[names.index("read_only")], names[-1] = names[-1], "read_only"
            for name in names:
                worker_name = "read_only" if name == "baseline_read_only" else name
                argv = [sys.executable, str(Path(__file__).resolve()), "--worker", worker_name, "--tree", str(alerts_dir),
                        "--start", repr(start), "--end", repr(end), "--scenarios", str(args.scenarios)]
                if repeat == 0 and name in ("ours", "naive"):
                    argv += ["--dump", str(tmp / f"{name}.pickle")]
                measured = measure.run_measured(argv, env=envs[name])
                report = measured.json_line()
                report["process_seconds"] = measured.wall_seconds
                runs[name].append(report)
        with open(tmp / "ours.pickle", "rb") as f:
            ours_frames = pickle.load(f)
        with open(tmp / "naive.pickle", "rb") as f:
            naive_frames_ = pickle.load(f)
        equal = compare_frames(ours_frames, naive_frames_)

    n_alerts = runs["ours"][0]["alerts"]
    if any(r["alerts"] != n_alerts for reports in runs.values() for r in reports):
        raise SystemExit("ours and the baseline read different numbers of alerts")
    summary = {}
    for name, reports in runs.items():
        seconds = measure.median([r["seconds"] for r in reports])
        summary[name] = {"alerts_per_second": n_alerts / seconds, "seconds": seconds,
                         "peak_rss_mib": measure.median([r["peak_rss_mib"] for r in reports]),
                         "rss_before_mib": measure.median([r["rss_before_mib"] for r in reports]),
                         "seconds_each": [round(r["seconds"], 4) for r in reports]}
    # each repeat ran ours and naive back to back, so their ratio cancels most of the load noise
    paired = [n["seconds"] / o["seconds"] for o, n in zip(runs["ours"], runs["naive"])]
    speedup = measure.median(paired)
    results = {
        "benchmark": "ingest",
        "quick": args.quick,
        "data": str(source),
        "scale": scale,
        "repeats": repeats,
        "alerts": n_alerts,
        "bytes": tree_bytes,
        "days": n_days,
        "scenarios": runs["ours"][0]["scenarios"],
        "frames_equal_for": equal,
        "ours": summary["ours"],
        "naive": summary["naive"],
        "ours_read_only": summary["read_only"],
        "aggregation_share_of_ours": 1 - summary["read_only"]["seconds"] / summary["ours"]["seconds"],
        "speedup": speedup,
        "speedup_each": [round(r, 3) for r in paired],
        "memory_ratio": summary["naive"]["peak_rss_mib"] / summary["ours"]["peak_rss_mib"],
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": speedup >= TARGET_SPEEDUP,
    }
    if args.baseline:
        # CPU seconds: on a shared machine the wall clock also counts the wait for a core
        read_ratios = [b["cpu_seconds"] / o["cpu_seconds"] for o, b in zip(runs["read_only"], runs["baseline_read_only"])]
        results["baseline_read_only"] = summary["baseline_read_only"]
        results["read_only_vs_baseline"] = {"baseline": str(args.baseline), "speed_ratio": measure.median(read_ratios),
                                            "speed_ratio_each": [round(r, 3) for r in read_ratios]}
    measure.write_results(args.out, results)
    measure.print_table(
        f"ingest: {n_alerts:,} alerts, {tree_bytes / measure.MIB:,.0f} MiB on disk, {n_days} days, "
        f"{len(results['scenarios'])} scenarios, median of {repeats}",
        ["", "alerts/s", "seconds", "peak RSS MiB"],
        [[name, s["alerts_per_second"], s["seconds"], s["peak_rss_mib"]] for name, s in summary.items()]
        + [["naive/ours", speedup, "", results["memory_ratio"]]])
    if args.baseline:
        versus = results["read_only_vs_baseline"]
        print(f"our source read alone against {args.baseline}'s: {versus['speed_ratio']:.3f}x its speed "
              f"(CPU seconds, median of {repeats} paired runs: {versus['speed_ratio_each']})")
    compared = ", ".join(f"{name} ({c['nonzero_cells']} non-zero cells)" for name, c in equal.items())
    print(f"frames equal in ours and the baseline: {compared}")
    print(f"target {TARGET_SPEEDUP:g}x: "
          f"{'met' if results['meets_target'] else 'NOT met'}; written to {args.out}")
    return results


if __name__ == "__main__":
    main()
