"""A node that plays the robot for a policy node under test (real publishers and subscriptions)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile
from ros_doubles import COLOURS, HOME
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import PolicyNodeConfig
from ros_bridge.conversions import joint_trajectory_to_numpy, numpy_to_image, numpy_to_joint_state
from ros_bridge.run import RosRuntime, wait_until


class Harness:
    """Plays the robot for a policy node: publishes inputs at 50 Hz and records what comes back.

    Streams can be paused one by one (`joints_on`, `cameras_on[cam]`) to make inputs stale.
    The wrist camera is sent as padded bgr8 so the node's conversion is exercised end to end.
    """

    def __init__(self, ros: RosRuntime, cfg: PolicyNodeConfig, q: np.ndarray = HOME) -> None:
        self.cfg = cfg
        self.q = np.asarray(q, dtype=np.float64)
        self.joints_on = True
        self.cameras_on = dict.fromkeys(cfg.camera_names, True)
        self.trajectories: list[tuple[np.ndarray, np.ndarray]] = []  # (times (K,), points (K, 7))
        self.statuses: list[dict[str, Any]] = []
        self.forward: list[np.ndarray] = []
        self.trajectory_times: list[float] = []  # monotonic receipt time of each trajectory
        self._lock = threading.Lock()
        node = self.node = ros.add(Node("harness", context=ros.context))
        self._joint_pub = node.create_publisher(JointState, cfg.joint_state_topic, 10)
        self._image_pubs = {
            c: node.create_publisher(Image, t, 10) for c, t in zip(cfg.camera_names, cfg.image_topics)
        }
        self._instruction_pub = node.create_publisher(String, cfg.instruction_topic, 10)
        self._estop_pub = node.create_publisher(Bool, cfg.estop_topic, 10)
        node.create_subscription(
            JointTrajectory, cfg.trajectory_topic, self._on_trajectory, QoSProfile(depth=50)
        )
        node.create_subscription(String, cfg.status_topic, self._on_status, QoSProfile(depth=50))
        self.estop_requests: list[bool] = []
        if cfg.estop_output_topic:
            latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
            node.create_subscription(
                Bool, cfg.estop_output_topic, lambda m: self.estop_requests.append(bool(m.data)), latched
            )
        if cfg.forward_command_topic:
            node.create_subscription(
                Float64MultiArray,
                cfg.forward_command_topic,
                lambda m: self.forward.append(np.array(m.data)),
                50,
            )
        node.create_timer(0.02, self._publish_inputs)

    def _publish_inputs(self) -> None:
        stamp = self.node.get_clock().now().to_msg()
        if self.joints_on:
            self._joint_pub.publish(
                numpy_to_joint_state(self.cfg.joint_names, self.q, np.zeros_like(self.q), stamp=stamp)
            )
        for cam, pub in self._image_pubs.items():
            if self.cameras_on[cam]:
                frame = np.empty((6, 8, 3), np.uint8)
                frame[:] = COLOURS[cam]
                if cam == "wrist":
                    pub.publish(numpy_to_image(frame[..., ::-1], "bgr8", stamp=stamp, step=8 * 3 + 4))
                else:
                    pub.publish(numpy_to_image(frame, "rgb8", stamp=stamp))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        with self._lock:
            self.trajectories.append(joint_trajectory_to_numpy(msg, self.cfg.joint_names))
            self.trajectory_times.append(time.monotonic())

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append(json.loads(msg.data))

    def instruct(self, text: str) -> None:
        self._instruction_pub.publish(String(data=text))

    def estop(self, engaged: bool) -> None:
        self._estop_pub.publish(Bool(data=engaged))

    def wait_status(
        self, pred: Callable[[dict[str, Any]], bool], timeout_s: float = 5.0, *, after: int = 0
    ) -> dict:
        """First status (from index `after`) that satisfies `pred`."""
        found: list[dict[str, Any]] = []

        def check() -> bool:
            with self._lock:
                found.extend(s for s in self.statuses[after:] if pred(s))
            return bool(found)

        wait_until(check, timeout_s, what="a matching status message")
        return found[0]

    def wait_trajectory(
        self, n_points: int, timeout_s: float = 5.0, *, after: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """First trajectory (from index `after`) with `n_points` points."""
        found: list[tuple[np.ndarray, np.ndarray]] = []

        def check() -> bool:
            with self._lock:
                found.extend(t for t in self.trajectories[after:] if len(t[0]) == n_points)
            return bool(found)

        wait_until(check, timeout_s, what=f"a trajectory with {n_points} points")
        return found[0]
