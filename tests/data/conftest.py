"""Small synthetic episodes and stores for the dataset tests (tiny sizes: the suite runs on 2 CPU cores)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from dataset_helpers import make_episode, make_meta

from vla.data import ReplayBuffer


@pytest.fixture
def episode_factory() -> Callable[..., dict]:
    return make_episode


@pytest.fixture
def small_store(tmp_path: Path) -> tuple[Path, list[dict]]:
    """A 3-episode store (lengths 5, 9, 4) with two 8x8 cameras; returns (path, episodes)."""
    path = tmp_path / "small.zarr"
    rb = ReplayBuffer.create(path, make_meta())
    eps = [make_episode(s, T) for s, T in zip((0, 1, 2), (5, 9, 4))]
    for i, ep in enumerate(eps):
        rb.add_episode(
            ep, instruction=f"pick up cube {i}", info={"task": "pick_cube", "seed": i, "success": i != 1}
        )
    return path, eps
