"""The ROS policy node driving the real control loop (`vla.runtime.ControlLoop` via `LoopController`).

On loopback ROS 2, with a fake arm whose first joint reads the time the joint state was published:
the policy's observation history is one control period apart (the loop's buffer is fed every
period, as in training), and a slow policy never leaves the robot without a fresh command (the loop
infers on a worker thread), unlike the synchronous mode.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from ros_bridge.config import UR5E_2F85_JOINTS, PolicyNodeConfig
from ros_bridge.conversions import numpy_to_joint_state
from ros_bridge.interfaces import Collaborators
from ros_bridge.policy_node import PolicyNode
from ros_bridge.run import RosRuntime, wait_until
from vla.deploy.controller import LoopController
from vla.runtime import RuntimeConfig

pytestmark = [pytest.mark.ros, pytest.mark.timeout(90)]
DT = 0.05
HOME = np.array([0.0, -1.57, 1.57, -1.57, -1.57, 0.0, 0.0])


class ClockArm:
    """Publishes joint states at 200 Hz whose first position is the publication time (s since start)."""

    def __init__(self, ros: RosRuntime, cfg: PolicyNodeConfig) -> None:
        self.t0 = time.monotonic()
        self.commands: list[float] = []  # receipt times of forward commands
        self._lock = threading.Lock()
        self.node = ros.add(Node("clock_arm", context=ros.context))
        self._pub = self.node.create_publisher(JointState, cfg.joint_state_topic, 10)
        self.node.create_subscription(Float64MultiArray, cfg.forward_command_topic, self._on_command, 50)
        self.node.create_timer(0.005, self._publish)

    def _publish(self) -> None:
        q = HOME.copy()
        q[0] = time.monotonic() - self.t0
        self._pub.publish(numpy_to_joint_state(UR5E_2F85_JOINTS, q, np.zeros(7)))

    def _on_command(self, msg: Float64MultiArray) -> None:
        with self._lock:
            self.commands.append(time.monotonic())

    def command_times(self) -> np.ndarray:
        with self._lock:
            return np.asarray(self.commands)


class RecordingPolicy:
    """A chunk policy that records the first joint of its state history (the arm's clock) and
    answers, after `delay_s`, with a slow ramp from the latest state (distinct actions each step)."""

    def __init__(self, delay_s: float = 0.0, horizon: int = 16) -> None:
        self.delay_s = delay_s
        self.horizon = horizon
        self.n_obs_steps = 2
        self.histories: list[np.ndarray] = []
        self.calls = 0

    def reset(self) -> None:
        pass

    def __call__(self, obs: dict, prefix: np.ndarray | None) -> np.ndarray:
        self.calls += 1
        self.histories.append(np.asarray(obs["state"])[:, 0].copy())
        time.sleep(self.delay_s)
        last = np.asarray(obs["state"][-1], np.float32)
        chunk = np.repeat(last[None], self.horizon, axis=0)
        chunk[:, 1] += 0.001 * (np.arange(self.horizon) + obs["step"])
        if prefix is not None:
            chunk[: len(prefix)] = prefix
        return chunk


def _run(ros: RosRuntime, policy: RecordingPolicy, runtime: RuntimeConfig, seconds: float):
    cfg = PolicyNodeConfig(
        camera_names=(),
        control_rate_hz=1 / DT,
        max_input_age_s=0.3,
        instruction="keep time",
        forward_command_topic="/forward_position_controller/commands",
        mode=runtime.mode,
        smoothing=runtime.smoothing,
    )
    arm = ClockArm(ros, cfg)
    controller = LoopController(policy, runtime, DT)
    node = ros.add(PolicyNode(lambda c: Collaborators(controller), cfg, context=ros.context))
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    wait_until(lambda: len(arm.command_times()) > 0, 10.0, what="the first command")
    time.sleep(seconds)
    summary = controller.summary()
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    return arm, controller, summary


def test_observation_history_is_one_control_period_apart(ros: RosRuntime) -> None:
    policy = RecordingPolicy()
    runtime = RuntimeConfig(mode="async", smoothing="rtc", n_obs_steps=2, n_action_steps=8)
    _run(ros, policy, runtime, 1.5)
    assert policy.calls >= 3
    # The first chunk's history is padded (the episode's first observation, repeated); every later
    # chunk sees the last two control periods' observations: the arm's clock advanced one period.
    gaps = np.array([h[1] - h[0] for h in policy.histories[1:]])
    assert policy.histories[0][0] == policy.histories[0][1]
    assert np.all(np.abs(gaps - DT) < 0.03), gaps
    assert abs(np.median(gaps) - DT) < 0.012, gaps


def test_node_keeps_commanding_while_a_slow_policy_computes() -> None:
    """A 300 ms policy (six periods): async inference commands every period; sync leaves gaps."""
    for mode, smoothing in (("async", "rtc"), ("sync", "none")):
        policy = RecordingPolicy(delay_s=0.3)
        runtime = RuntimeConfig(mode=mode, smoothing=smoothing, n_obs_steps=2, n_action_steps=8)
        with RosRuntime() as own:
            arm, _, summary = _run(own, policy, runtime, 2.5)
        times = arm.command_times()
        gaps = np.diff(times[times > times[0] + 0.5])  # after start-up
        if mode == "async":
            assert gaps.max() < 2.5 * DT, gaps  # a fresh command every period (timer jitter aside)
            assert summary["misses"] == 0, summary
            assert policy.calls >= 4  # chunks kept coming while the robot moved
        else:
            assert gaps.max() > 4 * DT, gaps  # the robot waits while the policy computes
            assert summary["misses"] > 0, summary
