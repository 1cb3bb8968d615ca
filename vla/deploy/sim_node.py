"""The simulated robot process: `RobotNode` over `SimRobotBackend`, plus a companion node.

The companion (`SimWorldNode`) owns the simulation-only topics (`vla.deploy.world_topics`):
it publishes the ground-truth world state and the episode status from the robot node's thread
(step hook, counted in simulated time), serves reset requests, and after a reset publishes a
time-0 `JointTrajectory` to the reset pose on the robot's own trajectory topic, which the
trajectory follower jumps to, so the controller and the world are in step again (the backend
stays paused until then).

`make_sim_robot` is the `python -m ros_bridge.run robot --factory vla.deploy.sim_node:make_sim_robot`
factory: it builds the backend and starts the companion in a background executor of the
process's default context (the runner spins only the robot node).
"""

from __future__ import annotations

import atexit
import threading
import time
from typing import Any

import numpy as np
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import RobotNodeConfig
from ros_bridge.conversions import chunk_to_joint_trajectory
from ros_bridge.run import spin_once_paced
from vla.deploy.sim_backend import SimBackendConfig, SimRobotBackend
from vla.deploy.world_topics import DEFAULT_TOPICS, WorldTopics, json_msg, parse_json_msg, world_state_to_msg

_QOS = QoSProfile(depth=10)


class SimWorldNode(Node):
    """Publishes world state + episode status at `rate_hz` (simulated time); executes reset requests.

    trajectory_topic / joint_names: where the robot node listens, to re-synchronize its command.
    """

    def __init__(
        self,
        backend: SimRobotBackend,
        trajectory_topic: str,
        joint_names: tuple[str, ...],
        *,
        rate_hz: float = 20.0,
        topics: WorldTopics = DEFAULT_TOPICS,
        node_name: str = "sim_world",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        if not rate_hz > 0:
            raise ValueError(f"SimWorldNode: rate_hz must be > 0, got {rate_hz}")
        self.backend = backend
        self._joint_names = list(joint_names)
        self._period = 1.0 / rate_hz
        self._next = 0.0
        self._last_phase: tuple[int, bool, bool] | None = None
        self._last_publish = 0.0
        self._reset_q: np.ndarray | None = None
        self._last_resync = 0.0
        self._state_pub = self.create_publisher(Float64MultiArray, topics.world_state, _QOS)
        self._episode_pub = self.create_publisher(String, topics.episode, _QOS)
        self._traj_pub = self.create_publisher(JointTrajectory, trajectory_topic, _QOS)
        self.create_subscription(String, topics.reset, self._on_reset, _QOS)
        backend.add_reset_hook(self._on_backend_reset)
        backend.add_step_hook(self._on_step)

    def _on_reset(self, msg: String) -> None:
        try:
            req = parse_json_msg(msg, "reset request")
            seed, request = int(req["seed"]), int(req["request"])
        except (ValueError, KeyError, TypeError) as exc:
            self.get_logger().error(f"ignored reset request {msg.data!r}: {exc}")
            return
        self.backend.request_reset(seed, request)

    def _on_backend_reset(self, backend: SimRobotBackend, q_reset: np.ndarray) -> None:
        self._reset_q = q_reset.copy()
        self._publish_reset_pose()
        self._next = 0.0

    def _publish_reset_pose(self) -> None:
        # time_from_start 0: the follower jumps to it at once (a ramp would drag the arm back).
        traj = chunk_to_joint_trajectory(self._reset_q[None], self._joint_names, 1.0)
        traj.points[0].time_from_start.sec = 0
        traj.points[0].time_from_start.nanosec = 0
        self._traj_pub.publish(traj)
        self._last_resync = time.monotonic()

    def _on_step(self, backend: SimRobotBackend) -> None:
        if self._reset_q is not None and backend.paused and time.monotonic() - self._last_resync > 0.2:
            # A command from the policy node (its hold, sent before the reset) arrived after the
            # reset pose: say it again until the controller is there and the world runs.
            self._publish_reset_pose()
        episode, seed, t, state = backend.world_state()
        status = backend.status()
        # Simulated time stands still while paused after a reset: a change of phase is news, and
        # the world is re-published at the rate in wall time so the policy process's replica (and
        # the gate reading it) stays fresh.
        phase = (episode, status.paused, status.started)
        now = time.monotonic()
        due = t + 1e-9 >= self._next or (status.paused and now - self._last_publish >= self._period)
        if phase == self._last_phase and not due:
            return
        self._last_phase = phase
        self._last_publish = now
        self._next = t + self._period
        self._state_pub.publish(world_state_to_msg(episode, seed, t, state))
        self._episode_pub.publish(json_msg(status.as_dict()))


class BackgroundExecutor:
    """Spins nodes in a daemon thread on their own executor (next to a runner that spins others)."""

    def __init__(self, context: Context | None = None) -> None:
        self._executor = SingleThreadedExecutor(context=context)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="vla-deploy-bg", daemon=True)
        self.nodes: list[Node] = []

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        self._executor.add_node(node)
        if not self._thread.is_alive():
            self._thread.start()
        return node

    def _spin(self) -> None:
        try:
            while not self._stop.is_set():
                spin_once_paced(self._executor, 0.05)
        except ExternalShutdownException:
            pass  # the process's context was shut down (Ctrl-C of the runner)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self._executor.shutdown(timeout_sec=1.0)
        for node in self.nodes:
            node.destroy_node()
        self.nodes = []


def make_sim_robot(
    config: RobotNodeConfig,
    *,
    task: str = "pick_cube",
    image_size: int = 64,
    cameras: list[str] | None = None,
    env_overrides: dict[str, Any] | None = None,
    seed: int = 0,
    world_rate_hz: float = 20.0,
    context: Context | None = None,
) -> SimRobotBackend:
    """`ros_bridge.run robot` factory: the MuJoCo backend, with its `SimWorldNode` already spinning.

    Cameras default to `config.camera_names` (only what the policy consumes is rendered).
    """
    cams = tuple(cameras or config.camera_names or ("front", "wrist"))
    backend = SimRobotBackend(
        SimBackendConfig(
            task=task, image_size=image_size, cameras=cams, env_overrides=dict(env_overrides or {}), seed=seed
        )
    )
    runner = BackgroundExecutor(context)
    joints = config.joint_names or tuple(backend.joint_names)
    runner.add(SimWorldNode(backend, config.trajectory_topic, joints, rate_hz=world_rate_hz, context=context))
    backend.companions.append(runner)
    if context is None:
        # The runner never closes its backend; release GL and the companion before the interpreter
        # tears down (an EGL context destroyed during finalization aborts the process).
        atexit.register(backend.close)
    return backend
