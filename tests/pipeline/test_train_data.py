"""Batches from the dataset + embedding store: shapes, normalization, precomputed == on the fly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vla.data import ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import StaleEmbeddingsError, precompute_embeddings
from vla.evaluation import wilson_interval
from vla.training.batches import DataSpec, build_train_data, collate


@pytest.fixture(scope="module")
def encoder(tiny_encoder_dir: Path):
    return build_encoder(EncoderConfig(family="siglip", model=str(tiny_encoder_dir), max_text_len=16))


def test_batches_precomputed_match_on_the_fly(tiny_dataset: Path, encoder, tmp_path: Path) -> None:
    import shutil

    ds_path = tmp_path / "d.zarr"
    shutil.copytree(tiny_dataset, ds_path)
    spec = DataSpec(dataset=str(ds_path), n_obs_steps=2, horizon=8)
    with pytest.raises(StaleEmbeddingsError):
        build_train_data(DataSpec(dataset=str(ds_path), embeddings="precomputed"), encoder)
    fly = build_train_data(
        DataSpec(dataset=str(ds_path), n_obs_steps=2, horizon=8, embeddings="on_the_fly"), encoder
    )
    precompute_embeddings(ReplayBuffer.open(ds_path, mode="a"), encoder, dtype="float32")
    pre = build_train_data(spec, encoder)
    assert pre.token_source == "precomputed" and fly.token_source == "on_the_fly"
    idx = [0, 7, len(pre.dataset) - 1]
    a = pre.dataset.__getitems__(idx)
    b = collate([fly.dataset[i] for i in idx])
    c = fly.dataset.__getitems__(idx)
    n = 2 * encoder.tokens_per_image + 16
    assert a["tokens"].shape == (3, n, encoder.dim) and a["token_mask"].shape == (3, n)
    assert a["state"].shape == (3, 2, 7) and a["action"].shape == (3, 8, 7)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(c[k], b[k])
    # Normalized to [-1, 1] by training-split statistics (min-max).
    full = pre.dataset.__getitems__(list(range(len(pre.dataset))))
    assert full["action"].min() >= -1.0 - 1e-5 and full["action"].max() <= 1.0 + 1e-5
    assert full["token_mask"][:, : 2 * encoder.tokens_per_image].all()


def test_precomputed_tokens_read_in_blocks_equal_one_read(
    tiny_dataset: Path, encoder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens are loaded block by block (bounded memory); blocks that do not divide the frame count
    give the same float16 batches as one block, compared with the store's rows read directly."""
    import shutil

    from vla.encoders.cache import EmbeddingStore
    from vla.training import token_arrays

    ds_path = tmp_path / "d.zarr"
    shutil.copytree(tiny_dataset, ds_path)
    rb = ReplayBuffer.open(ds_path, mode="a")
    precompute_embeddings(rb, encoder, dtype="float16")
    spec = DataSpec(dataset=str(ds_path), n_obs_steps=2, horizon=8, embeddings="precomputed")
    monkeypatch.setattr(token_arrays, "_READ_BLOCK_FRAMES", 7)
    assert rb.n_frames % 7 and rb.n_frames > 14
    blocks = build_train_data(spec, encoder)
    monkeypatch.setattr(token_arrays, "_READ_BLOCK_FRAMES", 1 << 20)
    whole = build_train_data(spec, encoder)
    idx = list(range(len(whole.dataset)))
    a, b = blocks.dataset.__getitems__(idx), whole.dataset.__getitems__(idx)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # Oracle: the zarr array itself, read with zarr, at the frames past the last full block.
    import zarr

    store = EmbeddingStore.for_encoder(ReplayBuffer.open(ds_path), encoder)
    raw = zarr.open_array(str(ds_path / "embeddings" / store.name / "image_front"), mode="r")
    last = np.arange(rb.n_frames - 3, rb.n_frames)
    got = token_arrays.read_image_tokens(store, "front", torch.float16)
    assert got.dtype == torch.float16 and got.shape[0] == rb.n_frames
    np.testing.assert_array_equal(got[last].numpy(), raw[last[0] : last[-1] + 1])


def test_camera_subset_and_no_text(tiny_dataset: Path, encoder) -> None:
    data = build_train_data(
        DataSpec(dataset=str(tiny_dataset), cameras=("wrist",), use_text=False, embeddings="on_the_fly"),
        encoder,
    )
    item = data.dataset[0]
    assert item["tokens"].shape == (encoder.tokens_per_image, encoder.dim) and data.cameras == ["wrist"]
    with pytest.raises(KeyError, match="image_top"):
        build_train_data(DataSpec(dataset=str(tiny_dataset), cameras=("top",)), encoder)


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(40, 50)
    assert math.isclose(lo, 0.6696, abs_tol=1e-3) and math.isclose(hi, 0.8876, abs_tol=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and math.isclose(wilson_interval(10, 10)[1], 1.0)
    assert np.isclose(sum(wilson_interval(25, 50)), 1.0)
    # The interval holds the observed rate itself, exactly at 0/n and n/n (a 50/50 task's upper
    # bound was 1 - 1e-16, a negative error bar that broke vla-eval task=all's plot).
    for n in range(1, 201):
        for k in range(n + 1):
            lo, hi = wilson_interval(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n)
        assert wilson_interval(n, n)[1] == 1.0 and wilson_interval(0, n)[0] == 0.0


def test_future_state_is_the_normalized_state_ahead_clamped_to_the_episode(
    tiny_dataset: Path, encoder
) -> None:
    offsets = (1, 3, 1000)  # 1000: past every episode's end -> its last frame
    data = build_train_data(
        DataSpec(dataset=str(tiny_dataset), embeddings="on_the_fly", future_offsets=offsets), encoder
    )
    rb = ReplayBuffer.open(tiny_dataset, mode="r")
    state = data.processor.normalize_state(rb.read("state", 0, rb.n_frames).astype(np.float32))
    ends = rb.episode_ends
    for i in (0, 5, len(data.dataset) - 1):
        item = data.dataset[i]
        w = data.dataset.windows[i]
        e, t = int(w["episode"]), int(w["t"])
        start = 0 if e == 0 else int(ends[e - 1])
        last = int(ends[e]) - 1
        want = np.stack([state[min(start + t + o, last)] for o in offsets])
        np.testing.assert_allclose(item["future_state"].numpy(), want, atol=1e-6)
    batch = data.dataset.__getitems__([0, 5])
    assert batch["future_state"].shape == (2, 3, 7)
    with pytest.raises(ValueError, match="future_offsets"):
        DataSpec(dataset=str(tiny_dataset), future_offsets=(0,))
