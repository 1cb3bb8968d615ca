"""The interface every policy head implements, and the input checks they share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from policies.config import PolicyConfig
from policies.networks import ReplaceableNetworks


class Policy(ReplaceableNetworks, nn.Module, ABC):
    """A policy head: normalized tokens + state in, a normalized action chunk out.

    Subclasses set `name` (the registry key) and implement `compute_loss` and `predict_chunk`.

    Network seam: `predict_chunk` runs its per-call networks (pure tensor functions, listed in
    `network_names`) through instance lookups, so an accelerator (`vla.fastpath`: CUDA graphs,
    `torch.compile`) or a test can substitute them with `replace_networks` and undo it with
    `restore_networks`, while the sampling loop itself (schedulers, prefix inpainting) stays here.
    """

    name: str = ""
    # The methods `predict_chunk` calls once per chunk or per denoising step (see `networks`).
    network_names: tuple[str, ...] = ()

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config

    @abstractmethod
    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch with tokens, token_mask, state and action (B, T, Da).

        Returns a scalar tensor and float metrics. Never mutates `batch`.
        """

    @abstractmethod
    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        prefix: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Predict a normalized action chunk (B, horizon, action_dim) from an observation batch.

        prefix: optional committed actions (B, P, Da), P <= horizon, that the returned chunk keeps
        at its start (for real-time chunking); prefix_mask (B, P) or (B, P, Da) bool selects which
        of them are committed (default: all).
        """

    def reset(self) -> None:
        """Forget per-episode state. The heads here are stateless between chunks; kept for the contract."""

    def build_aux_heads(self, n_pooled: int, d_model: int) -> None:
        """Create the auxiliary MLPs (flattened pooled tokens -> (K, Ds) future states, ->
        (aux_ground_dim,) grounding target) of the enabled auxiliary losses; None for the others."""
        c = self.config
        self.aux_future: nn.Module | None = None
        self.aux_ground: nn.Module | None = None

        def readout(n_out: int) -> nn.Module:  # both MLPs read the flattened pooled tokens alone
            return nn.Sequential(
                nn.Linear(n_pooled * d_model, 256), nn.GELU(), nn.Linear(256, 256), nn.GELU(),
                nn.Linear(256, n_out),
            )  # fmt: skip

        if c.aux_future_weight > 0:
            self.aux_future = readout(len(c.aux_future_offsets) * c.state_dim)
        if c.aux_ground_weight > 0:
            self.aux_ground = readout(c.aux_ground_dim)

    def aux_ground_loss(
        self,
        batch: dict[str, torch.Tensor],
        pool: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor | None:
        """MSE of the named object's (x, y) (S, 2) [and its goal's, (S, 4): `aux_ground_dim`] predicted
        from the pooled tokens of extra scenes.

        Why: the policy must find the object the instruction names in the image, and with frozen
        tokens that takes on the order of thousands of distinct layouts (benchmarks/probe_grounding:
        80% of held-out scenes with 1000, 99.8% with 4000). Demonstrations are costly per layout
        (an expert rollout, ~50 rendered and embedded frames); one rendered frame of a fresh layout
        with its target position is not. `pool` is the head's front end, shared with the action loss.
        """
        if self.aux_ground is None:
            return None
        keys = ("ground_tokens", "ground_token_mask", "ground_text_mask", "ground_target")
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(
                f"{self.name} policy: aux_ground_weight > 0 needs batch keys {list(keys)} (training data with "
                f"grounding scenes), missing {missing}"
            )
        target = batch["ground_target"]
        dim = self.config.aux_ground_dim
        if target.ndim != 2 or target.shape[1] != dim:
            raise ValueError(
                f"{self.name} policy: batch['ground_target'] must be (S, aux_ground_dim={dim}), got "
                f"{tuple(target.shape)}"
            )
        pooled, _ = pool(batch["ground_tokens"], batch["ground_token_mask"], batch["ground_text_mask"])
        return F.mse_loss(self.aux_ground(pooled.flatten(1)), target.to(pooled))

    def aux_future_loss(self, batch: dict[str, torch.Tensor], pooled: torch.Tensor) -> torch.Tensor | None:
        """MSE of the future states (B, K, Ds) predicted from pooled tokens (B, n_pooled, d) alone.

        Why: after the first steps of a demonstration, the state history already says where the arm
        is heading, so the action loss puts little pressure on the image tokens to find the target
        (the named cube). Predicting where the arm will be in 1-2 s from the tokens alone does.
        """
        if self.aux_future is None:
            return None
        fut = batch.get("future_state")
        c = self.config
        want = (pooled.shape[0], len(c.aux_future_offsets), c.state_dim)
        if fut is None or tuple(fut.shape) != want:
            got = None if fut is None else tuple(fut.shape)
            raise ValueError(
                f"{self.name} policy: aux_future_weight > 0 needs batch['future_state'] of shape {want} "
                f"(DataSpec.future_offsets = aux_future_offsets), got {got}"
            )
        pred = self.aux_future(pooled.flatten(1)).view(want)
        return F.mse_loss(pred, fut)

    def loss_noise(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The random draws `compute_loss` makes for a batch of `batch_size` samples (CPU tensors from
        `generator`, else the global torch RNG), each with the batch on dim 0 (keys start "noise_").

        Why: `compute_loss(batch | noise[lo:hi])` uses these instead of drawing its own, so a batch
        split over processes or gradient-accumulation micro-batches sees the same per-sample noise
        as the whole batch in one process (the trainer draws them once per step for the global
        batch and slices). Without them in the batch, `compute_loss` draws as before.
        Base: the state noise (B, To, Ds) when `state_noise_std` > 0.
        """
        c = self.config
        if float(c.state_noise_std) <= 0:
            return {}
        return {"noise_state": torch.randn(batch_size, c.n_obs_steps, c.state_dim, generator=generator)}

    def augment_state(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Training-time state noise: a shallow copy of `batch` with N(0, state_noise_std^2) added to
        the normalized state (B, To, Ds), each step independently; `batch` itself is not mutated.

        Why: in demonstrations the state history already says where the arm is heading, so a head
        can copy the motion from it and ignore the images (the "copycat" shortcut of behaviour
        cloning with proprioception). Independent noise per step hides the velocity and blurs the
        position, so the target must come from the image tokens.
        """
        std = float(self.config.state_noise_std)
        if std <= 0 or not self.training:
            return batch
        state = batch["state"]
        eps = batch.get("noise_state")
        if eps is None:
            eps = torch.randn_like(state)
        return {**batch, "state": state + eps.to(state) * std}

    # ------------------------------------------------------------------ shared checks
    def check_inputs(self, batch: dict[str, torch.Tensor], need_action: bool) -> None:
        """Raise a ValueError naming the key when a batch does not match the config's shapes."""
        c = self.config
        keys = ("tokens", "token_mask", "state", *(("action",) if need_action else ()))
        missing = [k for k in keys if k not in batch]
        if missing:
            raise ValueError(f"{self.name} policy: batch is missing key(s) {missing}; got {sorted(batch)}")
        tokens, mask, state = batch["tokens"], batch["token_mask"], batch["state"]
        if tokens.ndim != 3 or tokens.shape[-1] != c.token_dim:
            raise ValueError(f"batch['tokens'] must be (B, N, {c.token_dim}), got {tuple(tokens.shape)}")
        b, n = tokens.shape[:2]
        if tuple(mask.shape) != (b, n) or mask.dtype != torch.bool:
            raise ValueError(
                f"batch['token_mask'] must be bool ({b}, {n}), got {mask.dtype} {tuple(mask.shape)}"
            )
        # Data-dependent check: skipped under torch.compile, where it would split the graph.
        if not torch.compiler.is_compiling() and not bool(mask.any(dim=1).all()):
            raise ValueError("batch['token_mask'] has a sample with no valid token")
        if tuple(state.shape) != (b, c.n_obs_steps, c.state_dim):
            raise ValueError(
                f"batch['state'] must be ({b}, n_obs_steps={c.n_obs_steps}, state_dim={c.state_dim}), "
                f"got {tuple(state.shape)}"
            )
        if need_action:
            action = batch["action"]
            if tuple(action.shape) != (b, c.horizon, c.action_dim):
                raise ValueError(
                    f"batch['action'] must be ({b}, horizon={c.horizon}, action_dim={c.action_dim}), "
                    f"got {tuple(action.shape)}"
                )

    def check_prefix(
        self, prefix: torch.Tensor, prefix_mask: torch.Tensor | None, batch_size: int
    ) -> torch.Tensor:
        """Validate a committed prefix (B, P, Da); return its mask broadcast to (B, P, Da) bool."""
        c = self.config
        if prefix.ndim != 3 or prefix.shape[0] != batch_size or prefix.shape[2] != c.action_dim:
            raise ValueError(
                f"prefix must be ({batch_size}, P, action_dim={c.action_dim}), got {tuple(prefix.shape)}"
            )
        if prefix.shape[1] > c.horizon:
            raise ValueError(f"prefix length {prefix.shape[1]} exceeds horizon {c.horizon}")
        if prefix_mask is None:
            return torch.ones_like(prefix, dtype=torch.bool)
        if prefix_mask.dtype != torch.bool:
            raise ValueError(f"prefix_mask must be bool, got {prefix_mask.dtype}")
        if prefix_mask.ndim == 2:
            prefix_mask = prefix_mask[..., None]
        try:
            return prefix_mask.expand_as(prefix)
        except RuntimeError as e:
            raise ValueError(
                f"prefix_mask shape {tuple(prefix_mask.shape)} does not match prefix {tuple(prefix.shape)}"
            ) from e


def paste_prefix(chunk: torch.Tensor, prefix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Return `chunk` (B, T, Da) with its first P steps replaced by `prefix` (B, P, Da) where `mask`."""
    p = prefix.shape[1]
    head = torch.where(mask, prefix.to(chunk.dtype), chunk[:, :p])
    return torch.cat([head, chunk[:, p:]], dim=1)
