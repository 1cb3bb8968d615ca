"""Unsafe chunks from resting and moving arms in every task, for the safe-stop suite (test_safe_stops.py).

Each :class:`Case` puts a task env into a start state (at rest after reset, or moving: the arm given
a joint velocity with its servo targets where a tracking servo has them, ``q + lag * qd``) and builds
a chunk that is unsafe to execute and then hold. The kinds (what the gate once let through):

- ``coast_*``: the targets lead the lagging arm into the table / its base / out of the workspace;
  short chunks end before the arm gets there (the collision happens only after the chunk), long
  ones hit mid-chunk (the old prefix-before-the-violation coasted on after a truncation);
- ``self_*``: folding the elbow or the wrist into the arm;
- ``press_*``: pads pressed flat into the table (several contacts, each under the limit);
- ``crush``: the closed gripper pushed down onto a cube;
- ``spin_*``: a wrist spun towards its joint limit, or a big mid-chunk target step (limits reached
  while the servo catches up, i.e. during the stop);
- ``invalid_*`` / ``jump``: NaN, Inf, wrong shape, empty, or a first target far away from a moving
  arm: the gate must plan a stop itself (a jump to the measured joints brakes too hard).

Built from the simulator (``sim``) and its IK only: nothing of ``sim.safety``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

import sim
from sim.ik import ArmIK, down_quat
from sim.scene import ARM_ACTUATORS, GRIPPER_ACTUATOR

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
TASKS = ("pick_cube", "place_cube", "push_cube", "stack_cubes")


@dataclass
class Start:
    """A start state: the env is in it; ``command`` is the target the servos track now."""

    env: object
    q: np.ndarray  # (7,) arm + gripper closure
    qd: np.ndarray  # (6,)
    state: np.ndarray  # mjSTATE_FULLPHYSICS
    command: np.ndarray  # (7,)
    ik: ArmIK

    @property
    def pinch(self) -> np.ndarray:
        return self.ik.site_pose(self.q[:6])[0]


def servo_lag(model: mujoco.MjModel) -> np.ndarray:
    """(6,) kv / kp of the arm position servos [s]: how far a tracking servo's target leads."""
    ids = [model.actuator(a).id for a in ARM_ACTUATORS]
    kp = -model.actuator_biasprm[ids, 1]
    kv = -model.actuator_biasprm[ids, 2]
    return kv / kp


def make_start(env, seed: int, q6=None, qd6=None, grip: float = 0.0) -> Start:
    """Reset ``env`` with ``seed``; optionally place the arm at ``q6`` moving at ``qd6`` (targets led)."""
    env.reset(seed=seed)
    base = env.unwrapped
    m, d = base.model, base.data
    arm_act = [m.actuator(a).id for a in ARM_ACTUATORS]
    if q6 is not None:
        v = np.zeros(6) if qd6 is None else np.asarray(qd6, np.float64)
        d.qpos[base._qadr] = q6
        d.qvel[base._dadr] = v
        d.ctrl[arm_act] = np.asarray(q6) + servo_lag(m) * v
        d.ctrl[m.actuator(GRIPPER_ACTUATOR).id] = grip * 255.0
        mujoco.mj_forward(m, d)
    q = base.robot_state().astype(np.float64)
    qd = d.qvel[base._dadr].astype(np.float64).copy()
    state = np.empty(mujoco.mj_stateSize(m, STATE_SPEC))
    mujoco.mj_getState(m, d, state, STATE_SPEC)
    command = np.append(d.ctrl[arm_act], d.ctrl[m.actuator(GRIPPER_ACTUATOR).id] / 255.0)
    return Start(env, q, qd, state, command, ArmIK(m))


def line(s: Start, goal, rows: int, grip: float | None = None, tail: int = 0) -> np.ndarray:
    """(rows + tail, 7): the pinch site on a straight line from where it is to ``goal`` (fingers down)."""
    g = s.command[6] if grip is None else grip
    start = s.pinch
    q = s.q[:6].copy()
    out = []
    for t in np.linspace(0, 1, rows + 1)[1:]:
        q, _ = s.ik.solve(start + t * (np.asarray(goal, np.float64) - start), down_quat(0.0), q)
        out.append(np.append(q, g))
    out += [out[-1]] * tail
    return np.asarray(out, np.float32)


def lead(s: Start, velocity, rows: int, grip: float | None = None) -> np.ndarray:
    """(rows, 7): targets that keep leading the moving arm as a tracking servo's do: the pinch site of
    the command in force now, advanced at ``velocity`` (m/s) each period. The arm trails them by the
    servo lag, so it has not reached the last one when the rows end: holding it moves it on there."""
    g = s.command[6] if grip is None else grip
    q = s.command[:6].copy()
    start = s.ik.site_pose(q)[0]
    out = []
    for r in range(1, rows + 1):
        q, _ = s.ik.solve(start + np.asarray(velocity, np.float64) * 0.05 * r, down_quat(0.0), q)
        out.append(np.append(q, g))
    return np.asarray(out, np.float32)


def moving_at(env, seed: int, pinch, velocity) -> Start:
    """The pinch site at ``pinch`` moving at ``velocity`` (m/s), fingers down, targets leading."""
    env.reset(seed=seed)
    ik = ArmIK(env.unwrapped.model)
    q_home = env.unwrapped.robot_state()[:6].astype(np.float64)
    q0, _ = ik.solve(np.asarray(pinch, np.float64), down_quat(0.0), q_home)
    v = np.asarray(velocity, np.float64)
    q1, _ = ik.solve(np.asarray(pinch, np.float64) + 0.01 * v / np.linalg.norm(v), down_quat(0.0), q0)
    return make_start(env, seed, q0, (q1 - q0) / 0.01 * np.linalg.norm(v))


def ramp(s: Start, deltas, rows: int, grip: float | None = None, tail: int = 0) -> np.ndarray:
    """(rows + tail, 7): arm targets from the current command to command + deltas, linearly."""
    g = s.command[6] if grip is None else grip
    t = np.linspace(0, 1, rows + 1)[1:, None]
    arm = s.command[None, :6] + t * np.asarray(deltas, np.float64)[None]
    arm = np.concatenate([arm, np.repeat(arm[-1:], tail, axis=0)])
    return np.concatenate([arm, np.full((len(arm), 1), g)], axis=1).astype(np.float32)


def moving_down(env, seed: int, speed: float = 0.25) -> Start:
    """The arm above the table centre, its pinch site descending at about ``speed`` m/s."""
    env.reset(seed=seed)
    ik = ArmIK(env.unwrapped.model)
    q_top, _ = ik.solve(np.array([0.45, 0.0, 0.14]), down_quat(0.0), env.unwrapped.robot_state()[:6])
    q_low, _ = ik.solve(np.array([0.45, 0.0, 0.13]), down_quat(0.0), q_top)
    qd = (q_low - q_top) / 0.01 * speed  # joint velocity of a 1 cm step, scaled to the speed
    return make_start(env, seed, q_top, qd)


def moving_towards(env, seed: int, goal, speed: float = 0.3, grip: float = 0.0) -> Start:
    """The arm at home-ish, its pinch site moving towards ``goal`` at about ``speed`` m/s."""
    env.reset(seed=seed)
    ik = ArmIK(env.unwrapped.model)
    q0 = env.unwrapped.robot_state()[:6].astype(np.float64)
    p0 = ik.site_pose(q0)[0]
    direction = (np.asarray(goal) - p0) / np.linalg.norm(np.asarray(goal) - p0)
    q1, _ = ik.solve(p0 + 0.01 * direction, down_quat(0.0), q0)
    return make_start(env, seed, q0, (q1 - q0) / 0.01 * speed, grip)


def spinning(env, seed: int, joint: int, at: float, speed: float) -> Start:
    env.reset(seed=seed)
    q = env.unwrapped.robot_state()[:6].astype(np.float64)
    q[joint] = at
    qd = np.zeros(6)
    qd[joint] = speed
    return make_start(env, seed, q, qd)


def _cube(s: Start) -> np.ndarray:
    task = s.env.unwrapped.task
    name = getattr(task, "target", None) or task.cube_names[0]
    return task.cube_pos(name)


@dataclass
class Case:
    """An unsafe chunk from a start state. ``invalid``: the chunk cannot be executed at all."""

    name: str
    start: Callable[[object, int], Start]
    chunk: Callable[[Start], object]
    invalid: bool = False


# fmt: off
CASES: tuple[Case, ...] = (
    # Only after the chunk: the rows run clear of everything, the hold of their last row does not.
    Case("after_table", lambda e, sd: moving_at(e, sd, [0.45, 0.0, 0.14], [0, 0, -0.3]),
         lambda s: lead(s, [0, 0, -0.3], 7)),
    Case("after_table_slant", lambda e, sd: moving_at(e, sd, [0.5, 0.15, 0.15], [0.1, 0.05, -0.3]),
         lambda s: lead(s, [0.1, 0.05, -0.3], 7)),
    Case("after_out_x", lambda e, sd: moving_at(e, sd, [0.72, 0.0, 0.25], [0.3, 0, 0]),
         lambda s: lead(s, [0.3, 0, 0], 6)),
    Case("after_out_y", lambda e, sd: moving_at(e, sd, [0.45, -0.42, 0.25], [0, -0.3, 0]),
         lambda s: lead(s, [0, -0.3, 0], 6)),
    Case("after_base", lambda e, sd: moving_at(e, sd, [0.22, 0.1, 0.12], [-0.25, 0, -0.1]),
         lambda s: lead(s, [-0.25, 0, -0.1], 6)),
    # Into the table: targets lead the arm; the short chunk ends before the arm arrives.
    Case("coast_table_short", lambda e, sd: moving_down(e, sd, 0.3), lambda s: line(s, [0.45, 0, -0.04], 4)),
    Case("coast_table_fast", lambda e, sd: moving_down(e, sd, 0.5), lambda s: line(s, [0.45, 0, -0.03], 3)),
    Case("coast_table_rest", lambda e, sd: make_start(e, sd), lambda s: line(s, [0.45, 0, -0.05], 10)),
    Case("truncate_table", lambda e, sd: moving_down(e, sd, 0.2), lambda s: line(s, [0.45, 0, -0.05], 12, tail=8)),
    Case("truncate_table_rest", lambda e, sd: make_start(e, sd), lambda s: line(s, [0.5, 0.1, -0.03], 20, tail=10)),
    # Into its own base, and out of the workspace.
    Case("coast_base", lambda e, sd: moving_towards(e, sd, [0.05, 0.12, 0.05], 0.3),
         lambda s: line(s, [0.05, 0.12, 0.05], 14, tail=10)),
    Case("coast_out_x", lambda e, sd: moving_towards(e, sd, [0.95, 0, 0.25], 0.3),
         lambda s: line(s, [0.97, 0.0, 0.25], 8)),
    Case("coast_out_y", lambda e, sd: moving_towards(e, sd, [0.45, 0.7, 0.25], 0.3),
         lambda s: line(s, [0.45, 0.72, 0.25], 8)),
    # Into itself.
    Case("self_elbow", lambda e, sd: make_start(e, sd), lambda s: ramp(s, [0, 0, 2.6, 0, 0, 0], 20)),
    Case("self_wrist", lambda e, sd: make_start(e, sd), lambda s: ramp(s, [0, 0, 0, 2.8, -1.5, 0], 20)),
    # Pressing and crushing.
    Case("press_pads", lambda e, sd: make_start(e, sd), lambda s: line(s, [0.45, 0.0, -0.012], 20, grip=1.0, tail=15)),
    Case("crush_cube", lambda e, sd: make_start(e, sd),
         lambda s: line(s, _cube(s) * [1, 1, 0] + [0, 0, -0.02], 20, grip=1.0, tail=15)),
    # Limits reached while the servo catches up.
    Case("spin_wrist_limit", lambda e, sd: spinning(e, sd, 5, 5.4, 2.0), lambda s: ramp(s, [0, 0, 0, 0, 0, 1.2], 4)),
    Case("step_mid_chunk", lambda e, sd: moving_down(e, sd, 0.2),
         lambda s: np.concatenate([ramp(s, [0, 0, 0, 0, 0, 0], 4), ramp(s, [0.9, 0, 0, 0, 0, 0], 1, tail=8)])),
    # Nothing to run: the gate must brake a moving arm itself.
    Case("invalid_nan", lambda e, sd: moving_down(e, sd, 0.4),
         lambda s: np.where(np.arange(7) == 2, np.nan, ramp(s, [0, 0, 0, 0, 0, 0], 10)), invalid=True),
    Case("invalid_inf", lambda e, sd: moving_towards(e, sd, [0.05, 0.12, 0.05], 0.4),
         lambda s: np.full((6, 7), np.inf), invalid=True),
    Case("invalid_shape", lambda e, sd: moving_towards(e, sd, [0.95, 0, 0.25], 0.4),
         lambda s: np.zeros((8, 6)), invalid=True),
    Case("invalid_empty", lambda e, sd: moving_down(e, sd, 0.5), lambda s: np.zeros((0, 7)), invalid=True),
    Case("jump_moving", lambda e, sd: moving_down(e, sd, 0.4), lambda s: ramp(s, [1.0, 0, 0, 0, 0, 0], 1, tail=6)),
)
# fmt: on


def make_env(task: str):
    return sim.make(task, render_images=False)
