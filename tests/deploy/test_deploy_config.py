"""The deploy config composes into a valid DeployConfig for robot=sim and robot=ros."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from vla.cli.deploy import to_deploy_config
from vla.paths import CONFIG_DIR


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="deploy", overrides=overrides)


def test_sim_expert_composes() -> None:
    d = to_deploy_config(_compose(["source=expert", "n_episodes=2", "node.camera_names=[front]"]))
    assert (d.robot, d.source, d.task, d.n_episodes) == ("sim", "expert", "pick_cube", 2)
    assert d.policy.camera_names == ("front",) and d.robot_node_config().camera_names == ("front",)
    assert d.robot_node.command_rate_hz == 100.0 and d.policy.control_rate_hz == 20.0
    # Images with every joint state (as simultaneous as in the training data), not once a period.
    assert d.robot_node.camera_rate_hz == d.robot_node.joint_state_rate_hz == 50.0
    camera_20 = to_deploy_config(_compose(["source=expert", "robot.camera_rate_hz=20"]))
    assert camera_20.robot_node.camera_rate_hz == 20.0
    assert "image_size" not in d.env_overrides and d.env_overrides["max_steps"] == 100
    assert d.safety_config.endswith("configs/safety/ur5e_default.yaml")
    # vla-eval's seeds and the deployment recipe: the async loop with real-time chunking.
    assert d.seed == 100_000 and (d.policy.mode, d.policy.smoothing, d.policy.n_action_steps) == (
        "async",
        "rtc",
        8,
    )
    assert not d.inject.active and d.interface == "trajectory"
    assert d.policy_node_config().trajectory_topic and not d.policy_node_config().forward_command_topic


def test_injected_timing_and_forward_interface_compose() -> None:
    d = to_deploy_config(
        _compose(
            [
                "source=expert",
                "inject.inference_delay_ms=300",
                "inject.jitter_ms=20",
                "inject.distribution=normal",
                "inject.sensor_latency_ms=20",
                "interface=forward",
                "mode=sync",
                "smoothing=none",
            ]
        )
    )
    assert (d.inject.delay_s, d.inject.jitter_s, d.inject.distribution) == (0.3, 0.02, "normal")
    assert d.robot_node_config().sensor_latency_s == 0.02 and d.robot_node_config().actuation_latency_s == 0.0
    node = d.policy_node_config()
    assert (
        node.forward_command_topic == d.robot_node_config().forward_command_topic
        and not node.trajectory_topic
    )
    assert (node.mode, node.smoothing) == ("sync", "none")
    _, kwargs = d.policy_factory()
    assert kwargs["interface"] == "forward" and kwargs["inject"]["delay_s"] == 0.3


def test_checkpoint_ros_composes() -> None:
    d = to_deploy_config(_compose(["robot=ros", "checkpoint=runs/x"]))
    assert (d.robot, d.source, d.policy_node_config().checkpoint) == ("ros", "checkpoint", "runs/x")
    name, kwargs = d.policy_factory()
    assert name.endswith("make_checkpoint_collaborators") and "sim_task" not in kwargs


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "checkpoint is empty"),
        (["source=expert", "robot=ros"], "needs robot='sim'"),
        (["source=oracle"], "source must be one of"),
        (["robot=ur5e_2f85", "source=expert"], "robot=sim or robot=ros"),
        (["source=expert", "mode=sync", "smoothing=rtc"], "needs mode 'async'"),
        (["source=expert", "+inject.latency_ms=3"], "inject: unknown keys"),
        (["source=expert", "interface=serial"], "interface must be one of"),
        (["robot=ros", "checkpoint=runs/x", "safety_gate=false"], "simulation studies only"),
    ],
)
def test_bad_deploy_configs_raise(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_deploy_config(_compose(overrides))


def test_simulated_world_is_the_checkpoints(tmp_path) -> None:
    """Like vla-eval, a sim deployment renders and builds the world the checkpoint was trained in."""
    import json

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    (ckpt / "model.safetensors").write_text("")
    env = {"image_size": 80, "cameras": ["wrist"], "n_distractors": 1, "control_rate_hz": 20.0}
    (ckpt / "shape_meta.json").write_text(json.dumps({"task": {"name": "pick_cube", "env": env}}))
    d = to_deploy_config(_compose([f"checkpoint={ckpt}"]))
    assert d.image_size == 80 and d.env_overrides["n_distractors"] == 1
    assert d.policy.camera_names == ("wrist",) and d.robot_node_config().camera_names == ("wrist",)
    # Explicit choices still win.
    d = to_deploy_config(
        _compose([f"checkpoint={ckpt}", "robot.image_size=64", "+env_overrides.n_distractors=0"])
    )
    assert d.image_size == 64 and d.env_overrides["n_distractors"] == 0


def test_instruction_override_and_eval_seeds() -> None:
    """`instruction=` replaces the sampled one in sim episodes and is the node's initial one on a
    real robot; the default seeds are vla-eval's (100000...), not the demos' (0...)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vla.paths import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        eval_seed = hydra_compose(config_name="eval", overrides=["checkpoint=x"]).seed
    d = to_deploy_config(_compose(["source=expert", "instruction=pick up the red cube"]))
    assert d.instruction == "pick up the red cube" and d.policy.instruction == ""
    assert d.seed == eval_seed == 100_000
    d = to_deploy_config(_compose(["robot=ros", "checkpoint=runs/x", "instruction=pick up the red cube"]))
    assert d.policy.instruction == "pick up the red cube"
