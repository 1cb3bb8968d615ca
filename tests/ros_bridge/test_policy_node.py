"""The lifecycle policy node with real rclpy on loopback: commands every period, holds, resumes.

A harness node plays the robot (inputs at 50 Hz); the controller is a scripted double, so the tests
check the bridge's behaviour, not a model or the control loop (tests/deploy runs the real loop).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from ros_doubles import COLOURS, HOME, ScriptedController
from ros_harness import Harness

from ros_bridge.config import PolicyNodeConfig
from ros_bridge.interfaces import Collaborators
from ros_bridge.policy_node import GATE_ESTOP, PolicyNode
from ros_bridge.run import RosRuntime, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.timeout(60)]
H = 4
DT = 0.05


def make_cfg(**overrides) -> PolicyNodeConfig:
    # A roomy input age: the CI machine is shared, and a late 50 Hz message must not look stale.
    base = dict(
        control_rate_hz=1 / DT,
        max_input_age_s=0.3,
        instruction="pick up the cube",
        forward_command_topic="/forward_position_controller/commands",
    )
    return PolicyNodeConfig(**{**base, **overrides})


class Rig:
    """Policy node + harness + the controller double behind the node, in one runtime."""

    def __init__(self, ros: RosRuntime, cfg: PolicyNodeConfig, controller: ScriptedController | None = None):
        self.controller = controller or ScriptedController(horizon=H)
        self.closed = 0
        self.harness = Harness(ros, cfg)
        self.node = ros.add(PolicyNode(self._factory, cfg, context=ros.context))
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS

    def _factory(self, cfg: PolicyNodeConfig) -> Collaborators:
        return Collaborators(self.controller, close=self._close)

    def _close(self) -> None:
        self.closed += 1


def assert_hold_at(traj: tuple[np.ndarray, np.ndarray], q: np.ndarray) -> None:
    times, points = traj
    assert len(times) == 1 and times[0] == pytest.approx(DT)
    np.testing.assert_allclose(points[0], q)


def test_commands_every_period_with_converted_observations(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    times, points = h.wait_trajectory(H)
    np.testing.assert_allclose(times, DT * np.arange(1, H + 1), atol=1e-9)
    np.testing.assert_allclose(points, rig.controller.plan(HOME))
    status = h.wait_status(lambda s: s.get("step_status") == "ok")
    assert status["state"] == "running" and status["reason"] == "" and status["calls"] >= 1
    assert status["controller"]["steps"] >= 1 and status["misses"] == 0 and status["step_ms"] >= 0
    # What the controller saw: RGB frames from an rgb8 and a padded bgr8 camera, state in config order.
    obs = rig.controller.observations[0]
    for cam, colour in COLOURS.items():
        assert obs.images[cam].shape == (6, 8, 3) and obs.images[cam].dtype == np.uint8
        assert (obs.images[cam] == colour).all(), cam
    np.testing.assert_allclose(obs.joint_positions, HOME)
    assert obs.instruction == "pick up the cube" and obs.stamp > 0 and obs.received > 0
    assert rig.controller.resets == 1  # the first good period starts an episode
    # The forward controller gets the period's target, the plan's first row.
    wait_until(lambda: len(h.forward) >= 2, 5.0, what="forward commands")
    np.testing.assert_allclose(h.forward[0], rig.controller.plan(HOME)[0])
    # One command per period: the controller is asked every tick (not once per chunk).
    n, t0 = len(rig.controller.observations), time.monotonic()
    time.sleep(10 * DT)
    rate = (len(rig.controller.observations) - n) / (time.monotonic() - t0)
    assert 0.6 / DT < rate < 1.4 / DT, rate


@pytest.mark.parametrize("stream", ["joint_state", "wrist"])
def test_holds_on_stale_inputs_and_resumes_when_fresh(ros: RosRuntime, stream: str) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    c = rig.controller
    h.wait_trajectory(H)
    if stream == "joint_state":
        h.joints_on = False
        expected = "stale joint state"
    else:
        h.cameras_on["wrist"] = False
        expected = "stale image from camera 'wrist'"
    status = h.wait_status(lambda s: s["state"] == "holding", after=len(h.statuses))
    assert expected in status["reason"]
    assert status["input_age_ms"][stream if stream == "joint_state" else "image_wrist"] > 300
    wait_until(lambda: c.stops, 5.0, what="a stop request")
    obs, reason = c.stops[0]
    assert expected in reason
    if stream == "joint_state":
        # The state is unknown: nothing new goes out, the robot runs out the plan it has.
        assert obs is None
        n_stop = len(h.trajectories)
        time.sleep(3 * DT)
        assert len(h.trajectories) <= n_stop + 1  # at most one that was in flight
    else:
        # The joints are fresh: the controller plans a brake from them and it is sent at once.
        np.testing.assert_allclose(obs.joint_positions, HOME)
        assert_hold_at(h.wait_trajectory(1), HOME)
    n_hold, n_calls = len(h.trajectories), len(c.observations)
    time.sleep(5 * DT)
    assert len(c.observations) == n_calls, "no policy query while holding"
    assert len(h.trajectories) == n_hold and len(c.stops) == 1, "the stop is asked for once"
    # Fresh again: the node resumes by itself with a new episode of the controller.
    resets = c.resets
    h.joints_on = True
    h.cameras_on["wrist"] = True
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))
    h.wait_trajectory(H, after=n_hold)
    assert c.resets == resets + 1


def test_estop_holds_at_once_and_release_resumes(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg())
    h = rig.harness
    h.wait_trajectory(H)
    n = len(h.trajectories)
    h.estop(True)
    status = h.wait_status(lambda s: s["state"] == "holding", after=len(h.statuses))
    assert status["reason"] == "e-stop engaged" and status["estop"] is True
    assert_hold_at(h.wait_trajectory(1, after=n), HOME)
    assert rig.controller.stops[-1][1] == "e-stop engaged"
    n_hold = len(h.trajectories)
    time.sleep(0.3)
    assert len(h.trajectories) == n_hold, "nothing may be published while the e-stop is engaged"
    h.estop(False)
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))
    h.wait_trajectory(H, after=n_hold)


def test_empty_instruction_holds_until_one_arrives(ros: RosRuntime) -> None:
    rig = Rig(ros, make_cfg(instruction=""))
    h = rig.harness
    status = h.wait_status(lambda s: s["state"] == "holding" and s["reason"] == "empty instruction")
    assert status["input_age_ms"]["joint_state"] is not None
    time.sleep(3 * DT)
    assert rig.controller.observations == [] and all(len(t) <= 1 for t, _ in h.trajectories)
    h.instruct("stack the blocks")
    h.wait_trajectory(H)
    assert rig.controller.observations[-1].instruction == "stack the blocks"
    # A new instruction is a new episode for the controller (its history starts afresh).
    resets = rig.controller.resets
    h.instruct("push the block left")
    wait_until(lambda: rig.controller.observations[-1].instruction == "push the block left", 5.0)
    assert rig.controller.resets == resets + 1


def test_gate_hold_is_published_with_its_reason(ros: RosRuntime) -> None:
    controller = ScriptedController(horizon=H)
    controller.mode = "hold"
    rig = Rig(ros, make_cfg(), controller)
    h = rig.harness
    status = h.wait_status(lambda s: s["state"] == "holding" and s["reason"].startswith("gate"))
    assert status["reason"] == "gate: predicted collision with table" and status["step_status"] == "hold"
    assert_hold_at(h.wait_trajectory(1), HOME)
    controller.mode = "ok"  # the world changed: the next chunk passes
    h.wait_trajectory(H, after=len(h.trajectories))
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))


def test_no_safe_stop_engages_the_estop_output_until_the_estop_is_cycled(ros: RosRuntime) -> None:
    controller = ScriptedController(horizon=H)
    controller.mode = "estop"
    controller.reason = "gate: hold: collision ...; NO SAFE STOP: least-bad stop has collision"
    rig = Rig(ros, make_cfg(), controller)
    h = rig.harness
    wait_until(lambda: True in h.estop_requests, 5.0, what="the e-stop request")
    assert h.estop_requests[0] is False  # activation publishes the released state first
    status = h.wait_status(lambda s: s["estop_requested"] and s["reason"].startswith(GATE_ESTOP))
    assert status["state"] == "holding"
    assert_hold_at(h.wait_trajectory(1), HOME)  # the least-bad stop went out
    # Latched: even with a sound controller the node holds until a person cycles the e-stop.
    controller.mode = "ok"
    n_calls = len(controller.observations)
    time.sleep(5 * DT)
    assert len(controller.observations) == n_calls
    h.estop(True)
    h.estop(False)
    wait_until(lambda: h.estop_requests[-1] is False, 5.0, what="the e-stop request released")
    h.wait_status(lambda s: s["state"] == "running", after=len(h.statuses))
    h.wait_trajectory(H, after=len(h.trajectories))


def test_controller_error_holds_with_clear_reason(ros: RosRuntime) -> None:
    controller = ScriptedController(horizon=H)
    controller.mode = "error"
    rig = Rig(ros, make_cfg(), controller)
    status = rig.harness.wait_status(lambda s: s["state"] == "holding" and "controller" in s["reason"])
    assert status["reason"] == "controller error: RuntimeError: policy crashed"


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
    h.wait_trajectory(H)
    assert rig.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert rig.controller.stops[-1][1] == "node deactivated"  # a brake from the fresh state
    n_calls = len(rig.controller.observations)
    time.sleep(4 * DT)
    assert len(rig.controller.observations) == n_calls, "an inactive node must not run the policy"
    assert rig.node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
    assert rig.closed == 1 and rig.node.config is None
    # Reconfigure with a changed parameter and run again.
    assert rig.node.set_parameters([Parameter("n_action_steps", value=2)])[0].successful
    assert rig.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert rig.node.config is not None and rig.node.config.n_action_steps == 2
    assert rig.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_trajectory(H, after=len(h.trajectories))
    assert rig.node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
    assert rig.closed == 2


def test_parameters_are_validated(ros: RosRuntime) -> None:
    node = ros.add(PolicyNode(lambda cfg: None, make_cfg(), context=ros.context))  # type: ignore[arg-type]
    for name, value, match in [
        ("control_rate_hz", -1.0, "control_rate_hz must be a positive"),
        ("joint_names", ["a", "a"], "joint_names has duplicates"),
        ("image_topics", ["/only_one"], "image_topics has 1 entries for 2 camera_names"),
        ("status_topic", "not a topic!", "status_topic: invalid topic name"),
        ("mode", "eventually", "mode must be one of"),
        ("smoothing", "wavelets", "smoothing must be one of"),
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
