"""Chunk sources for the policy node (`ros_bridge.interfaces.ChunkSource`).

- `ExpertChunkSource`: the task's scripted expert as a privileged-information policy. The expert
  needs the simulator's state (object poses), which a policy node never sees in its `Observation`,
  so it runs in the *policy* process on a `WorldReplica` kept in step with the robot process's
  ground truth (`world_state` topic). For each chunk it syncs the replica, rolls the expert out
  `horizon` control periods in it (the expert's waypoint logic sees the predicted motion, as it
  would in `TabletopEnv`), returns those actions and restores the synced state. Everything else —
  observation over DDS, gate, trajectory execution in the robot process — is the same path a
  trained policy takes; only where the chunk comes from differs.
- `ChunkPolicySource`: any `vla.runtime.protocol.ChunkPolicy` (encoder + normalizer + head from a
  checkpoint) fed from the node's observations through the same `ObservationBuffer` as the
  runtime loop. `load_checkpoint_policy` builds one from a run dir (the `vla-eval` policy).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

import sim
from ros_bridge.interfaces import Observation
from vla.deploy.sim_backend import STATE_SPEC
from vla.deploy.world_replica import WorldReplica, WorldStateListener
from vla.runtime.obs_buffer import ObservationBuffer
from vla.runtime.protocol import ChunkPolicy


class ExpertChunkSource:
    """`(Observation) -> (horizon, 7)` absolute joint targets from the scripted expert.

    replica / listener: the policy process's synchronized world (see `vla.deploy.world_replica`).
    horizon: chunk length (the node executes `n_action_steps` of it; keep them equal so the
        expert's own progress matches what is executed).
    max_state_age_s: an older ground truth raises, and the node holds with that reason.
    reanchor: start each chunk's command from the measured arm pose (see `__call__`).
    """

    def __init__(
        self,
        replica: WorldReplica,
        listener: WorldStateListener,
        horizon: int,
        max_state_age_s: float = 0.5,
        reanchor: bool = True,
    ) -> None:
        if horizon < 1:
            raise ValueError(f"ExpertChunkSource: horizon must be >= 1, got {horizon}")
        self.replica = replica
        self.listener = listener
        self.horizon = horizon
        self.max_state_age_s = max_state_age_s
        self.reanchor = reanchor
        self.expert = sim.make_expert(replica.env)
        self._episode: int | None = None

    def __call__(self, obs: Observation) -> np.ndarray:
        ws = self.listener.latest(self.max_state_age_s)
        self.replica.sync(ws)
        if ws.episode != self._episode:
            self.expert.reset()  # plans the new episode's waypoints from its objects
            self._episode = ws.episode
        elif self.reanchor:
            # Plan from where the arm is, not from the expert's own previous command: chunks are
            # executed with a pause (inference latency, gate holds, a simulator slower than real
            # time), and continuing a command the robot never followed makes ever larger jumps.
            ex, env = self.expert, self.replica.env
            ex.q_cmd = env.data.qpos[env._qadr].copy()
            ex.p_cmd = env.task.pinch_pos()
            ex.yaw_cmd = ex._current_yaw()
            # ... and at the speed it actually moves (after a pause it is slower than the profile).
            vel = np.zeros(6)
            mujoco.mj_objectVelocity(env.model, env.data, mujoco.mjtObj.mjOBJ_SITE, ex.ik.site, vel, 0)
            ex.speed = min(ex.speed, float(np.linalg.norm(vel[3:])))
        env = self.replica.env
        saved = self.replica.full_state()
        chunk = np.empty((self.horizon, 7))
        for i in range(self.horizon):
            chunk[i] = self.expert.act()
            env.step(chunk[i])
        mujoco.mj_setState(env.model, env.data, saved, STATE_SPEC)
        mujoco.mj_forward(env.model, env.data)
        return chunk


def observation_to_raw(obs: Observation) -> dict[str, Any]:
    """A node `Observation` -> the env's observation dict (`image_<cam>`, state (7,), qvel (6,), instruction)."""
    raw: dict[str, Any] = {f"image_{cam}": img for cam, img in obs.images.items()}
    raw["state"] = np.asarray(obs.joint_positions, np.float32)
    raw["qvel"] = np.asarray(obs.joint_velocities[:6], np.float32)
    raw["instruction"] = obs.instruction
    return raw


class ChunkPolicySource:
    """Feeds a `ChunkPolicy` from node observations (history of `n_obs_steps`, padded at the start).

    An episode starts (buffer and `policy.reset()` cleared) when the instruction changes or no chunk
    was asked for `episode_gap_s` seconds (the node held, e.g. while the world was reset).
    """

    def __init__(self, policy: ChunkPolicy, n_obs_steps: int, episode_gap_s: float = 1.0) -> None:
        self.policy = policy
        self.buffer = ObservationBuffer(n_obs_steps)
        self.episode_gap_s = episode_gap_s
        self._instruction: str | None = None
        self._last_call: float | None = None
        self._step = 0
        self._prev_action: np.ndarray | None = None

    def __call__(self, obs: Observation) -> np.ndarray:
        now = time.monotonic()
        gap = self._last_call is not None and now - self._last_call > self.episode_gap_s
        if obs.instruction != self._instruction or gap:
            self.buffer.reset()
            if hasattr(self.policy, "reset"):
                self.policy.reset()
            self._instruction, self._step, self._prev_action = obs.instruction, 0, None
        self._last_call = now
        self.buffer.push(observation_to_raw(obs))
        chunk = np.asarray(self.policy(self.buffer.snapshot(self._step, self._prev_action), None), np.float64)
        if chunk.ndim != 2 or chunk.shape[1] != 7:
            raise ValueError(f"ChunkPolicy returned shape {chunk.shape}, expected (H, 7)")
        self._prev_action = chunk[0].astype(np.float32)
        self._step += 1
        return chunk


PolicyBuilder = Callable[[str], tuple[ChunkPolicy, int]]
"""`builder(run_dir) -> (chunk policy, n_obs_steps)`: encoder + normalizer + head from a checkpoint."""


def load_checkpoint_policy(run_dir: str) -> tuple[ChunkPolicy, int]:
    """Default `PolicyBuilder`: the same `VLAPolicy` (frozen encoder + normalizer + head) `vla-eval` uses.

    Rebuilt from the run/checkpoint directory alone; the encoder fingerprint and the normalizer
    statistics are verified at load (`FingerprintMismatchError` / `MissingStatsError`).
    """
    import torch

    from vla.pipeline.vla_policy import VLAPolicy

    # On CPU one intra-op thread: beside the robot/simulator process, two threads measured 7-10x
    # slower per chunk on a 2-core machine (they fight the other process). VLA_TORCH_THREADS overrides.
    torch.set_num_threads(int(os.environ.get("VLA_TORCH_THREADS", "1")))
    policy = VLAPolicy.from_checkpoint(run_dir)
    return policy, policy.n_obs_steps
