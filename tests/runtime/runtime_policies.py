"""Chunk policies for the runtime tests: the sim expert and a tiny real (untrained) diffusion head."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

import sim
from policies import make_config, make_policy
from vla.runtime import ExpertChunkPolicy

PERIOD = 0.05  # the default 20 Hz control rate

TINY_DIFFUSION: dict[str, Any] = {
    "token_dim": 16, "n_tokens": 8, "horizon": 16, "n_action_steps": 8, "d_model": 32, "n_heads": 2,
    "n_pool_tokens": 2, "down_dims": (16, 32), "n_groups": 4, "diffusion_step_embed_dim": 16,
    "num_train_timesteps": 20, "num_inference_steps": 4,
}  # fmt: skip


def expert_policy(env: Any, horizon: int = 16) -> ExpertChunkPolicy:
    return ExpertChunkPolicy(sim.make_expert(env), horizon=horizon)


class HeadChunkPolicy:
    """A real (untrained) diffusion head as a ChunkPolicy: small joint offsets around the state.

    Actions are `anchor + scale * head_output` with the anchor the latest state, an invertible
    map, so a committed prefix is passed to the head in its own (normalized) units and inpainted.
    Sampling noise is seeded by the observation step, so equal inputs give equal chunks.
    Records every call's (step, prefix, chunk) for the tests.
    """

    def __init__(self, scale: float = 0.02, **overrides: Any) -> None:
        torch.manual_seed(0)
        self.config = make_config("diffusion", {**TINY_DIFFUSION, **overrides}, source="tests/runtime")
        self.head = make_policy("diffusion", self.config).eval()
        g = torch.Generator().manual_seed(1)
        self.tokens = torch.randn(1, self.config.n_tokens, self.config.token_dim, generator=g)
        self.scale = scale
        self.calls: list[tuple[int, np.ndarray | None, np.ndarray]] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.calls = []

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None) -> np.ndarray:
        state = np.asarray(obs["state"], np.float32)  # (To, 7)
        anchor = state[-1]
        batch = {
            "tokens": self.tokens,
            "token_mask": torch.ones(1, self.config.n_tokens, dtype=torch.bool),
            "state": torch.from_numpy(state)[None],
        }
        pre = None if prefix is None else torch.from_numpy((prefix - anchor) / self.scale)[None].float()
        g = torch.Generator().manual_seed(int(obs["step"]))
        out = self.head.predict_chunk(batch, prefix=pre, generator=g)[0].numpy()
        chunk = (anchor + self.scale * out).astype(np.float32)
        chunk[:, 6] = np.clip(chunk[:, 6], 0.0, 1.0)
        self.calls.append((int(obs["step"]), None if prefix is None else prefix.copy(), chunk.copy()))
        return chunk
