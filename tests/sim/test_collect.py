"""vla-collect writes a valid, deterministic zarr dataset of expert demos."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vla.data")
from vla.collect import CollectConfig, collect
from vla.data import ReplayBuffer

TINY = {"image_size": 32}


def test_collect_writes_valid_deterministic_dataset(tmp_path: Path) -> None:
    cfg = CollectConfig(
        task="pick_cube", n_episodes=2, out=str(tmp_path / "a.zarr"), seed=3, env_overrides=TINY,
        video_episodes=1, progress=False,
    )  # fmt: skip
    res = collect(cfg)
    assert res.n_saved == 2 and res.n_success >= 2 and res.video is not None and res.video.stat().st_size > 0
    rb = ReplayBuffer.open(cfg.out)
    assert rb.n_episodes == 2
    assert set(rb.keys) == {"state", "qvel", "action", "image_front", "image_wrist"}
    assert rb.meta.camera_names == ["front", "wrist"] and len(rb.meta.joint_names) == 7
    ep = rb.episode(0)
    T = len(ep["action"])
    assert ep["state"].shape == (T, 7) and ep["qvel"].shape == (T, 6) and ep["action"].shape == (T, 7)
    assert ep["image_front"].shape == (T, 32, 32, 3) and ep["image_front"].dtype == np.uint8
    assert ep["state"].dtype == np.float32 and ep["action"].dtype == np.float32
    assert all("cube" in s or "block" in s for s in rb.instructions)
    info = rb.episode_info(0)
    assert info["success"] is True and info["seed"] == 3 and info["task"] == "pick_cube"
    # The expert's action at t is (close to) where the arm is at t+1: obs/action are aligned.
    assert np.abs(ep["action"][:-1, :6] - ep["state"][1:, :6]).mean() < 0.05

    res2 = collect(CollectConfig(**{**cfg.__dict__, "out": str(tmp_path / "b.zarr"), "video_episodes": 0}))
    rb2 = ReplayBuffer.open(res2.path)
    assert rb2.instructions == rb.instructions
    for key in rb.keys:
        np.testing.assert_array_equal(rb2.episode(1)[key], rb.episode(1)[key])


def test_vla_collect_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli.zarr"
    cmd = [
        sys.executable, "-m", "vla.cli.collect", "task=push_cube", "n_episodes=1", f"out={out}",
        "task.env.image_size=24", "video_episodes=0", "progress=false",
    ]  # fmt: skip
    res = subprocess.run(
        cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=300, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "stored 1 episodes" in res.stdout
    rb = ReplayBuffer.open(out)
    assert rb.n_episodes == 1 and rb.episode(0)["image_wrist"].shape[1:] == (24, 24, 3)
    assert (tmp_path / "cli.collect.yaml").is_file()


def _collect_cli(out: Path, *overrides: str) -> list[str]:
    return [
        sys.executable, "-m", "vla.cli.collect", "task=push_cube", f"out={out}",
        "task.env.image_size=24", "video_episodes=0", "progress=false", *overrides,
    ]  # fmt: skip


def test_overwrite_is_atomic_under_sigkill_and_replaces_when_complete(tmp_path: Path) -> None:
    """SIGKILL during `overwrite=true` keeps the old store whole; a completed overwrite replaces it
    and leaves no staging folders behind."""
    import signal
    import time

    out = tmp_path / "demos.zarr"
    cfg = CollectConfig(
        task="push_cube", n_episodes=1, out=str(out), seed=5, env_overrides={"image_size": 24},
        video_episodes=0, progress=False,
    )  # fmt: skip
    collect(cfg)
    old = ReplayBuffer.open(out)
    old_actions = old.episode(0)["action"].copy()

    proc = subprocess.Popen(
        _collect_cli(out, "n_episodes=200", "seed=9", "overwrite=true"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(), cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        # Kill once the new store is being written (its staging folder holds an episode's data).
        while time.monotonic() < deadline and proc.poll() is None:
            staged = list(tmp_path.glob(".demos.zarr.tmp-*"))
            if staged and any(staged[0].rglob("action/*")):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the collect run ended before it could be killed"
        assert staged, "no staging folder: the overwrite did not write beside the old store"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = ReplayBuffer.open(out)
    assert kept.n_episodes == 1 and kept.episode_info(0)["seed"] == 5
    np.testing.assert_array_equal(kept.episode(0)["action"], old_actions)

    res = subprocess.run(
        _collect_cli(out, "n_episodes=1", "seed=11", "overwrite=true"),
        capture_output=True, text=True, env=os.environ.copy(), timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-3000:]
    new = ReplayBuffer.open(out)
    assert new.n_episodes == 1 and new.episode_info(0)["seed"] == 11
    assert not list(tmp_path.glob(".demos.zarr.old-*"))
