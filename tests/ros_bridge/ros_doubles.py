"""Test doubles for the robot and the policy: small, pure numpy, deterministic.

The middleware and the nodes under test are real; only what sits behind the injected Protocols
is replaced: the mock arm (`ros_bridge.mock_hardware`) recording its commands, a scripted chunk
source that walks toward a goal, and scriptable gates.
Importable by path (`ros_doubles:make_backend`) so `python -m ros_bridge.run` can load them in a
subprocess when `tests/ros_bridge` is on PYTHONPATH.
"""

from __future__ import annotations

import numpy as np

from ros_bridge.config import UR5E_2F85_JOINTS, PolicyNodeConfig, RobotNodeConfig
from ros_bridge.interfaces import Collaborators, GateDecision, Observation
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


class ScriptedSource:
    """Chunks of `horizon` steps walking from the observed position toward `goal` at `max_step` per step."""

    def __init__(self, goal: np.ndarray = GOAL, horizon: int = 8, max_step: float = 0.05) -> None:
        self.goal = np.asarray(goal, dtype=np.float64)
        self.horizon = horizon
        self.max_step = max_step
        self.observations: list[Observation] = []

    def __call__(self, obs: Observation) -> np.ndarray:
        self.observations.append(obs)
        q = obs.joint_positions.copy()
        rows = []
        for _ in range(self.horizon):
            q = q + np.clip(self.goal - q, -self.max_step, self.max_step)
            rows.append(q.copy())
        return np.stack(rows)


class ScriptedGate:
    """Lets `allow` leading steps through (None: the whole chunk), recording every call."""

    def __init__(self, allow: int | None = None, reason: str = "predicted collision with table") -> None:
        self.allow = allow
        self.reason = reason
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> GateDecision:
        self.calls.append((q.copy(), qd.copy(), chunk.copy()))
        k = len(chunk) if self.allow is None else min(self.allow, len(chunk))
        return GateDecision(
            safe_prefix=chunk[:k],
            reason="" if k == len(chunk) else self.reason,
            verdict={"safe_steps": k, "min_clearance_m": np.float64(0.05)},
        )


def make_collaborators(config: PolicyNodeConfig, horizon: int = 8) -> Collaborators:
    """Factory path for the runner: `ros_doubles:make_collaborators`."""
    return Collaborators(source=ScriptedSource(horizon=horizon), gate=ScriptedGate())
