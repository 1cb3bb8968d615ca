"""Scripted-expert demonstration collection into a zarr replay buffer.

Runs ``sim``'s expert for a task, episode after episode with seeds ``seed, seed + 1, ...``, keeps the
successful ones (or all, with ``keep_failures``) and appends each to a :class:`vla.data.ReplayBuffer`
with its instruction. Same config and seed -> same dataset (MuJoCo is deterministic on one machine).

Per episode of T steps the store gets, time-aligned (observation at t, action applied at t):
``state (T, 7) f32``, ``qvel (T, 6) f32``, ``action (T, 7) f32``, ``image_<cam> (T, H, W, 3) u8``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CollectConfig:
    """What to collect.

    Attributes:
        task: registered ``sim`` task name.
        n_episodes: episodes to store.
        out: path of the zarr store to create.
        seed: seed of the first attempt; attempt i uses ``seed + i``.
        keep_failures: also store episodes the expert failed (``info["success"]`` says which).
        max_attempts: give up after this many attempts (default ``2 * n_episodes + 10``).
        overwrite: replace an existing store at ``out``.
        video_episodes: write an mp4 of the first this-many stored episodes to ``video_path``.
        video_path: default ``<out without .zarr>.mp4``.
        env_overrides: fields of the task's config dataclass (image size, cameras, randomization, ...).
        progress: show a tqdm progress bar.
        extra_meta: JSON-able provenance stored in the dataset attributes (e.g. the resolved config).
    """

    task: str = "pick_cube"
    n_episodes: int = 10
    out: str = "outputs/demos/pick_cube.zarr"
    seed: int = 0
    keep_failures: bool = False
    max_attempts: int | None = None
    overwrite: bool = False
    video_episodes: int = 0
    video_path: str | None = None
    env_overrides: dict[str, Any] = field(default_factory=dict)
    progress: bool = True
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"CollectConfig.n_episodes must be >= 1, got {self.n_episodes}")
        if self.max_attempts is not None and self.max_attempts < self.n_episodes:
            raise ValueError(
                f"CollectConfig.max_attempts ({self.max_attempts}) must be >= n_episodes ({self.n_episodes})"
            )
        if self.video_episodes < 0:
            raise ValueError(f"CollectConfig.video_episodes must be >= 0, got {self.video_episodes}")


@dataclass(frozen=True)
class CollectResult:
    path: Path
    n_saved: int
    n_attempts: int
    n_success: int
    seconds: float
    video: Path | None

    @property
    def success_rate(self) -> float:
        return self.n_success / max(self.n_attempts, 1)

    @property
    def episodes_per_minute(self) -> float:
        return 60.0 * self.n_attempts / max(self.seconds, 1e-9)


def run_episode(env, expert, seed: int, video_frames: list[np.ndarray] | None = None) -> tuple[dict, bool]:
    """Roll out the expert once: ({key: (T, ...)} arrays, success)."""
    obs, _ = env.reset(seed=seed)
    expert.reset()
    frames: dict[str, list[np.ndarray]] = {}
    success = False
    while True:
        action = expert.act(obs)
        for k, v in obs.items():
            if k != "instruction":
                frames.setdefault(k, []).append(v)
        frames.setdefault("action", []).append(action)
        if video_frames is not None:
            video_frames.append(env.render())
        obs, _, terminated, truncated, info = env.step(action)
        success = success or bool(info["is_success"])
        if terminated or truncated:
            break
    return {k: np.stack(v) for k, v in frames.items()}, success


def collect(cfg: CollectConfig) -> CollectResult:
    """Collect ``cfg.n_episodes`` expert episodes into a new zarr store (see module docstring)."""
    from tqdm import tqdm

    import sim
    from vla.data import DatasetMeta, ReplayBuffer

    env = sim.make(cfg.task, **cfg.env_overrides)
    if not env.cfg.render_images:
        raise ValueError(
            f"CollectConfig.env_overrides: render_images=False stores no images (task {cfg.task})"
        )
    expert = sim.make_expert(env)
    from sim.scene import ARM_JOINTS

    meta = DatasetMeta(
        fps=float(env.cfg.control_rate_hz),
        robot="ur5e_2f85",
        joint_names=[*ARM_JOINTS, "gripper"],
        camera_names=list(env.cfg.cameras),
        keys={},
        extra={"task": cfg.task, "seed": cfg.seed, "source": "sim scripted expert", **cfg.extra_meta},
    )
    rb = ReplayBuffer.create(cfg.out, meta, overwrite=cfg.overwrite)
    max_attempts = cfg.max_attempts or 2 * cfg.n_episodes + 10
    video_path = Path(cfg.video_path) if cfg.video_path else Path(cfg.out).with_suffix(".mp4")
    video: list[np.ndarray] = []
    n_saved = n_success = attempts = 0
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.n_episodes, desc=f"collect {cfg.task}", unit="ep", disable=not cfg.progress)
    try:
        while n_saved < cfg.n_episodes:
            if attempts >= max_attempts:
                raise RuntimeError(
                    f"collect({cfg.task}): only {n_saved}/{cfg.n_episodes} episodes after {attempts} attempts "
                    f"(expert success {n_success}/{attempts}); raise max_attempts or set keep_failures"
                )
            seed = cfg.seed + attempts
            attempts += 1
            frames = video if n_saved < cfg.video_episodes else None
            mark = len(video)
            data, success = run_episode(env, expert, seed, frames)
            n_success += success
            if success or cfg.keep_failures:
                info = {"task": cfg.task, "seed": seed, "success": success, "length": len(data["action"])}
                rb.add_episode(data, instruction=env.task.instruction, info=info)
                n_saved += 1
                bar.update(1)
            elif frames is not None:
                del video[mark:]  # only stored episodes go in the video
            bar.set_postfix(success=f"{n_success}/{attempts}")
    finally:
        bar.close()
        env.close()
    seconds = time.perf_counter() - t0
    written = None
    if video:
        import imageio.v2 as imageio

        video_path.parent.mkdir(parents=True, exist_ok=True)
        imageio.mimwrite(video_path, video, fps=env.metadata["render_fps"], macro_block_size=1)
        written = video_path
    return CollectResult(Path(cfg.out), n_saved, attempts, n_success, seconds, written)
