"""No import cycles among the project's modules (checked statically on the source).

The graph: one node per module of `vla`, `sim`, `policies`, `ros_bridge` and `benchmarks` (a
package is its `__init__`); an edge for every import of another project module, at module level
or inside a function (a deferred import only hides a cycle until that function runs). `import a.b`
and `from a import b` point at the module `a.b` when it is one, else at `a`; relative imports are
resolved. Imports under `if TYPE_CHECKING:` never run and are not edges. A failure names one cycle
per strongly connected group, with the file and line of each import on it.
"""

from __future__ import annotations

import ast
import itertools
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("vla", "sim", "policies", "ros_bridge", "benchmarks")

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.If) and "TYPE_CHECKING" in ast.unparse(n.test):
            for stmt in n.body:
                skip.update(id(x) for x in ast.walk(stmt))
    return skip


def import_graph(sources: dict[Path, str] | None = None) -> Graph:
    """Edges between project modules (`sources`: repo-relative path -> text; default the project)."""
    if sources is None:
        sources = {
            p.relative_to(ROOT): p.read_text() for d in SCANNED for p in sorted((ROOT / d).rglob("*.py"))
        }
    modules = {module_name(rel): rel for rel in sources}
    graph: Graph = {}
    for mod, rel in modules.items():
        tree = ast.parse(sources[rel], filename=str(rel))
        skip = _type_checking_only(tree)
        edges: dict[str, int] = {}

        def add(target: str, line: int, mod: str = mod, edges: dict[str, int] = edges) -> None:
            if target in modules and target != mod:
                edges.setdefault(target, line)

        for n in ast.walk(tree):
            if id(n) in skip:
                continue
            if isinstance(n, ast.Import):
                for a in n.names:
                    add(a.name, n.lineno)
            elif isinstance(n, ast.ImportFrom):
                if n.level:
                    base = mod.split(".") if rel.name == "__init__.py" else mod.split(".")[:-1]
                    base = base[: len(base) - (n.level - 1)]
                    src = ".".join([*base, *([n.module] if n.module else [])])
                else:
                    src = n.module or ""
                for a in n.names:
                    sub = f"{src}.{a.name}"
                    add(sub if sub in modules else src, n.lineno)
        graph[mod] = edges
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Groups of more than one module that import each other (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph[w])))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                group = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    group.append(w)
                    if w == v:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return sorted(groups)


def one_cycle(graph: Graph, group: list[str]) -> list[str]:
    """A shortest cycle through the group's first module: [m0, m1, ..., m0]."""
    start, members = group[0], set(group)
    prev: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in graph[v]:
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(prev[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in prev:
                prev[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected group


def describe(graph: Graph, cycle: list[str]) -> str:
    steps = [f"{a} imports {b} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(cycle) + "\n    " + "\n    ".join(steps)


def test_no_import_cycles_between_project_modules() -> None:
    graph = import_graph()
    assert "sim.registry" in graph and graph["vla.fastpath.head"], "the graph missed modules or edges"
    groups = strongly_connected(graph)
    assert not groups, "import cycles:\n" + "\n".join(describe(graph, one_cycle(graph, g)) for g in groups)


def test_the_check_finds_cycles_through_deferred_and_relative_imports() -> None:
    sources = {
        Path("sim/__init__.py"): "from sim.a import f\n",
        Path("sim/a.py"): "from sim import b\n",
        Path("sim/b.py"): "def g():\n    from .a import f\n",  # deferred and relative: still an edge
        Path("sim/c.py"): "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sim.d import x\n",
        Path("sim/d.py"): "import sim.c\n",  # only a TYPE_CHECKING edge back: no cycle
    }
    graph = import_graph(sources)
    assert graph["sim.b"] == {"sim.a": 2} and graph["sim.c"] == {}
    groups = strongly_connected(graph)
    assert groups == [["sim.a", "sim.b"]]
    assert one_cycle(graph, groups[0]) == ["sim.a", "sim.b", "sim.a"]
