"""vla-embed num_shards=2 shard=0/1 + merge=true stores what the unsharded vla-embed stores, byte
for byte (separable and per-frame-text encoders), and the merge refuses what does not fit."""

from __future__ import annotations

import numpy as np
import pytest
from test_cache import INSTR, LENGTHS, add_episode, build

from vla.data import DatasetError, DatasetMeta, ReplayBuffer
from vla.encoders.cache import EmbeddingStore, precompute_embeddings
from vla.encoders.cache_shards import embed_shard, merge_embedding_shards, shard_spans, side_store


@pytest.fixture
def dataset(tmp_path):
    """test_cache's dataset: 3 episodes, 12 frames, 2 cameras of different sizes."""
    path = tmp_path / "demo.zarr"
    rb = ReplayBuffer.create(path, DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front", "wrist"]))
    for i, (t, s) in enumerate(zip(LENGTHS, INSTR, strict=True)):
        add_episode(rb, t, s, seed=i)
    return path


def _stored(path, fp: str) -> tuple[dict, dict, dict]:
    g = ReplayBuffer.open(path).root["embeddings"][fp]
    keys = sorted(g.array_keys())
    return {k: np.asarray(g[k][:]) for k in keys}, {k: g[k].chunks for k in keys}, dict(g.attrs)


@pytest.mark.parametrize("family", ["siglip", "paligemma"])
def test_sharded_embeddings_equal_unsharded(family: str, dataset, tiny_dirs, tmp_path) -> None:
    import shutil

    enc = build(family, tiny_dirs[family])
    whole = tmp_path / "whole.zarr"
    shutil.copytree(dataset, whole)
    # 12 frames in chunks of 5: shard 0 gets frames 0-9 and the 3 instructions, shard 1 frames 10-11.
    precompute_embeddings(ReplayBuffer.open(whole, mode="a"), enc, batch_size=5, dtype="float32")
    rb = ReplayBuffer.open(dataset)
    for k in (1, 0):
        embed_shard(rb, enc, dataset, k, 2, batch_size=5, dtype="float32")
    assert shard_spans(12, 3, 5, 0, 2) == (range(0, 10), range(0, 3))
    assert shard_spans(12, 3, 5, 1, 2) == (range(10, 12), range(3, 3))
    name = merge_embedding_shards(ReplayBuffer.open(dataset, mode="a"), dataset, 2)
    assert name == enc.fingerprint
    assert not side_store(dataset, 0, 2).exists() and not side_store(dataset, 1, 2).exists()
    got, want = _stored(dataset, name), _stored(whole, name)
    assert got[0].keys() == want[0].keys() == {"image_front", "image_wrist", "text", "text_mask"}
    for k in want[0]:
        assert np.array_equal(got[0][k].view(np.uint8), want[0][k].view(np.uint8)), k
    assert got[1:] == want[1:]  # chunks and attributes
    EmbeddingStore(ReplayBuffer.open(dataset), name).verify()  # readers accept it


def test_merge_refuses_missing_stale_and_incomplete_shards(dataset, tiny_dirs) -> None:
    enc = build("siglip", tiny_dirs["siglip"])
    rb = ReplayBuffer.open(dataset, mode="a")
    embed_shard(rb, enc, dataset, 0, 2, batch_size=5)
    with pytest.raises(
        FileNotFoundError, match=r"embed_shard_1_of_2.zarr: shard 1 of 2 has not been embedded"
    ):
        merge_embedding_shards(rb, dataset, 2)
    embed_shard(rb, enc, dataset, 1, 2, batch_size=5)
    add_episode(rb, 2, "open the drawer", seed=9)  # the dataset changed after the shards ran
    with pytest.raises(DatasetError, match=r"embed_shard_0_of_2.zarr: embeds 12 frames of another version"):
        merge_embedding_shards(rb, dataset, 2)
    assert "embeddings" not in [n for n, _ in rb.root.members()]  # nothing written to the dataset
