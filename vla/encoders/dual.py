"""Dual encoders (SigLIP, SigLIP 2, CLIP, LiT): image patch tokens from the vision tower + text tokens.

Common width D: when the two towers have the same hidden size (every released SigLIP / SigLIP 2
checkpoint) the raw last hidden states are used. When they differ (CLIP), the model's own projection
heads map both to `projection_dim`: vision patch tokens go through `post_layernorm` +
`visual_projection` (as the CLS token does in CLIP), text tokens through `text_projection`. No new
trainable parameters are ever added. SigLIP towers have no per-token projection (the vision head is an
attention pool), so SigLIP models must have equal widths.

Text: SigLIP / SigLIP 2 were trained on text padded to a fixed length *without* an attention mask, so
the text tower runs the same way here (the returned mask still marks real tokens for the policy);
CLIP's text tower takes the attention mask.

LiT (`lit`: `transformers.VisionTextDualEncoderModel`, written by `vla.pretrain.lit`): a SigLIP vision
tower (no CLS token) and a BERT text tower (all-MiniLM-L6-v2) of different widths, both mapped by the
model's projection heads, the text tower with its attention mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vla.encoders.base import FrozenEncoder
from vla.encoders.loading import EncoderLoadError
from vla.encoders.reduce import reduce_tokens


class DualEncoder(FrozenEncoder):
    """SiglipModel / Siglip2Model / CLIPModel, frozen."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        conf = self.model.config
        vc, tc = conf.vision_config, conf.text_config
        self.patch = vc.patch_size
        if self.pre.size % self.patch:
            raise EncoderLoadError(
                f"encoder.image_size={self.pre.size} is not a multiple of the patch size {self.patch} of {self.ckpt.source}"
            )
        self.grid = (self.pre.size // self.patch, self.pre.size // self.patch)
        self._interpolate = self.pre.size != getattr(vc, "image_size", self.pre.size)
        if self.cfg.family == "siglip2":
            n = self.grid[0] * self.grid[1]
            if n > vc.num_patches:
                raise EncoderLoadError(
                    f"encoder.image_size={self.pre.size}: {n} patches exceed the model's num_patches={vc.num_patches}"
                )
        max_pos = getattr(tc, "max_position_embeddings", None)
        if max_pos is not None and self.cfg.max_text_len > max_pos:
            raise EncoderLoadError(
                f"encoder.max_text_len={self.cfg.max_text_len} exceeds the text tower's max_position_embeddings={max_pos}"
            )
        same = vc.hidden_size == tc.hidden_size
        if self.cfg.project == "none" or (self.cfg.project == "auto" and same):
            if not same:
                raise EncoderLoadError(
                    f"{self.ckpt.source}: vision width {vc.hidden_size} != text width {tc.hidden_size} and "
                    "encoder.project='none'; use project=auto/heads (CLIP) to map both to projection_dim"
                )
            self._heads = False
            self._dim = vc.hidden_size
        else:
            if self.cfg.family not in ("clip", "lit"):
                raise EncoderLoadError(
                    f"{self.ckpt.source}: encoder.project={self.cfg.project!r} needs per-token projection heads, "
                    f"which only CLIP has; {self.cfg.family} models must have equal tower widths "
                    f"(vision {vc.hidden_size}, text {tc.hidden_size})"
                )
            self._heads = True
            self._dim = conf.projection_dim
        self._per_image = self.cfg.n_tokens or self.grid[0] * self.grid[1]
        # Real tokens first, padding after (some tokenizers, e.g. Gemma's for SigLIP 2, pad left).
        self.tokenizer.padding_side = "right"

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def tokens_per_image(self) -> int:
        return self._per_image

    def _siglip2_patches(self, px: torch.Tensor) -> dict[str, torch.Tensor]:
        # Siglip2ImageProcessor layout: (n, gh*gw, p*p*3), channels last inside each patch.
        n, c, _, _ = px.shape
        gh, gw = self.grid
        p = self.patch
        x = px.reshape(n, c, gh, p, gw, p).permute(0, 2, 4, 3, 5, 1).reshape(n, gh * gw, p * p * c)
        return {
            "pixel_values": x,
            "pixel_attention_mask": torch.ones(n, gh * gw, dtype=torch.long, device=px.device),
            "spatial_shapes": torch.tensor([[gh, gw]] * n, dtype=torch.long, device=px.device),
        }

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        vm = self.model.vision_model
        if self.cfg.family == "siglip2":
            h = vm(**self._siglip2_patches(pixels)).last_hidden_state
        else:
            h = vm(pixel_values=pixels, interpolate_pos_encoding=self._interpolate).last_hidden_state
        if self.cfg.family == "clip":
            h = h[:, 1:]  # drop CLS: patch tokens only
            if self._heads:
                h = self.model.visual_projection(vm.post_layernorm(h))
        elif self.cfg.family == "lit" and self._heads:
            h = self.model.visual_projection(h)  # SigLIP's states are post-layernorm already
        return reduce_tokens(h.float(), self.grid, self.cfg.n_tokens, self.cfg.reduce)

    def tokenize(self, instructions: Sequence[str]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            list(instructions),
            padding="max_length",
            truncation=True,
            max_length=self.cfg.max_text_len,
            return_tensors="pt",
            return_attention_mask=True,
        )
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
        }

    def _text_tokens(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.tokenize(instructions)
        tm = self.model.text_model
        if self.cfg.family in ("clip", "lit"):
            h = tm(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
            if self._heads:
                h = self.model.text_projection(h)
        else:
            h = tm(input_ids=t["input_ids"]).last_hidden_state
        return h.float(), t["attention_mask"].bool()
