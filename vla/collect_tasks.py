"""Several tasks' demos in one dataset (`vla-collect task=all`): each task collected as usual
(its own env, seeds seed, seed + 1, ...) into a hidden scratch store, then all joined in task
order into `out` (`vla.data.merge.merge_stores`: atomic and validated). Each episode's info names
its task; the store's `extra.tasks` lists them."""

from __future__ import annotations

import dataclasses
import shutil
import time
import uuid
from typing import Any

from vla.collect import CollectConfig, CollectResult, collect
from vla.data.merge import merge_stores
from vla.data.staging import check_destination
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
    scratch = out.parent / f".{out.name}.tasks-{uuid.uuid4().hex[:8]}"
    scratch.mkdir(parents=True)
    t0 = time.perf_counter()
    attempts = successes = 0
    video = None
    try:
        parts = []
        for k, task in enumerate(tasks):
            part = scratch / f"{task}.zarr"
            res = collect(
                dataclasses.replace(
                    cfg, task=task, n_episodes=counts[task], out=str(part), env_overrides=envs[task],
                    overwrite=False, video_episodes=cfg.video_episodes if k == 0 else 0,
                    video_path=cfg.video_path or str(out.with_suffix(".mp4")),
                )
            )  # fmt: skip
            attempts, successes = attempts + res.n_attempts, successes + res.n_success
            video = video or res.video
            parts.append(part)
        extra = {
            "task": "all",
            "tasks": tasks,
            "episodes_per_task": counts,
            "seed": cfg.seed,
            **cfg.extra_meta,
        }
        merge_stores(parts, out, overwrite=cfg.overwrite, extra=extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return CollectResult(out, cfg.n_episodes, attempts, successes, time.perf_counter() - t0, video)
