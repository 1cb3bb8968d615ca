"""ALOHA/ACT HDF5 -> zarr: exact round trip, unmapped datasets reported, bad files named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import write_aloha

from vla.convert import ConvertError
from vla.convert.hdf5 import AlohaOptions, import_aloha
from vla.data import ReplayBuffer


def test_aloha_round_trip(tmp_path: Path) -> None:
    eps = write_aloha(tmp_path / "src", n_episodes=3)
    (tmp_path / "src" / "notes.txt").write_text("not an episode")
    report = import_aloha(
        tmp_path / "src", tmp_path / "out.zarr", AlohaOptions(fps=50, instruction="fold"), progress=False
    )
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 3 and rb.meta.fps == 50 and rb.meta.camera_names == ["angle", "top"]
    assert rb.instructions == ["fold"] * 3 and rb.episode_info(0)["sim"] is True
    for i, ep in enumerate(eps):
        got = rb.episode(i)
        np.testing.assert_array_equal(got["state"], ep["qpos"].astype(np.float32))
        np.testing.assert_array_equal(got["qvel"], ep["qvel"].astype(np.float32))
        np.testing.assert_array_equal(got["action"], ep["action"].astype(np.float32))
        np.testing.assert_array_equal(got["image_top"], ep["cam_top"])
        np.testing.assert_array_equal(got["image_angle"], ep["cam_angle"])
    assert [e.source for e in report.episodes] == ["episode_0.hdf5", "episode_1.hdf5", "episode_2.hdf5"]
    assert all(s.n_dropped == 0 and s.err_max_ms == 0 for e in report.episodes for s in e.streams)


def test_aloha_camera_selection_and_bgr(tmp_path: Path) -> None:
    eps = write_aloha(tmp_path / "src", n_episodes=1)
    opts = AlohaOptions(cameras={"top": "front"}, bgr=True)
    report = import_aloha(tmp_path / "src", tmp_path / "out.zarr", opts, progress=False)
    got = ReplayBuffer.open(tmp_path / "out.zarr").episode(0)
    np.testing.assert_array_equal(got["image_front"], eps[0]["cam_top"][..., ::-1])
    assert "image_angle" not in got and report.ignored_topics == {"/observations/images/angle": 1}


def test_aloha_missing_dataset(tmp_path: Path) -> None:
    import h5py

    write_aloha(tmp_path / "src", n_episodes=2)
    with h5py.File(tmp_path / "src" / "episode_1.hdf5", "a") as f:
        del f["action"]
    with pytest.raises(ConvertError, match=r"episode_1\.hdf5: /action: missing dataset"):
        import_aloha(tmp_path / "src", tmp_path / "out.zarr", progress=False)
    assert not (tmp_path / "out.zarr").exists() and not list(tmp_path.glob(".out.zarr.*"))


def test_aloha_truncated_file(tmp_path: Path) -> None:
    write_aloha(tmp_path / "src", n_episodes=2)
    f = tmp_path / "src" / "episode_1.hdf5"
    os.truncate(f, f.stat().st_size // 2)
    with pytest.raises(ConvertError, match=r"episode_1\.hdf5: .*truncated"):
        import_aloha(tmp_path / "src", tmp_path / "out.zarr", progress=False)


def test_aloha_image_size_change_between_episodes(tmp_path: Path) -> None:
    write_aloha(tmp_path / "src", n_episodes=1)
    write_aloha(tmp_path / "other", n_episodes=2, hw=(8, 8))
    os.replace(tmp_path / "other" / "episode_1.hdf5", tmp_path / "src" / "episode_1.hdf5")
    with pytest.raises(ConvertError, match=r"episode_1\.hdf5: image_angle: per-frame shape"):
        import_aloha(tmp_path / "src", tmp_path / "out.zarr", progress=False)


def test_aloha_dry_run_and_rerun(tmp_path: Path) -> None:
    write_aloha(tmp_path / "src", n_episodes=1)
    report = import_aloha(tmp_path / "src", tmp_path / "out.zarr", dry_run=True, progress=False)
    assert report.n_frames == 12 and not (tmp_path / "out.zarr").exists()
    import_aloha(tmp_path / "src", tmp_path / "out.zarr", progress=False)
    with pytest.raises(FileExistsError):
        import_aloha(tmp_path / "src", tmp_path / "out.zarr", progress=False)
    assert ReplayBuffer.open(tmp_path / "out.zarr").n_frames == 12
