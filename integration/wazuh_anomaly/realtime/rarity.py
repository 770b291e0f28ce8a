"""Rare-event models for file integrity (syscheck) and commands (audit, sudo), in the
spirit of Mimizuku: each event becomes a few tokens (directory prefixes, file name and
extension, FIM event, user, program, argument prefixes), hashed into a fixed number of
dimensions, and an IsolationForest trained on the manager's history says how isolated
a new event is.

The model file is JSON, never a pickle: per tree the split feature and threshold of
every node and, per leaf, its path length (depth plus the expected depth of the
samples left in it). Scoring is the same arithmetic as scikit-learn's
`IsolationForest.score_samples` in pure Python (tests check both agree), so the
integration scores an alert without importing numpy. Training lives in `train.py`.
"""
from __future__ import annotations


FORMAT = "wazuh-anomaly-iforest"
FORMAT_VERSION = 1
MAX_ARGS = 8
# A history with at most this many distinct events (a small manager: 24 commands in a
# month) is also kept as a list of the events themselves: a forest grown on a handful of
# events, or on one event repeated, cannot isolate anything, but an event unlike every
# one of them is rare by any measure.
MAX_KNOWN = 256
# Where such a never-seen event scores: a quarter of the way from the threshold to 1.
NOVEL_MARGIN = 0.25


def _prefixes(path: str, depth: int = 3) -> list[str]:
    parts = [p for p in path.split("/") if p]
    return ["/" + "/".join(parts[:i]) for i in range(1, min(depth, max(len(parts) - 1, 0)) + 1)]


def fim_event(alert: dict) -> dict | None:
    """What a syscheck alert says (path, event, user, process), or None for other alerts."""
    sc = alert.get("syscheck")
    if not isinstance(sc, dict) or not isinstance(sc.get("path"), str):
        return None
    audit = sc.get("audit") if isinstance(sc.get("audit"), dict) else {}
    user = ((audit.get("user") or {}).get("name") if isinstance(audit.get("user"), dict) else None) or sc.get("uname_after")
    process = (audit.get("process") or {}).get("name") if isinstance(audit.get("process"), dict) else None
    return {"path": sc["path"], "event": str(sc.get("event") or ""), "user": str(user or ""),
            "process": str(process or ""), "mode": str(sc.get("mode") or "")}


def command_event(alert: dict) -> dict | None:
    """What a command alert says (audit EXECVE or sudo): command line, user, run-as, cwd."""
    data = alert.get("data")
    if not isinstance(data, dict):
        return None
    audit = data.get("audit") if isinstance(data.get("audit"), dict) else None
    if audit and (audit.get("exe") or audit.get("command")):
        execve = audit.get("execve") if isinstance(audit.get("execve"), dict) else {}
        args = [str(execve[k]) for k in sorted(execve, key=lambda k: (len(k), k)) if k.startswith("a")]
        line = " ".join(args) if args else str(audit.get("command") or "")
        user = audit.get("auid") if audit.get("auid") not in (None, "4294967295", "-1") else audit.get("uid")
        return {"command": line, "exe": str(audit.get("exe") or ""), "user": str(user or ""),
                "runas": str(audit.get("euid") or ""), "cwd": str(audit.get("cwd") or "")}
    if isinstance(data.get("command"), str):
        return {"command": data["command"], "exe": "", "user": str(data.get("srcuser") or ""),
                "runas": str(data.get("dstuser") or ""), "cwd": str(data.get("pwd") or "")}
    return None


def fim_tokens(ev: dict) -> list[str]:
    path = ev["path"]
    name = path.rsplit("/", 1)[-1]
    tokens = [f"event:{ev['event']}", f"name:{name}", f"depth:{path.count('/')}", f"user:{ev['user']}",
              f"process:{ev['process']}", f"mode:{ev['mode']}"]
    if "." in name[1:]:
        tokens.append(f"ext:{name.rsplit('.', 1)[-1]}")
    tokens += [f"dir:{p}" for p in _prefixes(path)]
    return tokens


def command_tokens(ev: dict) -> list[str]:
    words = ev["command"].split()
    exe = ev["exe"] or (words[0] if words else "")
    tokens = [f"exe:{exe}", f"program:{exe.rsplit('/', 1)[-1]}", f"user:{ev['user']}", f"runas:{ev['runas']}",
              f"nargs:{min(len(words), MAX_ARGS)}"]
    tokens += [f"cwd:{p}" for p in _prefixes(ev["cwd"] + "/x", 2)]
    for word in words[1:MAX_ARGS + 1]:
        if word.startswith("-"):
            tokens.append(f"flag:{word}")
        elif "/" in word:
            tokens += [f"argdir:{p}" for p in _prefixes(word, 2)] + [f"argname:{word.rsplit('/', 1)[-1]}"]
        else:
            tokens.append(f"arg:{word}")
    return tokens


def extract(target: str, alert: dict, *, ignore_users=(), ignore_path_prefixes=()) -> tuple[dict, list[str]] | None:
    """(event, tokens) for a model's target, or None when the alert is not one or is ignored."""
    ev = fim_event(alert) if target == "fim" else command_event(alert)
    if ev is None:
        return None
    if ev["user"] and ev["user"] in ignore_users:
        return None
    where = ev["path"] if target == "fim" else (ev["exe"] or ev["command"])
    if any(where.startswith(p) for p in ignore_path_prefixes):
        return None
    return ev, (fim_tokens(ev) if target == "fim" else command_tokens(ev))


def vector(tokens: list[str], dimensions: int) -> dict[int, float]:
    """Hashed token counts, sparse: {dimension: count} (crc32 is stable across processes)."""
    import zlib  # here, not at the top: most alerts are neither FIM nor commands
    out: dict[int, float] = {}
    for tok in tokens:
        i = zlib.crc32(tok.encode("utf-8", "replace")) % dimensions
        out[i] = out.get(i, 0.0) + 1.0
    return out


def vector_key(x: dict[int, float]) -> str:
    """One string per hashed vector, the same in training and scoring."""
    return ",".join(f"{i}:{x[i]:g}" for i in sorted(x))


def average_path_length(n: float) -> float:
    """c(n), the expected depth of an unsuccessful search in a binary tree of n samples
    (scikit-learn's _average_path_length)."""
    import math
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + 0.5772156649015329) - 2.0 * (n - 1.0) / n


class RareEventModel:
    """A fitted IsolationForest read from its JSON file; `score` is in (0, 1], higher is rarer."""

    def __init__(self, doc: dict, source: str = "model"):
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"{source}: not a {FORMAT} v{FORMAT_VERSION} file")
        self.doc = doc
        self.name = doc["name"]
        self.target = doc["target"]
        self.dimensions = int(doc["dimensions"])
        self.threshold = float(doc["threshold"])
        self.normaliser = float(doc["average_path_length"])
        self.trees = [(t["left"], t["right"], t["feature"], t["threshold"], t["path_length"]) for t in doc["trees"]]
        self.version = f"iforest/{doc.get('trained_at', '')}"
        known = doc.get("known")
        self.known = frozenset(str(k) for k in known) if isinstance(known, list) else None

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "model") -> "RareEventModel":
        from ..core.jsonio import loads
        return cls(loads(data), source)

    def score_vector(self, x: dict[int, float]) -> float:
        total = 0.0
        for left, right, feature, threshold, path_length in self.trees:
            node = 0
            while left[node] != -1:
                node = left[node] if x.get(feature[node], 0.0) <= threshold[node] else right[node]
            total += path_length[node]
        return 2.0 ** (-(total / len(self.trees)) / self.normaliser)

    def score_tokens(self, tokens: list[str]) -> float:
        return self.score_vector(vector(tokens, self.dimensions))

    def rarity(self, tokens: list[str]) -> float:
        """The forest's score; from a small history (`known` kept), an event unlike every
        learned one scores at least NOVEL_MARGIN of the way from the threshold to 1."""
        x = vector(tokens, self.dimensions)
        score = self.score_vector(x)
        if self.known is not None and vector_key(x) not in self.known:
            score = max(score, self.threshold + NOVEL_MARGIN * (1.0 - self.threshold))
        return score
