"""Exponential moving average of a policy's weights (the copy used for inference).

Decay warms up as in diffusers' `EMAModel` / Diffusion Policy: decay(k) = 1 - (1 + k) ** -power,
capped at `max_decay`, where k counts updates after `update_after_step`. Early in training the
average therefore follows the weights closely, later it smooths over ~1 / (1 - decay) steps.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keeps `averaged`, a frozen copy of `model` whose parameters track an EMA of the model's."""

    def __init__(
        self, model: nn.Module, power: float = 0.75, max_decay: float = 0.9999, update_after_step: int = 0
    ) -> None:
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)
        self.power = power
        self.max_decay = max_decay
        self.update_after_step = update_after_step
        self.num_updates = 0  # calls to update(), saved in checkpoints for exact resume

    def decay(self) -> float:
        k = self.num_updates - self.update_after_step
        if k <= 0:
            return 0.0
        return min(self.max_decay, 1.0 - (1.0 + k) ** -self.power)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average toward `model`'s current parameters; buffers are copied."""
        self.num_updates += 1
        d = self.decay()
        for avg, p in zip(self.averaged.parameters(), model.parameters(), strict=True):
            # A sharded parameter (FSDP2's DTensor) is gathered whole: the average is a full copy.
            gather = getattr(p, "full_tensor", None)
            p = gather() if callable(gather) else p
            avg.lerp_(p.detach().to(avg.dtype), 1.0 - d)
        for avg_b, b in zip(self.averaged.buffers(), model.buffers(), strict=True):
            avg_b.copy_(b)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        self.averaged.load_state_dict(state)
        self.num_updates = num_updates
