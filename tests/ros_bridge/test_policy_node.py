"""The lifecycle policy node with real rclpy on loopback: runs, holds, resumes.

A harness node plays the robot (inputs at 50 Hz); the chunk source and gate are scripted doubles
so the tests check the bridge's behaviour, not a model.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from ros_doubles import COLOURS, HOME, ScriptedGate, ScriptedSource
from ros_harness import Harness

from ros_bridge.config import PolicyNodeConfig
from ros_bridge.interfaces import Collaborators
from ros_bridge.policy_node import PolicyNode
from ros_bridge.run import RosRuntime

pytestmark = [pytest.mark.ros, pytest.mark.timeout(60)]
TA = 4
DT = 0.05


def make_cfg(**overrides) -> PolicyNodeConfig:
    # A roomy input age: the CI machine is shared, and a late 50 Hz message must not look stale.
    base = dict(
        control_rate_hz=1 / DT,
        n_action_steps=TA,
        max_input_age_s=0.3,
        instruction="pick up the cube",
        forward_command_topic="/forward_position_controller/commands",
    )
    return PolicyNodeConfig(**{**base, **overrides})


class Rig:
    """Policy node + harness + the doubles behind the node, in one runtime."""

    def __init__(self, ros: RosRuntime, cfg: PolicyNodeConfig, gate: ScriptedGate | None = None) -> None:
        self.source = ScriptedSource(horizon=8)
        self.gate = gate or ScriptedGate()
        self.closed = 0
        self.harness = Harness(ros, cfg)
        self.node = ros.add(PolicyNode(self._factory, cfg, context=ros.context))
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _factory(self, cfg: PolicyNodeConfig) -> Collaborators:
        return Collaborators(self.source, self.gate, close=self._close)

    def _close(self) -> None:
        self.closed += 1

    def expected_chunk(self) -> np.ndarray:
        return ScriptedSource(horizon=8)(_obs_at(HOME))[:TA]


def _obs_at(q: np.ndarray):
    from ros_bridge.interfaces import Observation

    return Observation(
        images={}, joint_positions=q.copy(), joint_velocities=np.zeros(7), instruction="x", stamp=0.0
    )


def assert_hold_at(traj: tuple[np.ndarray, np.ndarray], q: np.ndarray) -> None:
    times, points = traj
    assert len(times) == 1 and times[0] == pytest.approx(DT)
    np.testing.assert_allclose(points[0], q)


def held_after_plan(h, n_traj: int) -> np.ndarray:
    """Where a hold must go after plans were sent: measured arm joints, last commanded gripper."""
    q = HOME.copy()
    q[-1] = h.trajectories[n_traj - 1][1][-1][-1]  # a closed gripper stays closed on its object
    assert q[-1] != HOME[-1], "the scripted plan must move the gripper for this check to mean anything"
    return q


def test_runs_gated_chunks_with_converted_observations(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    times, points = h.wait_trajectory(TA)
    np.testing.assert_allclose(times, DT * np.arange(1, TA + 1), atol=1e-9)
    np.testing.assert_allclose(points, rig.expected_chunk())
    status = h.wait_status(lambda s: "latency_ms" in s)
    assert status["state"] == "running" and status["reason"] == ""
    assert status["chunk_len"] == 8 and status["safe_len"] == 8
    assert status["gate"] == {"safe_steps": 8, "min_clearance_m": 0.05}
    assert status["latency_ms"] > 0 and status["infer_ms"] >= 0 and status["gate_ms"] >= 0
    # What the policy saw: RGB frames from an rgb8 and a padded bgr8 camera, state in config order.
    obs = rig.source.observations[0]
    for cam, colour in COLOURS.items():
        assert obs.images[cam].shape == (6, 8, 3) and obs.images[cam].dtype == np.uint8
        assert (obs.images[cam] == colour).all(), cam
    np.testing.assert_allclose(obs.joint_positions, HOME)
    assert obs.instruction == "pick up the cube" and obs.stamp > 0
    q, qd, chunk = rig.gate.calls[0]
    assert q.shape == (7,) and qd.shape == (7,) and chunk.shape == (8, 7)
    # The forward controller gets one step per tick, the chunk's first row first.
    from ros_bridge.run import wait_until

    wait_until(lambda: len(h.forward) >= 2, 5.0, what="forward commands")
    np.testing.assert_allclose(h.forward[0], rig.expected_chunk()[0])
    # The next chunk comes Ta periods later, not every tick.
    n = len(h.trajectories)
    time.sleep(6 * DT)
    assert len(h.trajectories) - n <= 3


@pytest.mark.parametrize("stream", ["joint_state", "wrist"])
def test_holds_on_stale_inputs_and_resumes_when_fresh(ros: RosRuntime, stream: str) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    h.wait_trajectory(TA)
    if stream == "joint_state":
        h.joints_on = False
        expected = "stale joint state"
    else:
        h.cameras_on["wrist"] = False
        expected = "stale image from camera 'wrist'"
    n_traj = len(h.trajectories)
    status = h.wait_status(lambda s: s["state"] == "holding", after=len(h.statuses))
    assert expected in status["reason"]
    assert status["input_age_ms"][stream if stream == "joint_state" else "image_wrist"] > 300
    assert_hold_at(h.wait_trajectory(1, after=n_traj), held_after_plan(h, n_traj))
    # While stale: no new chunk, and the hold is published once, not every tick.
    n_hold = len(h.trajectories)
    time.sleep(5 * DT)
    assert len(h.trajectories) == n_hold
    n_calls = len(rig.source.observations)
    time.sleep(2 * DT)
    assert len(rig.source.observations) == n_calls
    # Fresh again: the node resumes by itself.
    h.joints_on = True
    h.cameras_on["wrist"] = True
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))
    h.wait_trajectory(TA, after=n_hold)


def test_estop_holds_at_once_and_release_resumes(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    h.wait_trajectory(TA)
    n = len(h.trajectories)
    h.estop(True)
    status = h.wait_status(lambda s: s["state"] == "holding", after=len(h.statuses))
    assert status["reason"] == "e-stop engaged" and status["estop"] is True
    assert_hold_at(h.wait_trajectory(1, after=n), held_after_plan(h, n))
    n_hold = len(h.trajectories)
    time.sleep(0.3)
    assert len(h.trajectories) == n_hold, "no chunk may be published while the e-stop is engaged"
    h.estop(False)
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))
    h.wait_trajectory(TA, after=n_hold)


def test_empty_instruction_holds_until_one_arrives(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg(instruction=""))
    h = rig.harness
    status = h.wait_status(lambda s: s["state"] == "holding" and s["reason"] == "empty instruction")
    assert status["input_age_ms"]["joint_state"] is not None
    assert_hold_at(h.wait_trajectory(1), HOME)
    time.sleep(3 * DT)
    # Only holds so far (an empty "stop" one may precede it while no input had arrived yet).
    assert rig.source.observations == [] and all(len(t) <= 1 for t, _ in h.trajectories)
    h.instruct("stack the blocks")
    h.wait_trajectory(TA)
    assert rig.source.observations[-1].instruction == "stack the blocks"


def test_unsafe_chunk_holds_truncated_chunk_executes_prefix(ros: RosRuntime) -> None:
    gate = ScriptedGate(allow=0)
    rig = Rig(ros, make_cfg(), gate=gate)
    h = rig.harness
    status = h.wait_status(lambda s: s["state"] == "holding" and s["reason"].startswith("gate"))
    assert status["reason"] == "gate rejected the first step: predicted collision with table"
    assert status["safe_len"] == 0 and status["gate"]["safe_steps"] == 0
    assert_hold_at(h.wait_trajectory(1), HOME)
    # The chunk is re-checked every tick, but the unchanged hold is not re-published.
    n_calls, n_traj = len(gate.calls), len(h.trajectories)
    time.sleep(4 * DT)
    assert len(gate.calls) > n_calls and len(h.trajectories) == n_traj
    gate.allow = 2  # the world changed: two steps are safe now
    times, points = h.wait_trajectory(2)
    np.testing.assert_allclose(points, rig.expected_chunk()[:2])
    np.testing.assert_allclose(times, [DT, 2 * DT], atol=1e-9)
    status = h.wait_status(lambda s: s.get("safe_len") == 2)
    assert status["state"] == "running" and status["gate_reason"] == "predicted collision with table"


class _BrokenSource:
    def __call__(self, obs):
        return np.zeros((3, 5))


def test_bad_chunk_shape_holds_with_clear_reason(ros: RosRuntime) -> None:
    harness = Harness(ros, make_cfg())
    node = ros.add(
        PolicyNode(
            lambda cfg: Collaborators(_BrokenSource(), ScriptedGate()), make_cfg(), context=ros.context
        )
    )
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    status = harness.wait_status(lambda s: s["state"] == "holding" and "chunk source" in s["reason"])
    assert "shape (3, 5), expected (H>=1, 7)" in status["reason"]


def test_lifecycle_transitions_hold_and_release(ros: RosRuntime) -> None:
    def failing(cfg: PolicyNodeConfig) -> Collaborators:
        raise FileNotFoundError(f"no checkpoint at '{cfg.checkpoint}'")

    bad = ros.add(
        PolicyNode(failing, make_cfg(checkpoint="/nope"), node_name="bad_policy", context=ros.context)
    )
    assert bad.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert bad.config is None

    rig = Rig(ros, make_cfg())
    h = rig.harness
    h.wait_trajectory(TA)
    n = len(h.trajectories)
    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert_hold_at(h.wait_trajectory(1, after=n), held_after_plan(h, n))
    n_calls = len(rig.source.observations)
    time.sleep(4 * DT)
    assert len(rig.source.observations) == n_calls, "an inactive node must not run the policy"
    assert rig.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert rig.closed == 1 and rig.node.config is None
    # Reconfigure with a changed parameter and run again.
    assert rig.node.set_parameters([Parameter("n_action_steps", value=2)])[0].successful
    assert rig.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert rig.node.config is not None and rig.node.config.n_action_steps == 2
    assert rig.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_trajectory(2, after=len(h.trajectories))
    assert rig.node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert rig.closed == 2


def test_parameters_are_validated(ros: RosRuntime) -> None:
    node = ros.add(PolicyNode(lambda cfg: None, make_cfg(), context=ros.context))  # type: ignore[arg-type]
    for name, value, match in [
        ("control_rate_hz", -1.0, "control_rate_hz must be a positive"),
        ("joint_names", ["a", "a"], "joint_names has duplicates"),
        ("image_topics", ["/only_one"], "image_topics has 1 entries for 2 camera_names"),
        ("status_topic", "not a topic!", "status_topic: invalid topic name"),
    ]:
        result = node.set_parameters([Parameter(name, value=value)])[0]
        assert not result.successful and match in result.reason, (name, result.reason)
    assert node.set_parameters([Parameter("checkpoint", value="runs/abc")])[0].successful
    assert node.get_parameter("checkpoint").value == "runs/abc"
    # Command-line style overrides are validated at construction.
    with pytest.raises(ValueError, match="n_action_steps"):
        PolicyNode(
            lambda cfg: None,  # type: ignore[arg-type]
            make_cfg(),
            node_name="bad_override",
            context=ros.context,
            parameter_overrides=[Parameter("n_action_steps", value=0)],
        )
