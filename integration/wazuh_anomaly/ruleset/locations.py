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

from ..paths import DEFAULT_PREFIX

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
