"""The small contracts between the ROS nodes and what `vla` injects into them.

The nodes never import a policy, an encoder or a simulator: `vla` wraps those behind the
Protocols below (a scripted expert can stand in for the policy in tests), so `ros_bridge`
stays importable without torch and testable with pure-numpy doubles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Observation:
    """One synchronized snapshot of the robot, as the policy node hands it to a `ChunkSource`.

    images: camera name -> RGB frame, uint8 (H, W, 3) (mono cameras are replicated to 3 channels).
    joint_positions: (7,) float64, 6 arm joints [rad] + gripper opening in [0 open, 1 closed],
        in the node's configured joint-name order.
    joint_velocities: (7,) float64 in the same order [rad/s] (the gripper entry as published).
    instruction: the language instruction currently in force (never empty when a chunk is asked).
    stamp: header stamp of the joint state used, in seconds of the publisher's clock.
    """

    images: dict[str, np.ndarray]
    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    instruction: str
    stamp: float


@dataclass
class GateDecision:
    """What the safety gate lets through.

    safe_prefix: (K, 7) float absolute joint targets, the leading K steps of the chunk judged
        safe; K may be 0 (nothing is safe: the node holds).
    reason: why the chunk was cut (empty when the whole chunk passed).
    verdict: JSON-serializable details (per-check results, margins) copied into the status topic.
    """

    safe_prefix: np.ndarray
    reason: str = ""
    verdict: dict[str, Any] = field(default_factory=dict)


class ChunkSource(Protocol):
    """Produces an action chunk from an observation (encoder + policy head, or a scripted expert)."""

    def __call__(self, obs: Observation) -> np.ndarray:
        """Return (H, 7) float absolute joint targets, H >= 1; row 0 is the target one period ahead."""
        ...


class ChunkGate(Protocol):
    """Checks a chunk against a world model before anything reaches the robot."""

    def __call__(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> GateDecision:
        """q (7,), qd (7,) current state; chunk (H, 7) targets -> the safe prefix (K, 7), 0 <= K <= H."""
        ...


@dataclass
class Collaborators:
    """What a policy node builds in `on_configure` and releases in `on_cleanup`.

    close: optional release hook (free a model, close a simulator), called exactly once.
    """

    source: ChunkSource
    gate: ChunkGate
    close: Callable[[], None] | None = None


@runtime_checkable
class RobotBackend(Protocol):
    """A robot (in practice a MuJoCo simulation) that the generic robot node exposes over ROS 2.

    joint_names: names of the commanded joints, length D (7 for the UR5e + gripper).
    camera_names: names accepted by `render`.
    """

    joint_names: list[str]
    camera_names: list[str]

    def read_joints(self) -> tuple[np.ndarray, np.ndarray]:
        """Return positions (D,) and velocities (D,) in `joint_names` order."""
        ...

    def render(self, camera: str) -> np.ndarray:
        """Return an RGB frame, uint8 (H, W, 3)."""
        ...

    def command(self, q_target: np.ndarray) -> None:
        """Set the position target (D,); called at the interpolation rate before each `step`."""
        ...

    def step(self, dt: float) -> None:
        """Advance the world by `dt` seconds of simulated time."""
        ...
