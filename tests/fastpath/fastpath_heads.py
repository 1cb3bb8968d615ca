"""Tiny heads of every kind for the fast-path tests."""

from __future__ import annotations

import torch

TINY = {
    "diffusion_unet": (
        "diffusion",
        dict(
            denoiser="unet",
            d_model=32,
            n_heads=2,
            n_pool_tokens=4,
            down_dims=(16, 32),
            diffusion_step_embed_dim=16,
            n_groups=4,
            num_inference_steps=3,
        ),
    ),
    "diffusion_dit": (
        "diffusion",
        dict(
            denoiser="transformer",
            d_model=32,
            n_heads=2,
            n_pool_tokens=4,
            n_layers=1,
            dim_feedforward=64,
            num_inference_steps=3,
        ),
    ),
    "diffusion_dpm": (
        "diffusion",
        dict(
            denoiser="unet",
            d_model=32,
            n_heads=2,
            n_pool_tokens=4,
            down_dims=(16, 32),
            diffusion_step_embed_dim=16,
            n_groups=4,
            num_inference_steps=3,
            scheduler="dpmsolver",
        ),
    ),
    "transformer": (
        "transformer",
        dict(
            d_model=32, n_heads=2, n_pool_tokens=4, n_encoder_layers=1, n_decoder_layers=1, dim_feedforward=64
        ),
    ),
    "transformer_vae": (
        "transformer",
        dict(
            d_model=32,
            n_heads=2,
            n_pool_tokens=4,
            n_encoder_layers=1,
            n_decoder_layers=1,
            dim_feedforward=64,
            use_vae=True,
            latent_dim=8,
            n_vae_encoder_layers=1,
        ),
    ),
    # instruction-conditioned keypoints: the text mask must reach the accelerated functions
    "diffusion_unet_spatial": (
        "diffusion",
        dict(
            denoiser="unet",
            d_model=32,
            n_heads=2,
            token_pool="spatial_softmax",
            n_pool_tokens=3,
            n_cameras=2,
            tokens_per_camera=4,
            down_dims=(16, 32),
            diffusion_step_embed_dim=16,
            n_groups=4,
            num_inference_steps=3,
        ),
    ),
    "transformer_textpool": (
        "transformer",
        dict(
            d_model=32,
            n_heads=2,
            n_pool_tokens=4,
            n_encoder_layers=1,
            n_decoder_layers=1,
            dim_feedforward=64,
            pool_text_cond=True,
        ),
    ),
}
SHAPES = dict(
    token_dim=24, n_tokens=12, horizon=8, n_action_steps=4, n_obs_steps=2, state_dim=7, action_dim=7
)


def make_head(kind: str, device: str = "cpu") -> torch.nn.Module:
    from policies import make_config, make_policy

    name, values = TINY[kind]
    torch.manual_seed(0)
    return make_policy(name, make_config(name, {**values, **SHAPES})).to(device).eval()
