"""Build what vla-bench times: devices, the encoder, heads and the full policy (trained or random)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from benchmarks.stack.config import BenchConfig, HeadSpec
from vla.encoders import EncoderConfig, EncoderLoadError, FrozenEncoder, build_encoder


def resolve_devices(spec: str) -> list[str]:
    """auto -> [cuda] or [cpu]; all -> cpu (+ cuda when present); cpu; cuda (raises without CUDA)."""
    has_cuda = torch.cuda.is_available()
    if spec == "auto":
        return ["cuda"] if has_cuda else ["cpu"]
    if spec == "all":
        return ["cpu", "cuda"] if has_cuda else ["cpu"]
    if spec == "cuda" and not has_cuda:
        raise RuntimeError(
            "vla-bench device=cuda: CUDA is not available on this machine (use device=auto|cpu)"
        )
    if spec not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {spec!r}; expected auto | cpu | cuda | all")
    return [spec]


def encoder_for(cfg: BenchConfig, device: str) -> tuple[FrozenEncoder, str]:
    """The encoder on `device`; returns it and "checkpoint <path>" or "random weights (timing only)".

    On CUDA the weights stay in the configured dtype; the fast path adds autocast on top.
    """
    ecfg = dataclasses.replace(cfg.encoder, device=device)
    try:
        return build_encoder(ecfg), f"checkpoint {ecfg.model}"
    except EncoderLoadError as e:
        if not cfg.encoder_random_if_missing:
            raise
        from benchmarks.stack.random_encoder import build_random_siglip

        if ecfg.family != "siglip":
            raise EncoderLoadError(f"{e}\n(vla-bench builds random weights for family 'siglip' only)") from e
        return build_random_siglip(ecfg, seed=cfg.seed), "random weights (timing only; checkpoint not found)"


def head_config(spec: HeadSpec, cfg: BenchConfig, encoder: FrozenEncoder, steps: int | None = None) -> Any:
    """The head's config with the shapes of `encoder`'s tokens for `cfg.cameras` (+ text)."""
    from policies import make_config

    values = {
        **spec.values,
        "token_dim": encoder.dim,
        "n_tokens": encoder.n_tokens_for(len(cfg.cameras)),
        # The token layout the spatial-softmax front end needs (camera blocks, then text).
        "n_cameras": len(cfg.cameras),
        "tokens_per_camera": encoder.tokens_per_image,
        "state_dim": 7,
        "action_dim": 7,
        "n_obs_steps": cfg.n_obs_steps,
        "horizon": cfg.horizon,
        "n_action_steps": cfg.n_action_steps,
    }
    if steps is not None and spec.policy == "diffusion":
        values["num_train_timesteps"] = max(int(values.get("num_train_timesteps", 100)), steps)
        values["num_inference_steps"] = steps
    return make_config(spec.policy, values, source=f"bench heads.{spec.label}")


def build_head(spec: HeadSpec, cfg: BenchConfig, encoder: FrozenEncoder, device: str) -> torch.nn.Module:
    """A head with random weights (seeded), in eval mode on `device`."""
    from policies import make_policy

    torch.manual_seed(cfg.seed)
    return make_policy(spec.policy, head_config(spec, cfg, encoder)).to(device).eval()


def random_normalizer(safety_config: str) -> Any:
    """min-max statistics over the robot's joint position limits (6 arm joints) and gripper [0, 1]."""
    from sim.safety import load_safety_config
    from vla.data import Normalizer

    sc = load_safety_config(safety_config)
    lo = np.append(np.asarray(sc.joint_position.lower, np.float32), 0.0)
    hi = np.append(np.asarray(sc.joint_position.upper, np.float32), 1.0)
    stats = {k: {"min": lo, "max": hi} for k in ("state", "action")}
    return Normalizer(stats)


def build_policy(cfg: BenchConfig, device: str, encoder: FrozenEncoder) -> tuple[Any, str]:
    """The full VLAPolicy on `device`: from `cfg.checkpoint`, else random head weights + the encoder.

    Returns the policy and a description of its weights.
    """
    from vla.policy import PolicyMeta, VLAPolicy
    from vla.processor import Processor

    if cfg.checkpoint:
        from vla.training.checkpoint import resolve_checkpoint

        ckpt = resolve_checkpoint(cfg.checkpoint)
        policy = VLAPolicy.from_checkpoint(ckpt, device=device, seed=cfg.seed)
        # The encoder recorded in the checkpoint, moved to this device.
        if torch.device(policy.encoder.device).type != torch.device(device).type:
            ecfg = EncoderConfig.from_dict({**policy.meta.encoder, "device": device})
            policy = VLAPolicy.from_checkpoint(
                ckpt, device=device, seed=cfg.seed, encoder=build_encoder(ecfg)
            )
        return policy, f"trained checkpoint {ckpt}"
    spec = next(h for h in cfg.heads if h.label == cfg.pipeline_head)
    n_tokens = encoder.n_tokens_for(len(cfg.cameras))
    head = build_head(spec, cfg, encoder, device)
    meta = PolicyMeta(
        cameras=tuple(cfg.cameras),
        use_text=True,
        n_obs_steps=cfg.n_obs_steps,
        horizon=cfg.horizon,
        n_action_steps=cfg.n_action_steps,
        state_dim=7,
        action_dim=7,
        token_dim=encoder.dim,
        n_tokens=n_tokens,
        encoder=encoder.cfg.to_dict(),
        task={"name": cfg.task},
    )
    processor = Processor(
        random_normalizer(cfg.safety_config),
        cameras=meta.cameras,
        use_text=meta.use_text,
        n_obs_steps=meta.n_obs_steps,
        horizon=meta.horizon,
        n_text_tokens=encoder.cfg.max_text_len,
    )
    policy = VLAPolicy(head, encoder, processor, meta, device=device, seed=cfg.seed)
    return policy, f"random weights ({spec.label} head; timing only)"
