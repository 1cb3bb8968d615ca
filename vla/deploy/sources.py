"""Chunk policies for deployment (`vla.runtime.protocol.ChunkPolicy`, run by the node's control loop).

- `ExpertChunkSource`: the task's scripted expert as a privileged-information policy. The expert
  needs the simulator's state (object poses), which a policy node never sees in its observation,
  so it runs in the *policy* process on a `WorldReplica` kept in step with the robot process's
  ground truth (`world_state` topic). For each chunk it syncs the replica, rolls the committed
  prefix (real-time chunking) and then the expert out `horizon` control periods in it (the
  expert's waypoint logic sees the predicted motion, as it would in `TabletopEnv`), returns those
  actions and restores the synced state. Everything else (the control loop, the gate, the
  observation over DDS, trajectory execution in the robot process) is the path a trained policy
  takes; only where the chunk comes from differs.
- `load_checkpoint_policy`: a checkpoint's `VLAPolicy` (the `vla-eval` policy).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

import sim
from vla.deploy.sim_backend import STATE_SPEC
from vla.deploy.world_replica import WorldReplica, WorldStateListener
from vla.runtime.protocol import ChunkPolicy


class ExpertChunkSource:
    """`ChunkPolicy`: `(obs, prefix) -> (horizon, 7)` absolute joint targets from the scripted expert.

    replica / listener: the policy process's synchronized world (see `vla.deploy.world_replica`).
    horizon: chunk length.
    max_state_age_s: an older ground truth raises, and the loop's caller holds with that reason.
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
        self.n_obs_steps = 1
        self.max_state_age_s = max_state_age_s
        self.reanchor = reanchor
        self.expert = sim.make_expert(replica.env)
        self._episode: int | None = None

    def reset(self) -> None:
        self._episode = None  # the next chunk plans the episode afresh

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None = None) -> np.ndarray:
        ws = self.listener.latest(self.max_state_age_s)
        self.replica.sync(ws)
        if ws.episode != self._episode:
            self.expert.reset()  # plans the new episode's waypoints from its objects
            self._episode = ws.episode
        elif self.reanchor:
            # Plan from where the arm is: chunks run with a pause (inference latency, gate holds,
            # a simulator slower than real time) and continuing an unexecuted command would jump.
            self.expert.reanchor()
        env = self.replica.env
        saved = self.replica.full_state()
        rows: list[np.ndarray] = []
        # The committed prefix runs before this chunk takes over: predict it, then let the expert
        # continue from where it leaves the arm.
        for a in np.asarray(prefix if prefix is not None else np.zeros((0, 7)), np.float64):
            rows.append(a.copy())
            env.step(a)
        if rows and self.reanchor:
            self.expert.reanchor()
        while len(rows) < self.horizon:
            a = np.asarray(self.expert.act(), np.float64)
            rows.append(a)
            env.step(a)
        mujoco.mj_setState(env.model, env.data, saved, STATE_SPEC)
        mujoco.mj_forward(env.model, env.data)
        return np.stack(rows)


PolicyBuilder = Callable[[str], tuple[ChunkPolicy, int]]
"""`builder(run_dir) -> (chunk policy, n_obs_steps)`: encoder + normalizer + head from a checkpoint."""


def load_checkpoint_policy(run_dir: str) -> tuple[ChunkPolicy, int]:
    """Default `PolicyBuilder`: the same `VLAPolicy` (frozen encoder + normalizer + head) `vla-eval` uses.

    Rebuilt from the run/checkpoint directory alone; the encoder fingerprint and the normalizer
    statistics are verified at load (`FingerprintMismatchError` / `MissingStatsError`).
    """
    import torch

    from vla.policy import VLAPolicy

    # On CPU one intra-op thread: beside the robot/simulator process, two threads measured 7-10x
    # slower per chunk on a 2-core machine (they fight the other process). VLA_TORCH_THREADS overrides.
    torch.set_num_threads(int(os.environ.get("VLA_TORCH_THREADS", "1")))
    policy = VLAPolicy.from_checkpoint(run_dir)
    return policy, policy.n_obs_steps
