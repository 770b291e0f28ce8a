"""Where the events of each rule family legitimately come from, as wazuh-analysisd sees them.

Every rule family is bound (`<location>` on its base rule) to the path of our own file
on the manager, because the JSON decoder decodes any JSON line from any agent or syslog
sender and our marker fields (`"integration": "anomaly"`, `"netflow": "true"`) are just
text anyone can write. The location analysisd gives an event (OS_CleanMSG):

- a file the manager's own logcollector reads: the file's path, e.g.
  /var/ossec/logs/anomaly/anomalies.json;
- a line from an agent: "(agent-name) ip->/path/on/the/agent" (the queue message is
  "[001] (agent-name) ip->/path", analysisd drops the "[001] ");
- a remote syslog message: the sender's address.

The repository's rule files carry the default prefix (/var/ossec) so they are valid as
shipped; install.sh renders them for its --prefix and NetFlow sensors (agents beside a
flow collector). The .ini cases name the location of each case with these helpers.
"""
from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from ..core.paths import DEFAULT_PREFIX
from .patterns import search
from .rulefile import RuleFileError, read_rule_file

# The files each family reads, relative to the manager's prefix.
ANOMALIES_REL = "logs/anomaly/anomalies.json"     # time-series, real-time, health (117100 and below)
NETFLOW_REL = "logs/anomaly/netflow.json"         # flow events (117000 and below)

# What the forged cases pretend to be: an enrolled agent and a syslog sender.
FORGING_AGENT = ("003", "web-01", "any")
SYSLOG_SENDER = "192.0.2.7"

# Wazuh's agent names (OS_IsValidName, src/addagent/validate.c): 2-128 of [A-Za-z0-9._-],
# not starting with ".".
AGENT_NAME = re.compile(r"^(?!\.)[A-Za-z0-9._-]{2,128}$")


def manager_file(rel: str, prefix: str = DEFAULT_PREFIX) -> str:
    """The location of a manager's own file: its path under the prefix."""
    return f"{str(prefix).rstrip('/')}/{rel}"


def agent_location(path: str, agent: tuple[str, str, str] = FORGING_AGENT) -> str:
    """A line of `path` on an agent, as the queue (and a logtest request) carries it."""
    agent_id, name, ip = agent
    return f"[{agent_id}] ({name}) {ip}->{path}"


PCRE2_SPECIAL = frozenset("\\^$.|?*+()[]{}")


def pcre2_literal(text: str) -> str:
    """`text` as a PCRE2 pattern matching exactly it (outside a character class): each of
    \\ ^ $ . | ? * + ( ) [ ] { } gets a backslash, which before a non-alphanumeric
    character always means the character itself. install.sh escapes the same way."""
    return "".join(f"\\{c}" if c in PCRE2_SPECIAL else c for c in text)


def file_pattern(path: str) -> str:
    """The `<location type="pcre2">` pattern of one manager file."""
    return f"^{pcre2_literal(path)}$"


def forged(case, rel: str, *, other_file: str | None = None) -> list:
    """The `fail` cases of one genuine case: the same lines from an agent's file of the
    same path, from a syslog sender and, with `other_file`, from another file the
    manager reads. None may raise the case's rule (nor, tests check, any rule)."""
    path = manager_file(rel)
    sources = [(f"an agent ({FORGING_AGENT[1]}) with a file of the same path", agent_location(path)),
               (f"a syslog sender ({SYSLOG_SENDER})", SYSLOG_SENDER)]
    if other_file:
        sources.append((f"another file the manager reads ({other_file})", other_file))
    return [replace(case, name=f"Forged by {who}: {case.name}", location=where, expect_match=False,
                    comment="Must raise no alert: our rules only match our own file on the manager.")
            for who, where in sources]


# The base rule of each family and the rule file it lives in.
BASES = ((117100, "wazuh_anomaly_rules.xml", "output.anomalies_file in etc/anomaly/config.yaml"),
         (117000, "wazuh_anomaly_netflow_rules.xml", "output_file in etc/anomaly/netflow.yaml"))


def binding_problems(rules_dir, files: dict[int, str]) -> list[str]:
    """One sentence for each of our files that the installed base rule would not accept
    (`files`: base rule id -> the path the add-on writes). Installed rules only: a
    checkout's rules name the default prefix."""
    out = []
    for rule_id, name, setting in BASES:
        path = Path(rules_dir) / name
        if rule_id not in files or not path.is_file():
            continue
        try:
            base = next((r for r in read_rule_file(path).rules if r.id == rule_id), None)
        except RuleFileError as exc:
            out.append(str(exc))
            continue
        if base is None or base.location is None:
            continue   # `wazuh-anomaly ruleset check` reports a base rule without <location>
        loc = base.location
        if search(loc.type, loc.pattern, files[rule_id]) == loc.negate:
            out.append(f"{path}: rule {rule_id} only accepts lines from the location '{loc.pattern}', but the "
                       f"add-on writes {files[rule_id]} ({setting}), so none of them would raise an alert; "
                       f"change the rule's <location> to that path or the setting back (docs/security.md).")
    return out
