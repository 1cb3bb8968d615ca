"""`Processor`: the one transform path between robot data and a policy head, saved with the checkpoint.

    proc = Processor(normalizer, cameras=("front", "wrist"), use_text=True, n_obs_steps=2,
                     horizon=16, n_text_tokens=16)
    batch = proc.observation_batch(obs, encoder)     # raw observation -> model batch
    actions = proc.to_robot(head.predict_chunk(batch))  # (B, T, Da) normalized -> robot units

It owns what training and inference must do identically (as LeRobot's processors and openpi's
transforms do): normalization of state and actions, observation-history padding (one rule:
`vla.data.window_frames` / `vla.data.pad_history`, repeat the episode's first frame), the token
layout (cameras in order, then the instruction's text tokens) and the text-token mask. Training
(`vla.training.batches`), `VLAPolicy` (vla-eval, vla-deploy, the fast path) and `vla-bench`
all go through it; `vla-train` writes it to each checkpoint as `processor.json`, and
`Processor.from_checkpoint_files` also rebuilds it from checkpoints written before it existed
(`shape_meta.json` + `normalizer.json`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from vla.data import MissingStatsError, Normalizer, pad_history, window_frames
from vla.encoders import FrozenEncoder

PROCESSOR_FORMAT = "vla-processor/1"


def text_token_mask(mask: torch.Tensor, n_text_tokens: int) -> torch.Tensor:
    """(..., N) token mask -> (..., N) bool, True only for valid tokens among the last `n_text_tokens`."""
    out = torch.zeros_like(mask)
    if n_text_tokens:
        out[..., -n_text_tokens:] = mask[..., -n_text_tokens:]
    return out


def encode_observation(
    enc: FrozenEncoder, images: Mapping[str, np.ndarray], instruction: str, use_text: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (B, N, D) and mask (B, N) of frames {camera: uint8 (B, H, W, 3)} + one instruction.

    The layout of the stored embeddings (cameras in dict order, then text), so training and
    inference see identical token sequences.
    """
    out = enc.encode_images(dict(images))
    if not use_text:
        return out.tokens, out.mask
    b = out.tokens.shape[0]
    text = enc.encode_text([instruction] * b)
    return torch.cat([out.tokens, text.tokens], dim=1), torch.cat([out.mask, text.mask], dim=1)


@dataclass(frozen=True)
class Processor:
    """Raw observation <-> model tensors (see module docstring).

    normalizer: statistics of `state_key` and `action_key` (MissingStatsError when either is missing).
    cameras: cameras whose image tokens the head reads, in token order.
    use_text / n_text_tokens: the instruction's tokens follow the image tokens; n_text_tokens is the
        encoder's text length (0 without text).
    n_obs_steps / horizon: To observations per sample, T actions per chunk.
    """

    normalizer: Normalizer
    cameras: tuple[str, ...]
    use_text: bool
    n_obs_steps: int
    horizon: int
    n_text_tokens: int
    state_key: str = "state"
    action_key: str = "action"

    def __post_init__(self) -> None:
        for key in (self.state_key, self.action_key):
            if key not in self.normalizer:
                raise MissingStatsError(
                    f"Processor: no normalization statistics for {key!r} "
                    f"(covers {sorted(self.normalizer.modes)})"
                )
        if not 1 <= self.n_obs_steps <= self.horizon:
            raise ValueError(
                f"Processor: need 1 <= n_obs_steps <= horizon, got {self.n_obs_steps}, {self.horizon}"
            )
        if self.n_text_tokens < 0 or (not self.use_text and self.n_text_tokens):
            raise ValueError(f"Processor: n_text_tokens={self.n_text_tokens} with use_text={self.use_text}")

    # ------------------------------------------------------------------ history
    def window(self, t: Any, length: Any) -> np.ndarray:
        """Episode-local frames (..., T) of the training windows whose current frame is t."""
        return window_frames(t, length, self.n_obs_steps, self.horizon)

    def history(self, frames: np.ndarray) -> np.ndarray:
        """(k, ...) most recent observations (k >= 1, oldest first) -> (To, ...), padded as in training."""
        return np.stack(pad_history(list(np.asarray(frames)), self.n_obs_steps))

    # ------------------------------------------------------------------ normalization
    def normalize_state(self, x: Any) -> Any:
        return self.normalizer.normalize(self.state_key, x)

    def normalize_action(self, x: Any) -> Any:
        return self.normalizer.normalize(self.action_key, x)

    def to_robot(self, chunk: torch.Tensor | np.ndarray) -> np.ndarray:
        """Normalized actions (..., Da) -> float32 robot units."""
        if isinstance(chunk, torch.Tensor):
            chunk = chunk.detach().float().cpu().numpy()
        return np.asarray(self.normalizer.unnormalize(self.action_key, chunk), dtype=np.float32)

    # ------------------------------------------------------------------ tokens
    def text_mask(self, token_mask: torch.Tensor) -> torch.Tensor:
        return text_token_mask(token_mask, self.n_text_tokens)

    def encode(
        self, encoder: FrozenEncoder, images: Mapping[str, np.ndarray], instruction: str
    ) -> dict[str, torch.Tensor]:
        """tokens (B, N, D), token_mask (B, N), text_mask (B, N) of camera frames {cam: (B, H, W, 3)}."""
        tokens, mask = encode_observation(encoder, images, instruction, self.use_text)
        return {"tokens": tokens, "token_mask": mask, "text_mask": self.text_mask(mask)}

    # ------------------------------------------------------------------ inference
    def state_input(self, obs: Mapping[str, Any]) -> np.ndarray:
        """(To, Ds) normalized float32 state history of an observation (`state`: (k, Ds) or (Ds,))."""
        if self.state_key not in obs:
            raise KeyError(f"observation has no {self.state_key!r}; keys {sorted(obs)}")
        s = np.asarray(obs[self.state_key], dtype=np.float32)
        s = s[None] if s.ndim == 1 else s
        return np.asarray(self.normalize_state(self.history(s)), dtype=np.float32)

    def image_input(self, obs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """{camera: uint8 (1, H, W, 3)}: the latest frame of each of the policy's cameras."""
        out = {}
        for cam in self.cameras:
            key = f"image_{cam}"
            if key not in obs:
                raise KeyError(f"observation has no {key!r} (policy cameras {list(self.cameras)})")
            img = np.asarray(obs[key])
            out[cam] = img[-1:] if img.ndim == 4 else img[None]
        return out

    def observation_batch(
        self, obs: Mapping[str, Any], encoder: FrozenEncoder, device: str | torch.device = "cpu"
    ) -> dict[str, torch.Tensor]:
        """A raw observation (the runtime's `ObservationBuffer.snapshot`: `state`, `image_<cam>`,
        `instruction`) -> the head's batch of one: tokens (1, N, D), token_mask / text_mask (1, N),
        state (1, To, Ds)."""
        instruction = obs.get("instruction", "")
        if self.use_text and not isinstance(instruction, str):
            raise TypeError(f"obs['instruction'] must be a str, got {type(instruction).__name__}")
        batch = self.encode(encoder, self.image_input(obs), instruction)
        batch["state"] = torch.from_numpy(self.state_input(obs))[None]
        return {k: v.to(device) for k, v in batch.items()}

    def prefix_input(self, prefix: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
        """(P, Da) committed actions in robot units -> (1, P, Da) normalized (real-time chunking)."""
        p = self.normalize_action(np.asarray(prefix, dtype=np.float32))
        return torch.from_numpy(np.asarray(p, dtype=np.float32))[None].to(device)

    # ------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "normalizer"}
        d["cameras"] = list(self.cameras)
        return {"format": PROCESSOR_FORMAT, **d, "normalizer": self.normalizer.state_dict()}

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any] | None, source: str) -> Processor:
        """Rebuild from `state_dict()`; errors name `source` (the file) and the field."""
        if not d:
            raise MissingStatsError(f"{source}: no processor (normalization statistics) recorded")
        if d.get("format") != PROCESSOR_FORMAT:
            raise ValueError(f"{source}: format {d.get('format')!r}, this code reads {PROCESSOR_FORMAT!r}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - fields - {"format"})
        if unknown:
            raise ValueError(f"{source}: unknown field(s) {unknown}")
        try:
            normalizer = Normalizer.from_state_dict(d["normalizer"])
        except Exception as e:
            raise MissingStatsError(f"{source}: unusable normalization statistics: {e}") from e
        values = {k: v for k, v in d.items() if k in fields and k != "normalizer"}
        try:
            return cls(normalizer=normalizer, **{**values, "cameras": tuple(values.get("cameras", ()))})
        except TypeError as e:
            raise ValueError(f"{source}: {e}") from e

    @classmethod
    def from_legacy(
        cls, shape_meta: Mapping[str, Any], normalizer_state: Mapping[str, Any] | None, source: str
    ) -> Processor:
        """A checkpoint written before processor.json: the same settings from shape_meta.json and
        normalizer.json (the text length from the recorded encoder config)."""
        if not normalizer_state:
            raise MissingStatsError(
                f"{source}/normalizer.json: no normalization statistics in the checkpoint"
            )
        try:
            normalizer = Normalizer.from_state_dict(normalizer_state)
        except Exception as e:
            raise MissingStatsError(f"{source}/normalizer.json: unusable statistics: {e}") from e
        use_text = bool(shape_meta["use_text"])
        return cls(
            normalizer=normalizer,
            cameras=tuple(shape_meta["cameras"]),
            use_text=use_text,
            n_obs_steps=int(shape_meta["n_obs_steps"]),
            horizon=int(shape_meta["horizon"]),
            n_text_tokens=int((shape_meta.get("encoder") or {}).get("max_text_len", 0)) if use_text else 0,
            state_key=str(shape_meta.get("state_key", "state")),
            action_key=str(shape_meta.get("action_key", "action")),
        )
