"""Scale: N agents on one manager, every agent an entity of the alert_volume scenario.

For each N (default 20, 200, 2,000, 10,000) and each way of spreading the alerts
(`total`: the same total volume over N agents; `per-agent`: the same volume per agent,
so the total grows with N), a sandbox prefix laid out like /var/ossec gets a generated
logs/alerts tree of 4 benign days (a daily rhythm, Poisson counts, a few level bands and
some IDS alerts; day 4 is today's alerts.json), then, each in a fresh process, timed
from exec to exit with its peak RSS:

1. `train` on days 1-3 (up to the last bucket before midnight),
2. the first scheduled `run` at midnight (+ grace): one bucket per scenario,
3. a `run` at noon: the catch-up of the morning (143 buckets),
4. a mid-day 5-minute `run` at 12:05 (+ grace): one bucket,

and the anomaly lines written on this benign data (every one of them a false alarm).

Training memory at a full lookback (`--days 15 --train-only`): 15 generated days, so the
training range (days 1-14) fills the default 14-day lookback; only step 1 runs. With
`--baseline DIR` (a checkout of older code, e.g. a `git worktree` of main) the same
sandbox is trained by that code as well (its state and models wiped before each
training), both with peak RSS, and `same_models` says whether the two trainings saved
the same model (the files minus the version, the times and the library versions).
Each step is capped by --timeout: a step that does not finish is recorded as
"did not finish in X s" and the later steps of that N are skipped.

MVAD trains with few epochs here (--mvad-epochs, default 3): what grows with N is the
per-entity scoring and bookkeeping, not the epochs; bench_train.py measures the epochs.

    python bench/bench_scale.py                          # 20 .. 10,000 agents, both spreads
    python bench/bench_scale.py --agents 20 200 --spread total
    python bench/bench_scale.py --quick                  # 5 agents, tiny volume: the smoke test
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

import measure

DAY = 86400
FIRST_DAY = datetime(2024, 1, 1, tzinfo=timezone.utc)  # a Monday
DAYS = 4                      # generated days (--days): the last is today, the others are trained
SCENARIO = "alert_volume"
TOTAL_PER_DAY = 5000          # `total`: alerts a day over all agents (20,000 in 4 days)
PER_AGENT_PER_DAY = 20        # `per-agent`: alerts a day for each agent
# (level, groups, share of an agent's alerts)
KINDS = ((3, ["syslog", "sshd"], 0.70), (5, ["syslog", "pam"], 0.18), (7, ["ossec", "rootcheck"], 0.08),
         (10, ["web", "accesslog"], 0.03), (3, ["ids", "suricata"], 0.01))
TARGET_RUN_SECONDS = 30.0
TARGET_RUN_MIB = 1536.0
TARGET_TRAIN_SECONDS = 1800.0
TARGET_TRAIN_MIB = 1.5e9 / (1024 * 1024)   # training at 10,000 agents, 14-day lookback: <= 1.5 GB
REPORT = re.compile(r"(\d+) series|(\d+) buckets scored")


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------- data

def alert_lines(agents: int, per_agent_per_day: float, seed: int, days: int = DAYS):
    """Yield (day index, alerts.json line) for `days` days, in time order per day."""
    import numpy as np

    rng = np.random.default_rng(seed)
    names = [f"agent-{i:05d}" for i in range(agents)]
    # each agent its own rate around the mean (busy servers, quiet laptops), fixed over the days
    weights = rng.lognormal(0.0, 0.8, agents)
    rates = per_agent_per_day * weights / weights.mean()
    minutes = np.arange(1440)
    daily = 1.0 + 0.6 * np.sin(2 * np.pi * (minutes / 60.0 - 9.0) / 24.0)
    daily /= daily.sum()
    kinds = np.array([k[2] for k in KINDS])
    serial = 0
    for day in range(days):
        counts = rng.poisson(rates)
        agent_of = np.repeat(np.arange(agents), counts)
        minute = rng.choice(1440, size=len(agent_of), p=daily)
        second = rng.integers(0, 60, size=len(agent_of))
        kind = rng.choice(len(KINDS), size=len(agent_of), p=kinds / kinds.sum())
        order = np.lexsort((second, minute))
        base = FIRST_DAY + timedelta(days=day)
        for j in order:
            serial += 1
            level, groups, _ = KINDS[kind[j]]
            moment = base + timedelta(minutes=int(minute[j]), seconds=int(second[j]))
            a = int(agent_of[j])
            alert = {"timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
                     "rule": {"level": level, "description": "generated", "id": str(5700 + kind[j]),
                              "groups": groups},
                     "agent": {"id": f"{a + 1:05d}", "name": names[a]},
                     "manager": {"name": "manager"}, "id": f"{serial}.{serial}", "location": "/var/log/auth.log"}
            yield day, json.dumps(alert, separators=(",", ":"))


def write_tree(prefix: Path, agents: int, per_agent_per_day: float, seed: int, days: int = DAYS) -> int:
    """logs/alerts of the prefix: the older days compressed, yesterday plain, the last
    day alerts.json. A finished day's file is closed at once (at most two open)."""
    alerts_dir = prefix / "logs" / "alerts"
    files, written = {}, 0
    try:
        for day, line in alert_lines(agents, per_agent_per_day, seed, days):
            f = files.get(day)
            if f is None:
                for done in [d for d in files if d < day]:
                    files.pop(done).close()
                moment = FIRST_DAY + timedelta(days=day)
                folder = alerts_dir / str(moment.year) / moment.strftime("%b")
                folder.mkdir(parents=True, exist_ok=True)
                name = folder / f"ossec-alerts-{moment.day:02d}.json"
                f = files[day] = gzip.open(str(name) + ".gz", "wt", compresslevel=1) if day < days - 2 else open(name, "w")
            f.write(line + "\n")
            written += 1
    finally:
        for f in files.values():
            f.close()
    last = FIRST_DAY + timedelta(days=days - 1)
    os.link(alerts_dir / str(last.year) / last.strftime("%b") / f"ossec-alerts-{last.day:02d}.json",
            alerts_dir / "alerts.json")
    return written


def prepare(prefix: Path, agents: int, per_agent_per_day: float, args) -> dict:
    """The sandbox prefix: config, the one scenario with every agent an entity, the alerts."""
    etc = prefix / "etc" / "anomaly"
    (etc / "scenarios").mkdir(parents=True)
    shutil.copy2(measure.REPO / "wazuh" / "etc" / "anomaly" / "config.yaml", etc / "config.yaml")
    data = yaml.safe_load((args.scenarios / f"{SCENARIO}.yaml").read_text(encoding="utf-8"))
    if args.entity_top == "n":
        data["entity"]["top"] = agents              # the old way to model every agent
    elif args.entity_top != "shipped":
        data["entity"]["top"] = args.entity_top     # e.g. "all"
    data["mvad"] = {**(data.get("mvad") or {}), "epochs": args.mvad_epochs, "min_steps": 1}
    if args.quick:
        data["mvad"].update(windows_per_epoch=64)
    (etc / "scenarios" / f"{SCENARIO}.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    (prefix / "logs" / "anomaly").mkdir(parents=True)
    started = time.perf_counter()
    generated = measure.run_measured([sys.executable, str(Path(__file__).resolve()), "--worker-generate",
                                      str(prefix), str(agents), repr(per_agent_per_day), str(args.seed),
                                      str(args.days)],
                                     env=measure.python_env())
    if generated.returncode != 0:
        raise SystemExit(f"generating the alerts failed:\n{generated.stderr[-4000:]}")
    return {"alerts": int(generated.stdout.split()[-1]), "generate_seconds": time.perf_counter() - started,
            "entity_top": data["entity"]["top"]}


# --------------------------------------------------------------------------- measuring

def run_capped(argv: list[str], timeout: float, env: dict) -> dict:
    """Run argv in a fresh process group: wall time, peak RSS (os.wait4), or 'did not finish'."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - started > timeout:
                os.killpg(process.pid, signal.SIGKILL)   # the group of this one child only
                os.wait4(process.pid, 0)
                return {"finished": False, "timeout_seconds": timeout,
                        "note": f"did not finish in {timeout:g} s"}
            time.sleep(0.1)
        wall = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        code = os.waitstatus_to_exitcode(status)
        result = {"finished": code == 0, "wall_seconds": round(wall, 3),
                  "peak_rss_mib": round(usage.ru_maxrss * 1024 / measure.MIB, 1), "returncode": code,
                  "report": out.read().decode("utf-8", "replace").splitlines()[-6:]}
        if code != 0:
            result["stderr"] = err.read().decode("utf-8", "replace")[-3000:]
        return result


def anomaly_lines(prefix: Path) -> int:
    path = prefix / "logs" / "anomaly" / "anomalies.json"
    if not path.exists():
        return 0
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if '"scenario"' in line)


def _train_step(prefix: Path, args) -> list[str]:
    last = FIRST_DAY + timedelta(days=args.days - 1)
    return ["train", "--from", iso(FIRST_DAY), "--to", iso(last - timedelta(minutes=5)), "--now", iso(last)]


def _model_files(prefix: Path) -> dict[str, object]:
    """The saved model of the scenario, file by file, without what differs between two
    trainings of the same data by design (wall times, library versions)."""
    models = prefix / "var" / "anomaly" / "models" / SCENARIO
    current = models / (models / "current").read_text(encoding="utf-8").strip()
    files: dict[str, object] = {}
    for path in sorted(current.iterdir()):
        if path.name == "meta.json":
            meta = json.loads(path.read_text(encoding="utf-8"))
            for key in ("fit", "library_versions", "wazuh_anomaly"):
                meta.pop(key, None)
            files[path.name] = meta
        else:
            files[path.name] = path.read_bytes()
    return files


def measure_baseline(prefix: Path, args, env: dict, row: dict) -> None:
    """Train the same sandbox with the code of args.baseline, then again with this code,
    each from an empty state; whether both saved the same model."""
    var = prefix / "var" / "anomaly"
    base_env = dict(env)
    base_env["PYTHONPATH"] = str(args.baseline / "integration")
    cli = [sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix)]
    models = {}
    for name, environment in (("baseline_train", base_env), ("train", env)):
        shutil.rmtree(var, ignore_errors=True)
        print(f"  {name}", flush=True)
        result = run_capped(cli + _train_step(prefix, args), args.timeout, environment)
        row[name] = result
        if not result["finished"]:
            print(f"    {result.get('note') or result.get('stderr', '')[-500:]}", flush=True)
            return
        found = REPORT.search("\n".join(result["report"]))
        if found:
            result["series"] = int(found.group(1) or found.group(2))
        print(f"    {result['wall_seconds']:.1f} s, {result['peak_rss_mib']:.0f} MiB", flush=True)
        models[name] = _model_files(prefix)
    row["same_models"] = models["baseline_train"] == models["train"]
    if not row["same_models"]:
        row["models_differ_in"] = sorted(k for k in set(models["train"]) | set(models["baseline_train"])
                                         if models["train"].get(k) != models["baseline_train"].get(k))
    row["train_peak_ratio"] = round(row["train"]["peak_rss_mib"] / row["baseline_train"]["peak_rss_mib"], 3)


def measure_one(agents: int, spread: str, args, root: Path, env: dict) -> dict:
    per_agent = args.total_per_day / agents if spread == "total" else args.per_agent_per_day
    prefix = root / f"{spread}-{agents}"
    print(f"{spread} volume, {agents} agents: generating", flush=True)
    row: dict = {"agents": agents, "spread": spread, "alerts_per_agent_per_day": per_agent}
    row.update(prepare(prefix, agents, per_agent, args))
    cli = [sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix)]
    last = FIRST_DAY + timedelta(days=args.days - 1)
    grace = 120
    steps = [
        ("train", _train_step(prefix, args)),
        ("first_run", ["run", "--now", iso(last + timedelta(seconds=grace))]),
        ("catchup_run", ["run", "--now", iso(last + timedelta(hours=12, seconds=grace))]),
        ("five_minute_run", ["run", "--now", iso(last + timedelta(hours=12, minutes=5, seconds=grace))]),
    ]
    if args.baseline is not None:
        measure_baseline(prefix, args, env, row)
        steps = steps[1:] if not args.train_only and row.get("train", {}).get("finished") else []
    elif args.train_only:
        steps = steps[:1]
    for name, step in steps:
        print(f"  {name}", flush=True)
        result = run_capped(cli + step, args.timeout, env)
        row[name] = result
        if not result["finished"]:
            print(f"    {result.get('note') or result.get('stderr', '')[-500:]}", flush=True)
            break
        found = REPORT.search("\n".join(result["report"]))
        if found:
            result["series" if name == "train" else "buckets_scored"] = int(found.group(1) or found.group(2))
        print(f"    {result['wall_seconds']:.1f} s, {result['peak_rss_mib']:.0f} MiB", flush=True)
    row["anomaly_lines"] = anomaly_lines(prefix)
    models = prefix / "var" / "anomaly" / "models"
    row["model_bytes"] = sum(p.stat().st_size for p in models.rglob("*") if p.is_file()) if models.exists() else 0
    if not args.keep:
        shutil.rmtree(prefix, ignore_errors=True)
    return row


def cell(row: dict, step: str) -> str:
    r = row.get(step)
    if r is None:
        return "-"
    if not r["finished"]:
        return r.get("note") or f"failed ({r.get('returncode')})"
    return f"{r['wall_seconds']:.1f} s, {r['peak_rss_mib']:.0f} MiB"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, nargs="+", default=None, help="numbers of agents (default 20 200 2000 10000)")
    parser.add_argument("--spread", choices=("total", "per-agent", "both"), default="both")
    parser.add_argument("--total-per-day", type=float, default=TOTAL_PER_DAY)
    parser.add_argument("--per-agent-per-day", type=float, default=PER_AGENT_PER_DAY)
    parser.add_argument("--entity-top", default="shipped",
                        help="entity.top written into the scenario: 'n' (= the number of agents), a number, "
                             "'all', or 'shipped' (the scenario file's own; default)")
    parser.add_argument("--mvad-epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds a step may take (default 1800)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--label", default="", help="a name for this measurement in the JSON (e.g. baseline)")
    parser.add_argument("--quick", action="store_true", help="5 agents, little volume, 1 epoch: the smoke test")
    parser.add_argument("--keep", action="store_true", help="keep the sandbox prefixes (printed)")
    parser.add_argument("--scenarios", type=Path, default=measure.SCENARIOS_DIR)
    parser.add_argument("--out", type=Path, default=measure.RESULTS / "scale.json")
    parser.add_argument("--days", type=int, default=DAYS,
                        help=f"days generated, the last one today's (default {DAYS}); 15 fills the 14-day lookback")
    parser.add_argument("--train-only", action="store_true", help="only the training step (training memory)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a checkout of older code: train each sandbox with it too (before/after, same data)")
    parser.add_argument("--worker-generate", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_generate:
        prefix, agents, per_agent, seed, days = args.worker_generate
        print(write_tree(Path(prefix), int(agents), float(per_agent), int(seed), int(days)))
        return {}
    if args.entity_top not in ("n", "all", "shipped"):
        args.entity_top = int(args.entity_top)
    agents = args.agents or ([5] if args.quick else [20, 200, 2000, 10000])
    if args.quick:
        args.total_per_day, args.per_agent_per_day, args.mvad_epochs = 600.0, 60.0, 1
    spreads = ("total", "per-agent") if args.spread == "both" else (args.spread,)
    env = measure.python_env()
    rows = []
    root = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    try:
        for spread in spreads:
            for n in agents:
                rows.append(measure_one(n, spread, args, root, env))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"sandboxes kept in {root}")
    ten_k = [r for r in rows if r["agents"] >= 10000 and r.get("five_minute_run", {}).get("finished")]
    trained_10k = [r for r in rows if r["agents"] >= 10000 and r.get("train", {}).get("finished")]
    results = {"benchmark": "scale", "quick": args.quick, "label": args.label, "scenario": SCENARIO,
               "days": args.days, "train_days": args.days - 1, "train_only": args.train_only,
               "baseline": str(args.baseline) if args.baseline else None, "mvad_epochs": args.mvad_epochs, "timeout_seconds": args.timeout,
               "entity_top": args.entity_top, "rows": rows,
               "targets": {"five_minute_run_seconds": TARGET_RUN_SECONDS, "five_minute_run_mib": TARGET_RUN_MIB,
                           "train_seconds": TARGET_TRAIN_SECONDS, "train_mib": TARGET_TRAIN_MIB},
               "train_meets_memory_target_at_10000": (all(r["train"]["peak_rss_mib"] <= TARGET_TRAIN_MIB
                                                          for r in trained_10k) if trained_10k else None),
               "meets_targets_at_10000": (all(r["five_minute_run"]["wall_seconds"] <= TARGET_RUN_SECONDS
                                              and r["five_minute_run"]["peak_rss_mib"] <= TARGET_RUN_MIB
                                              and r["train"]["wall_seconds"] <= TARGET_TRAIN_SECONDS for r in ten_k)
                                          if ten_k else None)}
    measure.write_results(args.out, results)
    if args.baseline is not None:
        measure.print_table(
            f"training memory: {SCENARIO}, {args.days - 1} days trained, baseline {args.baseline}",
            ["spread", "agents", "alerts", "before: train", "after: train", "peak ratio", "same model"],
            [[r["spread"], r["agents"], r["alerts"], cell(r, "baseline_train"), cell(r, "train"),
              r.get("train_peak_ratio", "-"), r.get("same_models", "-")] for r in rows])
    measure.print_table(
        f"scale: {SCENARIO}, {args.days} days ({args.days - 1} trained), MVAD {args.mvad_epochs} epochs, entity.top {args.entity_top}",
        ["spread", "agents", "alerts", "train", "first run", "catch-up 12 h", "5-minute run", "anomaly lines"],
        [[r["spread"], r["agents"], r["alerts"], cell(r, "train"), cell(r, "first_run"), cell(r, "catchup_run"),
          cell(r, "five_minute_run"), r["anomaly_lines"]] for r in rows])
    print(f"written to {args.out}")
    return results


if __name__ == "__main__":
    main()
