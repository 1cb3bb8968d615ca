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


def _copy_encoder(src, dst, perturb: bool = False):
    """A copy of a saved checkpoint under another folder name; `perturb` changes one weight."""
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    if perturb:
        f = dst / "model.safetensors"
        tensors = load_file(f)
        name = sorted(tensors)[0]
        tensors[name] = tensors[name] + 1e-3
        save_file(tensors, f, metadata={"format": "pt"})
    return dst


def test_renamed_copy_of_an_encoder_finds_its_embeddings(dataset, tiny_dirs, tmp_path) -> None:
    from vla.encoders import fingerprint_identity, same_encoder

    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    fp = precompute_embeddings(rb, enc, batch_size=8)
    copy = build("siglip", _copy_encoder(tiny_dirs["siglip"], tmp_path / "robot-copy_of.siglip"))
    # The folder name is part of the readable string, not of the identity.
    assert copy.fingerprint != fp and "robot-copy_of.siglip" in copy.fingerprint
    assert fingerprint_identity(copy.fingerprint) == fingerprint_identity(fp)
    # The checkpoint-style comparison (VLAPolicy.from_checkpoint) accepts the copy.
    assert same_encoder(copy.fingerprint, fp) and same_encoder(fp, copy.fingerprint)

    # The stored group is found under its original name; same tokens as through the original.
    store = EmbeddingStore(ReplayBuffer.open(dataset, mode="r"), copy.fingerprint)
    assert store.name == fp
    frames = np.array([0, 7, 11])
    original = EmbeddingStore(ReplayBuffer.open(dataset, mode="r"), fp).encoder_output(frames)
    assert torch.equal(store.encoder_output(frames).tokens, original.tokens)
    # And vla-embed with the copy reuses it: nothing is re-encoded, no second group.
    calls: list[int] = []
    copy.model.vision_model.register_forward_hook(lambda m, a, k: calls.append(1))
    assert precompute_embeddings(rb, copy, batch_size=8) == fp
    assert calls == []
    assert sorted(rb.root["embeddings"].group_keys()) == [fp]

    # Other weights in a folder of the same name are still refused.
    other = build("siglip", _copy_encoder(tiny_dirs["siglip"], tmp_path / "w" / "siglip", perturb=True))
    assert not same_encoder(other.fingerprint, fp)
    assert fingerprint_identity(other.fingerprint) != fingerprint_identity(fp)
    with pytest.raises(StaleEmbeddingsError, match="no embeddings for encoder fingerprint"):
        EmbeddingStore(rb, other.fingerprint)


def test_fingerprint_identity_of_foreign_strings() -> None:
    from vla.encoders import fingerprint_identity, same_encoder

    assert fingerprint_identity("siglip-my-model-0123456789abcdef") == "siglip-0123456789abcdef"
    assert fingerprint_identity("not a fingerprint") == "not a fingerprint"
    assert not same_encoder("siglip-a-0123456789abcdef", "clip-a-0123456789abcdef")
    assert not same_encoder("siglip-a-0123456789abcdef", "siglip-a-0123456789abcdee")
    assert not same_encoder(None, None) and not same_encoder("", "")


def test_corrupt_embeddings_are_refused_naming_the_array(dataset, tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    fp = precompute_embeddings(rb, enc, batch_size=4)
    gdir = dataset / "embeddings" / fp
    chunk = gdir / "image_front" / "c" / "1" / "0" / "0"  # frames 4..7
    good = chunk.read_bytes()
    chunk.write_bytes(b"garbage, not a zstd frame")

    # vla-embed's up-to-date check reads every chunk: not "already up to date".
    calls: list[int] = []
    hook = enc.model.vision_model.register_forward_hook(lambda m, a, k: calls.append(1))
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/image_front/c/1/0/0: chunk: .*overwrite=true"):
        precompute_embeddings(rb, enc, batch_size=4)
    assert calls == []
    # Readers name the chunk file instead of a zstd error.
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/image_front/c/1/0/0: chunk: corrupt"):
        EmbeddingStore(ReplayBuffer.open(dataset), fp, in_memory=True)
    store = EmbeddingStore(ReplayBuffer.open(dataset), fp)
    store.image_tokens("front", [0, 1])  # other chunks still read
    with pytest.raises(DatasetError, match=r"image_front/c/1/0/0"):
        store.encoder_output([5])
    # overwrite=true recomputes it.
    hook.remove()
    precompute_embeddings(rb, enc, batch_size=4, overwrite=True)
    assert chunk.read_bytes() == good
    EmbeddingStore(rb, fp).verify()

    # Invalid JSON in an array's metadata: named, not a JSONDecodeError traceback.
    (gdir / "text" / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/text/zarr\.json: unreadable zarr metadata"):
        precompute_embeddings(rb, enc, batch_size=4)
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/text/zarr\.json"):
        EmbeddingStore(rb, fp)
    # ... and in the group's own metadata (attributes).
    precompute_embeddings(rb, enc, batch_size=4, overwrite=True)
    (gdir / "zarr.json").write_text("{not json")
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/zarr\.json: unreadable zarr metadata"):
        precompute_embeddings(rb, enc, batch_size=4)
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/zarr\.json"):
        EmbeddingStore(rb, fp)


def test_non_finite_tokens_are_refused(dataset, tiny_dirs) -> None:
    import zarr

    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    fp = precompute_embeddings(rb, enc, batch_size=4)
    arr = zarr.open_array(str(dataset / "embeddings" / fp / "image_wrist"), mode="r+")
    arr[6, 0, 3] = np.inf  # frame 6: episode 1 (frames 5..7)
    with pytest.raises(DatasetError, match=r"image_wrist: values: non-finite value \(inf\) at row 6"):
        precompute_embeddings(rb, enc, batch_size=4)
    store = EmbeddingStore(rb, fp)
    with pytest.raises(DatasetError, match=r"image_wrist: non-finite token \(inf\) at frame 6 \(episode 1\)"):
        store.image_tokens("wrist", [2, 6])

    # Tokens that overflow float16 are refused when written, not stored as inf.
    encode_images = enc.encode_images

    def huge(images):
        out = encode_images(images)
        return type(out)(out.tokens * 1e6, out.mask, out.segments)

    enc.encode_images = huge
    with pytest.raises(DatasetError, match=r"non-finite token \(.*inf\) at frame 0 .*use dtype=float32"):
        precompute_embeddings(rb, enc, batch_size=4, overwrite=True)


def test_training_data_refuses_damaged_stores_up_front(dataset, tiny_dirs) -> None:
    import zarr

    from vla.training.batches import DataSpec, build_train_data

    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    fp = precompute_embeddings(rb, enc, batch_size=4)
    spec = DataSpec(dataset=str(dataset), n_obs_steps=1, horizon=2)
    assert build_train_data(spec, enc).token_source == "precomputed"

    # A bad embeddings chunk: one line naming the chunk, not a zstd error or a silent fallback.
    text_chunk = dataset / "embeddings" / fp / "text" / "c" / "0" / "0" / "0"
    good = text_chunk.read_bytes()
    text_chunk.write_bytes(b"\x00" * 7)
    with pytest.raises(DatasetError, match=rf"embeddings/{fp}/text/c/0/0/0: chunk: corrupt"):
        build_train_data(spec, enc)
    text_chunk.write_bytes(good)

    # NaN in the actions: refused when the statistics are computed, naming array, frame and episode
    # (was: "non-finite loss at step 0" / statistics "must be JSON-serialisable").
    zarr.open_array(str(dataset / "data" / "action"), mode="r+")[9, 4] = np.nan  # episode 2 (frames 8..11)
    with pytest.raises(
        DatasetError, match=r"data/action: non-finite value \(nan\) at frame 9 \(step 1 of episode 2\)"
    ):
        build_train_data(spec, enc)


@pytest.mark.parametrize("family", ["siglip", "paligemma"])
def test_appended_episodes_are_encoded_alone_and_match_a_full_run(family: str, tmp_path, tiny_dirs) -> None:
    """DAgger appends episodes: the stored group grows by the new frames only, and holds what a
    from-scratch run over the whole dataset holds (separable and per-frame-text encoders)."""
    enc = build(family, tiny_dirs[family])
    paths = [tmp_path / "grown.zarr", tmp_path / "whole.zarr"]
    for p in paths:
        rb = ReplayBuffer.create(p, DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front", "wrist"]))
        for i, (t, s) in enumerate(zip(LENGTHS, INSTR)):
            add_episode(rb, t, s, seed=i)
    grown = ReplayBuffer.open(paths[0], mode="a")
    precompute_embeddings(grown, enc, batch_size=4, dtype="float32")
    add_episode(grown, 6, "stack the blue cube", seed=7)
    add_episode(grown, 2, "open the drawer", seed=8)
    with pytest.raises(StaleEmbeddingsError, match="cover 12 frames"):
        EmbeddingStore(grown, enc.fingerprint)
    seen: list[int] = []
    name = "encode_images" if enc.separable else "encode"
    method = getattr(enc, name)

    def counted(images, *args, **kw):
        seen.append(sum(len(v) for v in images.values()))
        return method(images, *args, **kw)

    setattr(enc, name, counted)
    precompute_embeddings(grown, enc, batch_size=4, dtype="float32")
    setattr(enc, name, method)
    # 8 new frames x 2 cameras, in batches of 4 frames; none of the 12 old frames again.
    assert seen == [8, 8], seen
    whole = ReplayBuffer.open(paths[1], mode="a")
    add_episode(whole, 6, "stack the blue cube", seed=7)
    add_episode(whole, 2, "open the drawer", seed=8)
    precompute_embeddings(whole, enc, batch_size=4, dtype="float32")
    a = EmbeddingStore(ReplayBuffer.open(paths[0]), enc.fingerprint)
    b = EmbeddingStore(ReplayBuffer.open(paths[1]), enc.fingerprint)
    a.verify()
    frames = np.arange(grown.n_frames)
    torch.testing.assert_close(
        a.encoder_output(frames).tokens, b.encoder_output(frames).tokens, atol=1e-5, rtol=1e-5
    )
    assert a.attrs["n_episodes"] == 5 and a.attrs["complete"]
