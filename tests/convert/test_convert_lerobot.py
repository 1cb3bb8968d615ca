"""LeRobotDataset v3 -> zarr: parquet columns exact, MP4 frames within a codec tolerance, bad input named.

MP4 is lossy: the fixture encodes H.264 at crf 0 in yuv444p, so decoded frames differ from the encoded
ones only by RGB<->YUV rounding; the test allows a small per-pixel error and checks frame identity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import STATE_JOINTS, write_lerobot_v3

from vla.convert import ConvertError
from vla.convert.lerobot import LeRobotOptions, import_lerobot
from vla.data import ReplayBuffer


@pytest.fixture(scope="module")
def lerobot_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    return root, write_lerobot_v3(root)


def test_lerobot_round_trip(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = lerobot_root
    report = import_lerobot(root, tmp_path / "out.zarr", progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 3 and rb.meta.fps == 10 and rb.meta.robot == "ur5e_2f85"
    assert rb.meta.camera_names == ["front", "wrist"] and rb.meta.joint_names == STATE_JOINTS
    assert rb.instructions == ["pick up the cube", "stack the cubes", "pick up the cube"]
    for i, ep in enumerate(truth["episodes"]):
        got = rb.episode(i)
        np.testing.assert_array_equal(got["state"], ep["state"])
        np.testing.assert_array_equal(got["action"], ep["action"])
        for cam in ("front", "wrist"):
            want = ep["frames"][cam].astype(np.int16)
            diff = np.abs(got[f"image_{cam}"].astype(np.int16) - want)
            assert got[f"image_{cam}"].shape == want.shape
            # crf 0 yuv444p measured: mean ~0.4, max 2 (RGB<->YUV rounding only)
            assert diff.mean() < 1.0 and diff.max() <= 4, (i, cam, diff.mean(), diff.max())
            # Each frame is closest to its own source frame, not a neighbour (catches off-by-one seeks).
            for k in range(len(want)):
                errs = [
                    np.abs(got[f"image_{cam}"][k].astype(np.int16) - want[j]).mean() for j in range(len(want))
                ]
                assert int(np.argmin(errs)) == k
    video_rows = [s for e in report.episodes for s in e.streams if s.name.startswith("image_")]
    assert all(s.err_max_ms < 0.1 for s in video_rows)


def test_lerobot_unnamed_task_index(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write_lerobot_v3(root, lengths=(4,), cams=("front",), task_index_named=False)
    import_lerobot(root, tmp_path / "out.zarr", progress=False)
    assert ReplayBuffer.open(tmp_path / "out.zarr").instructions == ["pick up the cube"]


def test_lerobot_dry_run_writes_nothing(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = lerobot_root
    report = import_lerobot(root, tmp_path / "out.zarr", dry_run=True, progress=False)
    assert report.n_frames == 20 and list(tmp_path.iterdir()) == []


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_lerobot_truncated_video(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    root = _copy(lerobot_root[0], tmp_path / "ds")
    v = root / "videos" / "observation.images.wrist" / "chunk-000" / "file-001.mp4"
    os.truncate(v, v.stat().st_size // 3)
    with pytest.raises(ConvertError, match=r"file-001\.mp4: observation\.images\.wrist"):
        import_lerobot(root, tmp_path / "out.zarr", progress=False)
    assert not (tmp_path / "out.zarr").exists()


def test_lerobot_wrong_from_timestamp(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _copy(lerobot_root[0], tmp_path / "ds")
    p = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    tbl = pq.read_table(p)
    col = "videos/observation.images.front/from_timestamp"
    vals = tbl.column(col).to_pylist()
    vals[1] += 5.0  # points past the end of the video
    tbl = tbl.set_column(tbl.column_names.index(col), col, pa.array(vals))
    pq.write_table(tbl, p)
    with pytest.raises(
        ConvertError, match=r"file-000\.mp4: observation\.images\.front: episode 1 frame 0 wants"
    ):
        import_lerobot(root, tmp_path / "out.zarr", progress=False)


def test_lerobot_non_monotonic_timestamps(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = _copy(lerobot_root[0], tmp_path / "ds")
    p = root / "data" / "chunk-000" / "file-000.parquet"
    tbl = pq.read_table(p)
    ts = tbl.column("timestamp").to_pylist()
    ts[3] = ts[1]
    tbl = tbl.set_column(tbl.column_names.index("timestamp"), "timestamp", pa.array(ts, pa.float32()))
    pq.write_table(tbl, p)
    with pytest.raises(ConvertError, match=r"file-000\.parquet: episode_index 0: timestamp: frame 3"):
        import_lerobot(root, tmp_path / "out.zarr", progress=False)


def test_lerobot_v21_and_missing_feature(lerobot_root: tuple[Path, dict], tmp_path: Path) -> None:
    root = _copy(lerobot_root[0], tmp_path / "ds")
    with pytest.raises(ConvertError, match=r"features\.observation\.velocity: no such feature"):
        import_lerobot(
            root, tmp_path / "out.zarr", LeRobotOptions(qvel_key="observation.velocity"), progress=False
        )
    info = json.loads((root / "meta" / "info.json").read_text())
    info["codebase_version"] = "v2.1"
    (root / "meta" / "info.json").write_text(json.dumps(info))
    with pytest.raises(ConvertError, match=r"info\.json: codebase_version: 'v2\.1'"):
        import_lerobot(root, tmp_path / "out.zarr", progress=False)
