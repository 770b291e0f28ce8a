"""The package's structure is enforced, not just described (docs/architecture.md):
the layer contracts of .importlinter hold, no module imports another's private names,
and no import cycle exists between modules."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from conftest import REPO

PACKAGE = REPO / "integration" / "wazuh_anomaly"


def _module_of(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(line, absolute module, imported names) of every `from … import …` in the package."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if target == "wazuh_anomaly" or target.startswith("wazuh_anomaly."):
            yield node.lineno, target, [a.name for a in node.names]


def test_the_layer_contracts_hold():
    lint = shutil.which("lint-imports", path=os.path.dirname(sys.executable)) or shutil.which("lint-imports")
    if lint is None:
        pytest.fail("lint-imports is not installed (import-linter, in .ci/requirements.txt)")
    env = dict(os.environ, PYTHONPATH=str(PACKAGE.parent))
    proc = subprocess.run([lint, "--config", str(REPO / ".importlinter")], capture_output=True, text=True,
                          cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, target, names in _imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and target != _module_of(path):
                found.append(f"{path.relative_to(REPO)}:{line}: {', '.join(private)} from {target}")
    assert not found, "private names imported across modules (make them public or move them):\n" + "\n".join(found)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other, directly or not (Tarjan's strongly
    connected components, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
    return cycles


def test_there_is_no_import_cycle():
    graph = grimp.build_graph("wazuh_anomaly", exclude_type_checking_imports=True)
    edges = {m: graph.find_modules_directly_imported_by(m) - {m} for m in graph.modules}
    assert len(edges) > 50
    assert not _cycles(edges), f"import cycles: {_cycles(edges)}"


def test_the_cycle_check_finds_a_cycle_of_three_and_nothing_in_a_chain():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def _top_packages() -> set[str]:
    return {f"wazuh_anomaly.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}


@pytest.mark.parametrize("package", ["wazuh_anomaly.sources", "wazuh_anomaly.detectors", "wazuh_anomaly.core"])
def test_whole_pluggable_packages_import_only_the_core(package):
    """The contract covers the whole package (not a list of its modules, which a new module
    would escape) and forbids every other package of ours."""
    import configparser
    config = configparser.ConfigParser()
    config.read(REPO / ".importlinter", encoding="utf-8")
    contracts = [config[s] for s in config.sections() if s.startswith("importlinter:contract:")
                 and config[s].get("type") == "forbidden" and config[s]["source_modules"].split() == [package]]
    assert contracts, f"no forbidden contract has exactly {package} as its source"
    forbidden = set(contracts[0]["forbidden_modules"].split())
    assert forbidden == _top_packages() - {package, "wazuh_anomaly.core"}, forbidden ^ (_top_packages() - {package, "wazuh_anomaly.core"})
