"""Tiny policies and a map-style fake dataset for the training-library tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

from policies import PolicyConfig, make_config

TINY: dict[str, dict[str, Any]] = {
    "diffusion": {
        "token_dim": 16, "n_tokens": 8, "horizon": 8, "n_action_steps": 4, "d_model": 32, "n_heads": 2,
        "n_pool_tokens": 2, "down_dims": (16, 32), "n_groups": 4, "diffusion_step_embed_dim": 16,
        "n_layers": 1, "dim_feedforward": 64, "num_train_timesteps": 20, "num_inference_steps": 3,
    },
    "transformer": {
        "token_dim": 16, "n_tokens": 8, "horizon": 8, "n_action_steps": 4, "d_model": 32, "n_heads": 2,
        "n_pool_tokens": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "dim_feedforward": 64,
        "latent_dim": 4, "n_vae_encoder_layers": 1, "dropout": 0.1,
    },
}  # fmt: skip


class FakeDataset(torch.utils.data.Dataset):
    """n samples drawn once from the config's fake batch (deterministic per index)."""

    def __init__(self, cfg: PolicyConfig, n: int = 24) -> None:
        self.batch = cfg.fake_batch(n, torch.Generator().manual_seed(123))
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.batch.items()}


@pytest.fixture
def tiny() -> Any:
    """tiny(name, **overrides) -> PolicyConfig."""

    def build(name: str, **overrides: Any) -> PolicyConfig:
        return make_config(name, {**TINY[name], **overrides}, source="tests")

    return build


@pytest.fixture
def fake_dataset() -> type[FakeDataset]:
    return FakeDataset


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models are overhead-bound: one thread is faster on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
