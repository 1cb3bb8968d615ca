"""`vla-deploy checkpoint=<run dir> robot=sim|ros [source=expert] [n_episodes=N]`: the policy node over ROS 2.

Composes `configs/deploy.yaml` (+ `configs/robot/<sim|ros>.yaml`, `configs/task/<name>.yaml`),
saves the resolved config as `<out_dir>/deploy.yaml` and calls `vla.deploy.launch.run_deploy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig
from vla.cli.app import Command, entry

COMMAND = Command(
    prog="vla-deploy",
    config="deploy",
    summary="run a trained policy as a ROS 2 node behind the world-model safety gate, on a simulated (robot=sim) or real (robot=ros) robot",
    examples=(
        "vla-deploy checkpoint=outputs/train/<run> robot=sim n_episodes=20",
        "vla-deploy source=expert robot=sim   # check the bridge without a model",
        "vla-deploy checkpoint=outputs/train/<run> robot=ros   # the policy node for the real arm",
    ),
)


# Task-config fields that belong to the robot's cameras / images, set from the robot config instead.
_IMAGE_FIELDS = ("image_size", "cameras", "render_images")


def checkpoint_task(path: str) -> dict[str, Any] | None:
    """The task (name, env fields) a checkpoint recorded in its shape_meta.json; None if unreadable
    (the policy factory then names the problem)."""
    import json

    from vla.training.checkpoint import resolve_checkpoint

    try:
        meta = json.loads((resolve_checkpoint(path) / "shape_meta.json").read_text())
    except (OSError, ValueError):
        return None
    task = meta.get("task") if isinstance(meta, dict) else None
    return task if isinstance(task, dict) else None


def to_deploy_config(cfg: DictConfig) -> Any:
    """Resolved Hydra config -> `vla.deploy.launch.DeployConfig` (validated there)."""
    from vla.deploy.factories import DEFAULT_SAFETY
    from vla.deploy.launch import DeployConfig
    from vla.runtime.inject import InferenceDelay

    r = OmegaConf.to_container(cfg, resolve=True)
    robot, task, node = r["robot"], r["task"], dict(r["node"])
    if "backend" not in robot:
        raise ValueError(f"configs/robot/{robot.get('name')}.yaml: vla-deploy needs robot=sim or robot=ros")
    task_env = dict(task.get("env") or {})
    if r["source"] == "checkpoint" and robot["backend"] == "sim" and r.get("checkpoint"):
        # Like vla-eval: the simulated world is the one the policy was trained in (image size,
        # cameras, distractors ...), as its checkpoint recorded it.
        recorded = checkpoint_task(str(r["checkpoint"]))
        if recorded and recorded.get("name") == task["name"]:
            task_env.update(recorded.get("env") or {})
            if task_env.get("cameras") and node.get("camera_names") == list(robot.get("camera_names") or []):
                node["camera_names"] = list(task_env["cameras"])
    if r.get("instruction") and robot["backend"] != "sim":
        node["instruction"] = str(r["instruction"])  # the real robot: the node's initial instruction
    env_overrides = {k: v for k, v in task_env.items() if k not in _IMAGE_FIELDS}
    env_overrides.update(r.get("env_overrides") or {})
    image_size = robot.get("image_size") or task_env.get("image_size") or 96
    if float(env_overrides.get("control_rate_hz", node["control_rate_hz"])) != float(node["control_rate_hz"]):
        raise ValueError(
            f"configs/task/{task['name']}.yaml: env.control_rate_hz {env_overrides['control_rate_hz']} != "
            f"node.control_rate_hz {node['control_rate_hz']}"
        )
    try:
        policy = PolicyNodeConfig(**node)
        inject = dict(r.get("inject") or {})
        robot_node = RobotNodeConfig(
            camera_names=tuple(node.get("camera_names") or ()),
            command_rate_hz=float(robot["command_rate_hz"]),
            joint_state_rate_hz=float(robot["joint_state_rate_hz"]),
            camera_rate_hz=float(robot.get("camera_rate_hz") or node["control_rate_hz"]),
            sensor_latency_s=float(inject.pop("sensor_latency_ms", 0)) / 1e3,
            actuation_latency_s=float(inject.pop("actuation_latency_ms", 0)) / 1e3,
        )
        delay = InferenceDelay(
            delay_s=float(inject.pop("inference_delay_ms", 0)) / 1e3,
            jitter_s=float(inject.pop("jitter_ms", 0)) / 1e3,
            distribution=str(inject.pop("distribution", "none")),
            seed=int(inject.pop("seed", 0)),
        )
        if inject:
            raise ValueError(f"configs/deploy.yaml inject: unknown keys {sorted(inject)}")
    except TypeError as exc:
        raise ValueError(f"configs/deploy.yaml node: {exc}") from None
    return DeployConfig(
        robot=robot["backend"],
        source=r["source"],
        checkpoint=r.get("checkpoint") or "",
        builder=r["builder"],
        safety_config=r.get("safety_config") or DEFAULT_SAFETY,
        safety_gate=bool(r.get("safety_gate", True)),
        task=task["name"],
        env_overrides=env_overrides,
        image_size=int(image_size),
        policy=policy,
        robot_node=robot_node,
        interface=str(r["interface"]),
        margin_steps=int(r.get("margin_steps", 2)),
        inject=delay,
        n_episodes=int(r["n_episodes"]),
        seed=int(r["seed"]),
        instruction=str(r.get("instruction") or ""),
        episode_timeout_s=float(r["episode_timeout_s"]),
        startup_timeout_s=float(r["startup_timeout_s"]),
        launch=r["launch"],
        out_dir=str(r["out_dir"]),
    )


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    from vla.deploy.launch import run_deploy

    dcfg = to_deploy_config(cfg)
    out = Path(dcfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "deploy.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    run_deploy(dcfg)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
