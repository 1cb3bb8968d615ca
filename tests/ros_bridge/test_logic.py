"""Pure logic of the bridge: trajectory interpolation, watchdog reasons, config validation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig, from_parameters, to_dict
from ros_bridge.run import load_config, load_object
from ros_bridge.trajectory import TrajectoryFollower
from ros_bridge.watchdog import hold_reasons

pytestmark = pytest.mark.ros


def test_follower_interpolates_linearly_then_holds() -> None:
    f = TrajectoryFollower(np.zeros(2))
    np.testing.assert_array_equal(f.sample(5.0), [0.0, 0.0])
    f.start(10.0, np.array([0.0, 0.0]), np.array([0.1, 0.3]), np.array([[1.0, 2.0], [3.0, 2.0]]))
    np.testing.assert_allclose(f.sample(10.0), [0.0, 0.0])
    np.testing.assert_allclose(f.sample(10.05), [0.5, 1.0])
    np.testing.assert_allclose(f.sample(10.1), [1.0, 2.0])
    np.testing.assert_allclose(f.sample(10.2), [2.0, 2.0])
    np.testing.assert_allclose(f.sample(99.0), [3.0, 2.0])
    assert f.end_time == pytest.approx(10.3)
    f.start(20.0, np.array([3.0, 2.0]), np.zeros(0), np.zeros((0, 2)))  # empty: stop and hold
    np.testing.assert_allclose(f.sample(25.0), [3.0, 2.0])
    f.start(30.0, np.array([3.0, 2.0]), np.array([0.0, 1.0]), np.array([[0.0, 0.0], [1.0, 1.0]]))  # t=0: jump
    np.testing.assert_allclose(f.sample(30.0), [0.0, 0.0])
    np.testing.assert_allclose(f.sample(30.5), [0.5, 0.5])


def test_follower_rejects_bad_times() -> None:
    f = TrajectoryFollower(np.zeros(2))
    with pytest.raises(ValueError, match="strictly increase"):
        f.start(0.0, np.zeros(2), np.array([0.2, 0.2]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="do not match"):
        f.start(0.0, np.zeros(2), np.array([0.2]), np.zeros((1, 3)))


WATCH = dict(max_age_s=0.1, estop=False, instruction="pick up the cube")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        (dict(joint_state_received=9.95, images_received={"front": 9.99}), []),
        (dict(joint_state_received=9.95, images_received={"front": 9.90}), []),  # exactly at the limit: fresh
        (
            dict(joint_state_received=9.80, images_received={"front": 9.99}),
            ["stale joint state (older than 0.100 s)"],
        ),
        (dict(joint_state_received=None, images_received={"front": 9.99}), ["no joint state received yet"]),
        (
            dict(joint_state_received=9.95, images_received={"front": 9.5}),
            ["stale image from camera 'front'"],
        ),
        (
            dict(joint_state_received=9.95, images_received={"front": None}),
            ["no image from camera 'front' yet"],
        ),
        (dict(joint_state_received=9.95, images_received={}, estop=True), ["e-stop engaged"]),
        (dict(joint_state_received=9.95, images_received={}, instruction="  "), ["empty instruction"]),
    ],
)
def test_watchdog_table(kwargs: dict, expected: list[str]) -> None:
    args = {**WATCH, **kwargs}
    reasons = hold_reasons(10.0, **args)
    assert len(reasons) == len(expected)
    for got, want in zip(reasons, expected):
        assert got.startswith(want)


def test_policy_config_defaults_and_validation() -> None:
    cfg = PolicyNodeConfig()
    assert cfg.image_topics == ("/camera/front/image_raw", "/camera/wrist/image_raw")
    assert cfg.max_age_s == pytest.approx(0.1)  # two periods at 20 Hz
    assert PolicyNodeConfig(max_input_age_s=0.5).max_age_s == 0.5
    for kwargs, match in [
        (dict(control_rate_hz=0.0), "control_rate_hz"),
        (dict(joint_names=("a", "a")), "joint_names has duplicates"),
        (dict(joint_names=()), "joint_names must not be empty"),
        (dict(image_topics=("/x",)), "image_topics has 1 entries for 2 camera_names"),
        (dict(trajectory_topic="bad topic"), "trajectory_topic: invalid topic name"),
        (dict(n_action_steps=0), "n_action_steps"),
        (dict(max_input_age_s=-1.0), "max_input_age_s"),
    ]:
        with pytest.raises(ValueError, match=match):
            PolicyNodeConfig(**kwargs)
    with pytest.raises(ValueError, match=r"RobotNodeConfig\.camera_rate_hz"):
        RobotNodeConfig(camera_rate_hz=-5.0)


def test_config_parameter_and_json_round_trip(tmp_path) -> None:
    cfg = PolicyNodeConfig(camera_names=("front",), control_rate_hz=10.0, checkpoint="runs/x")
    assert from_parameters(PolicyNodeConfig, to_dict(cfg)) == cfg
    assert from_parameters(PolicyNodeConfig, {"control_rate_hz": 10}).control_rate_hz == 10.0
    with pytest.raises(ValueError, match=r"unknown parameters \['rate'\]"):
        from_parameters(PolicyNodeConfig, {"rate": 1.0})
    with pytest.raises(ValueError, match="camera_names must be a list of strings"):
        from_parameters(PolicyNodeConfig, {"camera_names": [1, 2]})
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(to_dict(cfg)))
    assert load_config(PolicyNodeConfig, str(path)) == cfg
    path.write_text(json.dumps({"control_rate_hz": -1.0}))
    with pytest.raises(ValueError, match=r"policy.json: PolicyNodeConfig.control_rate_hz"):
        load_config(PolicyNodeConfig, str(path))


def test_load_object_errors() -> None:
    assert load_object("ros_bridge.trajectory:TrajectoryFollower") is TrajectoryFollower
    with pytest.raises(ValueError, match=r"package\.module:callable"):
        load_object("ros_bridge.trajectory")
    with pytest.raises(ValueError, match="has no attribute 'Nope'"):
        load_object("ros_bridge.trajectory:Nope")


def test_mock_hardware_tracks_command_and_checks_inputs() -> None:
    from ros_bridge.mock_hardware import MockHardware, make_mock_hardware

    hw = make_mock_hardware(RobotNodeConfig(camera_names=("front",)), tau=0.05, image_hw=(4, 6))
    assert hw.camera_names == ["front"] and len(hw.joint_names) == 7
    assert hw.render("front").shape == (4, 6, 3)
    target = np.arange(7.0)
    hw.command(target)
    for _ in range(200):
        hw.step(0.01)
    q, qd = hw.read_joints()
    np.testing.assert_allclose(q, target, atol=1e-6)
    assert np.abs(qd).max() < 1e-3
    with pytest.raises(ValueError, match="unknown camera 'top'"):
        hw.render("top")
    with pytest.raises(ValueError, match=r"q0 has shape \(2,\) for 7 joints"):
        MockHardware(q0=(0.0, 0.0))
