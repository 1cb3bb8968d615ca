"""Instruction cache, precomputed embeddings in a real ReplayBuffer zarr store, stale detection."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla.data import DatasetError, DatasetMeta, ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import EmbeddingStore, StaleEmbeddingsError, precompute_embeddings

INSTR = ["pick up the red cube", "open the drawer", "put the green cube in the bin"]
LENGTHS = [5, 3, 4]


def add_episode(rb: ReplayBuffer, t: int, instruction: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    rb.add_episode(
        {
            "image_front": rng.integers(0, 256, (t, 32, 32, 3), dtype=np.uint8),
            "image_wrist": rng.integers(0, 256, (t, 24, 24, 3), dtype=np.uint8),
            "state": rng.normal(size=(t, 7)).astype(np.float32),
            "action": rng.normal(size=(t, 7)).astype(np.float32),
        },
        instruction,
    )


@pytest.fixture
def dataset(tmp_path):
    path = tmp_path / "demo.zarr"
    rb = ReplayBuffer.create(path, DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front", "wrist"]))
    for i, (t, s) in enumerate(zip(LENGTHS, INSTR)):
        add_episode(rb, t, s, seed=i)
    return path


def build(family: str, d, **kw):
    return build_encoder(EncoderConfig(family=family, model=str(d), max_text_len=10, **kw))


def test_instruction_cache_hit_skips_text_tower(tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    calls: list[int] = []
    enc.model.text_model.register_forward_hook(lambda m, a, k: calls.append(1))
    first = enc.encode_text(["pick up the red cube", "open the drawer"])
    assert (enc.cache_misses, enc.cache_hits, len(calls)) == (2, 0, 1)
    # Same instruction every step of an episode: served from the cache, no forward pass.
    again = enc.encode_text(["open the drawer", "pick up the red cube", "open the drawer"])
    assert (enc.cache_misses, enc.cache_hits, len(calls)) == (2, 3, 1)
    torch.testing.assert_close(again.tokens[1], first.tokens[0])
    torch.testing.assert_close(again.tokens[0], first.tokens[1])
    # Cached rows are copies: modifying an output does not corrupt the cache.
    again.tokens.zero_()
    torch.testing.assert_close(enc.encode_text(["open the drawer"]).tokens[0], first.tokens[1])


def test_cache_is_bounded(tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"], text_cache_size=2)
    enc.encode_text(["a", "b", "c"])
    assert len(enc._text_cache) == 2


@pytest.mark.parametrize(
    ("family", "dtype"), [("siglip", "float32"), ("clip", "float16"), ("paligemma", "float32")]
)
def test_precompute_matches_online_encoding(family: str, dtype: str, dataset, tiny_dirs) -> None:
    enc = build(family, tiny_dirs[family])
    rb = ReplayBuffer.open(dataset, mode="a")
    fp = precompute_embeddings(rb, enc, batch_size=4, dtype=dtype)
    assert fp == enc.fingerprint
    g = rb.root["embeddings"][fp]
    assert g["image_front"].shape == (rb.n_frames, enc.tokens_per_image, enc.dim)
    assert g["image_front"].chunks[0] == 4
    assert str(g["image_front"].dtype) == dtype

    # Read back from a fresh read-only handle, as a training process would.
    store = EmbeddingStore(ReplayBuffer.open(dataset, mode="r"), enc.fingerprint)
    frames = np.array([0, 4, 5, 11, 6])
    got = store.encoder_output(frames)
    in_ram = EmbeddingStore(ReplayBuffer.open(dataset, mode="r"), enc.fingerprint, in_memory=True)
    assert torch.equal(in_ram.encoder_output(frames).tokens, got.tokens)
    images = {c: np.asarray(rb.array(f"image_{c}")[frames]) for c in ("front", "wrist")}
    episodes = [0, 0, 1, 2, 1]  # episode ends 5, 8, 12
    want = enc.encode(images, [INSTR[e] for e in episodes])
    tol = 2e-3 if dtype == "float16" else 1e-5
    assert got.segments == want.segments
    torch.testing.assert_close(got.tokens, want.tokens, atol=tol * 10, rtol=tol)
    assert torch.equal(got.mask, want.mask)
    if enc.separable:
        tok, _ = store.text_tokens(2)
        torch.testing.assert_close(tok, want.tokens[3, want.segments["text"]], atol=tol * 10, rtol=tol)
        assert torch.equal(store.image_tokens("image_wrist", [4]), store.image_tokens("wrist", [4]))
    else:
        with pytest.raises(StaleEmbeddingsError, match="per frame"):
            store.text_tokens(0)


def test_second_run_reuses_and_mismatch_is_detected(dataset, tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    precompute_embeddings(rb, enc, batch_size=8)
    calls: list[int] = []
    enc.model.vision_model.register_forward_hook(lambda m, a, k: calls.append(1))
    precompute_embeddings(rb, enc, batch_size=8)
    assert calls == []  # complete and up to date: nothing re-encoded

    # Another encoder (different token settings -> different fingerprint): no silent reuse.
    other = build("siglip", tiny_dirs["siglip"], n_tokens=4)
    with pytest.raises(StaleEmbeddingsError, match=r"no embeddings for encoder fingerprint.*vla-embed"):
        EmbeddingStore.for_encoder(rb, other)

    # The dataset grows after embedding: the stored set is stale.
    add_episode(rb, 2, "open the drawer", seed=9)
    with pytest.raises(StaleEmbeddingsError, match="cover 12 frames"):
        EmbeddingStore(ReplayBuffer.open(dataset, mode="r"), enc.fingerprint)
    precompute_embeddings(rb, enc, batch_size=8)
    assert EmbeddingStore(rb, enc.fingerprint).group["image_front"].shape[0] == 14


def test_interrupted_run_is_not_reused(dataset, tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")

    def crash(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        precompute_embeddings(rb, enc, batch_size=4, progress=crash)
    with pytest.raises(StaleEmbeddingsError, match="incomplete"):
        EmbeddingStore(rb, enc.fingerprint)
    precompute_embeddings(rb, enc, batch_size=4)
    EmbeddingStore(rb, enc.fingerprint)


@pytest.mark.parametrize(("direct_reads", "prefetch"), [(True, True), (True, False), (False, True)])
def test_read_and_io_paths_store_identical_bytes(
    direct_reads: bool, prefetch: bool, dataset, tiny_dirs
) -> None:
    """Direct chunk reads and the I/O thread change the speed only: same arrays, chunks and attrs."""
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")

    def stored() -> tuple[dict, dict, dict]:
        g = rb.root["embeddings"][enc.fingerprint]
        keys = sorted(g.array_keys())
        return {k: np.asarray(g[k][:]) for k in keys}, {k: g[k].chunks for k in keys}, dict(g.attrs)

    # batch 5 over 12 frames: a short last batch that is not a whole chunk
    precompute_embeddings(rb, enc, batch_size=5, direct_reads=False, prefetch=False)
    want = stored()
    seen: list[int] = []
    precompute_embeddings(
        rb,
        enc,
        batch_size=5,
        overwrite=True,
        direct_reads=direct_reads,
        prefetch=prefetch,
        progress=lambda done, total: seen.append(done),
    )
    got = stored()
    assert got[0].keys() == want[0].keys() == {"image_front", "image_wrist", "text", "text_mask"}
    for k in want[0]:
        assert got[0][k].dtype == want[0][k].dtype
        assert np.array_equal(got[0][k].view(np.uint8), want[0][k].view(np.uint8)), k
    assert got[1:] == want[1:]
    assert seen == [5, 10, 12]  # frames written, in order, after each batch's write


def test_read_error_in_io_thread_surfaces_and_leaves_group_incomplete(dataset, tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    bad = dataset / "data" / "image_wrist" / "c" / "9" / "0" / "0" / "0"
    bad.write_bytes(b"not a blosc chunk")
    with pytest.raises(DatasetError, match=r"image_wrist/c/9/0/0/0.*frame 9"):
        precompute_embeddings(rb, enc, batch_size=4, prefetch=True)
    with pytest.raises(StaleEmbeddingsError, match="incomplete"):
        EmbeddingStore(rb, enc.fingerprint)
