"""Seeding and the optimizer every training run uses."""

from __future__ import annotations

import random

import numpy as np
import torch

from vla.training.config import TrainConfig


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (call before building the policy for reproducible init)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (seed the legacy global stream too)
    torch.manual_seed(seed)


def make_optimizer(policy: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not on biases, norms, embeddings-as-vectors)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # FSDP2's sharded parameters (DTensor) take the default multi-tensor kernel.
    # The fused kernel is 4.5x faster than the per-parameter loop on CPU (21 -> 4.7 ms a step for
    # 5.7 M parameters, the sim_cpu diffusion head's size, 1 thread): ~12% of a training step.
    from torch.distributed.tensor import DTensor

    fused = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") and not isinstance(p, DTensor)
        for p in params
    )
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, fused=fused)
