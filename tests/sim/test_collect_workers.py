"""vla-collect with worker processes stores exactly what one process stores, in the same order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vla.data")
from vla.collect import Attempt, CollectConfig, _PoolRunner, collect
from vla.data import ReplayBuffer

TINY = {"image_size": 32, "cameras": ["front"]}


def test_workers_store_the_same_episodes_in_seed_order(tmp_path: Path) -> None:
    base = dict(
        task="pick_cube", n_episodes=3, seed=5, env_overrides=TINY, progress=False, keep_failures=True
    )
    one = collect(CollectConfig(**base, out=str(tmp_path / "w1.zarr"), workers=1))
    two = collect(CollectConfig(**base, out=str(tmp_path / "w2.zarr"), workers=2, video_episodes=1))
    assert (one.n_saved, one.n_attempts, one.n_success) == (two.n_saved, two.n_attempts, two.n_success)
    assert two.n_saved == 3 and two.video is not None and two.video.stat().st_size > 0
    rb1, rb2 = ReplayBuffer.open(one.path), ReplayBuffer.open(two.path)
    assert rb2.n_episodes == rb1.n_episodes == 3
    assert set(rb2.keys) == set(rb1.keys) == {"state", "qvel", "action", "image_front"}
    assert rb2.instructions == rb1.instructions
    assert [rb2.episode_info(i) for i in range(3)] == [rb1.episode_info(i) for i in range(3)]
    assert [rb2.episode_info(i)["seed"] for i in range(3)] == [5, 6, 7]
    for i in range(3):
        e1, e2 = rb1.episode(i), rb2.episode(i)
        for key in rb1.keys:
            assert e2[key].dtype == e1[key].dtype
            np.testing.assert_array_equal(e2[key], e1[key], err_msg=f"episode {i} key {key}")


@pytest.mark.parametrize("workers", [0, -2, 1.5, True, "2"])
def test_bad_workers_value_raises(workers: object) -> None:
    with pytest.raises(ValueError, match=r"CollectConfig\.workers"):
        CollectConfig(workers=workers)  # type: ignore[arg-type]


def _fail_on_seed_12(task: str, env_overrides: dict, seed: int, want_video: bool) -> Attempt:
    """Stand-in worker entry (importable by spawned processes) that breaks on one seed."""
    if seed == 12:
        raise FloatingPointError("simulation diverged")
    return Attempt(seed, {"action": np.zeros((2, 7), np.float32)}, True, "pick up the cube", None)


def test_worker_exception_names_the_seed() -> None:
    runner = _PoolRunner("pick_cube", {}, workers=2, attempt_fn=_fail_on_seed_12)
    try:
        for seed in (11, 12, 13):
            runner.submit(seed, want_video=False)
        assert runner.next().seed == 11
        with pytest.raises(RuntimeError, match=r"seed 12 .*FloatingPointError: simulation diverged"):
            runner.next()
    finally:
        runner.close()
    assert runner.in_flight == 0
