"""The shape contract every policy head shares, and the fake batches built from it.

A `PolicyConfig` carries the shapes between the encoder/dataset and a head (names from
Diffusion Policy: `n_obs_steps` = To, `horizon` = T, `n_action_steps` = Ta) plus the options every
head has (token pooling front end, EMA). Each head subclasses it and validates in `__post_init__`.
Configs are plain data: `to_dict()` / `from_dict()` round-trip through JSON for checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

TOKEN_POOLS = ("attention", "spatial_softmax", "mean", "none")
TEXT_POOLS = ("mean", "attention")
# State offsets [control steps] of the auxiliary future-state loss (0.8, 1.6, 2.4 s at 20 Hz).
DEFAULT_AUX_FUTURE_OFFSETS = (16, 32, 48)
# The auxiliary grounding target's columns, normalized: the named object's (x, y) on the table,
# then where it must end (x, y) (PolicyConfig.aux_ground_dim picks the first 2 or all 4).
GROUND_TARGET_DIMS = (2, 4)


@dataclass(kw_only=True)
class PolicyConfig:
    """Shapes and shared options of a policy head.

    Batch contract (everything already normalized by the caller):
        tokens      (B, N, token_dim) float   encoder tokens
        token_mask  (B, N) bool               True = valid token
        text_mask   (B, N) bool, optional     True = valid instruction text token (pool_text_cond)
        state       (B, n_obs_steps, state_dim) float
        action      (B, horizon, action_dim) float   (training only)

    Training only, with aux_ground_weight > 0 (S extra scenes, any S):
        ground_tokens, ground_token_mask, ground_text_mask   (S, N', ...) as tokens/token_mask/text_mask
        ground_target (S, aux_ground_dim) float   the named object's normalized (x, y) [, its goal's]
    """

    name: ClassVar[str] = ""

    token_dim: int = 256
    state_dim: int = 7
    action_dim: int = 7
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    # Tokens per sample in fake batches (tests, warm-up); real batches may carry any N.
    n_tokens: int = 32
    # Front end that reduces many encoder tokens to a few: learned-query attention pooling,
    # a masked mean (one token), or none (all tokens go through; only heads that attend to them).
    # "spatial_softmax" (instruction-conditioned keypoints per camera, `policies.layers.SpatialKeypoints`)
    # needs the image token layout: n_cameras blocks of tokens_per_camera tokens (a square patch grid),
    # then the text tokens. The entry point fills both from the encoder; n_pool_tokens is then the
    # number of keypoints per camera.
    token_pool: str = "attention"
    n_pool_tokens: int = 8
    n_cameras: int = 1
    tokens_per_camera: int = 0
    # Attention pooling only: add a projection of the text tokens' mean to the pooling queries so
    # the instruction selects the image patches (needs `text_mask` in the batch). Off by default so
    # checkpoints written before it load unchanged. Ignored by "mean" (no queries) and "none" (the
    # head attends to the text tokens itself), so experiment overrides may turn it on for any pool.
    pool_text_cond: bool = False
    # How the spatial_softmax front end reads the instruction's text tokens: "mean" (their masked
    # mean, as checkpoints written before this field have it) or "attention" (n_text_queries learned
    # queries over the text tokens, concatenated). A mean blurs which word plays which role ("the
    # red cube on the blue pad" and "the blue cube on the red pad" differ only in order): on a text
    # probe of the held-out phrasings the mean recovered the second referent in 65% of them, the
    # attention pool in 99% (ARCHITECTURE.md, "Token front ends").
    text_pool: str = "mean"
    n_text_queries: int = 4
    # spatial_softmax only: each keypoint's heatmap query also depends on the instruction (a linear
    # map of the pooled text per keypoint, `SpatialKeypoints.text_queries`), not only through the
    # FiLM all keypoints of a camera share. Off: checkpoints written before it load unchanged.
    keypoint_text_queries: bool = False
    # Gaussian noise (normalized units) added to the state in compute_loss only (Policy.augment_state).
    state_noise_std: float = 0.0
    # Auxiliary loss (weight > 0): an MLP predicts the normalized state at t + each offset from the
    # front end's tokens ALONE (no state input), so the tokens must say where the arm will go
    # (Policy.aux_future_loss). Training batches then carry future_state (B, K, Ds).
    aux_future_weight: float = 0.0
    aux_future_offsets: tuple[int, ...] = DEFAULT_AUX_FUTURE_OFFSETS
    # Auxiliary grounding loss (weight > 0): an MLP predicts the (x, y) of the object the instruction
    # names from the front end's tokens of extra single-frame scenes (Policy.aux_ground_loss). Those
    # scenes are cheap (one rendered frame each, no expert rollout), so the front end sees many more
    # layouts than the demos hold. Training batches then carry the ground_* keys (see fake_batch).
    aux_ground_weight: float = 0.0
    # 2: the target is the named object's (x, y); 4: also where the instruction says it must end
    # (the pad, the bottom cube, the pushed-to point), the second referent of place/stack/push.
    aux_ground_dim: int = 2
    # EMA of the weights, maintained by the trainer and used for inference.
    use_ema: bool = False
    ema_power: float = 0.75
    ema_max_decay: float = 0.9999
    ema_update_after_step: int = 0

    def __post_init__(self) -> None:
        for f in ("token_dim", "state_dim", "action_dim", "n_obs_steps", "horizon", "n_action_steps"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"{type(self).__name__}.{f} must be >= 1, got {getattr(self, f)}")
        if self.n_action_steps > self.horizon:
            raise ValueError(
                f"{type(self).__name__}.n_action_steps ({self.n_action_steps}) must be <= horizon ({self.horizon})"
            )
        if self.n_tokens < 1:
            raise ValueError(f"{type(self).__name__}.n_tokens must be >= 1, got {self.n_tokens}")
        if self.token_pool not in TOKEN_POOLS:
            raise ValueError(
                f"{type(self).__name__}.token_pool must be one of {TOKEN_POOLS}, got {self.token_pool!r}"
            )
        if self.token_pool == "spatial_softmax":
            n_img = self.n_cameras * self.tokens_per_camera
            if self.n_cameras < 1 or self.tokens_per_camera < 1 or n_img > self.n_tokens:
                raise ValueError(
                    f"{type(self).__name__}: token_pool='spatial_softmax' needs n_cameras >= 1 and "
                    f"tokens_per_camera >= 1 with n_cameras * tokens_per_camera <= n_tokens, got "
                    f"{self.n_cameras}, {self.tokens_per_camera}, n_tokens={self.n_tokens}"
                )
        if self.text_pool not in TEXT_POOLS:
            raise ValueError(
                f"{type(self).__name__}.text_pool must be one of {TEXT_POOLS}, got {self.text_pool!r}"
            )
        if self.n_text_queries < 1:
            raise ValueError(f"{type(self).__name__}.n_text_queries must be >= 1, got {self.n_text_queries}")
        if self.token_pool in ("attention", "spatial_softmax") and self.n_pool_tokens < 1:
            raise ValueError(f"{type(self).__name__}.n_pool_tokens must be >= 1, got {self.n_pool_tokens}")
        if not 0.0 <= self.ema_max_decay < 1.0:
            raise ValueError(
                f"{type(self).__name__}.ema_max_decay must be in [0, 1), got {self.ema_max_decay}"
            )
        if self.aux_future_weight < 0 or any(int(o) < 1 for o in self.aux_future_offsets):
            raise ValueError(
                f"{type(self).__name__}: aux_future_weight must be >= 0 and aux_future_offsets >= 1, got "
                f"{self.aux_future_weight}, {self.aux_future_offsets}"
            )
        if self.aux_future_weight > 0 and not self.aux_future_offsets:
            raise ValueError(f"{type(self).__name__}.aux_future_offsets is empty with aux_future_weight > 0")
        if self.aux_ground_weight < 0:
            raise ValueError(
                f"{type(self).__name__}.aux_ground_weight must be >= 0, got {self.aux_ground_weight}"
            )
        if self.aux_ground_dim not in GROUND_TARGET_DIMS:
            raise ValueError(
                f"{type(self).__name__}.aux_ground_dim must be one of {GROUND_TARGET_DIMS}, got {self.aux_ground_dim}"
            )
        if self.state_noise_std < 0:
            raise ValueError(
                f"{type(self).__name__}.state_noise_std must be >= 0, got {self.state_noise_std}"
            )
        if self.ema_power <= 0:
            raise ValueError(f"{type(self).__name__}.ema_power must be > 0, got {self.ema_power}")

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field (the registry name is stored beside it, not in it)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> PolicyConfig:
        """Build from a dict, raising on unknown keys (naming `source` and the key)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown} for {cls.__name__}; known fields: {sorted(known)}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    # ------------------------------------------------------------------ fake data from the spec
    def fake_obs(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A random observation batch that satisfies this config's shapes.

        Returns tokens (B, n_tokens, token_dim), token_mask (B, n_tokens) with the last quarter of
        odd samples' tokens masked out (so masking is exercised), text_mask (B, n_tokens) marking
        the valid tokens of the second half (after the camera blocks, for spatial_softmax) as text (image tokens first, then text, as the
        pipeline lays them out), state (B, n_obs_steps, state_dim).
        """
        b, n = batch_size, self.n_tokens
        mask = torch.ones(b, n, dtype=torch.bool)
        if n >= 4:
            mask[1::2, n - n // 4 :] = False
        text_mask = mask.clone()
        n_img = self.n_cameras * self.tokens_per_camera if self.token_pool == "spatial_softmax" else n // 2
        text_mask[:, :n_img] = False
        return {
            "tokens": torch.randn(b, n, self.token_dim, generator=generator),
            "token_mask": mask,
            "text_mask": text_mask,
            "state": torch.randn(b, self.n_obs_steps, self.state_dim, generator=generator),
        }

    def fake_batch(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """`fake_obs` plus action (B, horizon, action_dim) in [-1, 1]."""
        batch = self.fake_obs(batch_size, generator)
        batch["action"] = torch.rand(batch_size, self.horizon, self.action_dim, generator=generator) * 2 - 1
        if self.aux_future_weight > 0:
            k = len(self.aux_future_offsets)
            batch["future_state"] = torch.rand(batch_size, k, self.state_dim, generator=generator) * 2 - 1
        if self.aux_ground_weight > 0:
            scenes = self.fake_obs(batch_size, generator)
            for key in ("tokens", "token_mask", "text_mask"):
                batch[f"ground_{key}"] = scenes[key]
            batch["ground_target"] = torch.randn(batch_size, self.aux_ground_dim, generator=generator)
        return batch
