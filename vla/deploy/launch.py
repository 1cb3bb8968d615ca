"""Start the nodes of a deployment and run episodes: what `vla-deploy` does, without Hydra.

robot="sim": a simulated robot process (`RobotNode` over `SimRobotBackend` + `SimWorldNode`) and a
policy process (`PolicyNode`), each `python -m ros_bridge.run ...` with this process's environment
(ROS_DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE pass through), then `EpisodeRunner` here.
`launch="single"` composes both nodes in this process instead (one rclpy context, for debugging).
robot="ros": only the policy process, for real hardware; it runs until interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig, to_dict
from vla.deploy.episodes import EpisodeRunner
from vla.deploy.factories import DEFAULT_SAFETY
from vla.evaluation import EpisodeRecord, format_summary, summarize
from vla.runtime.inject import InferenceDelay

ROBOTS = ("sim", "ros")
SOURCES = ("expert", "checkpoint")
LAUNCHES = ("processes", "single")
INTERFACES = ("trajectory", "forward")


@dataclass
class DeployConfig:
    """A deployment.

    robot: "sim" (simulated robot + policy + episodes) or "ros" (policy node only, real hardware).
    source: "expert" (scripted expert, sim only: checks the bridge without a model) or "checkpoint".
    checkpoint: run directory of a trained policy (source="checkpoint").
    builder: `package.module:function(run_dir) -> (ChunkPolicy, n_obs_steps)` for checkpoints.
    task / env_overrides / image_size: the simulated world (ignored for robot="ros").
    safety_gate: False leaves the world-model gate out (robot="sim" only, for comparisons).
    policy / robot_node: the node configs (topics, rates, cameras, Ta, mode, smoothing; the sim
        robot's sensor / actuation latency).
    interface: how commands reach the robot: "trajectory" (JointTrajectory, a joint trajectory
        controller interpolating at `robot_node.command_rate_hz`) or "forward" (Float64MultiArray,
        a forward position controller); the gate's world model executes targets the same way.
    inject: `vla.runtime.inject.InferenceDelay` fields: every policy call lasts at least the drawn
        delay (simulation studies of slower models).
    n_episodes / seed: episode i uses seed + i (vla-eval's seeds). episode_timeout_s: wall-clock
        limit per episode. instruction: replaces each episode's sampled instruction ("" keeps it).
    out_dir: logs, node configs and results.json (vla-eval's schema).
    """

    robot: str = "sim"
    source: str = "checkpoint"
    checkpoint: str = ""
    builder: str = "vla.deploy.sources:load_checkpoint_policy"
    safety_config: str = DEFAULT_SAFETY
    safety_gate: bool = True
    task: str = "pick_cube"
    env_overrides: dict[str, Any] = field(default_factory=dict)
    image_size: int = 64
    policy: PolicyNodeConfig = field(default_factory=PolicyNodeConfig)
    robot_node: RobotNodeConfig = field(default_factory=RobotNodeConfig)
    interface: str = "trajectory"
    margin_steps: int = 2
    inject: InferenceDelay = field(default_factory=InferenceDelay)
    n_episodes: int = 3
    seed: int = 100_000
    instruction: str = ""
    episode_timeout_s: float = 60.0
    startup_timeout_s: float = 60.0
    launch: str = "processes"
    out_dir: str = "outputs/deploy"

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("robot", self.robot, ROBOTS),
            ("source", self.source, SOURCES),
            ("launch", self.launch, LAUNCHES),
            ("interface", self.interface, INTERFACES),
        ):
            if value not in allowed:
                raise ValueError(f"DeployConfig.{name} must be one of {allowed}, got {value!r}")
        if self.source == "expert" and self.robot != "sim":
            raise ValueError(
                "DeployConfig.source='expert' needs robot='sim' (the expert reads simulator state)"
            )
        if self.source == "checkpoint" and not self.checkpoint:
            raise ValueError("DeployConfig.checkpoint is empty: give checkpoint=<run dir> (or source=expert)")
        if self.n_episodes < 1:
            raise ValueError(f"DeployConfig.n_episodes must be >= 1, got {self.n_episodes}")
        if not self.safety_gate and self.robot != "sim":
            raise ValueError(
                "DeployConfig.safety_gate=false is for simulation studies only: anything that can command "
                "hardware goes through the world-model gate (robot=ros)"
            )
        cams = self.robot_node.camera_names
        if self.robot == "sim" and cams and self.policy.camera_names != cams:
            raise ValueError(
                f"DeployConfig: robot cameras {list(self.robot_node.camera_names)} != policy cameras "
                f"{list(self.policy.camera_names)}"
            )

    # -- what each process is started with -----------------------------------------------------
    def policy_factory(self) -> tuple[str, dict[str, Any]]:
        common: dict[str, Any] = {
            "safety_config": self.safety_config if self.safety_gate else None,
            "interface": self.interface,
            "command_rate_hz": self.robot_node.command_rate_hz,
            "inject": dataclasses.asdict(self.inject),
            "margin_steps": self.margin_steps,
        }
        if self.source == "expert":
            return "vla.deploy.factories:make_expert_collaborators", {
                "task": self.task,
                "env_overrides": self.env_overrides,
                **common,
            }
        kwargs: dict[str, Any] = {"builder": self.builder, **common}
        if self.robot == "sim":
            kwargs.update(sim_task=self.task, env_overrides=self.env_overrides)
        return "vla.deploy.factories:make_checkpoint_collaborators", kwargs

    def robot_factory(self) -> tuple[str, dict[str, Any]]:
        return "vla.deploy.sim_node:make_sim_robot", {
            "task": self.task,
            "image_size": self.image_size,
            "env_overrides": self.env_overrides,
            "seed": self.seed,
            "world_rate_hz": self.policy.control_rate_hz,
        }

    def policy_node_config(self) -> PolicyNodeConfig:
        # One command interface: the robot node would otherwise get both and the later one wins.
        trajectory, forward = self._topics()
        return dataclasses.replace(
            self.policy,
            checkpoint=self.checkpoint or self.policy.checkpoint,
            trajectory_topic=trajectory,
            forward_command_topic=forward,
        )

    def robot_node_config(self) -> RobotNodeConfig:
        # Render only what the policy consumes.
        cams = self.robot_node.camera_names or self.policy.camera_names
        # The robot listens on both command topics (the sim world also re-syncs the controller over
        # the trajectory topic after a reset); the policy node publishes on one.
        return dataclasses.replace(self.robot_node, camera_names=cams, image_topics=self.policy.image_topics)

    def _topics(self) -> tuple[str, str]:
        """(trajectory topic, forward topic) the policy node publishes on: one of them is empty."""
        trajectory = self.robot_node.trajectory_topic
        forward = self.robot_node.forward_command_topic
        return (trajectory, "") if self.interface == "trajectory" else ("", forward)


class NodeProcess:
    """`python -m ros_bridge.run <kind> ...` as a child process, logging to `<out_dir>/<kind>.log`."""

    def __init__(self, kind: str, factory: str, kwargs: dict[str, Any], config: Any, out_dir: Path) -> None:
        self.kind = kind
        cfg_path = out_dir / f"{kind}_node.json"
        cfg_path.write_text(json.dumps(to_dict(config), indent=2))
        self.log_path = out_dir / f"{kind}.log"
        self.cmd = [
            sys.executable, "-m", "ros_bridge.run", kind,
            "--factory", factory, "--factory-kwargs", json.dumps(kwargs), "--config", str(cfg_path),
        ]  # fmt: skip
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._log, stderr=subprocess.STDOUT, env=os.environ.copy()
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"the {self.kind} process exited with code {self.proc.returncode}; log {self.log_path}:\n"
                + self.log_path.read_text()[-3000:]
            )

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # the runner handles Ctrl-C and destroys its node
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def run_deploy(cfg: DeployConfig) -> dict[str, Any]:
    """Run a deployment (see module docstring). Returns the summary (robot="sim"), written to results.json."""
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.robot == "ros":
        name, kwargs = cfg.policy_factory()
        proc = NodeProcess("policy", name, kwargs, cfg.policy_node_config(), out)
        print(f"[vla-deploy] policy node running (pid {proc.proc.pid}, log {proc.log_path}); Ctrl-C stops it")
        try:
            proc.proc.wait()
        except KeyboardInterrupt:
            pass
        finally:
            proc.stop()
        return {"robot": "ros", "returncode": proc.proc.returncode}
    if cfg.launch == "single":
        return _run_single(cfg, out)
    return _run_processes(cfg, out)


def _episodes(cfg: DeployConfig, runner: EpisodeRunner, check=lambda: None) -> list[EpisodeRecord]:
    runner.wait_ready(cfg.startup_timeout_s)
    results = []
    for i in range(cfg.n_episodes):
        check()
        r = runner.run_episode(i, cfg.seed + i, cfg.episode_timeout_s, instruction=cfg.instruction or None)
        n_ok = sum(x.success for x in results) + int(r.success)
        print(
            f"[vla-deploy] episode {i + 1}/{cfg.n_episodes} seed {r.seed}: "
            f"{'success' if r.success else 'failure'} in {r.steps} steps ({r.wall_time_s:.1f} s wall, "
            f"{r.misses} missed periods){' TIMEOUT' if r.extra.get('timed_out') else ''} | {n_ok}/{i + 1} so far "
            f"| {r.instruction!r}",
            flush=True,
        )
        results.append(r)
    return results


def _finish(
    cfg: DeployConfig, out: Path, results: list[EpisodeRecord], extra: dict[str, Any]
) -> dict[str, Any]:
    summary = summarize(results, task=cfg.task)  # + the task's diagnostics summary, as vla-eval's
    summary.update(extra)
    summary["config"] = {
        "source": cfg.source,
        "checkpoint": cfg.checkpoint,
        "task": cfg.task,
        "seed": cfg.seed,
        "safety_gate": cfg.safety_gate,
        "interface": cfg.interface,
        "mode": cfg.policy.mode,
        "smoothing": cfg.policy.smoothing,
        "n_action_steps": cfg.policy.n_action_steps,
        "margin_steps": cfg.margin_steps,
        "inject": dataclasses.asdict(cfg.inject),
        "sensor_latency_s": cfg.robot_node.sensor_latency_s,
        "actuation_latency_s": cfg.robot_node.actuation_latency_s,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2, allow_nan=True))
    print(f"[vla-deploy] {cfg.source} on {cfg.task} over ROS 2 ({cfg.launch}): " + format_summary(summary))
    print(f"[vla-deploy] results: {out / 'results.json'}")
    return summary


def _run_processes(cfg: DeployConfig, out: Path) -> dict[str, Any]:
    from ros_bridge.run import RosRuntime

    t0 = time.monotonic()
    name, kwargs = cfg.robot_factory()
    procs = [NodeProcess("robot", name, kwargs, cfg.robot_node_config(), out)]
    try:
        name, kwargs = cfg.policy_factory()
        procs.append(NodeProcess("policy", name, kwargs, cfg.policy_node_config(), out))

        def check() -> None:
            for p in procs:
                p.check_alive()

        with RosRuntime() as ros:
            runner = ros.add(
                EpisodeRunner(
                    instruction_topic=cfg.policy.instruction_topic,
                    status_topic=cfg.policy.status_topic,
                    estop_topic=cfg.policy.estop_topic,
                    context=ros.context,
                )
            )
            try:
                results = _episodes(cfg, runner, check)
            except TimeoutError:
                check()  # a dead child explains a timeout better than the timeout does
                raise
    finally:
        codes = {p.kind: p.stop() for p in procs}
    return _finish(
        cfg, out, results, {"launch": "processes", "exit_codes": codes, "total_wall_s": time.monotonic() - t0}
    )


def _run_single(cfg: DeployConfig, out: Path) -> dict[str, Any]:
    from rclpy.lifecycle import TransitionCallbackReturn

    from ros_bridge.policy_node import PolicyNode
    from ros_bridge.robot_node import RobotNode
    from ros_bridge.run import RosRuntime, load_object

    t0 = time.monotonic()
    backend = None
    try:
        with RosRuntime() as ros:
            rname, rkwargs = cfg.robot_factory()
            rcfg = cfg.robot_node_config()
            backend = load_object(rname)(rcfg, context=ros.context, **rkwargs)
            ros.add(RobotNode(backend, rcfg, context=ros.context))
            pname, pkwargs = cfg.policy_factory()
            factory = partial(load_object(pname), context=ros.context, **pkwargs)
            policy = ros.add(PolicyNode(factory, cfg.policy_node_config(), context=ros.context))
            for step in ("configure", "activate"):
                if getattr(policy, f"trigger_{step}")() != TransitionCallbackReturn.SUCCESS:
                    raise RuntimeError(f"policy node: lifecycle transition '{step}' failed (see its log)")
            runner = ros.add(
                EpisodeRunner(
                    instruction_topic=cfg.policy.instruction_topic,
                    status_topic=cfg.policy.status_topic,
                    estop_topic=cfg.policy.estop_topic,
                    context=ros.context,
                )
            )
            results = _episodes(cfg, runner, ros.check)
            policy.trigger_deactivate()
            policy.trigger_cleanup()
            for companion in backend.companions:  # stop its executor before the context goes
                companion.close()
            backend.companions = []
    finally:
        if backend is not None:
            backend.close()  # after the nodes are gone: nothing ticks it any more
    return _finish(cfg, out, results, {"launch": "single", "total_wall_s": time.monotonic() - t0})
