"""The house's rules, checked: no import circle anywhere (imports inside functions included), kernels that
import only numba, numpy, the standard library and each other, and a docstring on every layer saying what
it owns and what it may import.

The layer order itself is import-linter's contract in pyproject.toml (`lint-imports`, run by .ci/run on the
installed package, where rfsweep.kernels sits inside rfsweep).
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ("core", "network", "space", "engine", "output", "nas", "anchors", "distributed", "cli")


def _cycles(adj: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), i.e. the import circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on, stack, out = set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for m in sorted(adj):
            if m not in index:
                visit(m)
    finally:
        sys.setrecursionlimit(limit)
    return out


def test_cycle_finder_finds_a_circle():
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []


def test_no_import_circle_deferred_imports_included():
    grimp = pytest.importorskip("grimp", reason="grimp comes with import-linter (the [test] extra)")
    graph = grimp.build_graph("rfsweep", include_external_packages=False, exclude_type_checking_imports=True)
    adj = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    assert len(adj) > 60, sorted(adj)  # the whole package was read
    found = _cycles(adj)
    detail = [{m: [w for w in adj[m] if w in set(c)] for m in c} for c in found]
    assert not found, detail


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module)
    return names


def test_kernels_import_only_numba_numpy_the_stdlib_and_each_other():
    allowed_roots = {"numba", "numpy", "__future__", *sys.stdlib_module_names}
    bad = {}
    for path in sorted((ROOT / "kernels").glob("*.py")):
        wrong = [
            n for n in _imports(path) if n.split(".")[0] not in allowed_roots and not n.startswith("rfsweep.kernels")
        ]
        if wrong:
            bad[path.name] = wrong
    assert not bad


@pytest.mark.parametrize("layer", LAYERS)
def test_every_layer_says_what_it_owns_and_may_import(layer):
    module = importlib.import_module(f"rfsweep.{layer}")
    doc = module.__doc__ or ""
    assert len(doc) > 80, doc
    assert "import" in doc, doc  # what it may import (or that nothing imports it)


def test_no_module_is_left_in_the_flat_folder():
    """The tree shows the layers: the package's top holds only the API, never a room of its own."""
    top = sorted(p.name for p in (ROOT / "rfsweep").glob("*.py"))
    assert top == ["__init__.py", "api.py", "torch.py"], top
