"""The encoder fast path gives the eager tokens (static buffers on CPU; autocast + CUDA graph on a GPU),
pinned staging preserves frames, and a whole VLAPolicy-like object can be accelerated and warmed up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.stack.random_encoder import build_random_siglip
from vla.encoders import EncoderConfig
from vla.fastpath import FastEncoder, FastPathConfig, PinnedStager, accelerate_parts

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
SMALL = dict(
    vision_config=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
    ),
    text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
)


def _encoder(device: str = "cpu", **kw):
    cfg = EncoderConfig(
        family="siglip", model="random-small", device=device, n_tokens=4, max_text_len=8, **kw
    )
    return build_random_siglip(cfg, **{k: dict(v) for k, v in SMALL.items()})


def _images(b: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {c: rng.integers(0, 255, (b, 40, 40, 3), dtype=np.uint8) for c in ("front", "wrist")}


def test_random_siglip_is_a_working_dual_encoder() -> None:
    enc = _encoder()
    out = enc.encode(_images(2), ["pick up the red cube"] * 2)
    assert out.tokens.shape == (2, 2 * 4 + 8, 32) and torch.isfinite(out.tokens).all()
    assert enc.ckpt.source.startswith("random:")
    with pytest.raises(ValueError, match="family"):
        build_random_siglip(EncoderConfig(family="clip", model="x"))


def test_static_buffers_encoder_equals_eager_and_uninstalls() -> None:
    enc = _encoder()
    images = _images()
    ref = enc.encode_images(images).tokens
    fast = FastEncoder(enc, backend="static_buffers")
    for _ in range(2):
        torch.testing.assert_close(enc.encode_images(images).tokens, ref, rtol=0, atol=0)
    other = _images(3)
    assert enc.encode_images(other).tokens.shape[0] == 3  # another signature
    assert fast.graph is not None and fast.graph.n_signatures == 2
    fast.uninstall()
    assert not enc.replaced_networks()
    torch.testing.assert_close(enc.encode_images(images).tokens, ref, rtol=0, atol=0)


def test_cpu_degrades_to_eager_and_rejects_cuda_only_options() -> None:
    enc = _encoder()
    fast = accelerate_parts(enc, None, FastPathConfig(), "cpu")
    assert fast.encoder is not None and not enc.replaced_networks()
    assert fast.resolved.describe().startswith("encoder autocast=none backend=eager")
    with pytest.raises(ValueError, match="CUDA"):
        FastEncoder(enc, autocast="bfloat16")
    frames = _images()["front"]
    staged = PinnedStager("cpu").stage("front", frames)
    assert staged.dtype == torch.uint8 and np.array_equal(staged.numpy(), frames)


@pytest.mark.gpu
@cuda
def test_cuda_encoder_fast_path_close_to_eager() -> None:
    enc = _encoder("cuda")
    images = _images()
    ref = enc.encode_images(images).tokens
    fast = FastEncoder(enc, autocast="bfloat16", backend="cuda_graph", pinned=True)
    for _ in range(3):
        out = enc.encode_images(images).tokens
        torch.testing.assert_close(out, ref, rtol=5e-2, atol=5e-2)  # bf16 autocast
    assert not fast.fallbacks() and fast.graph is not None and fast.graph.stats.captures == 1


@pytest.mark.gpu
@cuda
def test_pinned_stager_round_trip_cuda() -> None:
    stager = PinnedStager("cuda")
    for seed in range(3):  # the pinned buffer is reused: each frame must arrive intact
        frames = np.random.default_rng(seed).integers(0, 255, (1, 16, 16, 3), dtype=np.uint8)
        out = stager.stage("front", frames)
        assert out.device.type == "cuda" and np.array_equal(out.cpu().numpy(), frames)
