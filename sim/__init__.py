"""MuJoCo worlds, language tasks, scripted experts and the world-model safety gate.

Imports without torch. Never imports `vla`, `policies` or `ros_bridge`.

    import sim
    env = sim.make("pick_cube", image_size=96)      # or gymnasium.make("vla_sim/PickCube-v0")
    obs, info = env.reset(seed=0)
    expert = sim.make_expert(env); expert.reset()
    obs, reward, terminated, truncated, info = env.step(expert.act(obs))
"""

from sim.gl import select_backend as _select_backend

# MUJOCO_GL must be settled before mujoco (and PyOpenGL) are imported anywhere.
_select_backend()

from sim import scene  # noqa: E402
from sim.env import TabletopEnv  # noqa: E402
from sim.registry import _lookup, make, make_expert, register_task, task_config, task_names  # noqa: E402
from sim.tasks.base import Task  # noqa: E402

__all__ = [
    "TabletopEnv",
    "make",
    "make_expert",
    "register_task",
    "scene",
    "task_class",
    "task_config",
    "task_names",
]


def task_class(name: str) -> type[Task]:
    """The registered task class `name`, e.g. for its `summarize_diagnostics` without a world."""
    return _lookup(name)[0]
