"""Injected failures: put an episode in a state the expert's plan did not foresee.

For the re-plannable experts' tests and for recovery demos (``vla-collect recovery=...``): a
:class:`FailureInjector` watches the expert's phase and, when its trigger phase begins, changes the
world (teleports the cube) or the executed command (opens the gripper for a few steps). The stored
action stays the expert's own command, as with DART noise; only what is executed differs.

Kinds (:data:`FAILURE_KINDS`; :func:`failure_kinds` says which apply to a task):

- ``knock``: the target cube is knocked to another free spot on the table during the approach
  (``descend``); the push task's cube is knocked a few cm along or across its lane.
- ``knock_held``: the cube is knocked out of the hand while it is lifted (pick/place/stack) or out
  of the fingers' way mid-push (push).
- ``drop``: the gripper opens for ``drop_steps`` while the cube is lifted or carried.
- ``half_grasp``: the cube shifts 1.2-1.6 cm just before the fingers close, so they close off its
  centre (the grasps that slip in the learned policy's failures).
- ``closed_empty``: the episode starts with the arm displaced and the gripper closed on nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sim.tasks.base import CUBE_HALF

FAILURE_KINDS = ("knock", "knock_held", "drop", "half_grasp", "closed_empty")
# The expert phase whose start triggers each kind, per task family (None: at the episode's start).
_TRIGGER = {
    "pick": {"knock": "descend", "knock_held": "lift", "drop": "lift", "half_grasp": "close"},
    "place": {"knock": "descend", "knock_held": "lift", "drop": "carry", "half_grasp": "close"},
    "push": {"knock": "descend", "knock_held": "push"},
}
_FAMILY = {"pick_cube": "pick", "place_cube": "place", "stack_cubes": "place", "push_cube": "push"}


def failure_kinds(task: str) -> tuple[str, ...]:
    """The failure kinds that make sense for ``task`` (push has no grasp to drop or half-grasp)."""
    fam = _FAMILY.get(task)
    if fam is None:
        raise ValueError(
            f"failure_kinds: no failure kinds defined for task {task!r} (known: {sorted(_FAMILY)})"
        )
    return (*_TRIGGER[fam], "closed_empty")


@dataclass
class FailureInjector:
    """Injects one failure of ``kind`` into an episode of ``env`` run by ``expert``.

    Usage per episode: ``obs = injector.start(obs)`` after ``env.reset()`` and before
    ``expert.reset()`` (``closed_empty`` moves the robot there), then each step
    ``executed = injector.execute(action)`` in place of the expert's ``action``.
    ``fired`` says whether the failure happened (a trigger phase never reached: it did not), ``info``
    what was done (JSON-ready: kind, step, what moved where).

    Args:
        env: a `TabletopEnv` (possibly wrapped).
        expert: its `WaypointExpert` (the injector reads ``expert.phase``).
        kind: one of :func:`failure_kinds` of the env's task.
        rng: the randomness of where things go (seed it per episode for reproducible data).
        drop_steps: control steps the gripper is forced open by ``drop``.
        delay_steps: steps into the trigger phase before the failure happens.
    """

    env: Any
    expert: Any
    kind: str
    rng: np.random.Generator
    drop_steps: int = 10
    delay_steps: int = 2
    fired: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.env = self.env.unwrapped
        task = self.env.task.name
        if self.kind not in failure_kinds(task):
            raise ValueError(
                f"FailureInjector: kind {self.kind!r} does not apply to {task} (choose from {failure_kinds(task)})"
            )
        fam = _FAMILY[task]
        self.trigger = _TRIGGER[fam].get(self.kind)
        self._in_phase = 0
        self._forcing = 0
        self._step = 0

    # -- episode hooks ---------------------------------------------------------------------------
    def start(self, obs: dict[str, Any]) -> dict[str, Any]:
        """Call after ``env.reset()``; returns the observation to start the episode from."""
        self.fired, self.info = False, {}
        self._in_phase = self._forcing = self._step = 0
        if self.kind == "closed_empty":
            obs = self._displace_closed()
        return obs

    def execute(self, action: np.ndarray) -> np.ndarray:
        """The command to execute this step in place of the expert's ``action`` (7,)."""
        self._step += 1
        if not self.fired and self.trigger is not None:
            self._in_phase = self._in_phase + 1 if self.expert.phase == self.trigger else 0
            if self._in_phase > self.delay_steps:
                self._fire()
        if self._forcing > 0:
            self._forcing -= 1
            action = np.asarray(action, np.float32).copy()
            action[6] = 0.0
        return action

    # -- the failures ----------------------------------------------------------------------------
    def _fire(self) -> None:
        task = self.env.task
        self.fired = True
        self.info = {"kind": self.kind, "step": self._step, "phase": self.trigger}
        if self.kind == "drop":
            self._forcing = self.drop_steps
            self.info["open_steps"] = self.drop_steps
            return
        before = task.cube_pos(task.target)
        if self.kind == "half_grasp":
            ang = self.rng.uniform(0, 2 * np.pi)
            xy = before[:2] + self.rng.uniform(0.012, 0.016) * np.array([np.cos(ang), np.sin(ang)])
            self._teleport(xy, task.cube_yaw(task.target), z=float(before[2]))
        elif task.name == "push_cube":
            # Along or across the lane by a few cm: still pushable to the goal, a new approach needed.
            d = self.rng.uniform(0.02, 0.04) * self.rng.choice([-1.0, 1.0])
            dx, dy = (d, 0.0) if self.rng.random() < 0.5 else (0.0, d)
            if self.kind == "knock_held":  # mid-push: out of the fingers' way, across the lane
                dx, dy = self.rng.choice([-1.0, 1.0]) * self.rng.uniform(0.035, 0.05), 0.0
            self._teleport(before[:2] + np.array([dx, dy]), self.rng.uniform(-0.5, 0.5))
        else:
            self._teleport(self._free_spot(), self.rng.uniform(-0.6, 0.6))
        self.info["cube_from"] = [round(float(v), 4) for v in before]
        self.info["cube_to"] = [round(float(v), 4) for v in task.cube_pos(task.target)]

    def _teleport(self, xy: np.ndarray, yaw: float, z: float = CUBE_HALF) -> None:
        import mujoco

        task = self.env.task
        task.place_cube(task.target, np.asarray(xy, np.float64), float(yaw), z=z)
        mujoco.mj_forward(self.env.model, self.env.data)

    def _free_spot(self) -> np.ndarray:
        """A table spot >= 5 cm from the cube's old place, clear of the other cubes, pads and fingers."""
        task, cfg = self.env.task, self.env.task.cfg
        lo, hi = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        here = task.cube_pos(task.target)[:2]
        others = [task.cube_pos(n)[:2] for n in task.cube_names if n != task.target]
        others += [task.pad_pos(n)[:2] for n in getattr(task, "pad_names", [])]
        pinch = task.pinch_pos()[:2]
        for _ in range(1000):
            xy = self.rng.uniform(lo, hi)
            if (
                np.linalg.norm(xy - here) >= 0.05
                and np.linalg.norm(xy - pinch) >= 0.07
                and all(np.linalg.norm(xy - o) >= 0.08 for o in others)
            ):
                return xy
        raise RuntimeError(f"FailureInjector: no free table spot for the {task.name} cube")

    def _displace_closed(self) -> dict[str, Any]:
        """Drive the arm to a random pose near home (kept above the table) with the gripper closed."""
        env = self.env
        q0 = env.robot_state()[:6].astype(np.float64)
        offset = self.rng.uniform(-1, 1, 6) * np.array([0.4, 0.15, 0.2, 0.3, 0.3, 0.5])
        target = np.append(q0 + offset, 1.0).astype(np.float32)
        obs = None
        for _ in range(15):  # 0.75 s at 20 Hz: the arm gets there and the fingers close
            obs, *_ = env.step(target)
        self.fired = True
        self.info = {
            "kind": self.kind,
            "step": 0,
            "joint_offset": [round(float(v), 4) for v in offset],
            "pinch": [round(float(v), 4) for v in env.task.pinch_pos()],
        }
        return obs


__all__ = ["FAILURE_KINDS", "FailureInjector", "failure_kinds"]
