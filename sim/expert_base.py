"""The scripted experts' machinery: damped-least-squares IK through waypoints, using simulator state.

The task experts (:mod:`sim.experts`) only plan; this module tracks their plans and re-plans.

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
from typing import Any

import mujoco
import numpy as np

from sim.ik import ArmIK, IKConfig, down_quat
from sim.scene import servo_lag_s
from sim.tasks.base import Task
from sim.waypoints import (
    GRASP_Z,
    LIFT_Z,
    Waypoint,
)


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
    # The command counts as at a waypoint within this [m]. The expert's own commands land on it
    # exactly; commands it follows (`follow`, labelling another controller's states) only come near.
    command_tol: float = 1e-4
    FOLLOW_TOL = 0.012
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
        "command_tol",
    )

    def __init__(self, env, ik_cfg: IKConfig | None = None) -> None:
        self.env = env.unwrapped
        self.task: Task = self.env.task
        self.ik = ArmIK(self.env.model, ik_cfg or IKConfig(max_iters=15))
        self.dt = 1.0 / self.env.cfg.control_rate_hz
        self.waypoints: list[Waypoint] = []
        self.yaw = 0.0
        self.replans: list[dict[str, Any]] = []
        self.lag = servo_lag_s(self.env.model)  # (6,) [s]: a servo's lag behind a moving target

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
        self.command_tol = type(self).command_tol

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

    def follow(self) -> None:
        """Take the command the arm is tracking now as the expert's own last command: its next
        `act()` is what it would command from this state had it been in control.

        For labelling the states another controller (a learned policy) visits (DAgger). A position
        servo trails a moving target by ``lag * qd`` (``sim.scene.servo_lag_s``), so the target the
        arm tracks is about ``q + lag * qd``, moving at the pinch's speed: in the demonstrations
        each action is one expert step from such a command. Taking the policy's own command instead
        made the labels copy its lead: a policy a little slow was taught to stay slow (DAgger on
        pick_cube: episodes 64 -> 71 steps, success 90 -> 80% in two rounds). Waypoints count as
        reached within ``FOLLOW_TOL`` of the command from now on.
        """
        d = self.env.data
        dof = self.env.arm_dof_ids
        # The servo trails its target by lag * qd (gravity is compensated by the actuators, so no
        # sag term: measured ctrl - q = lag * qd within 1e-3 rad while the expert moves).
        q = d.qpos[self.env.arm_qpos_ids] + self.lag * d.qvel[dof]
        pos, quat = self.ik.site_pose(q)
        self.command_tol = self.FOLLOW_TOL
        self.q_cmd, self.p_cmd = q.copy(), pos
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, quat)
        self.yaw_cmd = float(np.arctan2(mat[3], mat[0]))
        self.speed = self._pinch_speed()

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
        self.speed = min(self.speed, self._pinch_speed())

    def _pinch_speed(self) -> float:
        """The pinch site's linear speed [m/s] now."""
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(
            self.env.model, self.env.data, mujoco.mjtObj.mjOBJ_SITE, self.ik.site, vel, 0
        )
        return float(np.linalg.norm(vel[3:]))

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
        commanded_there = np.linalg.norm(goal - self.p_cmd) < self.command_tol
        if not commanded_there:
            return
        self.wait += 1
        reached = (
            wp.blend or np.linalg.norm(goal - self.task.pinch_pos()) < wp.tol or self.wait > self.max_wait
        )
        if reached:
            self.held += 1
            # held > 1: the command went out at least a step ago, so the fingers had time to start.
            # Stopped where the command sends them: closing fingers that never started (a followed
            # controller that kept them open) have not "settled" on anything.
            stalled = self.grip_change < self.GRIP_STALL and abs(self.grip_state - wp.grip) < 0.8
            if self.held > wp.hold or (wp.settle_grip and self.held > 1 and stalled):
                self.index += 1
                self.wait = self.held = 0
                self.speed = 0.0


__all__ = ["WaypointExpert"]
