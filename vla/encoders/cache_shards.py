"""Sharded `vla-embed`: shard i of n encodes its block of a dataset's frames into a side store; the
merge copies the blocks into the dataset's `embeddings/<fingerprint>/` group.

    vla-embed dataset=D num_shards=4 shard=<i>      # writes <D>.embed_shard_<i>_of_4.zarr (any machine)
    vla-embed dataset=D num_shards=4 merge=true     # joins them into D, then deletes the side stores

Shards own contiguous blocks of `batch_size`-frame chunks (and of `batch_size`-episode chunks of
instructions), so every shard writes whole chunks and encodes in the batches the unsharded run uses:
the merged group equals the unsharded one. No two processes write one store: the dataset is written
only by the merge, which marks the group complete after the last block (an interrupted merge leaves
an incomplete group, which readers refuse and `vla-embed` recomputes).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zarr

from vla.data.errors import DatasetError
from vla.encoders.base import FrozenEncoder
from vla.encoders.cache import (
    EMBEDDINGS_GROUP,
    DatasetLike,
    create_arrays,
    embeddings_group,
    encode_range,
    episodes_digest,
    find_groups,
)
from vla.shards import check_shard, shard_range


def side_store(dataset: str | Path, shard: int, num_shards: int) -> Path:
    """Where shard `shard` of `num_shards` writes: `<dataset>.embed_shard_<i>_of_<n>.zarr` beside it."""
    p = Path(dataset)
    stem = p.name[: -len(".zarr")] if p.name.endswith(".zarr") else p.name
    return p.with_name(f"{stem}.embed_shard_{shard}_of_{num_shards}.zarr")


def shard_spans(
    n_frames: int, n_episodes: int, batch_size: int, shard: int, num_shards: int
) -> tuple[range, range]:
    """(frames, episodes) of shard `shard`: contiguous blocks of whole `batch_size` chunks."""
    check_shard(shard, num_shards)

    def block(n: int) -> range:
        chunks = shard_range(math.ceil(n / batch_size), shard, num_shards)
        return range(min(chunks.start * batch_size, n), min(chunks.stop * batch_size, n))

    return block(n_frames), block(n_episodes)


def embed_shard(
    rb: DatasetLike,
    enc: FrozenEncoder,
    dataset: str | Path,
    shard: int,
    num_shards: int,
    batch_size: int = 32,
    dtype: str = "float16",
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode shard `shard`'s block of `rb` into its side store (replaced if present); returns its path."""
    frames, episodes = shard_spans(rb.n_frames, rb.n_episodes, batch_size, shard, num_shards)
    path = side_store(dataset, shard, num_shards)
    g = zarr.open_group(store=str(path), mode="w")
    fp = enc.fingerprint
    create_arrays(g, rb, enc, fp, batch_size, dtype)
    g.attrs.update(
        {"shard": shard, "num_shards": num_shards, "frames": [frames.start, frames.stop],
         "episodes": [episodes.start, episodes.stop], "batch_size": batch_size}
    )  # fmt: skip
    encode_range(rb, enc, g, fp, frames, episodes, batch_size, dtype, progress)
    g.attrs["complete"] = True
    return path


def _open_shard(path: Path, k: int, n: int, rb: DatasetLike) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path}: shard {k} of {n} has not been embedded (no side store)")
    g = zarr.open_group(store=str(path), mode="r")
    a = dict(g.attrs)
    if not a.get("complete"):
        raise DatasetError(f"{path}: shard {k} is incomplete (interrupted); run it again")
    if a.get("shard") != k or a.get("num_shards") != n:
        raise DatasetError(f"{path}: records shard {a.get('shard')} of {a.get('num_shards')}, not {k} of {n}")
    if a.get("n_frames") != rb.n_frames or a.get("episodes_digest") != episodes_digest(rb):
        raise DatasetError(
            f"{path}: embeds {a.get('n_frames')} frames of another version of the dataset "
            f"({rb.n_frames} frames now); embed the shards again"
        )
    return g


def merge_embedding_shards(rb: DatasetLike, dataset: str | Path, num_shards: int, keep: bool = False) -> str:
    """Join side stores 0..num_shards-1 into `rb`'s `embeddings/<fingerprint>/` (replacing a group
    of the same encoder), mark it complete, and delete the side stores (unless `keep`). Refuses
    (naming the side store) missing, incomplete or foreign shards and shards of another encoder or
    dataset version. Returns the group's name."""
    paths = [side_store(dataset, k, num_shards) for k in range(num_shards)]
    shards = [_open_shard(p, k, num_shards, rb) for k, p in enumerate(paths)]
    first = dict(shards[0].attrs)
    fp, bs = str(first["fingerprint"]), int(first["batch_size"])
    for p, g in zip(paths[1:], shards[1:], strict=True):
        a = dict(g.attrs)
        if a.get("fingerprint") != fp or a.get("batch_size") != bs or a.get("dtype") != first.get("dtype"):
            raise DatasetError(
                f"{p}: fingerprint/batch_size/dtype differ from {paths[0]}'s; embed the shards alike"
            )
    emb = embeddings_group(rb, create=True)
    found = find_groups(emb, fp)
    name = found[0] if found else fp
    try:
        dest = emb.create_group(name, overwrite=True)
    except OSError as e:
        raise DatasetError(
            f"{getattr(rb, 'path', 'dataset')}/{EMBEDDINGS_GROUP}/{name}: cannot write ({e})"
        ) from None
    dest.attrs.update(
        {
            k: v
            for k, v in first.items()
            if k not in ("shard", "num_shards", "frames", "episodes", "batch_size")
        }
    )
    dest.attrs["complete"] = False
    separable = bool(first["separable"])
    for key, src0 in shards[0].arrays():
        dest.create_array(key, shape=src0.shape, chunks=src0.chunks, dtype=src0.dtype)
    for g in shards:
        a = dict(g.attrs)
        frames, episodes = range(*a["frames"]), range(*a["episodes"])
        for key, src in g.arrays():
            rows = episodes if separable and key in ("text", "text_mask") else frames
            for s in range(rows.start, rows.stop, bs):  # chunk by chunk: bounded memory
                e = min(s + bs, rows.stop)
                dest[key][s:e] = src[s:e]
    dest.attrs["complete"] = True
    if not keep:
        for p in paths:
            shutil.rmtree(p)
    return name
