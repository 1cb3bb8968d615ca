"""Rendering the grounding scenes (`vla.training.grounding`): reset frames and expert-rollout frames,
labelled with where the named cube and its goal are, split over spawned worker processes.

A frame depends only on its task, its seed and (rollouts) its step, so the set is the same for any
number of workers; `vla.scene_workers` owns the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vla.scene_workers import map_in_processes, render_workers, split_range

if TYPE_CHECKING:
    from vla.training.grounding import GroundingSpec

# Rollout j of a task resets from seed + ROLLOUT_SEED_OFFSET + j: layouts apart from the reset scenes'.
ROLLOUT_SEED_OFFSET = 500_000
# A rollout costs ~40 scenes' worth of physics (expert steps at ~250/s against one render each).
ROLLOUT_COST = 40


def render_grounding_scenes(
    spec: GroundingSpec, cameras: Sequence[str], workers: int | None = None
) -> tuple[dict[str, np.ndarray], list[str], np.ndarray]:
    """Reset each task once per seed (then run the rollouts): frames {camera: uint8 (F, H, W, 3)},
    F instructions, and the target cube's table (x, y) and its goal's (`goal_xy`) float32 (F, 4) [m];
    F = n_scenes + rollouts * frames_per_rollout: the reset scenes first, then the rollouts' frames.

    workers: render in this many spawned processes, each a contiguous block of the scenes and of the
    rollouts (None: the CPU's cores up to 4; fewer when there is little work: `vla.scene_workers`).
    A frame depends on its task and seed only, so the result is the same for any number of workers."""
    scenes = [(name, 0, n) for name, n in zip(spec.tasks, spec.scenes_per_task(), strict=True)]
    rolls = [(name, 0, n) for name, n in zip(spec.tasks, spec.rollouts_per_task(), strict=True)]
    work = spec.n_scenes + ROLLOUT_COST * spec.rollouts
    n_workers = render_workers(work, workers, "render_grounding_scenes")
    jobs = [
        (spec, tuple(cameras), a, b)
        for a, b in zip(_split_blocks(scenes, n_workers), _split_blocks(rolls, n_workers), strict=True)
    ]
    parts = map_in_processes(_render_block, jobs)
    # Every reset scene, then every rollout (a worker may have none of one kind).
    ordered = [p[k] for k in (0, 1) for p in parts if len(p[k][2])]
    frames = {c: np.concatenate([p[0][c] for p in ordered]) for c in cameras}
    instructions = [t for p in ordered for t in p[1]]
    return frames, instructions, np.concatenate([p[2] for p in ordered])


def _split_blocks(blocks: list[tuple[str, int, int]], k: int) -> list[list[tuple[str, int, int]]]:
    """Cut the (task, first, stop) scene ranges, in order, into `k` runs of about equal length."""
    out: list[list[tuple[str, int, int]]] = []
    for lo, hi in split_range(sum(stop - start for _, start, stop in blocks), k):
        run, pos = [], 0
        for name, start, stop in blocks:
            a, b = max(lo, pos), min(hi, pos + stop - start)
            if a < b:
                run.append((name, start + a - pos, start + b - pos))
            pos += stop - start
        out.append(run)
    return out


Frames = tuple[dict[str, np.ndarray], list[str], np.ndarray]


def _render_block(
    spec: GroundingSpec,
    cameras: tuple[str, ...],
    scenes: list[tuple[str, int, int]],
    rollouts: list[tuple[str, int, int]],
) -> tuple[Frames, Frames]:
    """Reset scenes first..stop-1 of each (task, first, stop) in `scenes`, and the rollouts likewise
    in `rollouts`: two `render_grounding_scenes`-style triples."""
    import sim

    def labelled(task: Any) -> np.ndarray:
        return np.concatenate([task.cube_pos(task.target)[:2], task.goal_xy()]).astype(np.float32)

    out = []
    for kind, blocks in (("scene", scenes), ("rollout", rollouts)):
        frames: dict[str, list[np.ndarray]] = {c: [] for c in cameras}
        instructions: list[str] = []
        xy: list[np.ndarray] = []
        for name, first, stop in blocks:
            # A rollout renders only the frames it keeps, not every step's observation.
            quiet = {"render_images": False} if kind == "rollout" else {}
            env = sim.make(name, **{**spec.env.get(name, {}), "cameras": list(cameras), **quiet})
            try:
                task = env.unwrapped.task
                if not hasattr(task, "target") or not hasattr(task, "goal_xy"):
                    raise ValueError(
                        f"grounding scenes: task {name!r} names no target cube and goal (`target`, `goal_xy`)"
                    )
                for i in range(first, stop):
                    if kind == "scene":
                        obs, _ = env.reset(seed=spec.seed + i)
                        shots = [{c: obs[f"image_{c}"] for c in cameras}]
                        labels = [labelled(task)]
                    else:
                        obs, shots, labels = _rollout_frames(env, spec, i, cameras, labelled)
                    for shot, label in zip(shots, labels, strict=True):
                        for c in cameras:
                            frames[c].append(shot[c])
                        instructions.append(str(obs["instruction"]))
                        xy.append(label)
            finally:
                env.close()
        if xy:
            out.append(({c: np.stack(v) for c, v in frames.items()}, instructions, np.stack(xy)))
        else:
            out.append(({c: np.zeros((0,), np.uint8) for c in cameras}, [], np.zeros((0, 4), np.float32)))
    return out[0], out[1]


def _rollout_frames(
    env: Any, spec: GroundingSpec, j: int, cameras: tuple[str, ...], labelled: Any
) -> tuple[dict[str, Any], list[dict[str, np.ndarray]], list[np.ndarray]]:
    """Rollout `j`: reset from `spec.seed + ROLLOUT_SEED_OFFSET + j`, run the scripted expert and keep
    the frames (and labels) at `spec.frames_per_rollout` distinct steps in [1, rollout_steps] drawn
    from that seed; an episode that ends earlier gives its last state for the later steps."""
    import sim

    seed = spec.seed + ROLLOUT_SEED_OFFSET + j
    rng = np.random.default_rng([seed, 0x524F])
    keep = set(
        rng.choice(np.arange(1, spec.rollout_steps + 1), spec.frames_per_rollout, replace=False).tolist()
    )
    obs, _ = env.reset(seed=seed)
    expert = sim.make_expert(env)
    expert.reset()
    base = env.unwrapped
    shots: list[dict[str, np.ndarray]] = []
    labels: list[np.ndarray] = []
    ended = False
    for step in range(1, max(keep) + 1):
        if not ended:
            obs, _, terminated, truncated, _ = env.step(expert.act(obs))
            ended = bool(terminated or truncated)
        if step in keep:
            shots.append({c: base.render_camera(c) for c in cameras})
            labels.append(labelled(base.task))
    return obs, shots, labels


__all__ = ["ROLLOUT_COST", "ROLLOUT_SEED_OFFSET", "render_grounding_scenes"]
