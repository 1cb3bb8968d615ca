"""One stored episode as plain arrays, with the metadata replay needs (fps, names, task, seed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.data import DatasetError, ReplayBuffer


@dataclass
class RecordedEpisode:
    """Episode ``index`` of the store at ``path``.

    Attributes:
        action: (T, 7) float32 absolute joint targets + gripper command, applied at frame t.
        state: (T, 7) float32 measured joints + gripper opening at frame t, or None when not stored.
        images: camera -> (T, H, W, 3) uint8.
        fps: control rate [Hz]; frame t is at ``t / fps`` s.
        joint_names: names of the 7 dims (may be empty for imported stores).
        info: the episode's JSON ``info`` (``task``/``seed`` for episodes collected in simulation).
        dataset_extra: the store's ``extra`` attributes (provenance, collect config).
    """

    path: Path
    index: int
    instruction: str
    action: np.ndarray
    state: np.ndarray | None
    images: dict[str, np.ndarray]
    fps: float
    joint_names: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    dataset_extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_steps(self) -> int:
        return len(self.action)

    @property
    def duration_s(self) -> float:
        """Length in seconds at the recorded timing."""
        return self.n_steps / self.fps

    def window(self, start: int = 0, stop: int | None = None) -> RecordedEpisode:
        """Frames ``[start, stop)`` as a new episode (replay part of a long teleop session)."""
        sl = slice(start, stop)
        n = len(range(*sl.indices(self.n_steps)))
        if n < 1:
            raise ValueError(f"{self.path}: episode {self.index}: frames [{start}, {stop}) are empty")
        return RecordedEpisode(
            self.path,
            self.index,
            self.instruction,
            self.action[sl],
            None if self.state is None else self.state[sl],
            {c: v[sl] for c, v in self.images.items()},
            self.fps,
            self.joint_names,
            {**self.info, "window": [start, stop]},
            self.dataset_extra,
        )


def load_episode(path: str | Path, index: int, load_images: bool = True) -> RecordedEpisode:
    """Read episode ``index`` of a native zarr store (see ``docs/dataset_format.md``).

    Raises DatasetError naming the store when it has no ``action`` key or actions are not (T, 7).
    """
    rb = ReplayBuffer.open(path, mode="r")
    if "action" not in rb.keys:
        raise DatasetError(f"{path}/data: no 'action' array to replay; keys are {rb.keys}")
    if rb.shape("action") != (7,):
        raise DatasetError(
            f"{path}/data/action: per-frame shape {rb.shape('action')}, replay needs (7,) "
            "(6 joint targets + gripper)"
        )
    if not 0 <= int(index) < rb.n_episodes:
        # Python's negative indexing would silently replay another episode than the one asked for.
        raise DatasetError(
            f"{path}: episode={index} out of range; the store has episodes 0..{rb.n_episodes - 1}"
        )
    keys = ["action"] + (["state"] if "state" in rb.keys else [])
    if load_images:
        keys += [f"image_{c}" for c in rb.meta.camera_names]
    data = rb.episode(index, keys)
    return RecordedEpisode(
        path=Path(path),
        index=int(index),
        instruction=rb.instructions[index],
        action=data["action"].astype(np.float32),
        state=data["state"].astype(np.float32) if "state" in data else None,
        images={c: data[f"image_{c}"] for c in rb.meta.camera_names if f"image_{c}" in data},
        fps=rb.meta.fps,
        joint_names=list(rb.meta.joint_names),
        info=rb.episode_info(index),
        dataset_extra=dict(rb.meta.extra),
    )
