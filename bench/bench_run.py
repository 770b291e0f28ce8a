"""Wall time and peak memory of one cold `wazuh-anomaly run` that scores one new bucket
per scenario, imports included, against a cold `python -c "import torch"`.

Setup, once and untimed: a sandbox prefix laid out like /var/ossec (etc/anomaly with
config.yaml and the shipped scenarios, logs/alerts with the AIT alerts, logs/anomaly),
then `wazuh-anomaly --prefix P train --from 2022-01-21T00:00:00Z --to 2022-01-23T23:55:00Z`.
Training up to five minutes before midnight leaves every scenario's watermark exactly one
bucket before midnight (23:55 for 5-minute, 23:45 for 15-minute buckets), so
`run --now <midnight + run.grace_seconds>` scores exactly one new bucket in each; the
benchmark checks that in the run's report.

Timed, --repeats times, alternating with the baseline: a fresh copy of the trained prefix
(so every run starts from the same state), the whole process from exec to exit, peak RSS
from os.wait4 (this process imports nothing heavy, so it does not inflate the child's
ru_maxrss). One untimed run of each first warms the page cache for both alike (not with --quick).

    python bench/bench_run.py                       # training the shipped scenarios takes long
    python bench/bench_run.py --train-epochs 3      # same run, cheaper models (scoring cost is the same)
    python bench/bench_run.py --prepared /tmp/p     # keep the trained prefix there and reuse it next time
    python bench/bench_run.py --quick               # two scenarios, a few hours of history, 1 epoch
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

import measure
from alerts_tree import build_alerts_tree, read_ait_lines, replicate_by_day

TARGET_SECONDS = 10.0
SCORED_DAY = datetime(2022, 1, 24, tzinfo=timezone.utc)   # the attack day; its first bucket is scored
TRAIN_FROM = datetime(2022, 1, 21, tzinfo=timezone.utc)
QUICK_TRAIN_FROM = datetime(2022, 1, 23, 18, tzinfo=timezone.utc)
QUICK_SCENARIOS = ("alert_volume", "file_integrity")        # one with 5-minute, one with 15-minute buckets
REPORT_LINE = re.compile(r"^(?:wazuh-anomaly: )?([a-z][a-z0-9_]*): (\w[\w-]*)(?:, (\d+) buckets scored)?", re.M)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def cli_command(cli: Path | None) -> list[str]:
    """The console script the wodle launcher runs, else the module."""
    script = cli or Path(sys.executable).with_name("wazuh-anomaly")
    return [str(script)] if script.exists() else [sys.executable, "-m", "wazuh_anomaly.cli"]


def write_scenarios(source: Path, target: Path, names: tuple[str, ...] | None, overrides: dict) -> list[dict]:
    """Copy the shipped scenario files, merging `overrides` (e.g. {"mvad": {"epochs": 3}}) into each."""
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.glob("*.y*ml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if names is not None and data.get("name") not in names:
            continue
        if overrides:
            for key, values in overrides.items():
                data[key] = {**(data.get(key) or {}), **values}
            (target / path.name).write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        else:
            shutil.copy2(path, target / path.name)  # byte for byte what install.sh ships
        written.append(data)
    return written


def prepare(prefix: Path, args, env: dict) -> dict:
    """Lay out the sandbox prefix and train it (untimed)."""
    etc = prefix / "etc" / "anomaly"
    etc.mkdir(parents=True)
    shutil.copy2(measure.REPO / "wazuh" / "etc" / "anomaly" / "config.yaml", etc / "config.yaml")
    overrides: dict = {}
    if args.quick:
        overrides = {"mvad": {"epochs": 1, "windows_per_epoch": 64, "min_steps": 1},
                     "training": {"min_history_hours": 1}}
    elif args.train_epochs:
        overrides = {"mvad": {"epochs": args.train_epochs, "min_steps": 1}}
    scenarios = write_scenarios(args.scenarios, etc / "scenarios", QUICK_SCENARIOS if args.quick else None, overrides)
    lines = read_ait_lines(measure.ait_alerts(args.data), None)
    if args.quick:
        # a few hours either side of midnight: enough for 1-epoch models, small enough for a smoke test
        low, high = iso(QUICK_TRAIN_FROM)[:13].encode(), b"2022-01-24T01"
        lines = [line for line in lines if low <= line[14:27] < high]
    build_alerts_tree(prefix, replicate_by_day(lines, 1))
    (prefix / "logs" / "anomaly").mkdir(parents=True)
    smallest = min(s.get("bucket_minutes", 5) for s in scenarios if s.get("enabled", True))
    train_to = SCORED_DAY - timedelta(minutes=smallest)
    argv = cli_command(args.cli) + ["--prefix", str(prefix), "train", "--from",
                                    iso(QUICK_TRAIN_FROM if args.quick else TRAIN_FROM),
                                    "--to", iso(train_to), "--now", iso(SCORED_DAY)]
    print(f"training (untimed): {' '.join(argv)}", flush=True)
    trained = measure.run_measured(argv, env=env)
    if trained.returncode != 0:
        raise SystemExit(f"training failed with exit code {trained.returncode}:\n{trained.stdout}\n{trained.stderr[-4000:]}")
    return {"argv": argv[len(cli_command(args.cli)):], "seconds": trained.wall_seconds,
            "peak_rss_mib": trained.max_rss_mib, "report": trained.stdout.splitlines()[-20:],
            "scenarios": [s["name"] for s in scenarios if s.get("enabled", True)]}


def fresh_copy(prepared: Path, target: Path) -> Path:
    """The trained prefix as it was after training; alert files hard-linked (the run only reads them)."""
    alerts = Path("logs") / "alerts"
    shutil.copytree(prepared, target, symlinks=True,
                    ignore=lambda folder, names: ["alerts"] if Path(folder) == prepared / "logs" else [])
    shutil.copytree(prepared / alerts, target / alerts, copy_function=lambda src, dst: Path(dst).hardlink_to(src))
    return target


def scored_buckets(report: str) -> dict[str, tuple[str, int]]:
    """Per scenario, the status and buckets scored from the run's report (its stdout)."""
    return {m.group(1): (m.group(2), int(m.group(3) or 0)) for m in REPORT_LINE.finditer(report)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="shared data directory (default ../shared/data beside the repo)")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="two scenarios, hours of history, 1-epoch models")
    parser.add_argument("--train-epochs", type=int, help="train the sandbox's models with this many epochs "
                        "(setup only: scoring costs the same)")
    parser.add_argument("--prepared", type=Path, help="directory for the trained prefix: reused when it "
                        "exists, kept after the run otherwise")
    parser.add_argument("--cli", type=Path, help="the wazuh-anomaly executable (default: beside this Python)")
    parser.add_argument("--scenarios", type=Path, default=measure.SCENARIOS_DIR)
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "run.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    env = measure.python_env()
    cli = cli_command(args.cli)

    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        tmp = Path(tmp)
        prepared = (args.prepared or tmp / "prepared").absolute()
        setup: dict = {"reused": False}
        if (prepared / "var" / "anomaly" / "models").is_dir():
            setup = {"reused": True, "prefix": str(prepared)}
            print(f"reusing the trained prefix {prepared}", flush=True)
        else:
            if prepared.exists() and any(prepared.iterdir()):
                raise SystemExit(f"{prepared}: exists but holds no trained prefix; remove it or choose another --prepared.")
            setup.update(prepare(prepared, args, env))
        config = yaml.safe_load((prepared / "etc" / "anomaly" / "config.yaml").read_text(encoding="utf-8")) or {}
        grace = int((config.get("run") or {}).get("grace_seconds", 120))
        now = SCORED_DAY + timedelta(seconds=grace)
        expected = sorted(yaml.safe_load(p.read_text(encoding="utf-8"))["name"]
                          for p in (prepared / "etc" / "anomaly" / "scenarios").glob("*.y*ml")
                          if yaml.safe_load(p.read_text(encoding="utf-8")).get("enabled", True))

        def one_run(index: int) -> measure.Measured:
            prefix = fresh_copy(prepared, tmp / f"run-{index}")
            measured = measure.run_measured(cli + ["--prefix", str(prefix), "run", "--now", iso(now)], env=env)
            if measured.returncode != 0:
                raise SystemExit(f"run failed with exit code {measured.returncode}:\n{measured.stderr[-4000:]}")
            scored = scored_buckets(measured.stdout)
            wrong = {name: scored.get(name) for name in expected if scored.get(name) != ("scored", 1)}
            if wrong:
                raise SystemExit(f"the run did not score exactly one bucket per scenario ({wrong}); its report:\n"
                                 f"{measured.stdout[-4000:]}\n{measured.stderr[-4000:]}")
            shutil.rmtree(prefix)
            return measured

        def baseline() -> measure.Measured:
            measured = measure.run_measured([sys.executable, "-c", "import torch"], env=env)
            if measured.returncode != 0:
                raise SystemExit(f"python -c 'import torch' failed:\n{measured.stderr[-4000:]}")
            return measured

        runs, imports = [], []
        if not args.quick:  # the smoke test only checks that everything runs
            print("warming the page cache (untimed)", flush=True)
            one_run(0)
            baseline()
        for i in range(repeats):
            runs.append(one_run(i + 1))
            imports.append(baseline())

    wall = measure.median([r.wall_seconds for r in runs])
    rss = measure.median([r.max_rss_mib for r in runs])
    torch_wall = measure.median([r.wall_seconds for r in imports])
    torch_rss = measure.median([r.max_rss_mib for r in imports])
    paired = [r.wall_seconds / b.wall_seconds for r, b in zip(runs, imports)]
    results = {
        "benchmark": "run",
        "quick": args.quick,
        "command": ["wazuh-anomaly", "--prefix", "P", "run", "--now", iso(now)],
        "cli": cli,
        "scenarios": expected,
        "buckets_scored_per_scenario": 1,
        "repeats": repeats,
        "setup": setup,
        "run": {"wall_seconds": wall, "peak_rss_mib": rss,
                "wall_seconds_each": [round(r.wall_seconds, 3) for r in runs],
                "peak_rss_mib_each": [round(r.max_rss_mib, 1) for r in runs],
                "report": runs[0].stdout.splitlines()[-20:]},
        "import_torch": {"wall_seconds": torch_wall, "peak_rss_mib": torch_rss,
                         "wall_seconds_each": [round(r.wall_seconds, 3) for r in imports]},
        # each run and import ran back to back, so their ratio cancels most of the load noise
        "run_over_import_torch": measure.median(paired),
        "run_over_import_torch_each": [round(p, 2) for p in paired],
        "rss_over_import_torch": rss / torch_rss,
        "target_seconds": TARGET_SECONDS,
        "meets_target": wall < TARGET_SECONDS,
    }
    measure.write_results(args.out, results)
    measure.print_table(
        f"run: one cold `run` scoring 1 bucket in each of {len(expected)} scenarios, median of {repeats}",
        ["", "wall seconds", "peak RSS MiB"],
        [["wazuh-anomaly run", wall, rss], ["python -c 'import torch'", torch_wall, torch_rss],
         ["run / import torch", results["run_over_import_torch"], results["rss_over_import_torch"]]])
    print(f"target under {TARGET_SECONDS:g} s: {'met' if results['meets_target'] else 'NOT met'}; written to {args.out}")
    return results


if __name__ == "__main__":
    main()
