"""Detection benchmark on labelled real data: what an admin would see with the shipped
defaults, per path (scheduled scoring, real-time, both together).

Runs the product's own `wazuh-anomaly backtest` (every shipped scenario that reads
alerts, as configured) and the product's real-time detectors (`realtime learn` and
`realtime train` on the training range, then every alert of the test range through the
same engine the integration runs) on the AIT-ADS `russellmitchell` alerts, twice:

- attack day: trained on 2022-01-21..23 (attack-free), scored 2022-01-24 (the attacks);
- attack-free day: trained on 2022-01-21..22, scored 2022-01-23 (no attack at all).

Per path it writes: phases caught (of the labelled phases), false alarms per day on the
attack-free day, false alarms on the attack day (lines overlapping no phase), and alert
lines per day a user would see (every line, in a phase or not), to JSON and as a table.
`--repo DIR` measures another checkout (e.g. the main branch) with the same script: its
package and its shipped configuration.

    PYTHONPATH=integration python bench/detection.py [--seasonal-only] [--repo DIR] [--out FILE]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DAY = 86400.0
RUNS = {
    "attack_day": {"train": "2022-01-21..2022-01-24", "test": "2022-01-24..2022-01-25"},
    "attack_free_day": {"train": "2022-01-21..2022-01-23", "test": "2022-01-23..2022-01-24"},
}


def data_dir(arg: str | None) -> Path:
    for candidate in ([Path(arg)] if arg else []) + [REPO.parent / "shared" / "data" / "ait-ads",
                                                      REPO / "integration/wazuh_anomaly/data/sample"]:
        if (candidate / "russellmitchell.alerts.json.gz").exists():
            return candidate
    sys.exit("russellmitchell.alerts.json.gz not found; pass --data DIR")


def epoch(text: str) -> float:
    from datetime import datetime, timezone
    return datetime.strptime(text[:10], "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp()


def parse_time(text: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def make_prefix(root: Path, repo: Path, data: Path) -> Path:
    """A sandbox prefix: the checkout's shipped configuration and the alerts as a manager's tree."""
    shutil.copytree(repo / "wazuh/etc/anomaly", root / "etc/anomaly")
    subprocess.run(cli(repo, root) + ["sample-data"], check=True, capture_output=True, env=env(repo))
    return root


def env(repo: Path) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(repo / "integration")
    return e


def cli(repo: Path, prefix: Path) -> list[str]:
    return [sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix)]


def alert_scenarios(repo: Path) -> list[str]:
    import yaml
    names = []
    for path in sorted((repo / "wazuh/etc/anomaly/scenarios").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("enabled", True) and doc.get("source", "alerts") == "alerts":
            names.append(doc["name"])
    return names


def scheduled(repo: Path, prefix: Path, labels: Path, run: dict, detector: str | None) -> dict:
    """The backtest's anomalies: (window start, window end, level) each."""
    args = cli(repo, prefix) + ["backtest", "--train", run["train"], "--test", run["test"], "--labels", str(labels),
                                "--json"]
    for name in alert_scenarios(repo):
        args += ["--scenario", name]
    if detector:
        args += ["--detector", detector]
    started = time.monotonic()
    out = subprocess.run(args, check=True, capture_output=True, text=True, env=env(repo))
    result = json.loads(out.stdout)
    variant = next(iter(result["variants"].values()))
    lines = []
    for a in variant["alerts"]:
        body = a["event"]["anomaly"]
        lines.append({"start": parse_time(body["window"]["start"]), "end": parse_time(body["window"]["end"]),
                      "level": a["level"], "scenario": body.get("scenario"), "rule": a["rule_id"],
                      "text": a["rule_description"]})
    return {"lines": lines, "seconds": round(time.monotonic() - started, 1)}


def realtime(repo: Path, prefix: Path, data: Path, run: dict) -> dict:
    """Real-time findings on the test range after learning (and training) on the training range."""
    code = f"""
import gzip, json, sys, time
sys.path.insert(0, {str(repo / 'integration')!r})
from wazuh_anomaly.realtime import jobs
from wazuh_anomaly.realtime.engine import RealtimeEngine
from wazuh_anomaly.realtime import config as rtconfig
from wazuh_anomaly.realtime.integration import Paths
from wazuh_anomaly.realtime.store import StateStore
from wazuh_anomaly.realtime.fields import alert_time
prefix, alerts, train_from, train_to, test_from, test_to, train_file = sys.argv[1:8]
train_from, train_to, test_from, test_to = map(float, (train_from, train_to, test_from, test_to))
test = []
with gzip.open(alerts, "rt") as fh, open(train_file, "w") as out:
    for line in fh:
        t = alert_time(json.loads(line))
        if train_from <= t < train_to:
            out.write(line)
        elif test_from <= t < test_to:
            test.append(json.loads(line))
print(jobs.learn(prefix, files=[train_file])[0], file=sys.stderr)
print(jobs.train(prefix, files=[train_file])[0], file=sys.stderr)
paths = Paths(prefix)
engine = RealtimeEngine(rtconfig.load(paths.config, paths.cache), paths.models)
found = []
with StateStore(paths.base) as store:
    for alert in test:
        for f in engine.process(store, alert, now=test_to):
            d = f.data
            found.append({{"start": d.get("window_start", d["at"]), "end": d.get("window_end", d["at"]),
                          "detector": d["detector"], "severity": d["severity"], "what": d.get("what")}})
print(json.dumps(found))
"""
    work = Path(tempfile.mkdtemp(prefix="detection-rt-"))
    try:
        train = RUNS_RANGE(run["train"])
        test = RUNS_RANGE(run["test"])
        started = time.monotonic()
        out = subprocess.run([sys.executable, "-c", code, str(prefix), str(data / "russellmitchell.alerts.json.gz"),
                              str(train[0]), str(train[1]), str(test[0]), str(test[1]), str(work / "train.json")],
                             check=True, capture_output=True, text=True, env=env(repo))
        lines = json.loads(out.stdout.strip().splitlines()[-1])
        return {"lines": lines, "seconds": round(time.monotonic() - started, 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def RUNS_RANGE(text: str) -> tuple[float, float]:
    a, b = text.split("..")
    return epoch(a), epoch(b)


def overlaps(line: dict, phase: tuple[float, float]) -> bool:
    # A real-time finding is an instant: it counts for a phase when it falls inside it.
    end = line["end"] if line["end"] > line["start"] else line["start"] + 1
    return line["start"] < phase[1] and end > phase[0]


def summarise(lines: list[dict], phases: dict[str, tuple[float, float]], days: float, attack_free: bool) -> dict:
    caught = sorted(name for name, p in phases.items() if any(overlaps(x, p) for x in lines))
    outside = [x for x in lines if not any(overlaps(x, p) for p in phases.values())]
    out = {"lines": len(lines), "lines_per_day": round(len(lines) / days, 2)}
    if attack_free:
        out["false_alarms_per_day"] = round(len(outside) / days, 2)
    else:
        out.update(phases_caught=len(caught), phases=len(phases), caught=caught, false_alarms=len(outside))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repo", default=str(REPO), help="checkout to measure (default: this one)")
    p.add_argument("--data", help="directory holding russellmitchell.alerts.json.gz and .labels.json")
    p.add_argument("--seasonal-only", action="store_true", help="score with the seasonal detector alone (fast; "
                                                                "not the shipped defaults)")
    p.add_argument("--out", default=str(HERE / "results" / "detection.json"))
    args = p.parse_args(argv)
    repo = Path(args.repo).resolve()
    data = data_dir(args.data)
    labels = data / "russellmitchell.labels.json"
    all_phases = {n: (parse_time(v["start"]), parse_time(v["end"]))
                  for n, v in json.loads(labels.read_text())["attack_phases"].items()}
    results: dict = {"repo": str(repo), "commit": subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                                                                 capture_output=True, text=True).stdout.strip(),
                     "detectors": "seasonal" if args.seasonal_only else "shipped defaults", "runs": {}}
    for run_name, run in RUNS.items():
        test = RUNS_RANGE(run["test"])
        days = (test[1] - test[0]) / DAY
        phases = {n: p for n, p in all_phases.items() if p[0] < test[1] and p[1] > test[0]}
        root = Path(tempfile.mkdtemp(prefix="detection-"))
        try:
            prefix = make_prefix(root, repo, data)
            s = scheduled(repo, prefix, labels, run, "seasonal" if args.seasonal_only else None)
            r = realtime(repo, prefix, data, run)
        finally:
            shutil.rmtree(root, ignore_errors=True)
        attack_free = not phases
        per_path = {"scheduled": summarise(s["lines"], phases, days, attack_free),
                    "realtime": summarise(r["lines"], phases, days, attack_free),
                    "both": summarise(s["lines"] + r["lines"], phases, days, attack_free)}
        results["runs"][run_name] = {"train": run["train"], "test": run["test"], "paths": per_path,
                                     "seconds": {"scheduled": s["seconds"], "realtime": r["seconds"]},
                                     "scheduled_lines": s["lines"], "realtime_lines": r["lines"]}
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"written: {out}")
    return 0


def table(results: dict) -> str:
    free, attack = results["runs"]["attack_free_day"]["paths"], results["runs"]["attack_day"]["paths"]
    rows = [f"{results['commit']} ({results['detectors']})",
            "| path | phases caught | false alarms/day, attack-free day | false alarms, attack day | "
            "alert lines/day (attack day) |", "|---|---|---|---|---|"]
    for path in ("scheduled", "realtime", "both"):
        a, f = attack[path], free[path]
        rows.append(f"| {path} | {a['phases_caught']}/{a['phases']} | {f['false_alarms_per_day']:g} | "
                    f"{a['false_alarms']} | {a['lines_per_day']:g} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
