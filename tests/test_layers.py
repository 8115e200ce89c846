"""The package's layering: imports point one way (every import statement counts, those inside
functions included), the top of `hnfc/` stays small, no source file grows past 800 lines.

The import graph is read from the source with `ast`, not by importing: an edge a -> b for each
`import b` / `from b import x` in a (x itself when it is a module), plus b's enclosing packages
outside a's own (importing hnfc.ops.core runs hnfc/ops/__init__.py first)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hnfc"

# The layers, bottom up (README: Layout). A module may import its own layer and those below.
LAYERS = (
    ("foundation",),
    ("ops",),
    ("ir",),
    ("numerics", "analysis"),
    ("rewrites",),
    ("egraph",),
    ("frontend", "runtime"),
    ("verify", "precision"),
    ("report",),
    ("pipeline",),
    ("graph_cache", "backend", "export", "cli", "lint", "examples"),
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _known(name: str, modules) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets.add(base)
                targets.update(f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in modules)
        deps: set[str] = set()
        for t in targets:
            known = _known(t, modules)
            if known is None or known == "hnfc" and not t.startswith("hnfc."):
                continue
            parts = known.split(".")
            for k in range(2, len(parts) + 1):  # the module and its enclosing packages
                enclosing = ".".join(parts[:k])
                if not (name == enclosing or name.startswith(enclosing + ".")):
                    deps.add(enclosing)
        graph[name] = deps - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
    for k, names in enumerate(LAYERS):
        if top in names:
            return k
    return None


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_imports_point_down_the_layers():
    upward = []
    for module, deps in import_graph().items():
        here = _layer(module)
        for d in deps:
            there = _layer(d)
            if here is not None and there is not None and there > here:
                upward.append(f"{module} -> {d}")
    assert upward == []


def test_every_package_module_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert sorted(t for t in tops if _layer(f"hnfc.{t}") is None) == []


def test_the_top_of_the_package_stays_small():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 10, modules


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_source_file_over_800_lines(path):
    assert len(path.read_text().splitlines()) <= 800


def test_the_checker_sees_a_cycle_and_a_function_level_import(tmp_path):
    # the graph reader itself: an import inside a function counts, and a cycle is found
    a = ast.parse("def f():\n    from hnfc.pipeline import optimize\n")
    assert any(isinstance(n, ast.ImportFrom) and n.module == "hnfc.pipeline" for n in ast.walk(a))
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert "hnfc.verify.judge" in import_graph()["hnfc.pipeline"]
