"""configs/robot/ur5e_2f85.yaml is the single source of joint names and dimensions: the configs
interpolate it, and the simulator model, the safety gate and the ROS/recorder defaults agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vla.paths import CONFIG_DIR

ROBOT = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "robot" / "ur5e_2f85.yaml"))


def test_description_is_consistent() -> None:
    arm = ROBOT["arm_joint_names"]
    assert ROBOT["joint_names"] == [*arm, ROBOT["gripper_joint_name"]]
    assert ROBOT["dataset_joint_names"] == [*arm, "gripper"]
    assert ROBOT["state_dim"] == ROBOT["action_dim"] == len(ROBOT["joint_names"]) == 7


def test_simulator_gate_and_ros_agree_with_the_description() -> None:
    import mujoco

    import sim
    from ros_bridge.config import UR5E_2F85_JOINTS
    from sim.safety import load_safety_config
    from sim.scene import ARM_JOINTS
    from vla.record import DATASET_JOINT_NAMES

    arm = ROBOT["arm_joint_names"]
    assert list(ARM_JOINTS) == arm
    env = sim.make("pick_cube", image_size=32, render_images=False)
    model_joints = {
        mujoco.mj_id2name(env.unwrapped.model, mujoco.mjtObj.mjOBJ_JOINT, i)
        for i in range(env.unwrapped.model.njnt)
    }
    env.close()
    assert set(arm) <= model_joints
    assert list(UR5E_2F85_JOINTS) == ROBOT["joint_names"]
    assert list(DATASET_JOINT_NAMES) == ROBOT["dataset_joint_names"]
    safety = load_safety_config(CONFIG_DIR / "safety" / "ur5e_default.yaml")
    assert len(safety.joint_position.lower) == len(safety.joint_position.upper) == len(arm)


def test_no_other_config_writes_joint_names_out() -> None:
    robot_file = CONFIG_DIR / "robot" / "ur5e_2f85.yaml"
    offenders = [
        str(p.relative_to(CONFIG_DIR))
        for p in sorted(CONFIG_DIR.rglob("*.yaml"))
        if p != robot_file and "shoulder_pan_joint" in p.read_text()
    ]
    assert offenders == []


@pytest.mark.parametrize(
    ("config", "overrides", "path", "want"),
    [
        ("record", [], "recorder.joint_names", "joint_names"),
        ("record", [], "dataset_joint_names", "dataset_joint_names"),
        ("replay", [], "ros.joint_names", "joint_names"),
        ("deploy", ["robot=ros"], "node.joint_names", "joint_names"),
        ("collect", [], "robot.dataset_joint_names", "dataset_joint_names"),
        ("convert", [], "mapping.lowdim.state.names", "joint_names"),
        ("convert", [], "mapping.lowdim.qvel.names", "arm_joint_names"),
    ],
)
def test_configs_take_names_from_the_robot(config: str, overrides: list[str], path: str, want: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config, overrides)
    assert list(OmegaConf.select(cfg, path)) == ROBOT[want]


def test_collected_dataset_uses_the_robot_names(tmp_path: Path) -> None:
    from vla.collect import CollectConfig, collect
    from vla.data import ReplayBuffer

    out = tmp_path / "d.zarr"
    collect(
        CollectConfig(
            task="pick_cube", n_episodes=1, out=str(out), env_overrides={"image_size": 32}, progress=False,
            joint_names=tuple(ROBOT["dataset_joint_names"]),
        )
    )  # fmt: skip
    assert ReplayBuffer.open(out).meta.joint_names == ROBOT["dataset_joint_names"]
    with pytest.raises(ValueError, match="arm joints"):
        collect(
            CollectConfig(
                task="pick_cube", n_episodes=1, out=str(tmp_path / "x.zarr"), joint_names=("a",) * 7
            )
        )
