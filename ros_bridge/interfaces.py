"""The small contracts between the ROS nodes and what `vla` injects into them.

The nodes never import a policy, an encoder, a simulator or the control loop: `vla` wraps those
behind the Protocols below (a scripted controller can stand in in tests), so `ros_bridge` stays
importable without torch and testable with pure-numpy doubles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass
class Observation:
    """One synchronized snapshot of the robot, as the policy node hands it to its `Controller`.

    images: camera name -> RGB frame, uint8 (H, W, 3) (mono cameras are replicated to 3 channels).
    joint_positions: (7,) float64, 6 arm joints [rad] + gripper opening in [0 open, 1 closed],
        in the node's configured joint-name order.
    joint_velocities: (7,) float64 in the same order [rad/s] (the gripper entry as published).
    instruction: the language instruction currently in force (never empty when a chunk is asked).
    stamp: header stamp of the joint state used, in seconds of the publisher's clock.
    received: monotonic time [s] the joint state arrived at the node.
    """

    images: dict[str, np.ndarray]
    joint_positions: np.ndarray
    joint_velocities: np.ndarray
    instruction: str
    stamp: float
    received: float = 0.0


@dataclass
class Command:
    """What the controller commands for one control period.

    action: (D,) the target of this period (what a forward position controller gets).
    plan: (K, D), K >= 1, the targets of this period and the next ones as far as they are known and
        certified by the controller's safety gate; plan[0] == action. The node sends it as one
        `JointTrajectory`, so a robot that hears nothing more runs it out and holds its last row:
        the stop the gate certified.
    status: "ok" (from a chunk), "miss" (no action ready in time: holds the last one), "late" (ready
        after the period's deadline) or "hold" (the gate or a stop request brakes the robot).
    reason: why, when the status is not "ok".
    estop: the gate found no safe stop from here: the node engages its e-stop output.
    info: JSON-able details for the status topic (latency, gate outcome, ...).
    """

    action: np.ndarray
    plan: np.ndarray
    status: str = "ok"
    reason: str = ""
    estop: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class Controller(Protocol):
    """The control loop behind the policy node: one call per control period.

    `vla` provides it (`vla.deploy.controller.LoopController`: the same `vla.runtime.ControlLoop`
    that simulator evaluation runs, with asynchronous inference, real-time chunking and the
    world-model gate). The node only feeds it fresh observations and publishes what it returns.
    """

    def reset(self) -> None:
        """A new episode starts (new instruction): forget the observation history and queued actions."""
        ...

    def step(self, obs: Observation) -> Command:
        """Serve one control period from the latest observation; never blocks past the period."""
        ...

    def stop(self, obs: Observation | None, reason: str) -> Command | None:
        """Stop asking the policy and brake: a certified stop from `obs` (None: the state is unknown;
        keep the plan the robot already has, which ends in a certified stop). Returns what to
        publish, or None for nothing new. `step` resumes control (after `reset` for a new episode)."""
        ...

    def summary(self) -> dict[str, Any]:
        """Running totals for the status topic (JSON-able): misses, holds, latency percentiles."""
        ...


@dataclass
class Collaborators:
    """What a policy node builds in `on_configure` and releases in `on_cleanup`.

    close: optional release hook (free a model, close a simulator), called exactly once.
    """

    controller: Controller
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
