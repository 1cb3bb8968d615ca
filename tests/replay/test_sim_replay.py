"""`target=sim`: an expert episode replayed open loop in MuJoCo reproduces its success."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from vla.replay import SimReplayConfig, load_episode, replay_in_sim
from vla.replay.video import side_by_side


def test_replay_reproduces_success_with_tracking_error_and_video(demo_store: Path, tmp_path: Path) -> None:
    ep = load_episode(demo_store, 0)
    assert ep.info["seed"] == 0 and ep.images["front"].shape[1:] == (32, 32, 3)
    res = replay_in_sim(ep, SimReplayConfig(video_path=str(tmp_path / "sbs.mp4"), video_scale=2))
    assert res.init == "seed" and res.task == "pick_cube"
    assert res.success and res.recorded_success and res.success_step == ep.n_steps
    # Same scene, same actions, deterministic physics: the recorded joint trajectory comes back.
    assert res.state_error_max is not None and res.state_error_max.shape == (7,)
    assert res.state_error_max.max() < 1e-4 and res.initial_state_error.max() < 1e-6
    assert res.command_error_rms.shape == (7,) and 0 < res.command_error_rms[:6].max() < 0.2  # servo lag
    table = res.table()
    assert "shoulder_pan_joint" in table and "success True" in table
    json.dumps(res.to_dict())

    frames = imageio.mimread(res.video_path)
    assert len(frames) == ep.n_steps and frames[0].shape == (64, 132, 3)
    # Left: the recorded frame (upscaled), through lossy H.264.
    for t in (0, ep.n_steps // 2, ep.n_steps - 1):
        want = side_by_side(ep.images["front"][t], ep.images["front"][t], 2)[:, :64].astype(int)
        assert np.abs(frames[t][:, :64].astype(int) - want).mean() < 12


def test_changed_actions_change_the_outcome(demo_store: Path) -> None:
    ep = load_episode(demo_store, 0, load_images=False)
    ep.action = ep.action.copy()
    ep.action[:, 6] = 0.0  # the gripper never closes: nothing is picked
    res = replay_in_sim(ep)
    assert not res.success and res.recorded_success
    assert res.state_error_max[6] > 0.2 and res.state_error_rms[6] > res.state_error_rms[:6].max()


def test_episode_without_seed_starts_from_recorded_joints(demo_store: Path) -> None:
    ep = load_episode(demo_store, 0, load_images=False)
    ep.info = {"task": "pick_cube"}  # like a teleop episode: no seed
    ep.state = ep.state.copy()
    ep.state[0, 0] += 0.05  # the recorded start differs from the seed's arm pose
    res = replay_in_sim(ep, SimReplayConfig(seed=0))
    assert res.init == "state"
    assert res.initial_state_error[0] < 1e-4  # the arm was put where the recording started


def test_missing_task_is_a_clear_error(demo_store: Path) -> None:
    ep = load_episode(demo_store, 0, load_images=False)
    ep.info, ep.dataset_extra = {}, {}
    with pytest.raises(ValueError, match=r"episodes\[0\]\.info\.task"):
        replay_in_sim(ep)
    with pytest.raises(ValueError, match="image_side"):
        replay_in_sim(load_episode(demo_store, 0), SimReplayConfig(video_path="x.mp4", video_camera="side"))


def test_vla_replay_cli_sim(demo_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vla.cli.replay", f"dataset={demo_store}", "episode=0", "target=sim",
           f"out_dir={out}", "sim.video_scale=1"]  # fmt: skip
    res = subprocess.run(
        cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120, cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "success True" in res.stdout and "wrist_3_joint" in res.stdout
    report = json.loads((out / "replay.json").read_text())
    assert report["success"] is True and len(report["state_error_rms"]) == 7
    assert (out / "side_by_side.mp4").stat().st_size > 0 and (out / "replay.yaml").is_file()
