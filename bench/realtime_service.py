"""The real-time service (`wazuh-anomaly realtime serve`) against the per-alert integration,
on the AIT-ADS russellmitchell alerts (the shared data directory, else the bundled copy).

Setup, untimed: a sandbox prefix with the shipped realtime.yaml; `realtime learn` on the
days before the attack day (2022-01-21..23); every replayed alert gets a unique `id`
(bench-N) so each finding names the line it came from.

Timed, each with a fresh copy of the learned prefix and the real service as its own process
following a real alerts.json (default options: poll 0.2 s, batches of up to 4096):
  burst     the attack day (2022-01-24, 19,816 alerts) appended as fast as the writer can:
            sustained alerts/s = alerts / (last alert committed - first line written), and
            alerts per CPU-second of the service (it is one thread: one core)
  paced     the attack day from midnight to the end of the attack's first hour at 260 alerts/s
            (the attack's bursts in the labelled data): delay from an alert line being
            written to its finding being written, p50 / p99 / max
  long      the four days replayed `--days-repeat` times, each copy shifted by four days
            (a long replay, fast): resident memory sampled every 0.2 s; flat when the
            median of the last tenth of the replay is the median of the second tenth
  baseline  the per-alert integration as wazuh-integratord runs it (a new process per
            alert, one at a time) on the first alerts of the attack day: alerts/s, and what
            260 alerts/s would do to its queue
Delay = the finding's `detected_at` (stamped just before its append) minus the time the
writer's write() of that alert line returned. Targets: >= 2,000 alerts/s sustained;
p99 delay <= 2 s at 260 alerts/s.

    python bench/realtime_service.py [--quick] [--out FILE] [--data DIR] [--days-repeat N]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import measure

TARGET_RATE = 2000.0
TARGET_P99_SECONDS = 2.0
PACED_RATE = 260.0
ATTACK_DAY = b"2022-01-24"


def stamp(line: bytes, n: int, shift_days: int = 0) -> bytes:
    """The alert with a unique id (and its timestamp moved by whole days)."""
    alert = json.loads(line)
    alert["id"] = f"bench-{n}"
    if shift_days:
        t = datetime.strptime(alert["timestamp"], "%Y-%m-%dT%H:%M:%S.%f%z") + timedelta(days=shift_days)
        alert["timestamp"] = t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}" + t.strftime("%z")
    return json.dumps(alert, separators=(",", ":")).encode() + b"\n"


def parse_iso(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").timestamp()


class Service:
    """The real service on a prefix, as its own process."""

    def __init__(self, prefix: Path, env: dict):
        self.prefix = prefix
        self.log = open(prefix / "service.log", "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "realtime",
                                         "serve", "--from-start"], stdout=self.log, stderr=self.log, env=env)
        deadline = time.monotonic() + 120
        while b"following" not in (prefix / "service.log").read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start:\n{(prefix / 'service.log').read_text()[-3000:]}")
            time.sleep(0.02)

    def judged(self) -> int:
        try:
            return json.loads((self.prefix / "var/anomaly/realtime/service.json").read_bytes())["stats"]["alerts"]
        except (FileNotFoundError, ValueError, KeyError):
            return 0

    def rss_mib(self) -> float:
        with open(f"/proc/{self.process.pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.process.pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def wait_for(self, n: int, sample=None, timeout: float = 3600) -> float:
        deadline = time.monotonic() + timeout
        while self.judged() < n:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service stopped early:\n{(self.prefix / 'service.log').read_text()[-3000:]}")
            if sample:
                sample()
            time.sleep(0.01)
        return time.time()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        if self.process.wait(120) != 0:
            raise SystemExit(f"the service failed:\n{(self.prefix / 'service.log').read_text()[-3000:]}")
        self.log.close()


def findings(prefix: Path) -> list[dict]:
    path = prefix / "logs/anomaly/anomalies.json"
    if not path.exists():
        return []
    return [e["anomaly"] for e in map(json.loads, path.read_text().splitlines())
            if e["anomaly"]["kind"] in ("rare_value", "rare_event")]


def delays(prefix: Path, written: dict[str, float]) -> list[float]:
    return sorted(parse_iso(f["detected_at"]) - written[f["alert"]["id"]] for f in findings(prefix))


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def append_fast(alerts: Path, lines: list[bytes], written: dict[str, float]) -> float:
    """Appends every line in 1 MiB writes, as fast as possible; the time of the first write."""
    first = None
    with open(alerts, "ab", buffering=0) as fh:
        chunk, ids = [], []
        size = 0
        for i, line in enumerate(lines):
            chunk.append(line)
            ids.append(i)
            size += len(line)
            if size >= 1 << 20 or i == len(lines) - 1:
                fh.write(b"".join(chunk))
                now = time.time()
                first = first or now
                for j in ids:
                    written[f"bench-{j}"] = now
                chunk, ids, size = [], [], 0
    return first or time.time()


def append_paced(alerts: Path, lines: list[bytes], rate: float, written: dict[str, float]) -> float:
    """Appends the lines at `rate` per second (a write every 20 ms); the wall time it took."""
    start = time.monotonic()
    sent = 0
    with open(alerts, "ab", buffering=0) as fh:
        while sent < len(lines):
            due = min(len(lines), int((time.monotonic() - start) * rate) + 1)
            if due > sent:
                fh.write(b"".join(lines[sent:due]))
                now = time.time()
                for j in range(sent, due):
                    written[f"bench-{j}"] = now
                sent = due
            time.sleep(0.02)
    return time.monotonic() - start


def setup(work: Path, env: dict, before: list[bytes]) -> Path:
    prefix = work / "learned"
    (prefix / "etc/anomaly").mkdir(parents=True)
    (prefix / "logs/alerts").mkdir(parents=True)
    shutil.copy(measure.REPO / "wazuh/etc/anomaly/realtime.yaml", prefix / "etc/anomaly/realtime.yaml")
    shutil.copy(measure.REPO / "wazuh/etc/anomaly/config.yaml", prefix / "etc/anomaly/config.yaml")
    (work / "before.json").write_bytes(b"".join(before))
    learned = subprocess.run([sys.executable, "-m", "wazuh_anomaly.cli", "--prefix", str(prefix), "realtime", "learn",
                              "--alerts", str(work / "before.json")], capture_output=True, text=True, env=env)
    if learned.returncode != 0:
        raise SystemExit(f"realtime learn failed:\n{learned.stderr[-3000:]}")
    return prefix


def copy_of(learned: Path, to: Path) -> Path:
    shutil.copytree(learned, to)
    (to / "logs/alerts/alerts.json").write_bytes(b"")
    return to


def run_burst(learned: Path, work: Path, env: dict, lines: list[bytes]) -> dict:
    prefix = copy_of(learned, work / "burst")
    written: dict[str, float] = {}
    service = Service(prefix, env)
    cpu0 = service.cpu_seconds()
    first = append_fast(prefix / "logs/alerts/alerts.json", lines, written)
    done = service.wait_for(len(lines))
    cpu = service.cpu_seconds() - cpu0
    service.stop()
    d = delays(prefix, written)
    seconds = done - first
    return {"alerts": len(lines), "seconds": seconds, "alerts_per_second": len(lines) / seconds,
            "cpu_seconds": cpu, "alerts_per_cpu_second": len(lines) / cpu if cpu > 0 else float("nan"),
            "findings": len(d), "delay_p50_seconds": quantile(d, 0.5), "delay_p99_seconds": quantile(d, 0.99)}


def run_paced(learned: Path, work: Path, env: dict, lines: list[bytes], rate: float) -> dict:
    prefix = copy_of(learned, work / "paced")
    written: dict[str, float] = {}
    service = Service(prefix, env)
    cpu0 = service.cpu_seconds()
    wall = append_paced(prefix / "logs/alerts/alerts.json", lines, rate, written)
    service.wait_for(len(lines))
    cpu = service.cpu_seconds() - cpu0
    service.stop()
    d = delays(prefix, written)
    return {"alerts": len(lines), "rate": rate, "achieved_rate": len(lines) / wall, "seconds": wall,
            "cpu_seconds": cpu, "cpu_share": cpu / wall, "findings": len(d),
            "delay_p50_seconds": quantile(d, 0.5), "delay_p99_seconds": quantile(d, 0.99),
            "delay_max_seconds": d[-1] if d else float("nan")}


def run_long(learned: Path, work: Path, env: dict, lines: list[bytes], repeat: int) -> dict:
    prefix = copy_of(learned, work / "long")
    stream = [stamp(line, k * len(lines) + i, 4 * (k + 1)) for k in range(repeat) for i, line in enumerate(lines)]
    written: dict[str, float] = {}
    service = Service(prefix, env)
    samples: list[tuple[int, float]] = []
    start_rss = service.rss_mib()
    last = [0.0]

    def sample():
        now = time.monotonic()
        if now - last[0] >= 0.2:
            samples.append((service.judged(), service.rss_mib()))
            last[0] = now

    first = append_fast(prefix / "logs/alerts/alerts.json", stream, written)
    done = service.wait_for(len(stream), sample)
    samples.append((len(stream), service.rss_mib()))
    service.stop()
    n = len(stream)

    def median_between(lo: float, hi: float) -> float:
        """Median RSS while the service judged the alerts between these fractions of the replay."""
        return measure.median([r for a, r in samples if lo * n <= a < hi * n] or [samples[-1][1]])

    second_tenth, last_tenth = median_between(0.1, 0.2), median_between(0.9, 1.01)
    return {"alerts": n, "alert_days": 4 * repeat, "seconds": done - first, "alerts_per_second": n / (done - first),
            "rss_start_mib": start_rss, "rss_second_tenth_mib": second_tenth, "rss_last_tenth_mib": last_tenth,
            "rss_end_mib": samples[-1][1], "rss_max_mib": max(r for _, r in samples),
            "rss_growth_mib": last_tenth - second_tenth,
            "samples": [{"alerts": a, "rss_mib": r} for a, r in samples[:: max(1, len(samples) // 40)]]}


def run_baseline(learned: Path, work: Path, env: dict, lines: list[bytes]) -> dict:
    """The per-alert integration, one new process per alert, one after the other."""
    prefix = copy_of(learned, work / "baseline")
    alert_file = work / "custom-anomaly-1-1.alert"
    walls = []
    started = time.perf_counter()
    for line in lines:
        alert_file.write_bytes(line)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "wazuh_anomaly.realtime.integration", "--prefix", str(prefix),
                               str(alert_file), "", "", "", "", "10", "3", "> /dev/null 2>&1"],
                              capture_output=True, env=env)
        walls.append(time.perf_counter() - t)
        if done.returncode != 0:
            raise SystemExit(f"the integration failed:\n{done.stderr.decode()[-3000:]}")
    seconds = time.perf_counter() - started
    rate = len(lines) / seconds
    return {"alerts": len(lines), "seconds": seconds, "alerts_per_second": rate,
            "median_ms_per_alert": measure.median(walls) * 1000,
            # at 260 alerts/s the queue grows by (260 - rate) a second; after one minute of
            # burst the last alert waits this long for its turn
            "queue_delay_after_60s_at_260_seconds": max(0.0, 60 * (PACED_RATE - rate) / rate)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small replays (the smoke test)")
    parser.add_argument("--out", default=str(measure.RESULTS / "realtime_service.json"))
    parser.add_argument("--data", help="the shared data directory (holds ait-ads/)")
    parser.add_argument("--days-repeat", type=int, default=6, help="copies of the four days in the long replay")
    args = parser.parse_args()
    source = measure.ait_alerts(Path(args.data) if args.data else None)
    with gzip.open(source, "rb") as fh:
        raw = [line for line in fh if line.strip()]
    before = [line for line in raw if line[14:24] < ATTACK_DAY]
    attack = [stamp(line, i) for i, line in enumerate(line for line in raw if line[14:24] == ATTACK_DAY)]
    # the paced replay: from midnight to the end of the attack's first hour (the scans' burst)
    first_hours = [line for line in attack if json.loads(line)["timestamp"][11:13] < "04"]
    if args.quick:
        attack, first_hours, long_days, repeat, baseline_n = attack[:3000], first_hours[:1300], raw[:3000], 1, 10
    else:
        long_days, repeat, baseline_n = raw, args.days_repeat, 200
    env = measure.python_env()
    work = Path(tempfile.mkdtemp(prefix="bench-realtime-service-"))
    try:
        learned = setup(work, env, before)
        burst = run_burst(learned, work, env, attack)
        paced = run_paced(learned, work, env, first_hours, PACED_RATE)
        long = run_long(learned, work, env, long_days, repeat)
        baseline = run_baseline(learned, work, env, attack[:baseline_n])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results = {
        "benchmark": "realtime_service", "quick": args.quick, "repeats": 1, "source": str(source),
        "burst": burst, "paced": paced, "long": long, "baseline_per_alert": baseline,
        "speedup_vs_per_alert": burst["alerts_per_second"] / baseline["alerts_per_second"],
        "target_alerts_per_second": TARGET_RATE, "target_p99_seconds": TARGET_P99_SECONDS,
        "meets_target": burst["alerts_per_second"] >= TARGET_RATE and paced["delay_p99_seconds"] <= TARGET_P99_SECONDS,
    }
    measure.print_table(
        f"real-time service vs the per-alert integration ({source.name}; one service process, shared 2-core machine)",
        ["case", "alerts", "alerts/s", "alerts/CPU-s", "findings", "delay p50 s", "delay p99 s", "RSS MiB"],
        [["burst (attack day, as fast as written)", burst["alerts"], burst["alerts_per_second"],
          burst["alerts_per_cpu_second"], burst["findings"], burst["delay_p50_seconds"], burst["delay_p99_seconds"], "-"],
         [f"paced at {PACED_RATE:.0f}/s (00:00-04:00)", paced["alerts"], paced["achieved_rate"],
          paced["alerts"] / paced["cpu_seconds"] if paced["cpu_seconds"] else float("nan"), paced["findings"],
          paced["delay_p50_seconds"], paced["delay_p99_seconds"], "-"],
         [f"long replay ({long['alert_days']} alert-days)", long["alerts"], long["alerts_per_second"], "-", "-", "-", "-",
          f"{long['rss_second_tenth_mib']:.0f} -> {long['rss_last_tenth_mib']:.0f} (max {long['rss_max_mib']:.0f})"],
         ["per-alert integration (baseline)", baseline["alerts"], baseline["alerts_per_second"], "-", "-",
          f"{baseline['median_ms_per_alert'] / 1000:.3f} each",
          f"{baseline['queue_delay_after_60s_at_260_seconds']:.0f} after 60 s at 260/s", "-"]])
    print(f"speed-up of the service over the per-alert integration: {results['speedup_vs_per_alert']:.0f}x; "
          f"targets (>= {TARGET_RATE:.0f} alerts/s, p99 <= {TARGET_P99_SECONDS:.0f} s at {PACED_RATE:.0f}/s) "
          f"{'met' if results['meets_target'] else 'NOT met'}")
    path = measure.write_results(Path(args.out), results)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
