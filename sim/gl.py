"""Headless OpenGL backend selection for MuJoCo rendering.

MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when ``mujoco`` is first imported, and PyOpenGL
picks its platform from ``PYOPENGL_PLATFORM`` on first import, so both must be settled before either
is imported. ``sim/__init__`` calls :func:`select_backend` first thing.
"""

from __future__ import annotations

import ctypes.util
import os
import sys

_VALID = ("egl", "osmesa", "glfw", "glx")
# Set when `mujoco` was already imported, with MUJOCO_GL unset, before the backend was chosen: MuJoCo
# then picked its own default (GLFW, which needs a display) and the choice made here came too late.
_MUJOCO_FIRST = False


def select_backend() -> str:
    """Set ``MUJOCO_GL``/``PYOPENGL_PLATFORM`` (respecting user values) and return the backend name.

    Default ``egl`` (Mesa llvmpipe on CPU, the vendor driver on a GPU). When no EGL library can be
    found but OSMesa can, fall back to ``osmesa`` instead of failing at the first render.
    """
    global _MUJOCO_FIRST
    backend = os.environ.get("MUJOCO_GL", "").strip().lower()
    if not backend:
        _MUJOCO_FIRST = "mujoco" in sys.modules
        backend = "egl"
        if ctypes.util.find_library("EGL") is None and ctypes.util.find_library("OSMesa") is not None:
            backend = "osmesa"
        os.environ["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def render_error_hint(err: BaseException) -> str:
    """A one-line hint for a failed renderer creation, naming the backend in use."""
    backend = os.environ.get("MUJOCO_GL", "")
    if _MUJOCO_FIRST:
        return (
            f"MuJoCo rendering failed ({type(err).__name__}: {err}): `mujoco` was imported before `sim` "
            f"chose the headless backend, so MuJoCo did not use MUJOCO_GL={backend!r}. Import sim first, "
            f"or export MUJOCO_GL={backend or 'egl'} before starting Python."
        )
    alt = "osmesa" if backend == "egl" else "egl"
    return (
        f"MuJoCo rendering failed with MUJOCO_GL={backend!r} ({type(err).__name__}: {err}). "
        f"Try MUJOCO_GL={alt} (needs lib{'OSMesa' if alt == 'osmesa' else 'EGL'}), or run the env with "
        "render_images=False to skip camera images."
    )
