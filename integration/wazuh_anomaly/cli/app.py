"""wazuh-anomaly: the command line. Parses arguments, calls the jobs, prints results.

The commands live in one module per topic (scoring, operations, installation,
evaluation, ruleset, netflow, realtime), each registering them the same way
(cli/common.py). Errors a user can cause come out as one sentence and exit code 2; a
scoring run whose scenarios raised health events still exits 0 (the events are the
report), so the wodle does not log a failure for a manager that simply has no history yet.
"""
from __future__ import annotations

import argparse
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from .. import __version__
from ..core import progress
from ..core.errors import WazuhAnomalyError
from ..core.paths import PREFIX_ENV, Layout
from . import evaluation, installation, netflow, operations, realtime, ruleset, scoring
from .common import needs_installation

# In the order `wazuh-anomaly --help` lists their commands.
COMMAND_MODULES = (scoring, operations, installation, evaluation, ruleset, netflow, realtime)

log = logging.getLogger("wazuh_anomaly")


class _LogFile(logging.handlers.RotatingFileHandler):
    """The run log in logs/anomaly, which the wazuh group may write (real-time path):
    opened like every other file there, never through a planted link."""

    def _open(self):
        from ..core.fileio import open_append
        return os.fdopen(open_append(self.baseFilename, 0o640), "a", encoding=self.encoding, errors=self.errors)


class _Console(logging.StreamHandler):
    """Warnings on stderr, below the progress line rather than through it."""

    def emit(self, record: logging.LogRecord) -> None:
        progress.interrupt()
        super().emit(record)


# Who reads what; one rule for every command, so that each message appears once:
# - A command's result is for the person who typed it: print() on stdout (a command's
#   side remarks, like where a report was written, on stderr), once, never also logged
#   to the console.
# - Log records are the record of what the wodle did (its output is thrown away:
#   ignore_output): INFO and above go to logs/anomaly/wazuh-anomaly.log. The console
#   (stderr) shows only warnings and errors (-q: errors only; -v: everything, debug
#   included, at the cost of seeing some results twice), so a result that a command
#   prints is never echoed by its own log record.
# - Progress of long work (core/progress.py) goes to stderr only when stderr is a
#   terminal and -q is not given: never under the wodle, never into a pipe or a file.
def _setup_logging(layout: Layout, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    root = logging.getLogger("wazuh_anomaly")
    root.setLevel(logging.DEBUG)
    # main() called again in one process (tests, tools) must not keep writing to old streams.
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    console = _Console(sys.stderr)
    console.setLevel(level)
    console.setFormatter(logging.Formatter("wazuh-anomaly: %(message)s"))
    root.addHandler(console)
    log_file = layout.logs_dir / "wazuh-anomaly.log"
    if layout.logs_dir.is_dir() and os.access(layout.logs_dir, os.W_OK):
        try:
            handler = _LogFile(log_file, maxBytes=10 * 1024 * 1024, backupCount=3, encoding="utf-8")
        except WazuhAnomalyError as exc:  # a planted link: say so, and log to stderr only
            console.handle(logging.makeLogRecord({"msg": str(exc), "levelno": logging.ERROR, "levelname": "ERROR"}))
            return
        handler.setLevel(logging.INFO)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%SZ"))
        handler.formatter.converter = time.gmtime
        root.addHandler(handler)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wazuh-anomaly",
        description="Learns what normal looks like in a Wazuh manager's alerts and raises anomalies as "
                    "native Wazuh alerts (rules 117xxx).")
    parser.add_argument("--version", action="version", version=f"wazuh-anomaly {__version__}")
    parser.add_argument("--prefix", help=f"Wazuh install directory (default: ${PREFIX_ENV} or /var/ossec)")
    parser.add_argument("--config", help="global config file (default: <prefix>/etc/anomaly/config.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print the log's informational and debug messages")
    parser.add_argument("-q", "--quiet", action="store_true", help="print no warnings and no progress, only errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def _check_prefix(args: argparse.Namespace, layout: Layout) -> None:
    if needs_installation(args) and not layout.etc_dir.is_dir():
        raise WazuhAnomalyError(f"{layout.prefix} holds no wazuh-anomaly installation (no {layout.etc_dir}); "
                                f"pass the manager's directory with --prefix (default /var/ossec), "
                                f"or install there first with install.sh --prefix {layout.prefix}.")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prefix:
        # Everything that derives paths from the environment agrees with --prefix.
        os.environ[PREFIX_ENV] = str(Path(args.prefix).absolute())
    layout = Layout.from_env(args.prefix)
    _setup_logging(layout, args.verbose, args.quiet)
    progress.show_on(sys.stderr if not args.quiet and sys.stderr.isatty() else None)
    try:
        _check_prefix(args, layout)
        return args.func(args)
    except WazuhAnomalyError as exc:
        for problem in getattr(exc, "problems", None) or [str(exc)]:   # a config file: each of its problems
            print(f"wazuh-anomaly: {problem}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Disk full, or a file root owns read by another user: one sentence, not a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"wazuh-anomaly: {where}{exc.strerror or exc}; check free space and permissions "
              f"(the wodle runs as root).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        progress.show_on(None)


if __name__ == "__main__":
    sys.exit(main())
