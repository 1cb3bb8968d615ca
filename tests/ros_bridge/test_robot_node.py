"""The generic robot node over real rclpy, and both nodes as separate processes in closed loop.

The robot behind the node is a pure-numpy kinematic double (`ros_doubles.KinematicBackend`);
the middleware, the nodes and the runner are real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from ros_doubles import COLOURS, GOAL, HOME, KinematicBackend
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig, to_dict
from ros_bridge.conversions import chunk_to_joint_trajectory, image_to_rgb, joint_state_to_numpy
from ros_bridge.robot_node import RobotNode
from ros_bridge.run import RosRuntime, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(90)]
ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


class Client:
    """Sends trajectories to the robot node and records its joint states and images."""

    def __init__(self, ros: RosRuntime, cfg: RobotNodeConfig, names: list[str]) -> None:
        self.names = names
        self.joint_states: list[JointState] = []
        self.images: dict[str, list[Image]] = {c: [] for c in COLOURS}
        self.statuses: list[dict] = []
        self.node = ros.add(Node("client", context=ros.context))
        self.pub = self.node.create_publisher(JointTrajectory, cfg.trajectory_topic, 10)
        self.node.create_subscription(JointState, cfg.joint_state_topic, self.joint_states.append, 10)
        for cam in COLOURS:
            self.node.create_subscription(
                Image, f"/camera/{cam}/image_raw", self.images[cam].append, qos_profile_sensor_data
            )
        self.node.create_subscription(
            String, "/vla/status", lambda m: self.statuses.append(json.loads(m.data)), 10
        )

    def q(self) -> np.ndarray:
        return joint_state_to_numpy(self.joint_states[-1], self.names).position


def _segment_lengths(commands: np.ndarray, waypoints: list[np.ndarray]) -> list[int]:
    """Command indices at which each waypoint is first reached."""
    return [int(np.flatnonzero(np.abs(commands - w).max(axis=1) < 1e-9)[0]) for w in waypoints]


def test_robot_node_publishes_and_executes_trajectory(ros: RosRuntime) -> None:
    backend = KinematicBackend()
    cfg = RobotNodeConfig(command_rate_hz=100.0, joint_state_rate_hz=50.0, camera_rate_hz=20.0)
    robot = ros.add(RobotNode(backend, cfg, context=ros.context))
    client = Client(ros, cfg, backend.joint_names)
    wait_until(lambda: client.joint_states and all(client.images.values()), 5.0, what="robot outputs")
    js = client.joint_states[-1]
    assert list(js.name) == backend.joint_names and len(js.velocity) == 7
    np.testing.assert_allclose(client.q(), HOME, atol=1e-9)
    for cam, colour in COLOURS.items():
        img = client.images[cam][-1]
        assert img.encoding == "rgb8" and img.header.frame_id == f"{cam}_optical_frame"
        frame = image_to_rgb(img)
        assert frame.shape == (12, 16, 3) and (frame == colour).all()

    wait_until(lambda: client.pub.get_subscription_count() > 0, 5.0, what="robot subscription")
    mid = HOME + 0.5 * (GOAL - HOME)
    msg = chunk_to_joint_trajectory(np.stack([mid, GOAL]), backend.joint_names, dt=0.1)
    msg.points[1].time_from_start.nanosec = 300_000_000  # mid at 0.1 s, goal at 0.3 s
    client.pub.publish(msg)
    wait_until(lambda: np.allclose(client.q(), GOAL, atol=1e-3), 5.0, what="the robot to reach the goal")
    assert robot.trajectories_received == 1

    with backend.lock:
        commands = np.array([c for _, c in backend.commands])
    start = int(np.flatnonzero(np.abs(commands - HOME).max(axis=1) < 1e-12)[-1])
    i_mid, i_goal = _segment_lengths(commands, [mid, GOAL])
    # Linear interpolation at 100 Hz: 10 steps to the first point, 20 more to the second.
    assert (i_mid - start, i_goal - i_mid) == (10, 20)
    steps_1 = np.diff(commands[start : i_mid + 1], axis=0)
    steps_2 = np.diff(commands[i_mid : i_goal + 1], axis=0)
    np.testing.assert_allclose(steps_1, np.broadcast_to((mid - HOME) / 10, steps_1.shape), atol=1e-9)
    np.testing.assert_allclose(steps_2, np.broadcast_to((GOAL - mid) / 20, steps_2.shape), atol=1e-9)
    np.testing.assert_allclose(commands[i_goal:], np.broadcast_to(GOAL, commands[i_goal:].shape), atol=1e-12)


def test_robot_node_rejects_bad_trajectories_and_stops_on_empty(ros: RosRuntime) -> None:
    backend = KinematicBackend()
    cfg = RobotNodeConfig(camera_names=("front",))
    robot = ros.add(RobotNode(backend, cfg, context=ros.context))
    client = Client(ros, cfg, backend.joint_names)
    wait_until(lambda: client.pub.get_subscription_count() > 0 and client.joint_states, 5.0, what="discovery")
    assert client.images["wrist"] == []  # only the configured camera is published

    client.pub.publish(chunk_to_joint_trajectory(GOAL[None, :6], backend.joint_names[:6], dt=0.1))
    wait_until(lambda: robot.trajectories_rejected == 1, 5.0, what="the rejection")
    np.testing.assert_allclose(robot.command, HOME)

    slow = chunk_to_joint_trajectory(GOAL[None], backend.joint_names, dt=2.0)
    client.pub.publish(slow)
    wait_until(lambda: np.abs(robot.command - HOME).max() > 0.05, 5.0, what="motion")
    client.pub.publish(chunk_to_joint_trajectory(np.zeros((0, 7)), backend.joint_names, dt=0.1))
    wait_until(lambda: robot.trajectories_received == 2, 5.0, what="the stop")
    stopped = robot.command
    wait_until(lambda: robot.sim_time > 0.2, 5.0, what="time to pass")
    threading.Event().wait(0.1)
    np.testing.assert_allclose(robot.command, stopped)
    assert np.abs(stopped - GOAL).max() > 0.1, "stopped before the goal"


def test_forward_commands_and_injected_latencies(ros: RosRuntime) -> None:
    """A Float64MultiArray target holds (forward controller); commands act, measurements leave late."""
    from std_msgs.msg import Float64MultiArray

    from ros_bridge.conversions import numpy_to_float64_multi_array, time_to_seconds

    backend = KinematicBackend()
    cfg = RobotNodeConfig(camera_names=("front",), actuation_latency_s=0.05, sensor_latency_s=0.03)
    robot = ros.add(RobotNode(backend, cfg, context=ros.context))
    client = Client(ros, cfg, backend.joint_names)
    received: list[tuple[float, float]] = []  # (receipt wall time, header stamp)
    client.node.create_subscription(
        JointState,
        cfg.joint_state_topic,
        lambda m: received.append(
            (client.node.get_clock().now().nanoseconds * 1e-9, time_to_seconds(m.header.stamp))
        ),
        10,
    )
    forward = client.node.create_publisher(Float64MultiArray, cfg.forward_command_topic, 10)
    wait_until(lambda: forward.get_subscription_count() > 0 and len(received) > 10, 5.0, what="discovery")
    # Measurements leave 30 ms (3 ticks of simulated time) after they were taken.
    ages = np.array([r - s for r, s in received[-10:]])
    assert np.median(ages) >= 0.025, ages
    forward.publish(numpy_to_float64_multi_array(GOAL, ["joints"]))
    wait_until(lambda: robot.forward_received == 1, 5.0, what="the forward command")
    t_recv = robot.sim_time
    wait_until(lambda: np.allclose(robot.command, GOAL), 5.0, what="the target to act")
    with backend.lock:
        t_act = next(t for t, c in backend.commands if np.allclose(c, GOAL))
    # It acts 50 ms (5 ticks) after it arrived, as a step (no interpolation), and holds.
    assert 0.035 <= t_act - t_recv <= 0.075, (t_recv, t_act)
    wait_until(lambda: np.allclose(client.q(), GOAL, atol=1e-3), 5.0, what="the robot to reach the target")
    forward.publish(numpy_to_float64_multi_array(GOAL[:6], ["joints"]))
    wait_until(lambda: robot.trajectories_rejected == 1, 5.0, what="the rejection of 6 values")
    np.testing.assert_allclose(robot.command, GOAL)


def test_robot_config_must_match_backend(ros: RosRuntime) -> None:
    with pytest.raises(ValueError, match=r"camera_names \['top'\] are not backend cameras"):
        RobotNode(KinematicBackend(), RobotNodeConfig(camera_names=("top",)), context=ros.context)
    with pytest.raises(ValueError, match="joint_names has 2 names, the backend has 7"):
        RobotNode(KinematicBackend(), RobotNodeConfig(joint_names=("a", "b")), context=ros.context)


def _spawn(kind: str, factory: str, *extra: str) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "ros_bridge.run", kind, "--factory", factory, *extra]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return -9, out
    return proc.returncode, out


def test_closed_loop_robot_and_policy_in_separate_processes(ros: RosRuntime, tmp_path: Path) -> None:
    """Robot node and policy node each in its own process (the runner), talking over loopback."""
    policy_cfg = PolicyNodeConfig(max_input_age_s=0.3, n_action_steps=4, instruction="reach the goal")
    (tmp_path / "policy.json").write_text(json.dumps(to_dict(policy_cfg)))
    robot = _spawn("robot", "ros_doubles:make_backend", "--factory-kwargs", '{"tau": 0.03}')
    policy = _spawn("policy", "ros_doubles:make_collaborators", "--config", str(tmp_path / "policy.json"))
    try:
        client = Client(ros, RobotNodeConfig(), list(policy_cfg.joint_names))
        wait_until(
            lambda: client.joint_states and np.allclose(client.q(), GOAL, atol=2e-3),
            30.0,
            what="the closed loop to reach the goal",
        )
        wait_until(lambda: any(s["state"] == "running" and "step_ms" in s for s in client.statuses), 5.0)
        # Robot gone: the policy node sees its inputs go stale and holds, saying why.
        code, out = _stop(robot)
        assert code == 0, out[-3000:]
        n = len(client.statuses)
        wait_until(
            lambda: any(s["state"] == "holding" and "stale" in s["reason"] for s in client.statuses[n:]),
            5.0,
            what="a stale-input hold",
        )
    finally:
        robot_code, robot_out = _stop(robot)
        policy_code, policy_out = _stop(policy)
    assert robot_code == 0, robot_out[-3000:]
    assert policy_code == 0, policy_out[-3000:]
