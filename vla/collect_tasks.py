"""Several tasks' demos in one dataset (`vla-collect task=all`): each task collected as usual
(its own env, seeds seed, seed + 1, ...), in task order, straight into one staged store that is
validated and moved to `out` once complete (`vla.data.staging.staged_output`: an interrupted run
leaves nothing, an overwrite keeps the old store until the new one is whole). Each episode's info
names its task; the store's `extra.tasks` lists them.

Collecting into one store, not one store per task joined afterwards, is what keeps the 2000-demo
collection from spending 25 more minutes copying (measured here): a join re-reads and re-writes
every frame."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from vla.collect import CollectConfig, CollectResult, collect
from vla.data import ReplayBuffer
from vla.data.staging import check_destination, staged_output
from vla.shards import shard_range


def split_episodes(n_episodes: int, tasks: list[str]) -> dict[str, int]:
    """`n_episodes` over the tasks as evenly as possible (the first ones get the remainder)."""
    if n_episodes < len(tasks):
        raise ValueError(f"n_episodes={n_episodes}: at least one episode per task ({len(tasks)} tasks)")
    return {t: len(shard_range(n_episodes, k, len(tasks))) for k, t in enumerate(tasks)}


def collect_tasks(cfg: CollectConfig, envs: dict[str, dict[str, Any]]) -> CollectResult:
    """Collect `cfg.n_episodes` episodes split over the tasks of `envs` (task -> its env overrides)
    into one store at `cfg.out`. `cfg.task` is ignored; resume and shards are not supported here."""
    if cfg.resume or cfg.num_shards > 1:
        raise ValueError(
            "task=all: resume and shards are per task; collect each task (task=<name>), then merge"
        )
    out = check_destination(cfg.out, cfg.overwrite)
    tasks = list(envs)
    counts = split_episodes(cfg.n_episodes, tasks)
    t0 = time.perf_counter()
    attempts = successes = 0
    video = None
    with staged_output(out, overwrite=cfg.overwrite) as tmp:
        rb = None
        for k, task in enumerate(tasks):
            res = collect(
                dataclasses.replace(
                    cfg, task=task, n_episodes=counts[task], out=str(tmp), env_overrides=envs[task],
                    overwrite=False, video_episodes=cfg.video_episodes if k == 0 else 0,
                    video_path=cfg.video_path or str(out.with_suffix(".mp4")),
                ),
                into=rb,
            )  # fmt: skip
            if rb is None:  # the first task created the store; the others append to it
                rb = ReplayBuffer.open(tmp, mode="a")
            attempts, successes = attempts + res.n_attempts, successes + res.n_success
            video = video or res.video
        assert rb is not None
        m = rb.meta
        extra = {**m.extra, "task": "all", "tasks": tasks, "episodes_per_task": counts, "seed": cfg.seed}
        rb.set_meta(dataclasses.replace(m, extra={**extra, **cfg.extra_meta}))
    return CollectResult(out, cfg.n_episodes, attempts, successes, time.perf_counter() - t0, video)
