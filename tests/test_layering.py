"""The package's units import each other without cycles (ARCHITECTURE.md, "Layering").

A unit is a subpackage (``robust_spikes/neurons/``) or a top-level module
(``robust_spikes/classifier.py``); the package root (``__init__.py``) is a unit of its
own. Every import statement counts, module-level or inside a function (lazy imports), and
those under ``if TYPE_CHECKING:`` too: the layering is about what knows what.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "robust_spikes"
ROOT = "robust_spikes"

# Cycles that exist today and are another issue's to remove. Each entry is the set of
# units of one cycle (a strongly connected component); the test fails on any other
# cycle, and on a known one that grows. Do not add to this list: remove the cycle.
KNOWN_CYCLES: list[frozenset[str]] = []  # none: gradient modes use the classifier's hook


def _unit(module: str) -> str:
    """``robust_spikes.neurons._threshold`` -> ``neurons``; the root -> ``robust_spikes``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ROOT


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _submodules() -> set[str]:
    return {_module_name(p) for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules imported anywhere in the file at ``path``."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(ROOT)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith(ROOT):
                continue
            for alias in node.names:  # `from robust_spikes import neurons` names a unit
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _submodules()
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        source = _unit(_module_name(path))
        targets = {_unit(m) for m in _imports(path, modules)}
        graph.setdefault(source, set()).update(targets - {source})
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one unit (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_is_read_from_the_source() -> None:
    graph = _graph()
    assert {"frameworks", "neurons", "classifier", "gradients", ROOT} <= set(graph)
    assert "frameworks" in graph["neurons"]  # neurons/ use the frameworks' interface
    assert "frameworks" in graph["classifier"]
    assert "gradients" in graph["classifier"]  # a lazy import inside a function counts
    assert "classifier" not in graph["gradients"]  # modes use the classifier's hook
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset({"a", "b", "c"})]


def test_no_import_cycle_between_units_but_the_known_ones() -> None:
    cycles = _cycles(_graph())
    new = [sorted(c) for c in cycles if c not in KNOWN_CYCLES]
    assert not new, f"import cycles between units: {new} (see each unit's imports)"


def test_frameworks_is_the_bottom_layer_of_host_knowledge() -> None:
    graph = _graph()
    # frameworks/ imports nothing above it: not the robust neurons, not the classifier
    assert graph["frameworks"] <= {"_adapters"}, graph["frameworks"]
    assert not any("frameworks" in c and "neurons" in c for c in _cycles(graph))


@pytest.mark.parametrize("unit", ["neurons", "classifier", "gradients", "attacks", "training"])
def test_host_frameworks_are_imported_only_in_frameworks_and_conversion(unit: str) -> None:
    """Host frameworks are imported in frameworks/ (and conversion/'s builders) only."""
    offenders = []
    for path in (
        (PACKAGE / unit).rglob("*.py") if (PACKAGE / unit).is_dir() else [PACKAGE / f"{unit}.py"]
    ):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in ("snntorch", "spikingjelly")
            ]
    assert set(offenders) <= KNOWN_HOST_IMPORTS.get(unit, set()), offenders


# Host-framework imports outside frameworks/ that exist today (another issue's to move).
KNOWN_HOST_IMPORTS = {"gradients": {"_rate.py: spikingjelly.activation_based"}}


def test_application_code_is_imported_by_no_core_unit() -> None:
    graph = _graph()
    assert "app" in graph and not {"cli", "demo"} & set(graph)  # the application's home
    importers = {u for u, targets in graph.items() if "app" in targets}
    assert importers <= {"app", "__main__"}, importers
