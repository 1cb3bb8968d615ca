"""A generic robot node that behaves like a ros2_control robot over an injected `RobotBackend`.

It publishes `JointState` and one `Image` per camera at their rates and takes commands the two ways
ros2_control's controllers do: `JointTrajectory` like a joint trajectory controller (linear
interpolation from the current command through the points (`time_from_start`), then hold the last
point; an empty trajectory means stop and hold) and `std_msgs/Float64MultiArray` like a forward
position controller (the target holds until the next one). The latest command of either kind wins.

Latency, for realistic timing in simulation: measurements can leave `sensor_latency_s` after they
were taken and commands act `actuation_latency_s` after they arrived (simulated time, whole ticks).

One timer at `command_rate_hz` drives everything: each tick samples the trajectory, commands the
backend and advances it by one period of simulated time; publication rates are counted in that
simulated time, so a simulator that runs slower than real time still sees consistent timing.
All callbacks share the node's default (mutually exclusive) group, so the backend is only ever
touched from one thread at a time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import RobotNodeConfig
from ros_bridge.conversions import (
    float64_multi_array_to_numpy,
    joint_trajectory_to_numpy,
    numpy_to_image,
    numpy_to_joint_state,
)
from ros_bridge.interfaces import RobotBackend
from ros_bridge.params import declare_config, read_config
from ros_bridge.trajectory import TrajectoryFollower


class RobotNode(Node):
    """Exposes `backend` on ROS 2 like a ros2_control robot with a joint trajectory controller.

    config.joint_names (when given) renames the backend's joints on the wire, in backend order;
    config.camera_names (when given) picks which of the backend's cameras are published.
    """

    def __init__(
        self,
        backend: RobotBackend,
        config: RobotNodeConfig | None = None,
        *,
        node_name: str = "robot",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self._backend = backend
        declare_config(self, config or RobotNodeConfig())
        cfg = read_config(self, RobotNodeConfig).resolved(
            list(backend.joint_names), list(backend.camera_names)
        )
        if len(cfg.joint_names) != len(backend.joint_names):
            raise ValueError(
                f"RobotNodeConfig.joint_names has {len(cfg.joint_names)} names, the backend has "
                f"{len(backend.joint_names)}: {list(backend.joint_names)}"
            )
        unknown = [c for c in cfg.camera_names if c not in backend.camera_names]
        if unknown:
            raise ValueError(
                f"RobotNodeConfig.camera_names {unknown} are not backend cameras {list(backend.camera_names)}"
            )
        self.cfg = cfg
        self._dt = 1.0 / cfg.command_rate_hz
        self._sim_time = 0.0
        q, _ = backend.read_joints()
        self._command = np.asarray(q, dtype=np.float64).copy()
        self._follower = TrajectoryFollower(self._command)
        self._next_joint_state = 0.0
        self._next_camera = 0.0
        self.trajectories_received = 0
        self.trajectories_rejected = 0
        self.forward_received = 0
        # Delayed work, (due sim time, action): outgoing measurements and incoming commands.
        self._outbox: deque[tuple[float, Callable[[], None]]] = deque()
        self._inbox: deque[tuple[float, Callable[[], None]]] = deque()

        self._joint_pub = self.create_publisher(JointState, cfg.joint_state_topic, QoSProfile(depth=10))
        self._image_pubs = {
            cam: self.create_publisher(Image, topic, qos_profile_sensor_data)
            for cam, topic in zip(cfg.camera_names, cfg.image_topics)
        }
        if cfg.trajectory_topic:
            self.create_subscription(
                JointTrajectory, cfg.trajectory_topic, self._on_trajectory, QoSProfile(depth=10)
            )
        if cfg.forward_command_topic:
            self.create_subscription(
                Float64MultiArray, cfg.forward_command_topic, self._on_forward, QoSProfile(depth=10)
            )
        self._publish(force=True)
        self._timer = self.create_timer(self._dt, self._tick)

    @property
    def sim_time(self) -> float:
        """Simulated seconds since the node started."""
        return self._sim_time

    @property
    def command(self) -> np.ndarray:
        """The last position target (D,) sent to the backend."""
        return self._command.copy()

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            times, points = joint_trajectory_to_numpy(msg, self.cfg.joint_names)
            # Validate now (a bad trajectory is refused whole, as ros2_control does; the robot keeps
            # its motion); start it when the actuation latency has passed.
            TrajectoryFollower(self._command).start(0.0, self._command, times, points)
        except ValueError as exc:
            self.trajectories_rejected += 1
            self.get_logger().error(f"rejected trajectory on '{self.cfg.trajectory_topic}': {exc}")
            return
        self.trajectories_received += 1
        self._later(
            self._inbox,
            self.cfg.actuation_latency_s,
            lambda: self._follower.start(self._sim_time, self._command, times, points),
        )

    def _on_forward(self, msg: Float64MultiArray) -> None:
        q = float64_multi_array_to_numpy(msg).reshape(-1)
        if q.shape != (len(self.cfg.joint_names),) or not np.all(np.isfinite(q)):
            self.trajectories_rejected += 1
            self.get_logger().error(
                f"rejected command on '{self.cfg.forward_command_topic}': need {len(self.cfg.joint_names)} "
                f"finite targets, got {q.tolist()}"
            )
            return
        self.forward_received += 1
        self._later(self._inbox, self.cfg.actuation_latency_s, lambda: self._follower.hold(q))

    def _later(self, box: deque, delay_s: float, fn: Callable[[], None]) -> None:
        if delay_s <= 0:
            fn()
        else:
            box.append((self._sim_time + delay_s, fn))

    @staticmethod
    def _run_due(box: deque, now: float) -> None:
        eps = 1e-9
        while box and box[0][0] <= now + eps:
            box.popleft()[1]()

    def _tick(self) -> None:
        self._run_due(self._inbox, self._sim_time)
        self._command = self._follower.sample(self._sim_time)
        self._backend.command(self._command)
        self._backend.step(self._dt)
        self._sim_time += self._dt
        self._publish()
        self._run_due(self._outbox, self._sim_time)

    def _publish(self, force: bool = False) -> None:
        # A small tolerance so that float accumulation never skips a due message.
        eps = 1e-9
        stamp = self.get_clock().now().to_msg()
        delay = 0.0 if force else self.cfg.sensor_latency_s
        if force or self._sim_time + eps >= self._next_joint_state:
            q, qd = self._backend.read_joints()
            msg = numpy_to_joint_state(self.cfg.joint_names, q, qd, stamp=stamp)
            self._later(self._outbox, delay, lambda m=msg: self._joint_pub.publish(m))
            self._next_joint_state = _next_due(
                self._next_joint_state, self._sim_time, self.cfg.joint_state_rate_hz
            )
        if self._image_pubs and (force or self._sim_time + eps >= self._next_camera):
            for cam, pub in self._image_pubs.items():
                frame = self._backend.render(cam)
                msg = numpy_to_image(
                    frame, "rgb8", stamp=stamp, frame_id=f"{self.cfg.frame_id_prefix}{cam}_optical_frame"
                )
                self._later(self._outbox, delay, lambda m=msg, p=pub: p.publish(m))
            self._next_camera = _next_due(self._next_camera, self._sim_time, self.cfg.camera_rate_hz)


def _next_due(previous: float, now: float, rate_hz: float) -> float:
    """Next publication time on the rate's grid, skipping missed slots instead of bursting."""
    period = 1.0 / rate_hz
    return max(previous + period, (math.floor(now / period + 1e-9) + 1) * period)
