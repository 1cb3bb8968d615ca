"""Mock robot hardware for the robot node, in the spirit of ros2_control's `mock_components`.

The joint positions follow the commanded targets with a first-order lag and each camera shows a
solid colour. It exercises the whole bridge (messages, timing, watchdog, trajectory execution)
without a simulator: for bench-marking the middleware path and for smoke tests of a deployment.
It is not a world: nothing collides and the images carry no scene.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

import numpy as np

from ros_bridge.config import DEFAULT_CAMERAS, UR5E_2F85_JOINTS, RobotNodeConfig

# The UR5e "home" pose with the gripper open.
HOME = (0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.0)
_PALETTE = ((200, 30, 10), (5, 120, 250), (20, 180, 60), (230, 200, 20))


class MockHardware:
    """A `RobotBackend` whose positions track the command with time constant `tau` [s].

    joint_names (D,), camera_names, q0 (D,) initial positions, image_hw: (H, W) of the frames,
    colours: camera -> RGB colour (default: a fixed palette in camera order).
    """

    def __init__(
        self,
        joint_names: Sequence[str] = UR5E_2F85_JOINTS,
        camera_names: Sequence[str] = DEFAULT_CAMERAS,
        *,
        q0: Sequence[float] = HOME,
        tau: float = 0.02,
        image_hw: tuple[int, int] = (12, 16),
        colours: Mapping[str, tuple[int, int, int]] | None = None,
    ) -> None:
        self.joint_names = list(joint_names)
        self.camera_names = list(camera_names)
        self.q = np.asarray(q0, dtype=np.float64).copy()
        if self.q.shape != (len(self.joint_names),):
            raise ValueError(f"MockHardware: q0 has shape {self.q.shape} for {len(self.joint_names)} joints")
        if not tau > 0:
            raise ValueError(f"MockHardware: tau must be > 0, got {tau}")
        self.qd = np.zeros_like(self.q)
        self.target = self.q.copy()
        self.tau = tau
        self.time = 0.0
        self.lock = threading.Lock()  # the node ticks in one thread; tests read from another
        colours = dict(colours or {c: _PALETTE[i % len(_PALETTE)] for i, c in enumerate(self.camera_names)})
        self._frames = {}
        for cam in self.camera_names:
            frame = np.empty((*image_hw, 3), dtype=np.uint8)
            frame[:] = colours[cam]
            self._frames[cam] = frame

    def read_joints(self) -> tuple[np.ndarray, np.ndarray]:
        with self.lock:
            return self.q.copy(), self.qd.copy()

    def render(self, camera: str) -> np.ndarray:
        try:
            return self._frames[camera].copy()
        except KeyError:
            raise ValueError(f"MockHardware: unknown camera '{camera}'; have {self.camera_names}") from None

    def command(self, q_target: np.ndarray) -> None:
        with self.lock:
            self.target = np.asarray(q_target, dtype=np.float64).copy()

    def step(self, dt: float) -> None:
        with self.lock:
            alpha = min(1.0, dt / self.tau)
            q_new = self.q + alpha * (self.target - self.q)
            self.qd = (q_new - self.q) / dt
            self.q = q_new
            self.time += dt


def make_mock_hardware(
    config: RobotNodeConfig, *, tau: float = 0.02, image_hw: Sequence[int] = (12, 16)
) -> MockHardware:
    """Runner factory (`ros_bridge.mock_hardware:make_mock_hardware`): names from the config when set."""
    return MockHardware(
        config.joint_names or UR5E_2F85_JOINTS,
        config.camera_names or DEFAULT_CAMERAS,
        tau=tau,
        image_hw=(int(image_hw[0]), int(image_hw[1])),
    )
