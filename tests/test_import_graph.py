"""The package's import graph has no cycle (every import counts, including type-checking-only ones)."""

from __future__ import annotations

import ast
from pathlib import Path

import approxtvm

ROOT = Path(approxtvm.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ["approxtvm", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for m, p in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for n in names:
                r = resolve(n)
                if r and r != m:
                    deps.add(r)
        graph[m] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycle_in_approxtvm() -> None:
    assert _cycles(_graph(_modules())) == []


#: The layers, top first: a module may import its own layer and the layers below it, never one
#: above. Longest prefix wins. ``compiler > runtime > targets``: the compiler drives the runtime
#: (the simulator), which executes on the accelerator description (``targets.vacc``: specs,
#: mappings, schedules, costs). The BYOC glue (``targets.vacc.byoc`` and the package's
#: ``__init__``, which registers it with TVM on import) ties codegen and execution together, so it
#: sits at the compiler's level.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("approxtvm", "approxtvm.cli", "approxtvm.cli_reports"),
    ("approxtvm.explore",),
    ("approxtvm.models",),
    ("approxtvm.compiler", "approxtvm.targets.vacc.byoc", "approxtvm.targets.vacc"),
    ("approxtvm.passes",),
    ("approxtvm.runtime",),
    ("approxtvm.targets",),
    ("approxtvm.errors", "approxtvm.schema"),
)


def _layer_of(module: str, layers: tuple[tuple[str, ...], ...] = LAYERS) -> int:
    """Index of the layer whose longest prefix names ``module`` (a package init matches exactly)."""
    best, best_len = -1, -1
    for i, prefixes in enumerate(layers):
        for p in prefixes:
            exact_only = p in ("approxtvm", "approxtvm.targets.vacc")
            hit = module == p if exact_only else (module == p or module.startswith(p + "."))
            if hit and len(p) > best_len:
                best, best_len = i, len(p)
    return best


def _upward(graph: dict[str, set[str]], layers: tuple[tuple[str, ...], ...] = LAYERS) -> list[str]:
    return sorted(
        f"{a} -> {b}" for a, deps in graph.items() for b in deps if _layer_of(b, layers) < _layer_of(a, layers)
    )


def test_layer_checker_finds_an_upward_import() -> None:
    layers = (("p.top",), ("p.low",))
    graph = {"p.top.a": {"p.low.b"}, "p.low.b": {"p.low.c"}, "p.low.c": {"p.top.a"}}
    assert _upward(graph, layers) == ["p.low.c -> p.top.a"]


def test_every_module_has_a_layer() -> None:
    assert [m for m in _modules() if _layer_of(m) < 0] == []


def test_no_module_imports_a_layer_above_it() -> None:
    assert _upward(_graph(_modules())) == []
