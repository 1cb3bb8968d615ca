"""Headless rendering's backend choice (`sim/gl.py`), in fresh interpreters without MUJOCO_GL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    # No display either: GLFW, what MuJoCo picks on its own, cannot start (as on a server or in CI).
    drop = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env)


def test_sim_first_renders_headless_and_mujoco_first_says_why_not() -> None:
    """`import sim` first: a camera frame renders with no display. `import mujoco` first: MuJoCo has
    chosen its own backend already, and the error says so and what to do (not only 'try osmesa')."""
    render = "env = sim.make('pick_cube', image_size=16)\nobs, _ = env.reset(seed=0)\nprint(obs['image_front'].shape)\n"
    ok = _run("import sim\n" + render)
    assert ok.returncode == 0 and "(16, 16, 3)" in ok.stdout, ok.stderr[-2000:]
    bad = _run("import mujoco\nimport sim\n" + render)
    assert bad.returncode != 0
    assert "imported before `sim`" in bad.stderr and "export MUJOCO_GL=" in bad.stderr, bad.stderr[-2000:]
