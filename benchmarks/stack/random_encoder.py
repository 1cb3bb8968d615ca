"""A SigLIP encoder with random weights built from its `transformers` config class, for timing only.

Used by vla-bench when the configured checkpoint is not on disk (e.g. `encoder=siglip_base` on a
machine without the download): the architecture is `transformers.SiglipConfig()`'s defaults, which
are google/siglip-base-patch16-224's (ViT-B/16 at 224 px, 12 layers, width 768, text length 64).
The tokens are meaningless; the compute is that of the real model. Nothing is written but a small
config directory (no weights), so the encoder's fingerprint is never that of a real checkpoint.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from vla.encoders import EncoderConfig, FrozenEncoder
from vla.encoders.loading import TORCH_DTYPES, ResolvedCheckpoint
from vla.encoders.preprocess import ImagePreprocessing

# Instructions of the simulator tasks: the vocabulary of the stand-in word-level tokenizer.
CORPUS = (
    "pick up the red cube",
    "pick up the green cube",
    "pick up the blue cube",
    "place the cube on the pad",
    "push the cube to the target",
    "stack the cube on the other cube",
)


def build_random_siglip(cfg: EncoderConfig, seed: int = 0, **config_overrides: Any) -> FrozenEncoder:
    """A `DualEncoder` over `SiglipModel(SiglipConfig(**config_overrides))` with random weights.

    Args:
        cfg: the encoder settings (family must be "siglip"; dtype, device, n_tokens, max_text_len ...).
        config_overrides: `SiglipConfig` fields (e.g. vision_config={...}); none = SigLIP-base.
    """
    if cfg.family != "siglip":
        raise ValueError(f"build_random_siglip: family {cfg.family!r} is not 'siglip' (config {cfg.model!r})")
    import transformers as tf

    from vla.encoders.dual import DualEncoder
    from vla.pretrain.tokenizer import build_word_tokenizer

    tok = build_word_tokenizer(CORPUS)
    text = dict(config_overrides.pop("text_config", {}))
    text.setdefault("max_position_embeddings", max(64, cfg.max_text_len))
    text.update(
        vocab_size=len(tok),
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    conf = tf.SiglipConfig(text_config=text, **config_overrides)
    torch.manual_seed(seed)
    model = tf.SiglipModel(conf).to(dtype=TORCH_DTYPES[cfg.dtype], device=cfg.device).eval()
    # A directory with config.json (what a fingerprint would hash); no weights are written.
    d = Path(tempfile.mkdtemp(prefix="vla_random_siglip_"))
    (d / "config.json").write_text(json.dumps({**conf.to_dict(), "random_weights": True}, default=str))
    size = int(conf.vision_config.image_size)
    size = int(cfg.image_size or size)
    pre = ImagePreprocessing(size, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bicubic")
    return DualEncoder(cfg, ResolvedCheckpoint(f"random:{cfg.model}", d), model, tok, pre)
