"""The package layout rules from DEVELOPERS.md, checked on the source itself."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LEAVES = ("policies", "sim", "ros_bridge")


def _imported_top_levels(pkg: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (ROOT / pkg).rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaves_do_not_import_each_other_or_vla(leaf: str) -> None:
    forbidden = ({"vla", *LEAVES} - {leaf}) | {"hydra", "omegaconf"}
    bad = {f: sorted(n & forbidden) for f, n in _imported_top_levels(leaf).items() if n & forbidden}
    assert not bad, f"{leaf}/ imports what it must not: {bad}"


def test_library_code_never_imports_hydra() -> None:
    bad = {
        f: sorted(n & {"hydra", "omegaconf"})
        for f, n in _imported_top_levels("vla").items()
        if n & {"hydra", "omegaconf"} and not f.startswith("vla/cli/")
    }
    assert not bad, f"only vla/cli/ entry points may import Hydra: {bad}"


@pytest.mark.parametrize("pkg", ["sim", "ros_bridge"])
def test_imports_without_torch(pkg: str) -> None:
    """`sim` and `ros_bridge` (all their modules) import in a process where torch cannot load."""
    code = (
        "import sys, importlib, pkgutil\n"
        "class _Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ImportError('torch is blocked in this check')\n"
        "sys.meta_path.insert(0, _Block())\n"
        f"import {pkg}\n"
        f"for m in pkgutil.walk_packages({pkg}.__path__, '{pkg}.'):\n"
        "    importlib.import_module(m.name)\n"
        "assert 'torch' not in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]


def _imports_mujoco_at_top(path: Path) -> bool:
    for node in ast.parse(path.read_text(), filename=str(path)).body:
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "mujoco" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("mujoco"):
            return True
    return False


MUJOCO_AT_TOP = sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts)
    for pkg in ("vla", "ros_bridge")
    for p in (ROOT / pkg).rglob("*.py")
    if _imports_mujoco_at_top(p)
)


@pytest.mark.parametrize("module", MUJOCO_AT_TOP)
def test_modules_importing_mujoco_settle_the_gl_backend_first(module: str) -> None:
    """MuJoCo reads MUJOCO_GL once, at its first import; `sim` settles it (EGL/OSMesa headless). A
    module that imports mujoco at its top, imported first in a process, must still let `sim` run
    before (vla-dagger once got GLFW that way and could not render). A fresh interpreter without
    MUJOCO_GL records the variable at the moment mujoco is imported."""
    code = (
        "import os, sys\n"
        "seen = []\n"
        "class _Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'mujoco':\n"
        "            seen.append(os.environ.get('MUJOCO_GL'))\n"
        "sys.meta_path.insert(0, _Spy())\n"
        f"import {module}\n"
        "print(seen[0] if seen else 'not imported')\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.strip() in ("egl", "osmesa"), (
        f"{module}: mujoco imported with MUJOCO_GL={res.stdout.strip()}"
    )


def test_modules_over_400_lines_are_listed_with_a_reason() -> None:
    """ARCHITECTURE.md, "Modules over 400 lines": a long module is there because one responsibility
    needs it, and says so; a new one fails here until it is split or listed."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "ARCHITECTURE.md").read_text()
    listed = text.split("### Modules over 400 lines", 1)[1].split("\n## ", 1)[0]
    long = [
        str(p.relative_to(root))
        for pkg in ("vla", "sim", "policies", "ros_bridge")
        for p in sorted((root / pkg).rglob("*.py"))
        if len(p.read_text().splitlines()) > 400
    ]
    assert long, "the check found no module at all"
    assert [m for m in long if f"`{m}`" not in listed] == []
