"""`FrozenEncoder`: the shared machinery of every family (freezing, preprocessing, text cache, fingerprint).

Frozen means: every parameter has `requires_grad=False`, the model stays in eval mode (`train()` is a
no-op), and every forward pass runs under `torch.inference_mode`, so outputs carry no autograd graph
and no optimizer can ever reach the weights.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from policies.networks import ReplaceableNetworks
from vla.encoders.config import EncoderConfig
from vla.encoders.fingerprint import checkpoint_digest, make_fingerprint
from vla.encoders.loading import ResolvedCheckpoint
from vla.encoders.output import EncoderOutput
from vla.encoders.preprocess import ImagePreprocessing, to_pixels

Images = Mapping[str, np.ndarray | torch.Tensor]


class FrozenEncoder(ReplaceableNetworks, ABC):
    """(camera frames, instruction) -> tokens (B, N, D), with frozen weights.

    Subclasses implement `image_tokens` and `_text_tokens` (and may override `encode` when image and
    text tokens are computed jointly, as in a generative VLM prefix).

    Network seam: `encode_images` runs the vision tower through `image_tokens` looked up on the
    instance, so an accelerator (`vla.fastpath.FastEncoder`: autocast, CUDA graphs) substitutes it
    with `replace_networks` and undoes it with `restore_networks`; `networks()` gives the originals.
    """

    # The per-frame networks `encode_images` calls (see `networks`).
    network_names: tuple[str, ...] = ("image_tokens",)

    def __init__(
        self,
        cfg: EncoderConfig,
        ckpt: ResolvedCheckpoint,
        model: torch.nn.Module,
        tokenizer: Any,
        preprocessing: ImagePreprocessing,
    ) -> None:
        self.cfg = cfg
        self.ckpt = ckpt
        self.model = model
        self.tokenizer = tokenizer
        self.pre = preprocessing
        self.device = torch.device(cfg.device)
        self.dtype = next(model.parameters()).dtype
        model.eval()
        model.requires_grad_(False)
        # Freeze `train()` too: a policy calling `.train()` on a parent module must not flip dropout on.
        model.train = lambda mode=True: model  # type: ignore[method-assign]
        self._text_cache: OrderedDict[str, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self.cache_hits = 0
        self.cache_misses = 0
        self._fingerprint: str | None = None

    # ----------------------------------------------------------------------------- properties
    @property
    @abstractmethod
    def dim(self) -> int:
        """Token width D."""

    @property
    @abstractmethod
    def tokens_per_image(self) -> int:
        """Image tokens per camera (after reduction)."""

    @property
    def separable(self) -> bool:
        """True when image tokens do not depend on the text (dual encoders): `encode` equals
        `concat(encode_images, encode_text)` and text can be cached per instruction."""
        return True

    def settings(self) -> dict[str, Any]:
        """Everything besides the checkpoint files that changes the tokens (part of the fingerprint)."""
        c = self.cfg
        return {
            "family": c.family,
            "dtype": c.dtype,
            "layer": c.layer if c.is_generative else None,
            "n_tokens": c.n_tokens,
            "reduce": c.reduce if c.n_tokens is not None else None,
            "max_text_len": c.max_text_len,
            "project": c.project,
            "preprocessing": asdict(self.pre),
            "format": 1,
        }

    @property
    def fingerprint(self) -> str:
        """`<family>-<model>-<hash>` of weights + config + tokenizer + preprocessing + token settings."""
        if self._fingerprint is None:
            digest = checkpoint_digest(self.ckpt.directory)
            self._fingerprint = make_fingerprint(self.cfg.family, self.ckpt.source, digest, self.settings())
        return self._fingerprint

    def parameters(self) -> list[torch.nn.Parameter]:
        return list(self.model.parameters())

    # ----------------------------------------------------------------------------- preprocessing
    def pixels(self, frames: np.ndarray | torch.Tensor, name: str = "images") -> torch.Tensor:
        """uint8 (n, H, W, 3) -> normalized float (n, 3, S, S) in the model dtype on the model device."""
        return to_pixels(frames, self.pre, self.device, self.dtype, name)

    def _stack_cameras(self, images: Images) -> tuple[list[str], int, torch.Tensor]:
        if not images:
            raise ValueError("images: need at least one camera")
        names = list(images)
        shapes = {k: tuple(torch.as_tensor(v).shape) for k, v in images.items()}
        b = shapes[names[0]][0]
        for k, shp in shapes.items():
            if len(shp) != 4 or shp[0] != b:
                raise ValueError(f"images[{k!r}]: expected (B={b}, H, W, 3), got {shp}")
        # Resize each camera first (cameras may differ in H, W), then one forward pass over B * C frames.
        px = torch.cat([self.pixels(images[k], f"images[{k!r}]") for k in names])
        return names, b, px

    # ----------------------------------------------------------------------------- encoding
    @abstractmethod
    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """The vision tower: pixels (n, 3, S, S) -> (n, tokens_per_image, D) float32."""

    @abstractmethod
    def _text_tokens(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """B strings -> tokens (B, max_text_len, D) float32, mask (B, max_text_len) bool."""

    def encode_images(self, images: Images) -> EncoderOutput:
        """Image tokens of every camera, all cameras batched into ONE forward pass.

        Args:
            images: camera name -> uint8 (B, H, W, 3) (numpy or torch).
        Returns:
            tokens (B, C * tokens_per_image, D), mask all True, one segment per camera in dict order.
        """
        names, b, px = self._stack_cameras(images)
        with torch.inference_mode():
            tok = self.image_tokens(px)  # (C * B, n, D)
        n = tok.shape[1]
        tok = tok.reshape(len(names), b, n, -1).transpose(0, 1).reshape(b, len(names) * n, -1)
        segments = {k: slice(i * n, (i + 1) * n) for i, k in enumerate(names)}
        return EncoderOutput(
            tok.float().clone(), torch.ones(b, len(names) * n, dtype=torch.bool, device=tok.device), segments
        )

    def encode_text(self, instructions: Sequence[str]) -> EncoderOutput:
        """Text tokens (B, max_text_len, D) + mask, cached per instruction string (LRU)."""
        if isinstance(instructions, str):
            raise TypeError("instructions: expected a list of strings, got one string")
        missing = [s for s in dict.fromkeys(instructions) if s not in self._text_cache]
        self.cache_hits += len(instructions) - sum(instructions.count(s) for s in missing)
        self.cache_misses += len(missing)
        if missing:
            with torch.inference_mode():
                tok, mask = self._text_tokens(missing)
            for i, s in enumerate(missing):
                self._text_cache[s] = (tok[i].float().clone(), mask[i].clone())
        rows = []
        for s in instructions:
            rows.append(self._text_cache[s])
            self._text_cache.move_to_end(s)
        out = EncoderOutput(
            torch.stack([r[0] for r in rows]),
            torch.stack([r[1] for r in rows]),
            {"text": slice(0, self.cfg.max_text_len)},
        )
        while len(self._text_cache) > self.cfg.text_cache_size:
            self._text_cache.popitem(last=False)
        return out

    def encode(self, images: Images, instructions: Sequence[str]) -> EncoderOutput:
        """Tokens of B observations: every camera's image tokens, then the instruction's text tokens.

        Args:
            images: camera name -> uint8 (B, H, W, 3).
            instructions: B strings.
        Returns:
            EncoderOutput with tokens (B, C * tokens_per_image + max_text_len, D) float32, mask (B, N)
            and segments {camera: slice, ..., "text": slice}.
        """
        b = len(next(iter(images.values()))) if images else 0
        if len(instructions) != b:
            raise ValueError(f"instructions: got {len(instructions)} strings for a batch of {b} frames")
        return EncoderOutput.concat([self.encode_images(images), self.encode_text(instructions)])

    def n_tokens_for(self, n_cameras: int) -> int:
        """N of `encode` for `n_cameras` cameras."""
        return n_cameras * self.tokens_per_image + self.cfg.max_text_len
