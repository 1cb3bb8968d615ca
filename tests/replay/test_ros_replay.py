"""`target=ros`: the episode's actions go to a robot through the policy node and the world-model gate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
from rclpy.node import Node
from sim_robot import SimArm
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import UR5E_2F85_JOINTS
from ros_bridge.conversions import joint_trajectory_to_numpy
from ros_bridge.robot_node import RobotNode
from ros_bridge.run import RosRuntime
from sim.safety import load_safety_config
from vla.replay import ReplayRefused, load_episode
from vla.replay.confirm import PROMPT
from vla.replay.ros_replay import RosReplayConfig, replay_on_robot

ROOT = Path(__file__).resolve().parents[2]
# The default limits: the gate's world model interpolates the targets the way the robot node's
# trajectory follower does (`gate.execution = "linear"`), so the recorded motion passes as it is.
SAFETY = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
pytestmark = pytest.mark.ros


class Listener:
    """Records every JointTrajectory sent to the controller (receipt time, times (K,), points (K, 7))."""

    def __init__(self, ros: RosRuntime) -> None:
        self.msgs: list[tuple[float, np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()
        node = Node("listener", context=ros.context)
        node.create_subscription(JointTrajectory, RosReplayConfig().trajectory_topic, self._on, 50)
        ros.add(node)

    def _on(self, msg: JointTrajectory) -> None:
        times, points = joint_trajectory_to_numpy(msg, UR5E_2F85_JOINTS)
        with self._lock:
            self.msgs.append((time.monotonic(), times, points))

    def chunks(self, start: int = 0) -> list[tuple[float, np.ndarray, np.ndarray]]:
        with self._lock:
            return [m for m in self.msgs[start:] if len(m[1]) > 1]

    def targets(self, start: int = 0) -> np.ndarray:
        """(n, 7) every point of every trajectory sent since message `start`."""
        with self._lock:
            pts = [p for _, _, points in self.msgs[start:] for p in points]
        return np.asarray(pts).reshape(-1, 7)


# A calm stretch of the expert episode: the arm above the cube, then moving down towards it. (From
# about step 38 the fingers come within the gate's 5 mm table margin for the grasp, and the world
# model of a real robot has no cube: the gate rightly cuts there.)
START, STOP = 14, 38


def _robot(ros: RosRuntime, demo_store: Path) -> SimArm:
    """A MuJoCo arm in the recorded episode's scene, at the recorded state of step START."""
    ep = load_episode(demo_store, 0, load_images=False)
    arm = SimArm("pick_cube", seed=ep.info["seed"], q0=ep.state[START])
    ros.add(RobotNode(arm, context=ros.context))
    return arm


@pytest.mark.parametrize("speed", [1.0, 0.5])
def test_gated_replay_at_recorded_timing_scaled_by_speed(
    ros: RosRuntime, demo_store: Path, speed: float
) -> None:
    arm = _robot(ros, demo_store)
    listen = Listener(ros)
    ep = load_episode(demo_store, 0, load_images=False).window(START, STOP)
    prompts: list[str] = []

    def yes(prompt: str) -> str:
        prompts.append(prompt)
        return "y"

    res = replay_on_robot(ep, RosReplayConfig(speed=speed), SAFETY, runtime=ros, ask=yes, out=lambda s: None)
    assert prompts == [PROMPT]
    assert res.completed and res.steps_executed == 24 and res.stop_reason == "completed", res.stop_reason
    assert [c.status for c in res.chunks] == ["pass"] * 3 and res.control_rate_hz == 20.0 * speed
    period = 1.0 / (20.0 * speed)  # the recorded 20 Hz, scaled
    # One trajectory per control period: the plan from that period on, a period between points,
    # starting with the recorded action of the period.
    from ros_bridge.run import wait_until

    wait_until(lambda: len(listen.msgs) >= 24, 2.0, what="the last trajectory")  # may still be in flight
    sent = listen.msgs
    firsts = np.stack([points[0] for _, _, points in sent])
    k0 = int(np.flatnonzero(np.abs(firsts - ep.action[0]).max(axis=1) < 1e-6)[0])
    np.testing.assert_allclose(firsts[k0 : k0 + 24], ep.action, atol=1e-6)
    for _, times, _ in sent[k0 : k0 + 24]:
        np.testing.assert_allclose(times, period * np.arange(1, len(times) + 1), atol=1e-6)
    # At the recorded rate (timers never fire early; on a loaded machine they may fire late).
    span = sent[k0 + 23][0] - sent[k0][0]
    assert 0.8 * 23 * period < span < 3 * 23 * period, (span, 23 * period)
    assert 0.9 * 24 * period <= res.wall_seconds < 2 * 24 * period + 2.0
    # The arm went where the recording went.
    assert (
        np.abs(arm.read_joints()[0][:6] - ep.action[-1, :6]).max() < 0.2
    )  # the final hold stops the lagging arm


def test_unsafe_episode_is_cut_and_held_with_the_reason(ros: RosRuntime, demo_store: Path) -> None:
    arm = _robot(ros, demo_store)
    listen = Listener(ros)
    ep = load_episode(demo_store, 0, load_images=False).window(START, STOP)
    cfg = RosReplayConfig(confirm=False)

    # From step 12 on the shoulder is commanded 0.8 rad away: the gate cuts the chunk before it.
    bad = ep.window(0, 24)
    bad.action = ep.action.copy()
    bad.action[12:, 1] += 0.8
    res = replay_on_robot(bad, cfg, SAFETY, runtime=ros, out=lambda s: None)
    assert not res.completed and 8 < res.steps_executed <= 12, res.stop_reason
    assert [c.status for c in res.chunks] == ["pass", "truncated"], res.chunks
    assert res.chunks[1].executed == res.steps_executed - 8
    assert f"gate truncated at recorded step {res.steps_executed}" in res.stop_reason
    assert "acceleration" in res.stop_reason or "jump" in res.stop_reason  # names the violated check
    # The unsafe targets never went out; the arm stopped where the certified part ended.
    sent = listen.targets()
    assert len(sent) and np.abs(sent[:, 1][:, None] - bad.action[12:, 1][None]).min() > 0.3
    assert np.abs(arm.read_joints()[0][1] - ep.action[res.steps_executed - 1, 1]).max() < 0.1

    # The very first step is unsafe (a 0.9 rad jump of the elbow): the robot holds where it is.
    time.sleep(1.0)  # the arm settles in the stop the gate certified for the cut replay
    q0 = arm.read_joints()[0]
    worse = ep.window(12, 24)
    worse.action = worse.action.copy()
    worse.action[:, 2] -= 0.9
    n = len(listen.msgs)
    res = replay_on_robot(worse, cfg, SAFETY, runtime=ros, out=lambda s: None)
    assert not res.completed and res.steps_executed == 0 and res.held
    assert res.chunks[0].status == "hold" and "hold: jump at step 0" in res.stop_reason
    time.sleep(0.2)  # the gate's brake may still be in flight
    sent = listen.targets(n)
    assert (
        len(sent) and np.abs(sent[:, 2][:, None] - worse.action[:, 2][None]).min() > 0.5
    )  # no jumped target
    assert np.abs(arm.read_joints()[0][:6] - q0[:6]).max() < 0.02


def test_refuses_to_move_without_confirmation(ros: RosRuntime, demo_store: Path) -> None:
    _robot(ros, demo_store)
    listen = Listener(ros)
    ep = load_episode(demo_store, 0, load_images=False).window(START, START + 8)
    with pytest.raises(ReplayRefused, match="not confirmed"):
        replay_on_robot(ep, RosReplayConfig(), SAFETY, runtime=ros, ask=lambda p: "", out=lambda s: None)
    with pytest.raises(ReplayRefused, match=r"no terminal .* confirm=false \(--yes\)"):
        replay_on_robot(ep, RosReplayConfig(), SAFETY, runtime=ros, interactive=False, out=lambda s: None)
    time.sleep(0.2)
    assert listen.msgs == []


def test_cli_refuses_without_tty_or_flag(demo_store: Path, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "vla.cli.replay", f"dataset={demo_store}", "target=ros", "speed=0.5",
           f"out_dir={tmp_path}"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 2, res.stdout + res.stderr
    assert "refusing to move the robot" in res.stderr and "--yes" in res.stderr
    assert "speed: 0.5" in (tmp_path / "replay.yaml").read_text()


def test_cli_replays_on_a_robot_with_yes(ros: RosRuntime, demo_store: Path, tmp_path: Path) -> None:
    """`vla-replay target=ros --yes` in its own process drives the robot node of this one."""
    arm = _robot(ros, demo_store)
    ep = load_episode(demo_store, 0, load_images=False)
    cmd = [sys.executable, "-m", "vla.cli.replay", f"dataset={demo_store}", "target=ros", f"start={START}",
           f"stop={START + 16}", "speed=1.0", "--yes", f"out_dir={tmp_path}"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)  # fmt: skip
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert "confirmation skipped" in res.stdout and "completed: 16/16 steps" in res.stdout
    report = json.loads((tmp_path / "replay.json").read_text())
    assert report["completed"] and [c["status"] for c in report["chunks"]] == ["pass", "pass"]
    assert (
        np.abs(arm.read_joints()[0][:6] - ep.action[START + 15, :6]).max() < 0.2
    )  # the hold stops the lagging arm
