"""Every family loads from a saved tiny checkpoint through build_encoder and yields documented shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla.encoders import FAMILIES, EncoderConfig, EncoderOutput, build_encoder
from vla.encoders.config import DUAL_FAMILIES

B = 3
INSTR = ["pick up the red cube", "open the drawer", "put the green cube in the bin"]


def frames(b: int = B, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Cameras of different sizes: each is resized to the model's resolution before the shared pass.
    return {
        "front": rng.integers(0, 256, (b, 40, 48, 3), dtype=np.uint8),
        "wrist": rng.integers(0, 256, (b, 32, 32, 3), dtype=np.uint8),
    }


def build(family: str, d, **kw):
    return build_encoder(EncoderConfig(family=family, model=str(d), max_text_len=10, **kw))


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_shapes_masks_segments(family: str, tiny_dirs) -> None:
    enc = build(family, tiny_dirs[family])
    out = enc.encode(frames(), INSTR)
    n_img = enc.tokens_per_image
    assert isinstance(out, EncoderOutput)
    assert out.tokens.shape == (B, 2 * n_img + 10, enc.dim)
    assert out.tokens.dtype == torch.float32 and out.mask.dtype == torch.bool
    assert out.segments == {
        "front": slice(0, n_img),
        "wrist": slice(n_img, 2 * n_img),
        "text": slice(2 * n_img, 2 * n_img + 10),
    }
    assert enc.n_tokens_for(2) == out.n_tokens
    assert out.mask[:, : 2 * n_img].all()
    # Text mask marks real tokens: longer instructions have more of them, padding is False.
    n_text = out.mask[:, out.segments["text"]].sum(1)
    assert n_text[2] > n_text[0] > n_text[1] > 0
    assert n_text.max() < 10
    assert torch.isfinite(out.tokens).all()
    assert not out.tokens.requires_grad
    # Different images give different image tokens; the same batch twice gives the same tokens.
    again = enc.encode(frames(), INSTR)
    torch.testing.assert_close(again.tokens, out.tokens)
    other = enc.encode(frames(seed=1), INSTR)
    assert not torch.allclose(other.tokens[:, : 2 * n_img], out.tokens[:, : 2 * n_img])


@pytest.mark.parametrize("family", FAMILIES)
def test_cameras_share_one_forward_pass(family: str, tiny_dirs) -> None:
    enc = build(family, tiny_dirs[family])
    tower = enc.model.vision_model if family in DUAL_FAMILIES else enc.model.model
    calls: list[int] = []
    handle = tower.register_forward_hook(lambda m, a, k: calls.append(1))
    try:
        enc.encode_images(frames()) if family in DUAL_FAMILIES else enc.encode(frames(), INSTR)
    finally:
        handle.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("family", DUAL_FAMILIES)
def test_dual_encode_is_images_then_text(family: str, tiny_dirs) -> None:
    enc = build(family, tiny_dirs[family])
    joint = enc.encode(frames(), INSTR)
    parts = EncoderOutput.concat([enc.encode_images(frames()), enc.encode_text(INSTR)])
    torch.testing.assert_close(joint.tokens, parts.tokens)
    assert joint.segments == parts.segments
    # Per-frame independence: a frame's tokens do not depend on the rest of the batch.
    single = enc.encode_images({k: v[1:2] for k, v in frames().items()})
    torch.testing.assert_close(single.tokens[0], joint.tokens[1, : single.n_tokens], atol=1e-5, rtol=1e-4)


def test_clip_projects_towers_of_different_width(tiny_dirs) -> None:
    enc = build("clip", tiny_dirs["clip"])
    assert enc.model.config.vision_config.hidden_size != enc.model.config.text_config.hidden_size
    assert enc.dim == enc.model.config.projection_dim
    with pytest.raises(Exception, match="project='none'"):
        build("clip", tiny_dirs["clip"], project="none")


@pytest.mark.parametrize(
    ("family", "mode"), [("siglip", "pool"), ("siglip", "select"), ("paligemma", "pool")]
)
def test_token_reduction(family: str, mode: str, tiny_dirs) -> None:
    full = build(family, tiny_dirs[family])
    red = build(family, tiny_dirs[family], n_tokens=4, reduce=mode)
    out = red.encode(frames(), INSTR)
    assert red.tokens_per_image == 4
    assert out.tokens.shape == (B, 2 * 4 + 10, full.dim)
    assert out.segments["wrist"] == slice(4, 8)
    if family == "siglip" and mode == "pool":
        # 4x4 patch grid pooled to 2x2: each token is the mean of a 2x2 block of patches.
        f = full.encode_images(frames()).tokens[:, :16].reshape(B, 4, 4, -1)
        top_left = f[:, :2, :2].mean(dim=(1, 2))
        torch.testing.assert_close(out.tokens[:, 0], top_left, atol=1e-5, rtol=1e-4)
    assert red.fingerprint != full.fingerprint


def test_generative_layer_selects_hidden_state(tiny_dirs) -> None:
    last = build("smolvlm", tiny_dirs["smolvlm"], layer=-1)
    first = build("smolvlm", tiny_dirs["smolvlm"], layer=1)
    a, b = last.encode(frames(), INSTR), first.encode(frames(), INSTR)
    assert not torch.allclose(a.tokens, b.tokens)
    assert last.fingerprint != first.fingerprint
    with pytest.raises(Exception, match=r"encoder\.layer=7"):
        build("smolvlm", tiny_dirs["smolvlm"], layer=7)


def test_generative_text_attends_to_images(tiny_dirs) -> None:
    """PaliGemma's prefix is bidirectional: the same instruction's tokens change with the image."""
    enc = build("paligemma", tiny_dirs["paligemma"])
    a, b = enc.encode(frames(seed=0), INSTR), enc.encode(frames(seed=1), INSTR)
    t = a.segments["text"]
    assert not torch.allclose(a.tokens[:, t], b.tokens[:, t])
    assert not enc.separable


def test_fingerprint_is_stable_and_tracks_weights(tiny_dirs, tmp_path) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    assert enc.fingerprint == build("siglip", tiny_dirs["siglip"]).fingerprint
    assert enc.fingerprint.startswith("siglip-")
    # Same architecture, one weight changed -> a different fingerprint.
    import shutil

    from transformers import SiglipModel

    copy = tmp_path / "siglip"
    shutil.copytree(tiny_dirs["siglip"], copy)
    m = SiglipModel.from_pretrained(copy)
    with torch.no_grad():
        m.vision_model.post_layernorm.bias.add_(1e-3)
    m.save_pretrained(copy)
    assert build("siglip", copy).fingerprint != enc.fingerprint
    assert build("siglip", tiny_dirs["siglip"], dtype="bfloat16").fingerprint != enc.fingerprint


def test_bad_inputs_raise_clearly(tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    with pytest.raises(ValueError, match=r"images\['front'\]"):
        enc.encode_images({"front": np.zeros((2, 32, 32, 3), np.float32)})
    with pytest.raises(ValueError, match="instructions"):
        enc.encode(frames(), INSTR[:2])
    with pytest.raises(ValueError, match=r"EncoderConfig\.family"):
        EncoderConfig(family="llava")
