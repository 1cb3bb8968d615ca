"""Rendering simulator scenes in spawned worker processes.

Training's grounding scenes (`vla.training.grounding`) and the encoder's pretraining pairs
(`vla.pretrain.sim_pairs`) are thousands of independent resets, each rendered by a single-threaded
simulator and renderer: one process per core renders them about that many times faster. A scene
depends only on its task and seed, so the work is cut into contiguous index ranges, each rendered
by its own process, and the parts are concatenated in order: the same frames for any number of
workers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

# Below this many scenes a worker process's start-up (spawn, import MuJoCo, build the scenes) costs
# more than it saves.
MIN_SCENES_PER_WORKER = 256


def default_render_workers() -> int:
    """Processes used when none are asked for: the CPU's cores, at most 4 (scene rendering runs in
    a stage's set-up, before anything else wants the cores)."""
    return max(1, min(os.cpu_count() or 1, 4))


def render_workers(n_scenes: int, workers: int | None, where: str) -> int:
    """How many processes render `n_scenes`: `workers` (None: `default_render_workers()`), at most
    one per `MIN_SCENES_PER_WORKER` scenes. ValueError naming `where` for a count below 1."""
    n = default_render_workers() if workers is None else int(workers)
    if n < 1:
        raise ValueError(f"{where}: workers must be >= 1, got {workers}")
    return max(1, min(n, n_scenes // MIN_SCENES_PER_WORKER))


def split_range(n: int, k: int) -> list[tuple[int, int]]:
    """[0, n) cut, in order, into `k` contiguous (start, stop) ranges of about equal length."""
    bounds = [round(n * i / k) for i in range(k + 1)]
    return list(itertools.pairwise(bounds))


def map_in_processes(fn: Callable[..., T], jobs: Sequence[tuple[Any, ...]]) -> list[T]:
    """[fn(*job) for job in jobs], each job in its own spawned process (in-process for one job).

    `fn` and its arguments must be picklable (a module-level function). "spawn", not fork: MuJoCo's
    EGL/OSMesa contexts are not fork-safe (vla-collect's workers do the same).
    """
    if len(jobs) == 1:
        return [fn(*jobs[0])]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(jobs), mp_context=mp.get_context("spawn")) as pool:
        return list(pool.map(fn, *zip(*jobs, strict=True)))
