"""Peak memory of the scheduled `wazuh-anomaly run` with the real-time part installed, on
a 30-day alerts tree (target: at most 1.5 GB, whatever is installed).

Setup, once and untimed: a sandbox prefix laid out like /var/ossec with the shipped
config.yaml and six alert scenarios (MVAD cut to --train-epochs; `silence` only with
--with-silence, so that an older package can run the same prefix), the AIT alerts replicated --scale times with
shifted dates (default 8: 364,352 alerts over 32 days) as a manager's logs/alerts tree,
and every scenario trained up to 15 minutes before the end. Then the real-time part is
installed (etc/anomaly/realtime.yaml and integrations/custom-anomaly, as
`install.sh --realtime` leaves them), so the run's rare-event models are due: their
scheduled training reads `training_days` (30) of the manager's alerts.

Measured, --repeats times, alternating: a fresh copy of that prefix, `run --now END`, the
whole process from exec to exit, peak RSS from os.wait4 (like /usr/bin/time -v), with
this tree's package and, as the baseline, with the package in --baseline (a directory
holding an older `wazuh_anomaly`, e.g. exported with
`git archive <commit> integration | tar -x -C DIR`); the ratio is new / baseline.
With --with-training, one more run of this tree's package on a prefix without models,
so that the same run also trains every scenario (the other peak of a scheduled run).

    python bench/bench_run_memory.py --baseline /tmp/old/integration
    python bench/bench_run_memory.py --with-silence --with-training   # everything shipped, no baseline
    python bench/bench_run_memory.py --quick          # one day, a few thousand alerts: the smoke test
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import measure
from alerts_tree import build_alerts_tree, day_range, read_ait_lines, replicate_by_day
from bench_run import cli_command, fresh_copy, iso, write_scenarios

TARGET_MIB = 1536.0
SHIPPED_ALERT_SCENARIOS = ("alert_volume", "authentication_failures", "file_integrity", "privilege_use",
                           "rule_diversity", "web_attacks")
NEWER = ("silence",)             # scenarios an older package cannot load: only with --with-silence


def lay_out(prefix: Path, args, env: dict) -> datetime:
    """The prefix with alerts and scenarios (no models yet); returns the end of the alerts."""
    etc = prefix / "etc" / "anomaly"
    etc.mkdir(parents=True)
    shutil.copy2(measure.REPO / "wazuh" / "etc" / "anomaly" / "config.yaml", etc / "config.yaml")
    overrides = {"mvad": {"epochs": args.train_epochs, "min_steps": 1}}
    if args.quick:
        overrides = {"mvad": {"epochs": 1, "windows_per_epoch": 64, "min_steps": 1},
                     "training": {"min_history_hours": 1}}
    names = SHIPPED_ALERT_SCENARIOS + (NEWER if args.with_silence else ())
    if args.quick:
        names = ("alert_volume",)
    write_scenarios(args.scenarios, etc / "scenarios", names, overrides)
    lines = read_ait_lines(measure.ait_alerts(args.data), 4000 if args.quick else None)
    days = replicate_by_day(lines, 1 if args.quick else args.scale)
    build_alerts_tree(prefix, days)
    (prefix / "logs" / "anomaly").mkdir(parents=True)
    _, end = day_range(days)
    return datetime.fromtimestamp(end, tz=timezone.utc)


def install_realtime(prefix: Path) -> None:
    shutil.copy2(measure.REPO / "wazuh" / "etc" / "anomaly" / "realtime.yaml", prefix / "etc" / "anomaly" / "realtime.yaml")
    launcher = prefix / "integrations" / "custom-anomaly"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text("#!/bin/sh\n")


def env_with(package: Path | None, env: dict) -> dict:
    """The worker environment with `package` (a directory holding wazuh_anomaly) first on the path."""
    if package is None:
        return env
    out = dict(env)
    out["PYTHONPATH"] = str(package)
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="shared data directory (default ../shared/data beside the repo)")
    parser.add_argument("--scale", type=int, default=8, help="copies of the 4-day AIT data (default 8: 32 days)")
    parser.add_argument("--train-epochs", type=int, default=1, help="MVAD epochs of the setup's training")
    parser.add_argument("--repeats", type=int, default=None, help="measured runs of each package (default 2; 1 with --quick)")
    parser.add_argument("--baseline", type=Path, help="directory holding the package to compare with (before the fix)")
    parser.add_argument("--with-training", action="store_true", help="also measure a run that trains every scenario")
    parser.add_argument("--with-silence", action="store_true", help="also the silence scenario (not with --baseline: "
                        "an older package cannot load it)")
    parser.add_argument("--quick", action="store_true", help="one day of a few thousand alerts, one scenario")
    parser.add_argument("--cli", type=Path, help="the wazuh-anomaly executable (default: the module)")
    parser.add_argument("--scenarios", type=Path, default=measure.SCENARIOS_DIR)
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "run_memory.json")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 2)
    if args.with_silence and args.baseline is not None:
        parser.error("--with-silence and --baseline do not go together: an older package cannot load the silence scenario")
    env = measure.python_env()
    cli = cli_command(args.cli)

    with tempfile.TemporaryDirectory(prefix="bench-run-memory-") as tmp:
        tmp = Path(tmp)
        prepared = tmp / "prepared"
        end = lay_out(prepared, args, env)
        untrained = tmp / "untrained"
        if args.with_training:
            shutil.copytree(prepared, untrained, symlinks=True)
            install_realtime(untrained)
        smallest = 5
        train_to = end - timedelta(minutes=15 if not args.quick else smallest)
        print(f"training the scenarios (untimed) up to {iso(train_to)}", flush=True)
        trained = measure.run_measured(cli + ["--prefix", str(prepared), "train", "--to", iso(train_to),
                                              "--now", iso(end)], env=env)
        if trained.returncode != 0:
            raise SystemExit(f"training failed ({trained.returncode}):\n{trained.stdout[-3000:]}\n{trained.stderr[-3000:]}")
        install_realtime(prepared)
        alerts = sum(1 for _ in (prepared / "logs" / "alerts").rglob("*.json*"))
        now = end + timedelta(seconds=120)

        def one_run(package: Path | None, index: int, source: Path = prepared) -> measure.Measured:
            prefix = fresh_copy(source, tmp / f"run-{index}")
            measured = measure.run_measured(cli + ["--prefix", str(prefix), "run", "--now", iso(now)],
                                            env=env_with(package, env))
            if measured.returncode != 0:
                raise SystemExit(f"run failed ({measured.returncode}):\n{measured.stderr[-4000:]}")
            models = sorted(p.name for p in (prefix / "var" / "anomaly" / "realtime" / "models").glob("*.json")) \
                if (prefix / "var" / "anomaly" / "realtime" / "models").is_dir() else []
            outcome = {"models": models, "report": measured.stdout.splitlines()[-12:]}
            shutil.rmtree(prefix)
            measured.outcome = outcome       # type: ignore[attr-defined]
            return measured

        new, old = [], []
        for i in range(repeats):
            new.append(one_run(None, 2 * i))
            if args.baseline is not None:
                old.append(one_run(args.baseline, 2 * i + 1))
        training_run = one_run(None, 99, untrained) if args.with_training else None

    rss = measure.median([r.max_rss_mib for r in new])
    results = {
        "benchmark": "run_memory", "quick": args.quick, "scale": args.scale, "alert_files": alerts,
        "scenarios": ["alert_volume"] if args.quick else list(SHIPPED_ALERT_SCENARIOS + (NEWER if args.with_silence else ())),
        "command": ["wazuh-anomaly", "--prefix", "P", "run", "--now", iso(now)],
        "repeats": repeats,
        "run": {"peak_rss_mib": rss, "peak_rss_mib_each": [round(r.max_rss_mib, 1) for r in new],
                "wall_seconds": measure.median([r.wall_seconds for r in new]),
                "realtime_models_after": new[0].outcome["models"], "report": new[0].outcome["report"]},
        "target_mib": TARGET_MIB, "meets_target": rss <= TARGET_MIB,
    }
    rows = [["run (this package)", rss, results["run"]["wall_seconds"]]]
    if old:
        old_rss = measure.median([r.max_rss_mib for r in old])
        results["baseline"] = {"package": str(args.baseline), "peak_rss_mib": old_rss,
                               "peak_rss_mib_each": [round(r.max_rss_mib, 1) for r in old],
                               "wall_seconds": measure.median([r.wall_seconds for r in old]),
                               "realtime_models_after": old[0].outcome["models"]}
        results["rss_over_baseline"] = measure.median([n.max_rss_mib / o.max_rss_mib for n, o in zip(new, old)])
        rows.append(["run (baseline package)", old_rss, results["baseline"]["wall_seconds"]])
        rows.append(["this / baseline", results["rss_over_baseline"], ""])
    if training_run is not None:
        results["run_that_trains_every_scenario"] = {"peak_rss_mib": training_run.max_rss_mib,
                                                     "wall_seconds": training_run.wall_seconds,
                                                     "report": training_run.outcome["report"]}
        results["meets_target"] = results["meets_target"] and training_run.max_rss_mib <= TARGET_MIB
        rows.append(["run that also trains every scenario", training_run.max_rss_mib, training_run.wall_seconds])
    measure.write_results(args.out, results)
    measure.print_table(f"run with the real-time part installed, {args.scale if not args.quick else 1}x AIT alerts "
                        f"(median of {repeats})", ["", "peak RSS MiB", "wall seconds"], rows)
    print(f"target at most {TARGET_MIB:g} MiB: {'met' if results['meets_target'] else 'NOT met'}; written to {args.out}")
    return results


if __name__ == "__main__":
    main()
