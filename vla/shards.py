"""Deterministic shards of a simulation job, so any scheduler (SLURM array, Hydra launcher, a shell
loop) can split `vla-collect`, `vla-embed` and `vla-eval` over machines and join the parts again.

Shard i of n owns a contiguous block of the job's items (episodes, attempts): blocks in shard order
concatenate to the unsharded job, and an item's seed depends on its global index only.
"""

from __future__ import annotations

from pathlib import Path


def check_shard(shard: int, num_shards: int, what: str = "shard") -> None:
    """Raise a ValueError naming the options when (shard, num_shards) is not a valid pair."""
    if isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1:
        raise ValueError(f"num_shards must be an integer >= 1, got {num_shards!r}")
    if isinstance(shard, bool) or not isinstance(shard, int) or not 0 <= shard < num_shards:
        raise ValueError(f"{what}={shard!r} must be an integer in [0, num_shards={num_shards})")


def shard_range(n: int, shard: int, num_shards: int) -> range:
    """Shard `shard`'s items of 0..n-1: a contiguous block; the first n % num_shards blocks have one
    more item. E.g. n=10, 3 shards: 0-3, 4-6, 7-9."""
    check_shard(shard, num_shards)
    base, extra = divmod(n, num_shards)
    lo = shard * base + min(shard, extra)
    return range(lo, lo + base + (1 if shard < extra else 0))


def shard_dir(out_dir: str | Path, shard: int, num_shards: int) -> Path:
    """Where shard `shard` of `num_shards` writes its part of a job whose result goes to `out_dir`."""
    return Path(out_dir) / f"shard_{shard}_of_{num_shards}"
