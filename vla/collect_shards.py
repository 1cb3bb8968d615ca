"""Joining the stores of a sharded `vla-collect` (`CollectConfig.shard` / `num_shards`) into the
store the unsharded collection writes."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from vla.collect import CollectConfig, CollectResult, collect
from vla.data import DatasetMeta, ReplayBuffer
from vla.data.merge import append_episodes, check_compatible
from vla.data.staging import staged_output


def shard_store(out: str | Path, shard: int, num_shards: int) -> Path:
    """Where shard `shard` of a collection into `out` writes: `<name>.shard_<i>_of_<n>.zarr` beside it."""
    out = Path(out)
    stem = out.name[: -len(".zarr")] if out.name.endswith(".zarr") else out.name
    return out.with_name(f"{stem}.shard_{shard}_of_{num_shards}.zarr")


def merge_shards(cfg: CollectConfig) -> CollectResult:
    """Join the shard stores of `cfg` (`shard_store(cfg.out, i, cfg.num_shards)`) into `cfg.out`.

    Their episodes are appended in shard order (each shard: its block's successes, in attempt order).
    When shards failed attempts, the merge goes on collecting from the last stored attempt, exactly as
    the unsharded run goes on after attempt n_episodes - 1, until n_episodes are stored. So the merged
    store holds the unsharded store's episodes, bit for bit. Written atomically (`staged_output`):
    refused shards or an interrupted top-up leave `cfg.out` as it was.
    """
    n = cfg.num_shards
    if n < 2:
        raise ValueError("merge_shards: num_shards must be >= 2 (the number of shards collected)")
    rbs = []
    for k in range(n):
        path = shard_store(cfg.out, k, n)
        if not path.exists():
            raise FileNotFoundError(f"{path}: shard {k} of {n} has not been collected (no store)")
        rb = ReplayBuffer.open(path)
        have = dict(rb.meta.extra.get("shard") or {})
        want = {"index": k, "num_shards": n, "n_episodes": cfg.n_episodes}
        diffs = [f"shard.{f} {have.get(f)!r} != {v!r}" for f, v in want.items() if have.get(f) != v]
        diffs += [
            f"{f} {rb.meta.extra.get(f)!r} != {v!r}"
            for f, v in (("task", cfg.task), ("seed", cfg.seed))
            if rb.meta.extra.get(f) != v
        ]
        if diffs:
            raise ValueError(f"{path}: not shard {k} of this collection ({'; '.join(diffs)})")
        rbs.append(rb)
    check_compatible(rbs)
    m = rbs[0].meta
    extra = {"task": cfg.task, "seed": cfg.seed, "source": m.extra.get("source"), **cfg.extra_meta}
    extra["merged_from"] = [str(rb.path) for rb in rbs]
    meta = DatasetMeta(
        fps=m.fps, robot=m.robot, joint_names=list(m.joint_names), camera_names=list(m.camera_names),
        keys=dict(m.keys), extra=extra,
    )  # fmt: skip
    t0 = time.perf_counter()
    n_made_up = 0
    with staged_output(cfg.out, overwrite=cfg.overwrite) as tmp:
        dest = ReplayBuffer.create(tmp, meta)
        for rb in rbs:
            append_episodes(dest, rb)
        if dest.n_episodes < cfg.n_episodes:
            have = dest.n_episodes
            top_up = dataclasses.replace(
                cfg, out=str(tmp), resume=True, overwrite=False, shard=0, num_shards=1, video_episodes=0
            )
            res = collect(top_up)
            n_made_up = res.n_saved - have
    seconds = time.perf_counter() - t0
    return CollectResult(Path(cfg.out), cfg.n_episodes, n_made_up, n_made_up, seconds, None)
