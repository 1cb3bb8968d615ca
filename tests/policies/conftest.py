"""Tiny head configurations so the policy tests run in seconds on a shared 2-core CPU."""

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
        "n_layers": 1, "dim_feedforward": 64, "num_train_timesteps": 20, "num_inference_steps": 4,
    },
    "transformer": {
        "token_dim": 16, "n_tokens": 8, "horizon": 8, "n_action_steps": 4, "d_model": 32, "n_heads": 2,
        "n_pool_tokens": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "dim_feedforward": 64,
        "latent_dim": 4, "n_vae_encoder_layers": 1,
    },
}  # fmt: skip

# Every registered head, and each architectural variant of it, as (id, name, overrides).
VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    ("diffusion-unet-ddim", "diffusion", {"denoiser": "unet"}),
    ("diffusion-unet-dpmsolver", "diffusion", {"denoiser": "unet", "scheduler": "dpmsolver"}),
    ("diffusion-transformer-ddim", "diffusion", {"denoiser": "transformer"}),
    ("diffusion-transformer-nopool", "diffusion", {"denoiser": "transformer", "token_pool": "none"}),
    ("diffusion-unet-sample-meanpool", "diffusion", {"prediction_type": "sample", "token_pool": "mean"}),
    ("transformer", "transformer", {}),
    ("transformer-cvae", "transformer", {"use_vae": True}),
    ("transformer-nopool", "transformer", {"token_pool": "none"}),
    ("diffusion-unet-textpool", "diffusion", {"denoiser": "unet", "pool_text_cond": True}),
    ("transformer-textpool", "transformer", {"pool_text_cond": True}),
    ("diffusion-unet-spatial", "diffusion", {"token_pool": "spatial_softmax", "tokens_per_camera": 4}),
    (
        "diffusion-transformer-spatial",
        "diffusion",
        {"denoiser": "transformer", "token_pool": "spatial_softmax", "tokens_per_camera": 4},
    ),
    ("transformer-spatial", "transformer", {"token_pool": "spatial_softmax", "tokens_per_camera": 4}),
    (
        "diffusion-unet-spatial-textqueries",
        "diffusion",
        {"token_pool": "spatial_softmax", "tokens_per_camera": 4, "keypoint_text_queries": True},
    ),
    (
        "diffusion-unet-aux-noise",
        "diffusion",
        {"aux_future_weight": 1.0, "aux_future_offsets": (2, 5), "state_noise_std": 0.1},
    ),
    ("transformer-aux-noise", "transformer", {"aux_future_weight": 1.0, "state_noise_std": 0.1}),
    # The grounding loss regressing the named cube and its goal (4 columns).
    ("diffusion-unet-ground4", "diffusion", {"aux_ground_weight": 1.0, "aux_ground_dim": 4}),
    ("transformer-ground2", "transformer", {"aux_ground_weight": 1.0, "aux_ground_dim": 2}),
]


def tiny_config(name: str, **overrides: Any) -> PolicyConfig:
    return make_config(name, {**TINY[name], **overrides}, source="tests")


@pytest.fixture(params=VARIANTS, ids=[v[0] for v in VARIANTS])
def variant(request: pytest.FixtureRequest) -> tuple[str, PolicyConfig]:
    _, name, overrides = request.param
    return name, tiny_config(name, **overrides)


@pytest.fixture
def make_tiny() -> Any:
    """tiny_config as a fixture: make_tiny(name, **overrides) -> PolicyConfig."""
    return tiny_config


@pytest.fixture
def covered_heads() -> set[str]:
    """Registry names the VARIANTS cover."""
    return {name for _, name, _ in VARIANTS}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny models are overhead-bound: one thread is faster on the shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
