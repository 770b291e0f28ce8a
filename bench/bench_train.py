"""Training time of MVAD on 7 days of 5-minute buckets on 2 threads, against the seasonal
detector's fit on the same data.

The data are made here, deterministically: 2016 buckets of Poisson counts for the
features of a shipped scenario (default alert_volume, 5 features), each with its own
rate, a daily cycle peaking mid-afternoon UTC and quieter weekends. MVAD trains with the
scenario's own MvadSpec (torch.set_num_threads(2)); the seasonal detector fits with the
scenario's SeasonalSpec. Each fit runs in a fresh process, alternately, --repeats times;
the time covers fit() only (imports and data excluded, reported apart), the peak RSS is
the whole process.

    python bench/bench_train.py                  # a few minutes: 3 full MVAD trainings
    python bench/bench_train.py --quick          # seconds: 2 epochs, for the smoke test
    python bench/bench_train.py --busy           # with one core kept busy (as analysisd would)
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import measure

THREADS = 2  # the acceptance criterion: training on 2 cores (run.threads itself defaults to 1)
# Mean count per 5-minute bucket of each feature in turn (cycled): busy, medium, rare, very rare, steady.
RATES = (30.0, 8.0, 2.0, 0.3, 5.0)
FIRST_BUCKET = "2024-01-01T00:00:00Z"  # a Monday


def seasonal_counts(features: list[str], days: float, bucket_minutes: int, seed: int = 7):
    """A bucket x feature frame of realistic alert counts with a daily and weekly rhythm."""
    import numpy as np
    import pandas as pd

    n = int(days * 1440 // bucket_minutes)
    index = pd.date_range(FIRST_BUCKET, periods=n, freq=f"{bucket_minutes}min", name="bucket")
    hours = np.asarray(index.hour + index.minute / 60.0)
    daily = 1.0 + 0.8 * np.sin(2 * np.pi * (hours - 9.0) / 24.0)
    weekly = np.where(np.asarray(index.weekday) >= 5, 0.5, 1.0)
    rates = np.array([RATES[i % len(RATES)] for i in range(len(features))])
    rng = np.random.default_rng(seed)
    values = rng.poisson(np.outer(daily * weekly, rates)).astype(float)
    return pd.DataFrame(values, index=index, columns=features)


def quick_spec(spec):
    """Two short epochs: enough to run every part of fit(), far too few for a model."""
    return dataclasses.replace(spec, epochs=2, windows_per_epoch=128, min_steps=1)


def worker(args) -> None:
    """One fit in this fresh process; prints its numbers as one JSON line."""
    from wazuh_anomaly.core.config import load_scenario
    from wazuh_anomaly.detectors import detector_class

    scenario = load_scenario(Path(args.scenario_file))
    features = scenario.feature_names
    frame = seasonal_counts(features, args.days, scenario.bucket_minutes)
    report: dict = {"rows": len(frame), "features": features}
    if args.worker == "mvad":
        started = time.perf_counter()
        from wazuh_anomaly.detectors.mvad import _library
        torch = _library().torch
        torch.set_num_threads(args.threads)
        report["import_seconds"] = time.perf_counter() - started
        spec = quick_spec(scenario.mvad) if args.quick else scenario.mvad
        detector = detector_class("mvad")(features, spec, threads=args.threads)
        started = time.perf_counter()
        detector.fit({None: frame})
        seconds = time.perf_counter() - started
        training = detector.training_
        report.update(seconds=seconds, steps=training["steps"], seconds_per_step=seconds / training["steps"],
                      epochs=training["epochs"], batch_size=training["batch_size"],
                      train_windows=training["train_windows"], val_windows=training["val_windows"],
                      best_epoch=training["best_epoch"], torch_threads=torch.get_num_threads(),
                      spec=dataclasses.asdict(spec))
    else:
        detector = detector_class("seasonal")(features, scenario.seasonal)
        # one fit takes milliseconds: the median of several keeps timer noise out
        times = []
        for _ in range(args.inner):
            started = time.perf_counter()
            detector.fit({None: frame})
            times.append(time.perf_counter() - started)
        report.update(seconds=measure.median(times), fits=args.inner, spec=dataclasses.asdict(scenario.seasonal))
    report["peak_rss_mib"] = measure.peak_rss_mib()
    print(json.dumps(report))


def measure_fits(args, scenario_file: Path, repeats: int, env: dict, runs: dict[str, list[dict]]) -> None:
    """Each fit in a fresh process, MVAD and seasonal back to back, `repeats` times."""
    for _ in range(repeats):
        for name in runs:
            argv = [sys.executable, str(Path(__file__).resolve()), "--worker", name,
                    "--scenario-file", str(scenario_file), "--days", repr(args.days), "--threads", str(args.threads)]
            if args.quick:
                argv.append("--quick")
            measured = measure.run_measured(argv, env=env)
            report = measured.json_line()
            report["process_seconds"] = measured.wall_seconds
            runs[name].append(report)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="alert_volume", help="shipped scenario whose features and specs are used")
    parser.add_argument("--scenarios", type=Path, default=measure.SCENARIOS_DIR)
    parser.add_argument("--days", type=float, default=7.0, help="days of buckets to train on (default 7)")
    parser.add_argument("--repeats", type=int, default=None, help="trainings of each detector (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="2 short MVAD epochs, for the smoke test")
    parser.add_argument("--threads", type=int, default=THREADS, help=f"torch threads (default {THREADS})")
    parser.add_argument("--busy", action="store_true", help="keep one core busy meanwhile, as a manager's "
                        "analysisd would (shows what oversubscribed torch threads cost)")
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "train.json")
    parser.add_argument("--worker", choices=("mvad", "seasonal"), help=argparse.SUPPRESS)
    parser.add_argument("--scenario-file", help=argparse.SUPPRESS)
    parser.add_argument("--inner", type=int, default=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return {}

    scenario_file = next((p for p in sorted(args.scenarios.glob("*.y*ml")) if p.stem == args.scenario), None)
    if scenario_file is None:
        raise SystemExit(f"{args.scenarios}: no scenario file named {args.scenario}.yaml; pass --scenario with one of "
                         f"{', '.join(sorted(p.stem for p in args.scenarios.glob('*.y*ml')))}.")
    repeats = args.repeats or (1 if args.quick else 3)
    env = measure.python_env()
    runs: dict[str, list[dict]] = {"mvad": [], "seasonal": []}
    # a pure-Python busy loop: one core taken, no memory, ended by its own pid below
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        measure_fits(args, scenario_file, repeats, env, runs)
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()

    mvad, seasonal = runs["mvad"], runs["seasonal"]
    paired = [m["seconds"] / s["seconds"] for m, s in zip(mvad, seasonal)]
    first = mvad[0]
    results = {
        "benchmark": "train",
        "quick": args.quick,
        "scenario": args.scenario,
        "days": args.days,
        "rows": first["rows"],
        "features": first["features"],
        "threads": args.threads,
        "busy_core": args.busy,
        "repeats": repeats,
        "mvad": {
            "seconds": measure.median([r["seconds"] for r in mvad]),
            "steps": first["steps"],
            "seconds_per_step": measure.median([r["seconds_per_step"] for r in mvad]),
            "peak_rss_mib": measure.median([r["peak_rss_mib"] for r in mvad]),
            "import_seconds": measure.median([r["import_seconds"] for r in mvad]),
            "process_seconds": measure.median([r["process_seconds"] for r in mvad]),
            "seconds_each": [round(r["seconds"], 3) for r in mvad],
            "epochs": first["epochs"], "batch_size": first["batch_size"],
            "train_windows": first["train_windows"], "val_windows": first["val_windows"],
            "best_epoch_each": [r["best_epoch"] for r in mvad],
            "torch_threads": first["torch_threads"],
            "spec": first["spec"],
        },
        "seasonal": {
            "seconds": measure.median([r["seconds"] for r in seasonal]),
            "peak_rss_mib": measure.median([r["peak_rss_mib"] for r in seasonal]),
            "process_seconds": measure.median([r["process_seconds"] for r in seasonal]),
            "seconds_each": [round(r["seconds"], 5) for r in seasonal],
            "spec": seasonal[0]["spec"],
        },
        # each repeat trained both back to back, so their ratio cancels most of the load noise
        "mvad_over_seasonal": measure.median(paired),
        "mvad_over_seasonal_each": [round(r, 1) for r in paired],
    }
    measure.write_results(args.out, results)
    m, s = results["mvad"], results["seasonal"]
    measure.print_table(
        f"train: {args.scenario}, {results['rows']} buckets x {len(results['features'])} features, "
        f"{args.threads} threads{', one core kept busy' if args.busy else ''}, median of {repeats}",
        ["", "fit seconds", "steps", "s/step", "peak RSS MiB"],
        [["mvad", m["seconds"], m["steps"], m["seconds_per_step"], m["peak_rss_mib"]],
         ["seasonal", s["seconds"], "", "", s["peak_rss_mib"]],
         ["mvad/seasonal", results["mvad_over_seasonal"], "", "", m["peak_rss_mib"] / s["peak_rss_mib"]]])
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
