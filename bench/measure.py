"""What every benchmark here shares: where the data and the results live, how a child
process is timed and its peak memory read, medians, the JSON file and the printed table.

Benchmarks report ratios against a baseline measured in the same run, because the
machines are shared and noisy: absolute seconds move with the neighbours, ratios much less.
"""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
RESULTS = REPO / "bench" / "results"
SCENARIOS_DIR = REPO / "wazuh" / "etc" / "anomaly" / "scenarios"
MIB = 1024 * 1024


BUNDLED_AIT = REPO / "integration" / "wazuh_anomaly" / "data" / "sample" / "russellmitchell.alerts.json.gz"


def ait_alerts(data_dir: Path | None) -> Path:
    """The AIT-ADS alert stream under --data, else the shared data directory, else the
    same file as bundled with the package (the sample-data command's)."""
    path = Path(data_dir or SHARED_DATA) / "ait-ads" / "russellmitchell.alerts.json.gz"
    if data_dir is None and not path.is_file():
        path = BUNDLED_AIT
    if not path.is_file():
        raise SystemExit(f"{path}: AIT alert data not found; pass --data pointing at the shared data directory.")
    return path


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


@dataclass
class Measured:
    """One child process from exec to exit."""

    wall_seconds: float
    max_rss_mib: float      # peak resident memory of the child (and its waited-for children)
    returncode: int
    stdout: str
    stderr: str

    def json_line(self) -> dict:
        """The last stdout line of a worker, which reports its own numbers as JSON."""
        lines = [line for line in self.stdout.splitlines() if line.strip()]
        if self.returncode != 0 or not lines:
            raise SystemExit(f"worker failed with exit code {self.returncode}:\n{self.stderr[-4000:]}")
        return json.loads(lines[-1])


def run_measured(argv: list[str], *, env: dict | None = None, cwd: Path | None = None) -> Measured:
    """Run argv and measure it like /usr/bin/time -v: wall time and the child's max RSS.

    os.wait4 gives the rusage of exactly this child (RUSAGE_CHILDREN would be the maximum
    over every child ever waited for). Linux counts in a child's ru_maxrss the RSS of this
    process when it spawned the child, so keep this process small or let the child
    report peak_rss_mib() itself.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(wall_seconds=wall, max_rss_mib=usage.ru_maxrss * 1024 / MIB,
                        returncode=process.returncode,
                        stdout=out.read().decode("utf-8", "replace"),
                        stderr=err.read().decode("utf-8", "replace"))


def _status_mib(key: str) -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    return float("nan")


def current_rss_mib() -> float:
    """Resident memory of this process now (Linux /proc)."""
    return _status_mib("VmRSS:")


def peak_rss_mib() -> float:
    """Peak resident memory of this process since its exec (VmHWM).

    Workers report this themselves: ru_maxrss of a child also counts the parent's RSS
    at the moment it was spawned (Linux keeps the pre-exec high-water mark).
    """
    return _status_mib("VmHWM:")


def machine() -> dict:
    """Enough about the machine to tell two result files apart."""
    info = {"python": platform.python_version(), "platform": platform.platform(),
            "cpus": os.cpu_count(), "load_average_at_start": list(os.getloadavg())}
    try:
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        pass
    return info


def write_results(path: Path, results: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(), **results}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
        return str(value)
    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(header)]
    print(title)
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in text:
        print("  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))))
    sys.stdout.flush()


def python_env() -> dict:
    """The environment for worker processes: this repo's package importable, no telemetry."""
    env = dict(os.environ)
    source = str(REPO / "integration")
    env["PYTHONPATH"] = source + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("DO_NOT_TRACK", "true")
    env.setdefault("TQDM_DISABLE", "1")
    return env
