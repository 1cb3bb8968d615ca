"""No package reaches into another package's `_private` names (checked statically on the source).

Packages: the leaves `sim`, `policies`, `ros_bridge`, `benchmarks`, each direct subpackage of `vla`
(`vla.data`, `vla.training`, `vla.fastpath`, ...), and `vla` itself for the modules directly in
`vla/`. Inside a package `_names` are free to use; across packages only public names are, so a
package can rename its internals without breaking another one. What a package needs from another
goes through a public seam (e.g. `Policy.replace_networks`, `FrozenEncoder.replace_networks`,
`SequenceDataset.sample_indices`, `TabletopEnv.arm_dof_ids`).

Rules (a `_name` is private when it starts with one underscore and is not a dunder):

- import: `from X import _name`, or `import X._mod` / `from X._mod import ...`, where X belongs to
  another project package;
- attribute: `obj._name` (obj not `self`, `cls` or `super()`) where `_name` is defined somewhere in
  the project (a def, class, module- or class-level assignment or import alias, or `self._name =`)
  but not in the accessing module's own package. Privates the project never defines (third-party
  ones such as `torch._dynamo`, `np._NoValue`) are not ours to police and are ignored;
- string: a string constant that is exactly such a name (e.g. `getattr(head, "_denoise")`, a table
  of attribute names to patch); docstrings and f-string pieces are not code and are skipped.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("vla", "sim", "policies", "ros_bridge", "benchmarks")

# (path, what) -> why. Only for reach-ins that cannot be fixed here; an entry that no longer matches
# anything fails the test, so the list shrinks as they are fixed.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    what: str  # `obj._name`, `from X import _name`, `'_name'`
    detail: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what} ({self.detail})"


def is_private(name: str) -> bool:
    return len(name) > 1 and name.startswith("_") and not name.startswith("__")


def package_of_path(rel: Path) -> str:
    """vla/data/x.py -> vla.data; vla/paths.py -> vla; sim/tasks/x.py -> sim."""
    parts = rel.parts
    return f"vla.{parts[1]}" if parts[0] == "vla" and len(parts) > 2 else parts[0]


def package_of_module(module: str) -> str | None:
    """Project package of a dotted module name, None when it is not ours."""
    parts = module.split(".")
    if parts[0] not in SCANNED:
        return None
    if parts[0] == "vla" and len(parts) > 1 and (ROOT / "vla" / parts[1]).is_dir():
        return f"vla.{parts[1]}"
    return parts[0]


def module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_files() -> list[Path]:
    return sorted(p for d in SCANNED for p in (ROOT / d).rglob("*.py"))


def _scope_definitions(body: list[ast.stmt]) -> Iterator[str]:
    """Names bound in a module or class body (descending into if/try/with/for blocks and classes)."""
    for s in body:
        if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef):
            yield s.name
        elif isinstance(s, ast.ClassDef):
            yield s.name
            yield from _scope_definitions(s.body)
        elif isinstance(s, ast.Import | ast.ImportFrom):
            yield from (a.asname or a.name.split(".")[0] for a in s.names)
        else:
            targets: list[ast.expr] = []
            if isinstance(s, ast.Assign):
                targets = s.targets
            elif isinstance(s, ast.AnnAssign | ast.AugAssign | ast.For | ast.AsyncFor):
                targets = [s.target]
            elif isinstance(s, ast.With | ast.AsyncWith):
                targets = [i.optional_vars for i in s.items if i.optional_vars is not None]
            for t in targets:
                yield from (n.id for n in ast.walk(t) if isinstance(n, ast.Name))
            for field in ("body", "orelse", "finalbody"):
                yield from _scope_definitions(getattr(s, field, []))
            for h in getattr(s, "handlers", []):
                yield from _scope_definitions(h.body)


def _self_attributes(tree: ast.AST) -> Iterator[str]:
    for n in ast.walk(tree):
        if (
            isinstance(n, ast.Attribute)
            and isinstance(n.ctx, ast.Store)
            and isinstance(n.value, ast.Name)
            and n.value.id in ("self", "cls")
        ):
            yield n.attr


def _is_self(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return node.id in ("self", "cls")
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _not_code_strings(tree: ast.AST) -> set[int]:
    """ids of docstring constants and f-string pieces."""
    skip: set[int] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = n.body[0] if n.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                skip.add(id(first.value))
        elif isinstance(n, ast.JoinedStr):
            skip.update(id(v) for v in n.values)
    return skip


def find_violations(sources: dict[Path, str] | None = None) -> list[Violation]:
    """Every reach-in in `sources` (repo-relative path -> source; default: the project's files)."""
    if sources is None:
        sources = {p.relative_to(ROOT): p.read_text() for p in project_files()}
    trees = {rel: ast.parse(text, filename=str(rel)) for rel, text in sources.items()}
    defined_in: dict[str, set[str]] = defaultdict(set)  # private name -> packages defining it
    for rel, tree in trees.items():
        pkg = package_of_path(rel)
        for name in (*_scope_definitions(tree.body), *_self_attributes(tree)):
            if is_private(name):
                defined_in[name].add(pkg)

    found: list[Violation] = []
    for rel, tree in trees.items():
        pkg, path = package_of_path(rel), rel.as_posix()

        def foreign(name: str, pkg: str = pkg) -> set[str]:
            d = defined_in.get(name, set())
            return set() if pkg in d else d

        skip = _not_code_strings(tree)
        for n in ast.walk(tree):
            if isinstance(n, ast.Attribute) and is_private(n.attr) and not _is_self(n.value):
                if where := foreign(n.attr):
                    what = f"{ast.unparse(n.value)}.{n.attr}"
                    found.append(Violation(path, n.lineno, what, f"defined in {', '.join(sorted(where))}"))
            elif isinstance(n, ast.Import | ast.ImportFrom):
                if isinstance(n, ast.ImportFrom):
                    if n.level:  # relative: resolve against this module's package
                        base = module_name(rel).split(".")
                        if rel.name != "__init__.py":
                            base = base[:-1]
                        base = base[: len(base) - (n.level - 1)]
                        mod = ".".join([*base, *([n.module] if n.module else [])])
                    else:
                        mod = n.module or ""
                    mods = [mod]
                    names = [a.name for a in n.names]
                else:
                    mods, names = [a.name for a in n.names], []
                for mod in mods:
                    owner = package_of_module(mod)
                    if owner is None or owner == pkg:
                        continue
                    if any(is_private(p) for p in mod.split(".")):
                        found.append(Violation(path, n.lineno, f"import {mod}", f"private module of {owner}"))
                    for name in names:
                        if is_private(name):
                            what = f"from {mod} import {name}"
                            found.append(Violation(path, n.lineno, what, f"private name of {owner}"))
            elif (
                isinstance(n, ast.Constant)
                and isinstance(n.value, str)
                and id(n) not in skip
                and re.fullmatch(r"_[A-Za-z0-9]\w*", n.value)
                and (where := foreign(n.value))
            ):
                detail = f"string naming a private defined in {', '.join(sorted(where))}"
                found.append(Violation(path, n.lineno, repr(n.value), detail))
    return sorted(found, key=lambda v: (v.path, v.line, v.what))


def test_no_private_reach_ins_across_packages() -> None:
    found = find_violations()
    bad = [v for v in found if (v.path, v.what) not in ALLOWED]
    assert not bad, (
        "private names used across packages (add a public seam to the owning package):\n"
        + "\n".join(map(str, bad))
    )
    used = {(v.path, v.what) for v in found}
    stale = sorted(set(ALLOWED) - used)
    assert not stale, f"allow-list entries that match nothing any more (remove them): {stale}"


def test_the_check_sees_each_kind_of_reach_in() -> None:
    """The rules fire on what they describe, and only there (a check that silently passes is worse
    than none)."""
    owner = (
        "def _helper(): ...\nclass S:\n    _table = {}\n    def __init__(self):\n        self._index_ep = 1\n"
    )
    user = (
        "import torch\n"
        "from vla.data.sampler import _helper\n"
        "import vla.data._private\n"
        "from . import _local\n"
        "x = obj._index_ep\n"
        "y = getattr(obj, '_table')\n"
        "z = self._index_ep, super()._table, torch._dynamo, f'_index_ep{x}', obj._local, obj.__dict__\n"
    )
    found = find_violations(
        {
            Path("vla/data/sampler.py"): owner,
            Path("vla/training/user.py"): user,
            Path("vla/training/other.py"): "_local = 1\n",
        }
    )
    assert [(v.path, v.line, v.what) for v in found] == [
        ("vla/training/user.py", 2, "from vla.data.sampler import _helper"),
        ("vla/training/user.py", 3, "import vla.data._private"),
        ("vla/training/user.py", 5, "obj._index_ep"),
        ("vla/training/user.py", 6, "'_table'"),
    ], "\n".join(map(str, found))
    assert str(found[2]) == "vla/training/user.py:5: obj._index_ep (defined in vla.data)"
    assert package_of_module("vla.paths") == "vla" and package_of_module("torch._dynamo") is None
    assert package_of_path(Path("vla/collect.py")) == "vla"
    assert package_of_path(Path("sim/tasks/pick_cube.py")) == "sim"
