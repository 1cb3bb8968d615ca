"""Memory-mapped training tokens (`data.tokens=mmap`): the same batches as tokens in RAM, checked
against the zarr arrays read directly; the cache file is reused, and rebuilt when it goes stale."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from vla.data import ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import EmbeddingStore, precompute_embeddings
from vla.training.batches import DataSpec, build_train_data
from vla.training.token_arrays import choose_mode


@pytest.fixture(scope="module")
def embedded(tiny_dataset: Path, tiny_encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    enc = build_encoder(EncoderConfig(family="siglip", model=str(tiny_encoder_dir), max_text_len=16))
    ds = tmp_path_factory.mktemp("mmap") / "d.zarr"
    shutil.copytree(tiny_dataset, ds)
    precompute_embeddings(ReplayBuffer.open(ds, mode="a"), enc, dtype="float16")
    return ds, enc


def _spec(ds: Path, tokens: str, cache: Path | None) -> DataSpec:
    return DataSpec(
        dataset=str(ds), n_obs_steps=2, horizon=8, embeddings="precomputed", tokens=tokens,
        token_cache_dir=str(cache) if cache else None,
    )  # fmt: skip


def test_mmap_batches_equal_ram_and_the_store(embedded, tmp_path: Path) -> None:
    ds, enc = embedded
    cache = tmp_path / "tokens"
    ram = build_train_data(_spec(ds, "ram", None), enc)
    mm = build_train_data(_spec(ds, "mmap", cache), enc)
    assert ram.dataset.source.mode == "ram" and mm.dataset.source.mode == "mmap"
    files = sorted(cache.glob("*.npy"))
    assert [f.name.split("-")[1] for f in files] == ["front", "wrist"], files
    idx = list(range(len(ram.dataset)))
    a, b = ram.dataset.__getitems__(idx), mm.dataset.__getitems__(idx)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    # Oracle: the cache file as plain numpy == the zarr array read with zarr (not through the store).
    name = EmbeddingStore.for_encoder(ReplayBuffer.open(ds), enc).name
    for f in files:
        cam = f.name.split("-")[1]
        raw = zarr.open_array(str(ds / "embeddings" / name / f"image_{cam}"), mode="r")[:]
        np.testing.assert_array_equal(np.load(f), raw)
    # Single items go through the same arrays.
    torch.testing.assert_close(ram.dataset[3]["tokens"], mm.dataset[3]["tokens"], rtol=0, atol=0)


def test_cache_reused_then_rebuilt_when_stale(embedded, tmp_path: Path) -> None:
    ds, enc = embedded
    cache = tmp_path / "tokens"
    build_train_data(_spec(ds, "mmap", cache), enc)
    front = next(cache.glob("*-front-*.npy"))
    stamp = front.stat().st_mtime_ns
    build_train_data(_spec(ds, "mmap", cache), enc)
    assert front.stat().st_mtime_ns == stamp, "an unchanged cache file must be reused, not rewritten"
    # Damage the cached first row: the spot check catches it and the file is rebuilt from the store.
    arr = np.load(front, mmap_mode="r+")
    arr[0] = 0
    arr.flush()
    del arr
    data = build_train_data(_spec(ds, "mmap", cache), enc)
    name = EmbeddingStore.for_encoder(ReplayBuffer.open(ds), enc).name
    raw = zarr.open_array(str(ds / "embeddings" / name / "image_front"), mode="r")[:1]
    np.testing.assert_array_equal(data.dataset.source.images[0][:1].numpy(), raw)
    assert len(list(cache.glob("*-front-*.npy"))) == 1
    assert not list(cache.glob(".*.tmp")), "no temporary file is left behind"


def test_mode_choice_and_errors(embedded) -> None:
    assert choose_mode("auto", nbytes=6, available=10) == "mmap"
    assert choose_mode("auto", nbytes=4, available=10) == "ram"
    assert choose_mode("auto", nbytes=4, available=None) == "ram"
    assert choose_mode("mmap", nbytes=1, available=10) == "mmap"
    assert choose_mode("auto", nbytes=3, available=10, processes=2) == "mmap"  # one copy per process
    with pytest.raises(ValueError, match=r"data\.tokens"):
        choose_mode("disk", nbytes=1, available=10)
    with pytest.raises(ValueError, match=r"DataSpec\.tokens"):
        DataSpec(dataset="x.zarr", tokens="disk")
    ds, enc = embedded
    with pytest.raises(ValueError, match="token_cache_dir"):
        build_train_data(_spec(ds, "mmap", None), enc)
