"""Scripted experts: damped-least-squares IK through task waypoints, using simulator state.

Each expert plans a list of :class:`Waypoint` (pinch-site position, gripper yaw, gripper command)
from the task's objects. Every control step a commanded pinch pose moves toward the current
waypoint with a trapezoidal speed profile (bounded speed and acceleration, so motion is smooth),
and :class:`sim.ik.ArmIK` turns it into the 6 absolute joint targets of the action.
Positions may be callables so they track objects that move (e.g. the cube while it is carried).

Re-plannable: :meth:`WaypointExpert.plan` reads the simulator state, not the episode's start, so the
expert can take over from any state (cube displaced, gripper closed on nothing, cube already in the
hand, arm anywhere): it re-opens, re-approaches, re-grasps or continues as the state requires. While
it runs it watches the preconditions of the phase it is in (the cube still in the hand while
lifting or carrying, the cube where the approach was planned to, the pushed cube still in front of
the fingers) and plans again from the state when one fails for ``FAIL_STEPS`` observed steps, at
most ``max_replans`` times per episode. ``replans`` lists why and when (provenance for recovery
demos). From a reset the plan is the one the expert always made: the demos do not change.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mujoco
import numpy as np

from sim.ik import ArmIK, IKConfig, down_quat
from sim.tasks.base import CUBE_HALF, Task

# Heights of the pinch point above the table [m]: the grasp height (cube centre + a little) and the
# height a picked cube is lifted to before it is carried.
GRASP_Z = CUBE_HALF + 0.002
LIFT_Z = GRASP_Z + 0.12

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
    """Base expert: subclasses implement :meth:`plan` (waypoints from the simulator's current state)
    and may name the phases whose preconditions :meth:`check` watches.

    Usage: ``expert.reset()`` after ``env.reset()`` (or after putting the simulator in any state),
    then ``action = expert.act(obs)`` each step.
    """

    accel: float = 1.5  # m/s^2, commanded pinch acceleration bound
    max_wait: int = 40  # control steps to wait at a waypoint for the arm to catch up before moving on
    GRIP_STALL = 0.01  # closure change per control step below which the gripper counts as stopped
    # Observed control steps a phase's precondition must fail in a row before the expert plans again:
    # contacts flicker for a step while the fingers settle, a lost cube stays lost.
    FAIL_STEPS = 3
    max_replans: int = 8  # per episode; past it the expert keeps its plan (no endless retry loop)
    # Phases that need the target cube in the hand, and approach phases planned to where it lay.
    HOLDING_PHASES: tuple[str, ...] = ("lift", "carry", "lower")
    APPROACH_PHASES: tuple[str, ...] = ("pregrasp", "descend")
    MOVED_TOL = 0.015  # [m] the cube moved this far from where the approach was planned: plan again
    # Attributes that change from one act() call to the next (snapshot() / restore()).
    STATE_ATTRS = (
        "waypoints",
        "yaw",
        "index",
        "wait",
        "held",
        "speed",
        "q_cmd",
        "p_cmd",
        "yaw_cmd",
        "grip",
        "grip_state",
        "grip_time",
        "grip_change",
        "check_time",
        "failing",
        "planned_at",
        "replans",
        "steps",
    )

    def __init__(self, env, ik_cfg: IKConfig | None = None) -> None:
        self.env = env.unwrapped
        self.task: Task = self.env.task
        self.ik = ArmIK(self.env.model, ik_cfg or IKConfig(max_iters=15))
        self.dt = 1.0 / self.env.cfg.control_rate_hz
        self.waypoints: list[Waypoint] = []
        self.yaw = 0.0
        self.replans: list[dict[str, Any]] = []

    # -- planning from the state ------------------------------------------------------------------
    def plan(self) -> tuple[list[Waypoint], float]:
        """Waypoints and the gripper yaw from the simulator's current state."""
        raise NotImplementedError

    def target_cube(self) -> str | None:
        """The cube whose position the approach phases were planned to (None: none)."""
        return getattr(self.task, "target", None)

    def closure(self) -> float:
        """Measured gripper closure in [0 open, 1 closed]."""
        return float(self.env.robot_state()[6])

    def holding(self) -> bool:
        """Whether the target cube is in the hand (both fingers touch it)."""
        name = self.target_cube()
        return name is not None and self.task.grasped(name)

    def approach(self, first: np.ndarray, grip: float) -> list[Waypoint]:
        """Waypoints that make the arm ready to start toward ``first`` (a pinch position) from wherever
        it is: re-open a gripper closed on nothing (when ``grip`` is open), and rise straight up
        first when the pinch is low and away from ``first`` (a diagonal move there sweeps the table
        and the other cubes). None from the start pose, open and high above the table."""
        pinch = self.task.pinch_pos()
        out = []
        if grip < 0.5 and self.closure() > 0.15:
            up = np.array([pinch[0], pinch[1], max(pinch[2] + 0.03, GRASP_Z + 0.04)])
            out.append(Waypoint(up, grip=0.0, speed=0.1, tol=0.02, hold=12, name="reopen", settle_grip=True))
            pinch = up
        if pinch[2] < first[2] - 0.04 and np.linalg.norm(pinch[:2] - first[:2]) > 0.03:
            rise = np.array([pinch[0], pinch[1], first[2]])
            out.append(Waypoint(rise, grip=grip, speed=0.2, tol=0.02, name="clear", blend=True))
        return out

    def lift_in_hand(self) -> list[Waypoint]:
        """The cube is in the hand: lift it straight up to the carry height from where it is."""
        pinch = self.task.pinch_pos()
        return [Waypoint(np.array([pinch[0], pinch[1], LIFT_Z]), grip=1.0, speed=0.2, tol=0.02, name="lift")]

    def check(self) -> str | None:
        """Why the current plan no longer fits the state (None: it does). Called once per observed step."""
        if self.done:
            return None if self.task.is_success() else "plan finished without success"
        phase = self.phase
        if phase in self.HOLDING_PHASES and not self.holding():
            return f"cube not in the hand during {phase}"
        name = self.target_cube()
        if phase in self.APPROACH_PHASES and name is not None and self.planned_at is not None:
            moved = float(np.linalg.norm(self.task.cube_pos(name)[:2] - self.planned_at[:2]))
            if moved > self.MOVED_TOL:
                return f"cube moved {100 * moved:.1f} cm during {phase}"
        return None

    # -- episode ---------------------------------------------------------------------------------
    def reset(self) -> None:
        """Start an episode from the simulator's current state (a reset or any other state)."""
        self.replans = []
        self.steps = 0
        self._new_plan()
        self.speed = 0.0
        self._anchor()
        self.grip = 0.0
        # Gripper closure at the last simulation time seen, and how far it moved since the reading
        # before (inf until the simulation has advanced: no evidence that the fingers stopped).
        self.grip_state, self.grip_time = float(self.env.robot_state()[6]), float(self.env.data.time)
        self.grip_change = np.inf
        self.check_time = float(self.env.data.time)
        self.failing = 0

    def _new_plan(self) -> None:
        self.waypoints, self.yaw = self.plan()
        name = self.target_cube()
        self.planned_at = self.task.cube_pos(name) if name is not None else None
        self.index = 0
        self.wait = 0
        self.held = 0

    def replan(self, reason: str) -> None:
        """Plan again from the current state, the command continuing from where the arm is."""
        self.replans.append({"step": int(self.steps), "phase": self.phase, "reason": reason})
        self._new_plan()
        self.reanchor()
        self.failing = 0

    def snapshot(self) -> dict[str, Any]:
        """The expert's per-step state (to roll it forward and come back, e.g. to imagine a chunk)."""
        return {a: copy.copy(getattr(self, a)) for a in self.STATE_ATTRS}

    def restore(self, snap: dict[str, Any]) -> None:
        for a, v in snap.items():
            setattr(self, a, copy.copy(v))

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
        """Name of the waypoint being tracked ("pregrasp", "descend", ...); "" without a plan."""
        if not self.waypoints:
            return ""
        return self.waypoints[min(self.index, len(self.waypoints) - 1)].name

    def act(self, obs: dict | None = None) -> np.ndarray:
        """(7,) float32 action: joint targets [rad] + gripper command."""
        # New readings (gripper, phase preconditions) only when the simulation advanced: rolled
        # forward without stepping (vla.runtime.ExpertChunkPolicy imagines a chunk this way) the
        # fingers are not seen to stop, the hold falls back to its fixed length, and the state the
        # checks would read is the one the imagined steps started from.
        now = float(self.env.data.time)
        if now != self.grip_time:
            g = float(self.env.robot_state()[6])
            self.grip_change, self.grip_state, self.grip_time = abs(g - self.grip_state), g, now
        else:
            self.grip_change = np.inf
        if now != self.check_time:
            self.check_time = now
            reason = self.check() if len(self.replans) < self.max_replans else None
            self.failing = self.failing + 1 if reason else 0
            if reason and self.failing >= self.FAIL_STEPS:
                self.replan(reason)
        self.steps += 1
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
    """pick_cube: pick the named cube and lift it (re-open and re-grasp when it is not in the hand)."""

    def pick(self) -> list[Waypoint]:
        """From any state to the cube lifted in the hand: lift it when it is already held, else
        (re-open,) approach, descend, close and lift at where it lies now."""
        t = self.task
        if self.holding():
            return self.lift_in_hand()
        wps = pick_waypoints(t.cube_pos(t.target))
        return self.approach(wps[0].target(), grip=0.0) + wps

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        return self.pick(), grasp_yaw(t.cube_yaw(t.target))


class _PlaceOnto(PickExpert):
    """Pick the target cube, then put it down at a place (a pad, another cube) and retreat."""

    def place_xy(self) -> Vec:
        raise NotImplementedError

    def release_z(self) -> float:
        raise NotImplementedError

    def placed(self) -> bool:
        """The cube is where it belongs and the fingers let go (the task's success)."""
        return bool(self.task.is_success())

    def plan(self) -> tuple[list[Waypoint], float]:
        if self.placed():
            pinch = self.task.pinch_pos()
            up = np.array([pinch[0], pinch[1], pinch[2] + 0.08])
            return [Waypoint(up, grip=0.0, speed=0.2, tol=0.02, name="retreat")], self._current_yaw()
        return self.pick() + place_waypoints(self.place_xy(), self.release_z()), self.grasp_yaw()

    def grasp_yaw(self) -> float:
        t = self.task
        return grasp_yaw(t.cube_yaw(t.target))


class PlaceExpert(_PlaceOnto):
    """place_cube: pick the named cube, put it on the centre of the named pad."""

    def place_xy(self) -> Vec:
        t = self.task
        return t.pad_pos(t.target_pad)[:2].copy()

    def release_z(self) -> float:
        t = self.task
        return float(t.pad_pos(t.target_pad)[2] + 0.003 + CUBE_HALF + 0.002)  # pad top + cube half + air


class StackExpert(_PlaceOnto):
    """stack_cubes: pick the named cube, put it on the other named cube (tracked live)."""

    def place_xy(self) -> Vec:
        t = self.task
        return lambda: t.cube_pos(t.base)[:2]

    def release_z(self) -> float:
        t = self.task
        return float(t.cube_pos(t.base)[2] + 2 * CUBE_HALF + 0.003)

    def grasp_yaw(self) -> float:
        # Both cubes are 90-degree symmetric: grasp yaw close to the base's yaw so the stack lines up.
        t = self.task
        return grasp_yaw(t.cube_yaw(t.target), reference=grasp_yaw(t.cube_yaw(t.base)))


class PushExpert(WaypointExpert):
    """push_cube: closed gripper down behind the cube, sweep it sideways, lift.

    Re-planned from the cube's current position; the sweep always ends where the cube must get to
    (``push_distance`` past where it started, plus the fingers' reach), so a cube knocked along or
    against the push direction is pushed the remaining distance."""

    HOLDING_PHASES = ()
    APPROACH_PHASES = ("above", "descend")
    BEHIND = 0.075  # [m] the pinch starts this far behind the cube centre (fingers clear of it)

    def in_lane(self) -> bool:
        """The closed fingers are down behind the cube, ready to push it (or pushing it)."""
        t = self.task
        cube, pinch, s = t.cube_pos(t.target), t.pinch_pos(), t.direction
        ahead = (cube[1] - pinch[1]) * s
        return abs(cube[0] - pinch[0]) < 0.02 and 0.0 < ahead < self.BEHIND + 0.02 and pinch[2] < 0.05

    def check(self) -> str | None:
        if self.phase == "push" and not self.in_lane():
            return "cube no longer in front of the fingers"
        return super().check()

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        cube, s = t.cube_pos(t.target), t.direction
        z = CUBE_HALF + 0.004
        behind = np.array([cube[0], cube[1] - s * self.BEHIND, z])
        end_y = t.start[1] + s * (t.cfg.push_distance + 0.035)
        beyond = np.array([cube[0], end_y, z])
        lift = Waypoint(beyond + np.array([0, 0, 0.1]), grip=1.0, speed=0.2, tol=0.02, name="lift")
        if t.is_success():
            pinch = t.pinch_pos()
            return [
                Waypoint(pinch + np.array([0, 0, 0.1]), grip=1.0, speed=0.2, tol=0.02, name="lift")
            ], np.pi / 2
        push = Waypoint(beyond, grip=1.0, speed=0.12, tol=0.01, name="push")
        if self.in_lane():
            return [push, lift], np.pi / 2
        above = Waypoint(
            behind + np.array([0, 0, 0.1]), grip=1.0, speed=0.35, tol=0.02, name="above", blend=True
        )
        wps = [above, Waypoint(behind, grip=1.0, speed=0.15, tol=0.006, name="descend"), push, lift]
        return self.approach(
            above.target(), grip=1.0
        ) + wps, np.pi / 2  # fingers close along x: their flat outer faces push along y


__all__ = [
    "GRASP_Z",
    "LIFT_Z",
    "PickExpert",
    "PlaceExpert",
    "PushExpert",
    "StackExpert",
    "Waypoint",
    "WaypointExpert",
    "grasp_yaw",
]
