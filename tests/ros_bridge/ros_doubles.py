"""Test doubles for the robot and the policy: small, pure numpy, deterministic.

The middleware and the nodes under test are real; only what sits behind the injected Protocols
is replaced: the mock arm (`ros_bridge.mock_hardware`) recording its commands and a scripted
controller that walks toward a goal (and can hold, request an e-stop, fail or be slow).
Importable by path (`ros_doubles:make_backend`) so `python -m ros_bridge.run` can load them in a
subprocess when `tests/ros_bridge` is on PYTHONPATH.
"""

from __future__ import annotations

import time

import numpy as np

from ros_bridge.config import UR5E_2F85_JOINTS, PolicyNodeConfig, RobotNodeConfig
from ros_bridge.interfaces import Collaborators, Command, Observation
from ros_bridge.mock_hardware import MockHardware

COLOURS = {"front": (200, 30, 10), "wrist": (5, 120, 250)}
HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.0])
GOAL = np.array([0.3, -1.3, 1.4, -1.7, -1.5, 0.2, 1.0])


class KinematicBackend(MockHardware):
    """The mock arm with solid-colour cameras `COLOURS`, recording every command (sim time, target)."""

    def __init__(self, tau: float = 0.02) -> None:
        super().__init__(UR5E_2F85_JOINTS, list(COLOURS), q0=HOME, tau=tau, colours=COLOURS)
        self.commands: list[tuple[float, np.ndarray]] = []

    def command(self, q_target: np.ndarray) -> None:
        super().command(q_target)
        with self.lock:
            self.commands.append((self.time, self.target.copy()))


def make_backend(config: RobotNodeConfig | None = None, tau: float = 0.02) -> KinematicBackend:
    """Factory path for the runner: `ros_doubles:make_backend`."""
    return KinematicBackend(tau=tau)


class ScriptedController:
    """A `Controller` double: each period a plan of `horizon` steps walking from the observed position
    toward `goal` at `max_step` per step. Records observations, resets and stop requests.

    mode: "ok" (the plan), "hold" (a gate hold at the observed position with `reason`), "estop"
    (the same, with no safe stop: `estop=True`), "error" (raises), "slow" (sleeps `slow_s`).
    """

    def __init__(self, goal: np.ndarray = GOAL, horizon: int = 4, max_step: float = 0.05) -> None:
        self.goal = np.asarray(goal, dtype=np.float64)
        self.horizon = horizon
        self.max_step = max_step
        self.mode = "ok"
        self.reason = "gate: predicted collision with table"
        self.slow_s = 0.0
        self.observations: list[Observation] = []
        self.resets = 0
        self.stops: list[tuple[Observation | None, str]] = []

    def plan(self, q: np.ndarray) -> np.ndarray:
        rows = []
        q = np.asarray(q, dtype=np.float64).copy()
        for _ in range(self.horizon):
            q = q + np.clip(self.goal - q, -self.max_step, self.max_step)
            rows.append(q.copy())
        return np.stack(rows)

    def reset(self) -> None:
        self.resets += 1

    def step(self, obs: Observation) -> Command:
        self.observations.append(obs)
        q = obs.joint_positions
        if self.mode == "error":
            raise RuntimeError("policy crashed")
        if self.mode == "slow":
            time.sleep(self.slow_s)
        if self.mode in ("hold", "estop"):
            return Command(q.copy(), q[None].copy(), "hold", self.reason, estop=self.mode == "estop")
        plan = self.plan(q)
        return Command(plan[0], plan, "ok", info={"calls": len(self.observations)})

    def stop(self, obs: Observation | None, reason: str) -> Command | None:
        self.stops.append((obs, reason))
        if obs is None:
            return None
        q = obs.joint_positions.copy()
        return Command(q, q[None], "hold", f"stop: {reason}")

    def summary(self) -> dict:
        return {"steps": len(self.observations), "misses": 0}


def make_collaborators(config: PolicyNodeConfig, horizon: int = 4) -> Collaborators:
    """Factory path for the runner: `ros_doubles:make_collaborators`."""
    return Collaborators(controller=ScriptedController(horizon=horizon))
