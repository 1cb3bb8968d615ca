"""Scripted experts: damped-least-squares IK through task waypoints, using simulator state.

Each expert plans a list of :class:`Waypoint` (pinch-site position, gripper yaw, gripper command)
from the task's objects. Every control step a commanded pinch pose moves toward the current
waypoint with a trapezoidal speed profile (bounded speed and acceleration, so motion is smooth),
and :class:`sim.ik.ArmIK` turns it into the 6 absolute joint targets of the action.
Positions may be callables so they track objects that move (e.g. the cube while it is carried).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np

from sim.ik import ArmIK, IKConfig, down_quat
from sim.tasks.base import CUBE_HALF, Task

Vec = np.ndarray | Callable[[], np.ndarray]


@dataclass
class Waypoint:
    """A target for the pinch site.

    Attributes:
        pos: (3,) world position [m], or a callable returning it (evaluated every step).
        grip: gripper command in [0 open, 1 closed] while moving to / holding this waypoint.
        speed: top Cartesian speed [m/s].
        tol: the waypoint counts as reached when the actual pinch position is within ``tol`` [m].
        hold: control steps to stay once reached (e.g. to let the gripper close).
        name: for debugging.
        blend: pass through: move on as soon as the *command* arrives, without waiting for the arm
            to come within ``tol``. For approach waypoints above a slow final move: waiting there
            leaves idle stretches in the demos (the command frozen while the arm catches up, up to
            ``max_wait`` steps when the arm is perturbed), and a cloned policy that has seen the arm
            resting at such a point with a frozen command learns to stay there.
        settle_grip: end the hold as soon as the gripper has stopped moving (closure changed by less
            than ``GRIP_STALL`` in the last step), ``hold`` being the most it waits. A fixed hold after
            the fingers stop leaves frames where nothing moves and the command is frozen; a cloned
            policy cannot tell how long it has been there, keeps predicting "lift later" and never
            lifts (what the pick_cube diffusion policy did in most of its failures).
    """

    pos: Vec
    grip: float
    speed: float = 0.3
    tol: float = 0.01
    hold: int = 0
    name: str = ""
    blend: bool = False
    settle_grip: bool = False

    def target(self) -> np.ndarray:
        return np.asarray(self.pos() if callable(self.pos) else self.pos, np.float64)


def grasp_yaw(cube_yaw: float, reference: float = 0.0) -> float:
    """Gripper yaw aligned with a cube face (cubes are 90-degree symmetric), closest to ``reference``."""
    k = np.round((reference - cube_yaw) / (np.pi / 2))
    return float(cube_yaw + k * np.pi / 2)


class WaypointExpert:
    """Base expert: subclasses implement :meth:`plan` (waypoints from the task's sampled state).

    Usage: ``expert.reset()`` after ``env.reset()``, then ``action = expert.act(obs)`` each step.
    """

    accel: float = 1.5  # m/s^2, commanded pinch acceleration bound
    max_wait: int = 40  # control steps to wait at a waypoint for the arm to catch up before moving on
    GRIP_STALL = 0.01  # closure change per control step below which the gripper counts as stopped

    def __init__(self, env, ik_cfg: IKConfig | None = None) -> None:
        self.env = env.unwrapped
        self.task: Task = self.env.task
        self.ik = ArmIK(self.env.model, ik_cfg or IKConfig(max_iters=15))
        self.dt = 1.0 / self.env.cfg.control_rate_hz
        self.waypoints: list[Waypoint] = []
        self.yaw = 0.0

    def plan(self) -> tuple[list[Waypoint], float]:
        """Waypoints and the gripper yaw for this episode."""
        raise NotImplementedError

    def reset(self) -> None:
        self.waypoints, self.yaw = self.plan()
        self.index = 0
        self.wait = 0
        self.held = 0
        self.speed = 0.0
        self._anchor()
        self.grip = 0.0
        # Gripper closure at the last simulation time seen, and how far it moved since the reading
        # before (inf until the simulation has advanced: no evidence that the fingers stopped).
        self.grip_state, self.grip_time = float(self.env.robot_state()[6]), float(self.env.data.time)
        self.grip_change = np.inf

    def _anchor(self) -> None:
        """The commanded pose (joints, pinch position, yaw) from where the arm is now."""
        self.q_cmd = self.env.data.qpos[self.env.arm_qpos_ids].copy()
        self.p_cmd = self.task.pinch_pos()
        self.yaw_cmd = self._current_yaw()

    def reanchor(self) -> None:
        """Continue the plan from where the arm is now, at the speed it actually moves.

        For an expert whose commands were executed late or not at all (a deployment with inference
        latency, a gate hold, a simulator slower than real time): continuing its own previous
        command would make ever larger jumps. Waypoint progress and the gripper are kept.
        """
        self._anchor()
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(
            self.env.model, self.env.data, mujoco.mjtObj.mjOBJ_SITE, self.ik.site, vel, 0
        )
        self.speed = min(self.speed, float(np.linalg.norm(vel[3:])))

    def _current_yaw(self) -> float:
        mat = self.env.data.site_xmat[self.ik.site].reshape(3, 3)
        return float(np.arctan2(mat[1, 0], mat[0, 0]))

    @property
    def done(self) -> bool:
        return self.index >= len(self.waypoints)

    @property
    def phase(self) -> str:
        """Name of the waypoint being tracked ("pregrasp", "descend", ...)."""
        return self.waypoints[min(self.index, len(self.waypoints) - 1)].name

    def act(self, obs: dict | None = None) -> np.ndarray:
        """(7,) float32 action: joint targets [rad] + gripper command."""
        # A new gripper reading only when the simulation advanced: rolled forward without stepping
        # (vla.runtime.ExpertChunkPolicy imagines a chunk this way) the fingers are not seen to stop,
        # and the hold falls back to its fixed length.
        now = float(self.env.data.time)
        if now != self.grip_time:
            g = float(self.env.robot_state()[6])
            self.grip_change, self.grip_state, self.grip_time = abs(g - self.grip_state), g, now
        else:
            self.grip_change = np.inf
        if not self.done:
            self._advance()
        wp = self.waypoints[min(self.index, len(self.waypoints) - 1)]
        goal = wp.target()
        delta = goal - self.p_cmd
        dist = float(np.linalg.norm(delta))
        # Trapezoidal profile: accelerate, cruise at wp.speed, decelerate to stop on the goal.
        self.speed = min(wp.speed, self.speed + self.accel * self.dt, np.sqrt(2 * self.accel * dist))
        step = min(dist, self.speed * self.dt)
        if dist > 1e-9:
            self.p_cmd = self.p_cmd + delta / dist * step
        dyaw = np.clip(self.yaw - self.yaw_cmd, -1.5 * self.dt, 1.5 * self.dt)
        self.yaw_cmd += dyaw
        self.q_cmd, _ = self.ik.solve(self.p_cmd, down_quat(self.yaw_cmd), self.q_cmd)
        self.grip = wp.grip
        return np.append(self.q_cmd, self.grip).astype(np.float32)

    def _advance(self) -> None:
        wp = self.waypoints[self.index]
        goal = wp.target()
        commanded_there = np.linalg.norm(goal - self.p_cmd) < 1e-4
        if not commanded_there:
            return
        self.wait += 1
        reached = (
            wp.blend or np.linalg.norm(goal - self.task.pinch_pos()) < wp.tol or self.wait > self.max_wait
        )
        if reached:
            self.held += 1
            # held > 1: the command went out at least a step ago, so the fingers had time to start.
            stalled = self.grip_change < self.GRIP_STALL
            if self.held > wp.hold or (wp.settle_grip and self.held > 1 and stalled):
                self.index += 1
                self.wait = self.held = 0
                self.speed = 0.0


def pick_waypoints(cube: np.ndarray) -> list[Waypoint]:
    """Above the cube, descend, close, lift (pinch point at the cube centre while grasping)."""
    grasp_z = cube[2] + 0.002
    return [
        Waypoint(
            np.array([cube[0], cube[1], grasp_z + 0.1]),
            grip=0.0,
            speed=0.35,
            tol=0.02,
            name="pregrasp",
            blend=True,
        ),
        Waypoint(np.array([cube[0], cube[1], grasp_z]), grip=0.0, speed=0.15, tol=0.006, name="descend"),
        Waypoint(
            np.array([cube[0], cube[1], grasp_z]), grip=1.0, hold=8, tol=0.01, name="close", settle_grip=True
        ),
        Waypoint(np.array([cube[0], cube[1], grasp_z + 0.12]), grip=1.0, speed=0.2, tol=0.02, name="lift"),
    ]


def place_waypoints(target_xy: Vec, release_z: float) -> list[Waypoint]:
    """Carry the grasped cube above ``target_xy``, lower it to ``release_z`` (cube centre), open, retreat."""

    def at(z: float) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            xy = target_xy() if callable(target_xy) else target_xy
            return np.array([xy[0], xy[1], z])

        return f

    return [
        Waypoint(at(release_z + 0.08), grip=1.0, speed=0.3, tol=0.015, name="carry", blend=True),
        Waypoint(at(release_z + 0.003), grip=1.0, speed=0.12, tol=0.006, name="lower"),
        Waypoint(at(release_z + 0.003), grip=0.0, hold=6, tol=0.01, name="release", settle_grip=True),
        Waypoint(at(release_z + 0.1), grip=0.0, speed=0.2, tol=0.02, name="retreat"),
    ]


class PickExpert(WaypointExpert):
    """pick_cube: pick the named cube and lift it."""

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        return pick_waypoints(t.cube_pos(t.target)), grasp_yaw(t.cube_yaw(t.target))


class PlaceExpert(WaypointExpert):
    """place_cube: pick the named cube, put it on the centre of the named pad."""

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        pad = t.pad_pos(t.target_pad)
        release_z = pad[2] + 0.003 + CUBE_HALF + 0.002  # pad top + cube half + a little air
        wps = pick_waypoints(t.cube_pos(t.target)) + place_waypoints(pad[:2].copy(), release_z)
        return wps, grasp_yaw(t.cube_yaw(t.target))


class StackExpert(WaypointExpert):
    """stack_cubes: pick the named cube, put it on the other named cube (tracked live)."""

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        base = t.cube_pos(t.base)
        release_z = base[2] + 2 * CUBE_HALF + 0.003
        wps = pick_waypoints(t.cube_pos(t.target)) + place_waypoints(
            lambda: t.cube_pos(t.base)[:2], release_z
        )
        # Both cubes are 90-degree symmetric: grasp yaw close to the base's yaw so the stack lines up.
        yaw = grasp_yaw(t.cube_yaw(t.target), reference=grasp_yaw(t.cube_yaw(t.base)))
        return wps, yaw


class PushExpert(WaypointExpert):
    """push_cube: closed gripper down behind the cube, sweep it sideways, lift."""

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        cube, s = t.cube_pos(t.target), t.direction
        z = CUBE_HALF + 0.004
        behind = np.array([cube[0], cube[1] - s * 0.075, z])
        beyond = np.array([cube[0], cube[1] + s * (t.cfg.push_distance + 0.035), z])
        return [
            Waypoint(
                behind + np.array([0, 0, 0.1]), grip=1.0, speed=0.35, tol=0.02, name="above", blend=True
            ),
            Waypoint(behind, grip=1.0, speed=0.15, tol=0.006, name="descend"),
            Waypoint(beyond, grip=1.0, speed=0.12, tol=0.01, name="push"),
            Waypoint(beyond + np.array([0, 0, 0.1]), grip=1.0, speed=0.2, tol=0.02, name="lift"),
        ], np.pi / 2  # fingers close along x: their flat outer faces push along y


__all__ = [
    "PickExpert",
    "PlaceExpert",
    "PushExpert",
    "StackExpert",
    "Waypoint",
    "WaypointExpert",
    "grasp_yaw",
]
