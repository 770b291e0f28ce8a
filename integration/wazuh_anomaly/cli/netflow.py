"""`wazuh-anomaly netflow normalize | generate`: argument parsing and printing only."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from .common import command, group

log = logging.getLogger("wazuh_anomaly")


def register(sub) -> None:
    nf = group(sub, "netflow", "normalise pmacct/nfacctd flows, tag them, generate test flows", dest="netflow_command")

    # Printing to stdout (--output -) is a look, not a run: it needs no installation.
    n = command(nf, "normalize", cmd_normalize,
                "pmacct JSON lines -> normalised, tagged flow events (rules 117000-117049)",
                installed=lambda args: args.output != "-")
    n.add_argument("input", nargs="?", help="pmacct JSON file (default: input_file of etc/anomaly/netflow.yaml)")
    n.add_argument("--output", help="where to append the events ('-' for stdout; default <prefix>/logs/anomaly/netflow.json)")
    n.add_argument("--follow", action="store_true", help="keep reading as the file grows (rotation-safe)")
    n.add_argument("--from-start", action="store_true", help="ignore the saved resume offset and detection windows")
    n.add_argument("--internal-networks", help="comma-separated CIDRs (IPv4 and IPv6) of your own networks")
    n.add_argument("--settings", help="NetFlow settings file (default: <prefix>/etc/anomaly/netflow.yaml)")
    n.add_argument("--poll", type=float, default=1.0, help="seconds between looks at the file in --follow mode")

    g = command(nf, "generate", cmd_generate, "synthetic test flows for every detection (safe addresses only)",
                installed=False)
    g.add_argument("--scenario", action="append", default=None,
                   help="all (default), or one of: " + ", ".join(_scenario_names()) + " (repeatable)")
    g.add_argument("--count", type=int, default=3, help="events per scenario (default 3)")
    g.add_argument("--raw", action="store_true", help="write the raw pmacct records instead of normalised events")
    g.add_argument("--output", help="append to this file instead of printing")


def _scenario_names() -> list[str]:
    from ..netflow.generate import SCENARIOS
    return list(SCENARIOS)


def _settings(args):
    from ..core.paths import Layout
    from ..netflow.settings import load_netflow_settings
    layout = Layout.from_env(args.prefix)
    return layout, load_netflow_settings(layout, Path(args.settings) if args.settings else None,
                                         internal_networks=args.internal_networks)


def cmd_normalize(args: argparse.Namespace) -> int:
    from ..core.errors import WazuhAnomalyError
    from ..netflow.settings import default_output_file
    from ..netflow.stream import FileOutput, compiled_available, follow, normalize_file, state_file_for
    layout, settings = _settings(args)
    source = args.input or settings.input_file
    if not source:
        raise WazuhAnomalyError("no pmacct file to read: name it on the command line or set input_file in "
                                f"{layout.etc_dir / 'netflow.yaml'}.")
    input_path = Path(source)
    target = args.output or settings.output_file or str(default_output_file(layout))
    if target == "-":
        def output(data: bytes) -> None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()
        state_file = None   # printing is a look, not a run: nothing is remembered
    else:
        output = FileOutput(Path(target))
        state_file = state_file_for(layout.state_dir, input_path)
    log.info("normalising with %s", "the compiled fast path" if compiled_available() else
             "the Python code (the compiled fast path was not built: see docs/netflow.md, Throughput)")
    if args.follow:
        stopping = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stopping.append(True))
        log.info("following %s into %s", input_path, target)     # the service's record
        print(f"following {input_path} into {target} (stop with Ctrl-C)", file=sys.stderr)
        stats = follow(input_path, output, settings, state_file=state_file, poll_seconds=args.poll,
                       stop=lambda: bool(stopping), health=_health_writer(layout) if state_file else None)
    else:
        stats = normalize_file(input_path, output, settings, state_file=state_file, from_start=args.from_start)
        if state_file is not None:
            health = _health_writer(layout)
            if stats.losses:
                health("source_unreadable", " ".join(stats.losses))
            if stats.skipped:
                health("malformed_input", f"{input_path}: {stats.sentence()}.")
    print(f"{input_path}: {stats.describe()}", file=sys.stderr)
    return 0


def _health_writer(layout):
    """health(check, sentence): a health event of the NetFlow normaliser (scenario 'netflow')
    in anomalies.json, where rules 117300+ raise it; a failure to write it is logged only."""
    from datetime import datetime, timezone
    from ..core.errors import WazuhAnomalyError
    from ..core.findings import HealthEvent
    from ..emit.emitter import AnomalyWriter

    def health(check: str, sentence: str) -> None:
        at = datetime.now(timezone.utc)
        event = HealthEvent(check, sentence, at, scenario="netflow",
                            severity="low" if check == "malformed_input" else "high")
        try:
            AnomalyWriter(layout.anomalies_file, layout.state_dir).write([event], at)
        except (OSError, WazuhAnomalyError) as exc:
            log.warning("the health event '%s' could not be written to %s (%s): %s", check,
                        layout.anomalies_file, exc, sentence)
    return health


def cmd_generate(args: argparse.Namespace) -> int:
    import orjson
    from ..core.errors import WazuhAnomalyError
    from ..netflow.generate import ALL, SCENARIOS, raw_records, tagged_events
    from ..netflow.stream import append_atomically
    chosen = args.scenario or ["all"]
    names: list[str] = []
    for name in chosen:
        if name == "all":
            names.extend(ALL)
        elif name in SCENARIOS:
            names.append(name)
        else:
            raise WazuhAnomalyError(f"no generator scenario named '{name}'; choose all or one of "
                                    f"{', '.join(SCENARIOS)}.")
    if args.count < 1:
        raise WazuhAnomalyError("--count must be 1 or more.")
    lines = []
    for name in names:
        items = raw_records(name, args.count) if args.raw else tagged_events(name, args.count)
        lines.extend(orjson.dumps(item) for item in items)
    data = b"\n".join(lines) + b"\n"
    if args.output:
        append_atomically(Path(args.output), data)
        print(f"{args.output}: {len(lines)} {'records' if args.raw else 'events'} appended", file=sys.stderr)
    else:
        sys.stdout.buffer.write(data)
    return 0

