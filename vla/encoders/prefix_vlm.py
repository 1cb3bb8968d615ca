"""Generative VLMs (PaliGemma as in pi0, SmolVLM / Idefics3 as in SmolVLA): hidden states of the
image+text prefix taken from one language-model layer.

The prefix of one observation is built the way each model's processor builds it, one image block per
camera followed by the instruction:

- PaliGemma: `<image> * n_img` per camera, then `<bos> instruction \\n`; every prefix token attends to
  every other (token_type_ids = 0, PaliGemma's bidirectional prefix).
- SmolVLM: `<fake_token_around_image><global-img><image> * n_img<fake_token_around_image>` per camera
  (no image splitting), then `instruction \\n`; causal attention as the model was trained.

All cameras of a batch go through the vision tower in one call (the model's own forward with
`pixel_values`), and the output keeps the image-token positions of each camera plus the text positions
(padded to `max_text_len`). Image and text tokens are computed jointly, so the encoder is not
separable: `encode_images` runs the prefix with an empty instruction and `encode_text` a text-only
prefix (both used for caching and benchmarks; policies use `encode`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from vla.encoders.base import FrozenEncoder, Images
from vla.encoders.loading import EncoderLoadError
from vla.encoders.output import EncoderOutput
from vla.encoders.reduce import reduce_tokens


class PrefixVLMEncoder(FrozenEncoder):
    """PaliGemmaForConditionalGeneration / SmolVLMForConditionalGeneration, frozen."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        conf = self.model.config
        vc, tc = conf.vision_config, conf.text_config
        if self.pre.size != vc.image_size:
            raise EncoderLoadError(
                f"encoder.image_size={self.pre.size}: {self.cfg.family} models take only their own "
                f"resolution {vc.image_size} (set image_size: null)"
            )
        g = vc.image_size // vc.patch_size
        if self.cfg.family == "smolvlm":
            sf = conf.scale_factor
            self.n_img = (g // sf) ** 2
            wrap = [getattr(self.tokenizer, "fake_image_token", "<fake_token_around_image>"), "<global-img>"]
            ids = [self.tokenizer.convert_tokens_to_ids(t) for t in wrap]
            unk = getattr(self.tokenizer, "unk_token_id", None)
            if any(i is None or i == unk for i in ids):
                raise EncoderLoadError(f"{self.ckpt.directory}: tokenizer lacks SmolVLM image tokens {wrap}")
            self.before, self.after = [ids[0], ids[1]], [ids[0]]
        else:
            self.n_img = g * g
            self.before, self.after = [], []
        self.image_token_id = conf.image_token_id
        k = math.isqrt(self.n_img)
        self.grid = (k, self.n_img // k)
        n_layers = tc.num_hidden_layers
        if not -(n_layers + 1) <= self.cfg.layer <= n_layers:
            raise EncoderLoadError(
                f"encoder.layer={self.cfg.layer}: {self.ckpt.source} has hidden_states 0..{n_layers} "
                f"(or -1..-{n_layers + 1})"
            )
        self._dim = tc.hidden_size
        self._per_image = self.cfg.n_tokens or self.n_img
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else 0

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def tokens_per_image(self) -> int:
        return self._per_image

    @property
    def separable(self) -> bool:
        return False

    def text_ids(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, max_text_len) ids right-padded, and their mask."""
        L = self.cfg.max_text_len
        bos = self.tokenizer.bos_token_id if self.cfg.family == "paligemma" else None
        ids = torch.full((len(instructions), L), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(instructions), L, dtype=torch.bool)
        for i, s in enumerate(instructions):
            t = self.tokenizer(s + "\n", add_special_tokens=False)["input_ids"]
            t = ([bos] if bos is not None else []) + list(t)
            t = t[:L]
            ids[i, : len(t)] = torch.tensor(t, dtype=torch.long)
            mask[i, : len(t)] = True
        return ids, mask

    def _prefix(self, pixels: torch.Tensor | None, n_cams: int, instructions: Sequence[str]) -> EncoderOutput:
        """Run the prefix; pixels (C * B, 3, S, S) camera-major or None; returns per-camera + text tokens."""
        b = len(instructions)
        block = [*self.before, *([self.image_token_id] * self.n_img), *self.after]
        img_ids = torch.tensor(block * n_cams, dtype=torch.long).expand(b, -1)
        txt_ids, txt_mask = self.text_ids(instructions)
        ids = torch.cat([img_ids, txt_ids], 1).to(self.device)
        attn = torch.cat([torch.ones(b, img_ids.shape[1], dtype=torch.bool), txt_mask], 1).to(self.device)
        kwargs = {}
        if pixels is not None:
            # camera-major (C, B) -> batch-major (B, C): image features are scattered in sequence order.
            px = pixels.reshape(n_cams, b, *pixels.shape[1:]).transpose(0, 1).contiguous()
            kwargs["pixel_values"] = (
                px.reshape(b * n_cams, *pixels.shape[1:]) if self.cfg.family == "paligemma" else px
            )
        if self.cfg.family == "paligemma":
            kwargs["token_type_ids"] = torch.zeros_like(ids)
        out = self.model.model(input_ids=ids, attention_mask=attn.long(), output_hidden_states=True, **kwargs)
        h = out.hidden_states[self.cfg.layer].float()  # (B, n_prefix, D)
        parts, segments, off = [], {}, 0
        for c in range(n_cams):
            start = c * len(block) + len(self.before)
            tok = reduce_tokens(
                h[:, start : start + self.n_img], self.grid, self.cfg.n_tokens, self.cfg.reduce
            )
            parts.append(tok)
            segments[c] = slice(off, off + tok.shape[1])
            off += tok.shape[1]
        L = self.cfg.max_text_len
        parts.append(h[:, -L:])
        tokens = torch.cat(parts, 1)
        mask = torch.cat([torch.ones(b, off, dtype=torch.bool, device=h.device), txt_mask.to(h.device)], 1)
        return EncoderOutput(tokens.clone(), mask, {**segments, "text": slice(off, off + L)})

    def image_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        # One prefix per frame with an empty instruction (used by encode_images).
        out = self._prefix(pixels, 1, [""] * pixels.shape[0])
        return out.tokens[:, : out.segments[0].stop]

    def _text_tokens(self, instructions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._prefix(None, 0, instructions)
        return out.tokens, out.mask

    def encode(self, images: Images, instructions: Sequence[str]) -> EncoderOutput:
        """Joint prefix: tokens (B, C * tokens_per_image + max_text_len, D), segments per camera + text."""
        names, b, px = self._stack_cameras(images)
        if len(instructions) != b:
            raise ValueError(f"instructions: got {len(instructions)} strings for a batch of {b} frames")
        with torch.inference_mode():
            out = self._prefix(px, len(names), list(instructions))
        segments = {names[c]: out.segments[c] for c in range(len(names))}
        segments["text"] = out.segments["text"]
        # Clone outside inference mode: inference tensors cannot be saved for a policy's backward pass.
        return EncoderOutput(out.tokens.clone(), out.mask.clone(), segments)
