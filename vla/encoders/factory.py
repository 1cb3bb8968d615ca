"""`build_encoder(cfg)`: load a checkpoint and wrap it in the encoder of its family."""

from __future__ import annotations

import math

from vla.encoders.base import FrozenEncoder
from vla.encoders.config import EncoderConfig
from vla.encoders.loading import (
    check_family,
    load_model,
    load_tokenizer,
    read_preprocessing,
    resolve_checkpoint,
)


def build_encoder(cfg: EncoderConfig) -> FrozenEncoder:
    """Load `cfg.model` (local directory, or a hub id already in the cache) as a frozen encoder.

    Raises:
        EncoderLoadError: the model cannot be found offline (the message says how to point
            `model=` at a local copy), or its config.json does not match `cfg.family`.
    """
    ckpt = resolve_checkpoint(cfg)
    conf = check_family(cfg, ckpt)
    vision = conf.get("vision_config") or {}
    model = load_model(cfg, ckpt)
    tokenizer = load_tokenizer(cfg, ckpt)
    vc = model.config.vision_config
    # SigLIP 2 (NaFlex) has no fixed image_size: its default square grid is sqrt(num_patches) patches.
    size = int(
        vision.get("image_size") or getattr(vc, "image_size", 0) or math.isqrt(vc.num_patches) * vc.patch_size
    )
    pre = read_preprocessing(cfg, ckpt, size)
    if cfg.is_generative:
        from vla.encoders.prefix_vlm import PrefixVLMEncoder

        return PrefixVLMEncoder(cfg, ckpt, model, tokenizer, pre)
    from vla.encoders.dual import DualEncoder

    return DualEncoder(cfg, ckpt, model, tokenizer, pre)
