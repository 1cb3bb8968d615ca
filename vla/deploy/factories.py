"""Collaborator factories of the policy node, importable by `python -m ros_bridge.run policy --factory`.

Each is called in the node's `on_configure` as `factory(config: PolicyNodeConfig, **kwargs)` and
returns `ros_bridge.interfaces.Collaborators` holding a `LoopController`: the control loop
`vla-eval` runs (`vla.runtime.ControlLoop`), scheduled as the node's `mode` / `smoothing` /
`n_action_steps` say, with the world-model gate; `close` releases everything they built.

    vla.deploy.factories:make_expert_collaborators      scripted expert + world-model gate (sim only)
    vla.deploy.factories:make_checkpoint_collaborators  trained checkpoint + world-model gate

The gate is always `sim.safety.SafetyGate` from a safety YAML (`configs/safety/`), its world model
applying the targets the way the robot's controller will (`interface`: a joint trajectory
controller interpolating at `command_rate_hz`, or a forward position controller). In simulation
(`sim_task` given) its world model is the task's own scene and it is synced from the ground truth
(objects included); on hardware it is the robot + table model synced from the joints.
`inject` (simulation studies) makes every policy call last at least a drawn delay
(`vla.runtime.inject.InferenceDelay` fields).
"""

from __future__ import annotations

import atexit
from pathlib import Path
from typing import Any

from rclpy.context import Context

from ros_bridge.config import PolicyNodeConfig
from ros_bridge.interfaces import Collaborators
from ros_bridge.run import load_object
from sim.safety import SafetyGate, load_safety_config
from vla.deploy.controller import LoopController
from vla.deploy.gate import SafetyChunkGate, gate_config_for
from vla.deploy.sources import ExpertChunkSource
from vla.deploy.world_replica import WorldReplica, WorldStateListener
from vla.deploy.world_topics import DEFAULT_TOPICS
from vla.paths import CONFIG_DIR
from vla.runtime import RuntimeConfig
from vla.runtime.inject import DelayedPolicy, InferenceDelay

DEFAULT_SAFETY = str(CONFIG_DIR / "safety" / "ur5e_default.yaml")
EXPERT_HORIZON = 16  # actions per expert chunk (two of the node's default Ta)


def _closer(*objs: Any):
    def close() -> None:
        for obj in objs:
            if obj is not None:
                obj.close()

    return close


def _collaborators(controller: LoopController, context: Context | None, *owned: Any) -> Collaborators:
    close = _closer(controller, *owned)
    done = []

    def close_once() -> None:
        if not done:
            done.append(True)
            close()

    if context is None:
        # `python -m ros_bridge.run` destroys the node on Ctrl-C without a lifecycle shutdown: stop
        # the background executor before the interpreter finalizes (a live one aborts the process).
        atexit.register(close_once)
    return Collaborators(controller=controller, close=close_once)


def _safety(config: PolicyNodeConfig, safety_config: str | None, interface: str, command_rate_hz: float):
    """The gate's config (None: no gate, simulation studies only)."""
    if safety_config is None:
        return None
    cfg = load_safety_config(Path(safety_config))
    if abs(cfg.control_rate_hz - config.control_rate_hz) > 1e-9:
        raise ValueError(
            f"{safety_config}: control_rate_hz {cfg.control_rate_hz} != the policy node's {config.control_rate_hz}"
        )
    return gate_config_for(cfg, interface, command_rate_hz)


def _sim_gate(cfg: Any, replica: WorldReplica, listener: WorldStateListener) -> SafetyChunkGate | None:
    if cfg is None:
        return None
    gate = SafetyGate.for_env(replica.env, cfg)

    def full_state():
        replica.sync(listener.latest())
        return gate.env_state(replica.env)  # also copies the episode's static layout (pads)

    return SafetyChunkGate(gate, full_state)


def _interface(config: PolicyNodeConfig, interface: str | None) -> str:
    """The robot's command interface: as given, else what the node publishes (trajectory first)."""
    if interface is not None:
        return interface
    return "trajectory" if config.trajectory_topic else "forward"


def runtime_config(config: PolicyNodeConfig, n_obs_steps: int, margin_steps: int = 2) -> RuntimeConfig:
    """The control loop's settings from the node's parameters (`mode`, `smoothing`, `n_action_steps`).

    margin_steps: slack on the measured delay for the RTC prefix and the early trigger: a chunk
    ready at the tick after its latency (one step) or a little later than the estimate (jitter of a
    shared CPU) still hands over where the gate planned it, and the queue does not run dry.
    """
    return RuntimeConfig(
        mode=config.mode,
        smoothing=config.smoothing,
        n_obs_steps=n_obs_steps,
        n_action_steps=config.n_action_steps,
        margin_steps=margin_steps,
        threaded=True,
    )


def _delayed(policy: Any, inject: dict[str, Any] | None) -> Any:
    delay = InferenceDelay(**(inject or {}))
    return DelayedPolicy(policy, delay) if delay.active else policy


def make_expert_collaborators(
    config: PolicyNodeConfig,
    *,
    task: str = "pick_cube",
    env_overrides: dict[str, Any] | None = None,
    safety_config: str | None = DEFAULT_SAFETY,
    interface: str | None = None,
    command_rate_hz: float = 100.0,
    inject: dict[str, Any] | None = None,
    margin_steps: int = 2,
    max_state_age_s: float = 0.5,
    context: Context | None = None,
) -> Collaborators:
    """The scripted expert run by the control loop, gated by the world model (simulation only).

    task / env_overrides must match the simulated robot's (`vla.deploy.sim_node.make_sim_robot`).
    """
    listener = WorldStateListener(DEFAULT_TOPICS, context)
    expert_world = gate_world = None
    try:
        cfg = _safety(config, safety_config, _interface(config, interface), command_rate_hz)
        expert_world = WorldReplica(task, env_overrides)
        gate_world = WorldReplica(task, env_overrides)
        source = ExpertChunkSource(
            expert_world, listener, max(EXPERT_HORIZON, config.n_action_steps), max_state_age_s
        )
        gate = _sim_gate(cfg, gate_world, listener)
    except Exception:
        _closer(listener, expert_world, gate_world)()
        raise
    controller = LoopController(
        _delayed(source, inject), runtime_config(config, 1, margin_steps), config.period_s, gate
    )
    return _collaborators(controller, context, gate, listener, expert_world, gate_world)


def make_checkpoint_collaborators(
    config: PolicyNodeConfig,
    *,
    builder: str = "vla.deploy.sources:load_checkpoint_policy",
    safety_config: str = DEFAULT_SAFETY,
    sim_task: str | None = None,
    env_overrides: dict[str, Any] | None = None,
    interface: str | None = None,
    command_rate_hz: float = 100.0,
    inject: dict[str, Any] | None = None,
    margin_steps: int = 2,
    context: Context | None = None,
    grounding_threshold: float | None = 0.12,  # vla.encoders.grounding.DEFAULT_THRESHOLD
) -> Collaborators:
    """A trained checkpoint (`config.checkpoint`, a run dir) run by the control loop, gated.

    builder: `package.module:function`, `function(run_dir) -> (ChunkPolicy, n_obs_steps)`.
    sim_task: set in simulation so the gate also simulates the objects (ground truth); None on hardware.
    grounding_threshold: with a `lit` encoder, each episode's instruction is scored against the first
        camera's first frame and reported on the status topic (`vla.encoders.grounding`); None: off.
    """
    if not config.checkpoint:
        raise ValueError("PolicyNodeConfig.checkpoint is empty: give the run directory of a trained policy")
    cfg = _safety(config, safety_config, _interface(config, interface), command_rate_hz)
    policy, n_obs_steps = load_object(builder)(config.checkpoint)
    close_policy = _Call(getattr(policy, "close", None))
    runtime = runtime_config(config, n_obs_steps, margin_steps)
    grounding = None
    if grounding_threshold is not None and config.camera_names:
        from vla.encoders.grounding import InstructionGrounding  # torch: only with a checkpoint

        grounding = InstructionGrounding.from_encoder(
            getattr(policy, "encoder", None), grounding_threshold, config.camera_names[0]
        )
    if sim_task is None:
        if cfg is None:
            raise ValueError(
                "a policy node for a real robot needs the world-model gate (safety_config is None)"
            )
        gate = SafetyChunkGate(SafetyGate(cfg))
        controller = LoopController(_delayed(policy, inject), runtime, config.period_s, gate, grounding)
        return _collaborators(controller, context, gate, close_policy)
    listener = WorldStateListener(DEFAULT_TOPICS, context)
    world = WorldReplica(sim_task, env_overrides)
    gate = _sim_gate(cfg, world, listener)
    controller = LoopController(_delayed(policy, inject), runtime, config.period_s, gate, grounding)
    return _collaborators(controller, context, gate, listener, world, close_policy)


class _Call:
    """Wraps an optional close function as an object with `close()`."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def close(self) -> None:
        if callable(self._fn):
            self._fn()
