"""Learning-rate schedule as a plain function of the step (nothing to save for resume)."""

from __future__ import annotations

import math


def lr_at(step: int, base_lr: float, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """Linear warmup from 0 over `warmup_steps`, then cosine decay to `base_lr * min_lr_ratio` at
    `total_steps` (held there afterwards). `step` counts optimizer steps already taken (0-based)."""
    min_lr = base_lr * min_lr_ratio
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
