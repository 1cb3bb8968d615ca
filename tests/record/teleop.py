"""A teleoperation session played by a test node: joint states, camera images, commands, instruction."""

from __future__ import annotations

import json
import threading
from typing import Any

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import UR5E_2F85_JOINTS, default_image_topic
from ros_bridge.conversions import chunk_to_joint_trajectory, numpy_to_image, numpy_to_joint_state
from ros_bridge.run import RosRuntime

HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.0])
COMMAND_OFFSET = 0.05
COLOURS = {"front": (200, 30, 10), "wrist": (5, 120, 250)}


def q_at(k: int) -> np.ndarray:
    """Joint positions of the k-th JointState (a slow sweep; gripper closing)."""
    return HOME + np.array([0.002, -0.001, 0.001, 0.0, 0.003, -0.002, 0.004]) * k


class Teleop:
    """Publishes a session on the recorder's default topics at 50 Hz (joints, command) / 25 Hz (images).

    Every JointState k carries `q_at(k)` and velocities `k / 100`; the command sent with it is a
    one-point JointTrajectory at `q_at(k) + COMMAND_OFFSET`; the wrist camera is padded bgr8.
    """

    def __init__(self, ros: RosRuntime, instruction: str = "pick up the red cube") -> None:
        self.k = 0
        self.instruction = instruction
        self.statuses: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        node = self.node = Node("teleop", context=ros.context)
        self._joints = node.create_publisher(JointState, "/joint_states", 10)
        self._cmd = node.create_publisher(
            JointTrajectory, "/joint_trajectory_controller/joint_trajectory", 10
        )
        self._imgs = {c: node.create_publisher(Image, default_image_topic(c), 10) for c in COLOURS}
        self._instr = node.create_publisher(String, "/vla/instruction", 10)
        self.control = node.create_publisher(String, "/vla/record/control", 10)
        node.create_subscription(String, "/vla/record/status", self._on_status, 50)
        node.create_timer(0.02, self._tick)
        ros.add(node)

    def _tick(self) -> None:
        k = self.k
        q = q_at(k)
        stamp = self.node.get_clock().now().to_msg()
        self._joints.publish(numpy_to_joint_state(UR5E_2F85_JOINTS, q, np.full(7, k / 100.0), stamp=stamp))
        self._cmd.publish(chunk_to_joint_trajectory((q + COMMAND_OFFSET)[None], UR5E_2F85_JOINTS, 0.05))
        if k % 2 == 0:
            for cam, pub in self._imgs.items():
                frame = np.empty((6, 8, 3), np.uint8)
                frame[:] = COLOURS[cam]
                if cam == "wrist":
                    pub.publish(numpy_to_image(frame[..., ::-1], "bgr8", stamp=stamp, step=8 * 3 + 4))
                else:
                    pub.publish(numpy_to_image(frame, "rgb8", stamp=stamp))
        if k % 10 == 0:
            self._instr.publish(String(data=self.instruction))
        self.k += 1

    def _on_status(self, msg: String) -> None:
        with self._lock:
            self.statuses.append(json.loads(msg.data))

    def last_status(self) -> dict[str, Any]:
        with self._lock:
            return self.statuses[-1] if self.statuses else {}

    def send(self, word: str) -> None:
        self.control.publish(String(data=word))
