"""Fixtures for replay tests: a tiny collected expert episode and an isolated rclpy context."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from vla.collect import CollectConfig, collect


@pytest.fixture(scope="session")
def demo_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One successful pick_cube expert episode (seed 0, 32 px images) in a zarr store."""
    out = tmp_path_factory.mktemp("replay") / "demo.zarr"
    res = collect(
        CollectConfig(task="pick_cube", n_episodes=1, out=str(out), seed=0, env_overrides={"image_size": 32},
                      progress=False)
    )  # fmt: skip
    assert res.n_saved == 1
    return out


@pytest.fixture
def ros() -> Iterator:
    from ros_bridge.run import RosRuntime

    with RosRuntime() as runtime:
        yield runtime
