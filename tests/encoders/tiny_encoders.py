"""Tiny random-weight checkpoints of every encoder family, written with `save_pretrained`.

They are loaded back through `build_encoder(EncoderConfig(model=<dir>))`, the code path a real
checkpoint takes. Built from each family's `transformers` config class; tokenizers are word-level
tokenizers built offline with the `tokenizers` library.
"""

from __future__ import annotations

from pathlib import Path

import torch

from vla.pretrain.tokenizer import build_word_tokenizer

CORPUS = [
    "pick up the red cube",
    "put the green cube in the bin",
    "push the blue block to the left",
    "open the drawer",
]
IMAGE_TOKENS = ("<image>", "<fake_token_around_image>", "<global-img>")


def _tokenizer():
    return build_word_tokenizer(CORPUS, extra_special=IMAGE_TOKENS)


def _vision(**kw) -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **kw)


def make_tiny(family: str, root: Path) -> Path:
    """Write a tiny `family` checkpoint (weights, config, tokenizer, preprocessor) under root/family."""
    import transformers as tf

    torch.manual_seed(0)
    tok = _tokenizer()
    v = len(tok)
    ids = dict(pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    text = dict(
        vocab_size=v, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, **ids
    )
    out = root / family
    if family == "siglip":
        conf = tf.SiglipConfig(
            text_config={**text, "max_position_embeddings": 16},
            vision_config=_vision(image_size=32, patch_size=8),
        )
        model = tf.SiglipModel(conf)
        proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif family == "siglip2":
        conf = tf.Siglip2Config(
            text_config={**text, "max_position_embeddings": 16},
            vision_config=_vision(patch_size=8, num_patches=16),
        )
        model = tf.Siglip2Model(conf)
        proc = None
    elif family == "clip":
        # Different tower widths: exercises the projection heads (D = projection_dim).
        conf = tf.CLIPConfig(
            text_config={**text, "hidden_size": 24, "max_position_embeddings": 16},
            vision_config=_vision(image_size=32, patch_size=8),
            projection_dim=16,
        )
        model = tf.CLIPModel(conf)
        proc = tf.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    elif family == "lit":
        # VisionTextDualEncoderModel (what vla.pretrain.lit writes): SigLIP vision + BERT text of
        # different widths, both projected (D = projection_dim).
        vc = tf.SiglipVisionConfig(image_size=32, patch_size=8, **_vision())
        tc = tf.BertConfig(
            vocab_size=v, hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=16, pad_token_id=tok.pad_token_id,
        )  # fmt: skip
        conf = tf.VisionTextDualEncoderConfig.from_vision_text_configs(vc, tc, projection_dim=16)
        model = tf.VisionTextDualEncoderModel(conf)
        proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif family == "paligemma":
        conf = tf.PaliGemmaConfig(
            vision_config=dict(model_type="siglip_vision_model", **_vision(image_size=32, patch_size=8)),
            text_config=dict(
                model_type="gemma",
                vocab_size=v,
                hidden_size=48,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=24,
                **ids,
            ),
            projection_dim=48,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
        model = tf.PaliGemmaForConditionalGeneration(conf)
        proc = tf.SiglipImageProcessor(size={"height": 32, "width": 32})
    elif family == "smolvlm":
        conf = tf.SmolVLMConfig(
            vision_config=_vision(image_size=32, patch_size=8),
            text_config=dict(
                model_type="llama",
                vocab_size=v,
                hidden_size=48,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_key_value_heads=1,
                **ids,
            ),
            scale_factor=2,
            image_token_id=tok.convert_tokens_to_ids("<image>"),
        )
        model = tf.SmolVLMForConditionalGeneration(conf)
        proc = None
    else:
        raise ValueError(family)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    if proc is not None:
        proc.save_pretrained(out)
    return out
