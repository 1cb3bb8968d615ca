"""Collaborator factories of the policy node, importable by `python -m ros_bridge.run policy --factory`.

Each is called in the node's `on_configure` as `factory(config: PolicyNodeConfig, **kwargs)` and
returns `ros_bridge.interfaces.Collaborators`; `close` releases everything they built.

    vla.deploy.factories:make_expert_collaborators      scripted expert + world-model gate (sim only)
    vla.deploy.factories:make_checkpoint_collaborators  trained checkpoint + world-model gate

The gate is always `sim.safety.SafetyGate` from a safety YAML (`configs/safety/`). In simulation
(`sim_task` given) its world model is the task's own scene and it is synced from the ground truth
(objects included); on hardware it is the robot + table model synced from the joints.
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
from vla.deploy.gate import SafetyChunkGate
from vla.deploy.sources import ChunkPolicySource, ExpertChunkSource
from vla.deploy.world_replica import WorldReplica, WorldStateListener
from vla.deploy.world_topics import DEFAULT_TOPICS
from vla.paths import CONFIG_DIR

DEFAULT_SAFETY = str(CONFIG_DIR / "safety" / "ur5e_default.yaml")


def _closer(*objs: Any):
    def close() -> None:
        for obj in objs:
            if obj is not None:
                obj.close()

    return close


def _collaborators(source: Any, gate: Any, context: Context | None, *owned: Any) -> Collaborators:
    close = _closer(*owned)
    done = []

    def close_once() -> None:
        if not done:
            done.append(True)
            close()

    if context is None:
        # `python -m ros_bridge.run` destroys the node on Ctrl-C without a lifecycle shutdown: stop
        # the background executor before the interpreter finalizes (a live one aborts the process).
        atexit.register(close_once)
    return Collaborators(source=source, gate=gate, close=close_once)


def _sim_gate(
    config: PolicyNodeConfig, safety_config: str, replica: WorldReplica, listener: WorldStateListener
) -> SafetyChunkGate:
    cfg = load_safety_config(Path(safety_config))
    if abs(cfg.control_rate_hz - config.control_rate_hz) > 1e-9:
        raise ValueError(
            f"{safety_config}: control_rate_hz {cfg.control_rate_hz} != the policy node's {config.control_rate_hz}"
        )
    gate = SafetyGate.for_env(replica.env, cfg)

    def full_state():
        replica.sync(listener.latest())
        return gate.env_state(replica.env)  # also copies the episode's static layout (pads)

    return SafetyChunkGate(gate, full_state)


def make_expert_collaborators(
    config: PolicyNodeConfig,
    *,
    task: str = "pick_cube",
    env_overrides: dict[str, Any] | None = None,
    safety_config: str = DEFAULT_SAFETY,
    max_state_age_s: float = 0.5,
    context: Context | None = None,
) -> Collaborators:
    """The scripted expert behind the ChunkSource interface, gated by the world model (simulation only).

    task / env_overrides must match the simulated robot's (`vla.deploy.sim_node.make_sim_robot`).
    """
    listener = WorldStateListener(DEFAULT_TOPICS, context)
    expert_world = gate_world = None
    try:
        expert_world = WorldReplica(task, env_overrides)
        gate_world = WorldReplica(task, env_overrides)
        source = ExpertChunkSource(expert_world, listener, config.n_action_steps, max_state_age_s)
        gate = _sim_gate(config, safety_config, gate_world, listener)
    except Exception:
        _closer(listener, expert_world, gate_world)()
        raise
    return _collaborators(source, gate, context, gate, listener, expert_world, gate_world)


def make_checkpoint_collaborators(
    config: PolicyNodeConfig,
    *,
    builder: str = "vla.deploy.sources:load_checkpoint_policy",
    safety_config: str = DEFAULT_SAFETY,
    sim_task: str | None = None,
    env_overrides: dict[str, Any] | None = None,
    context: Context | None = None,
) -> Collaborators:
    """A trained checkpoint (`config.checkpoint`, a run dir) behind the ChunkSource interface.

    builder: `package.module:function`, `function(run_dir) -> (ChunkPolicy, n_obs_steps)`.
    sim_task: set in simulation so the gate also simulates the objects (ground truth); None on hardware.
    """
    if not config.checkpoint:
        raise ValueError("PolicyNodeConfig.checkpoint is empty: give the run directory of a trained policy")
    policy, n_obs_steps = load_object(builder)(config.checkpoint)
    source = ChunkPolicySource(policy, n_obs_steps)
    close_policy = getattr(policy, "close", None)
    if sim_task is None:
        cfg = load_safety_config(Path(safety_config))
        gate = SafetyChunkGate(SafetyGate(cfg))
        return _collaborators(source, gate, context, gate, _Call(close_policy))
    listener = WorldStateListener(DEFAULT_TOPICS, context)
    world = WorldReplica(sim_task, env_overrides)
    gate = _sim_gate(config, safety_config, world, listener)
    return _collaborators(source, gate, context, gate, listener, world, _Call(close_policy))


class _Call:
    """Wraps an optional close function as an object with `close()`."""

    def __init__(self, fn: Any) -> None:
        self._fn = fn

    def close(self) -> None:
        if callable(self._fn):
            self._fn()
