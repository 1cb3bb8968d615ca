"""Task registry: names -> task class, expert class and gymnasium id; ``make`` builds an env,
``make_expert`` the scripted expert of an env's task.

Overrides are fields of the task's config dataclass (``sim.make("pick_cube", image_size=128)``);
an unknown field raises with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym

from sim.env import TabletopEnv
from sim.experts import PickExpert, PlaceExpert, PushExpert, StackExpert, WaypointExpert
from sim.tasks.base import Task, TaskConfig
from sim.tasks.pick_cube import PickCube
from sim.tasks.place_cube import PlaceCube
from sim.tasks.push_cube import PushCube
from sim.tasks.stack_cubes import StackCubes

_TASKS: dict[str, tuple[type[Task], type[WaypointExpert]]] = {
    PickCube.name: (PickCube, PickExpert),
    PlaceCube.name: (PlaceCube, PlaceExpert),
    PushCube.name: (PushCube, PushExpert),
    StackCubes.name: (StackCubes, StackExpert),
}


def register_task(task_cls: type[Task], expert_cls: type[WaypointExpert]) -> None:
    """Add a task (and its expert) to the registry and to gymnasium (idempotent)."""
    _TASKS[task_cls.name] = (task_cls, expert_cls)
    if task_cls.gym_id not in gym.registry:
        gym.register(id=task_cls.gym_id, entry_point="sim.registry:make", kwargs={"task": task_cls.name})


def task_names() -> list[str]:
    """Registered task names, sorted."""
    return sorted(_TASKS)


def _lookup(name: str) -> tuple[type[Task], type[WaypointExpert]]:
    if name not in _TASKS:
        raise KeyError(f"unknown task {name!r}; registered tasks: {task_names()}")
    return _TASKS[name]


class UnknownFieldError(TypeError, ValueError):
    """A task-config override that names no field (a TypeError like a bad keyword, and a ValueError
    for callers that treat bad configuration values as input errors)."""


def task_config(name: str, **overrides: Any) -> TaskConfig:
    """The task's default config with ``overrides`` applied (lists become tuples for tuple fields)."""
    task_cls, _ = _lookup(name)
    cls = task_cls.config_cls
    valid = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise UnknownFieldError(
            f"{cls.__name__} ({name}): unknown override(s) {unknown}; valid fields: {sorted(valid)}"
        )
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return cls(**fixed)


def make(task: str, render_mode: str | None = "rgb_array", **overrides: Any) -> TabletopEnv:
    """Build the environment for registered task ``task`` with config ``overrides``."""
    task_cls, _ = _lookup(task)
    return TabletopEnv(task_cls(task_config(task, **overrides)), render_mode=render_mode)


def expert_class(task: str) -> type[WaypointExpert]:
    return _lookup(task)[1]


def make_expert(env: Any) -> WaypointExpert:
    """The scripted expert for ``env``'s task (``env`` a `TabletopEnv`, possibly wrapped)."""
    return expert_class(env.unwrapped.task.name)(env)


for _task_cls, _expert_cls in list(_TASKS.values()):
    register_task(_task_cls, _expert_cls)
