"""Load a helper module of another test folder (each folder's helpers are on sys.path only there)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

TESTS = Path(__file__).resolve().parent


def load_helper(name: str, relpath: str) -> ModuleType:
    """`tests/<relpath>` as module `name`, registered in sys.modules before it runs (dataclasses look
    their module up there). Give a private name when that folder's own tests import it plainly."""
    path = TESTS / relpath
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
        return loaded  # one module object per file: its classes stay the same classes
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod
