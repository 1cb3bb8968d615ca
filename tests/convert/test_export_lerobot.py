"""Native store -> LeRobotDataset v3 (`vla.convert.export_lerobot`) -> back through the project's own
LeRobot importer: low-dim keys bit-exact, episodes and instructions equal, images within the H.264
tolerance; info.json and the parquet files read independently; the CLI end to end and its refusal.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vla.convert import ConvertError, convert
from vla.convert.export_lerobot import ExportOptions, export_lerobot
from vla.data import DatasetMeta, KeySpec, ReplayBuffer

JOINTS = ["j1", "j2", "j3", "j4", "j5", "gripper"]
CAMS = ("front", "wrist")
HW = (12, 16)  # not square: a transposed frame would show
LENGTHS = (5, 9, 7)
INSTRUCTIONS = ["pick up the cube", "stack the cubes", "pick up the cube"]


def _frames(n: int, seed: int) -> np.ndarray:
    """Smooth gradients that change every frame (codecs are lossy on noise): uint8 (n, H, W, 3)."""
    h, w = HW
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        out[k, ..., 0] = (xx * 200 // (w - 1) + 6 * k + 20 * seed) % 256
        out[k, ..., 1] = (yy * 200 // (h - 1) + 4 * k) % 256
        out[k, ..., 2] = int(128 + 60 * np.sin(0.4 * k + seed))
    return out


def _store(path: Path, fps: float = 10.0) -> list[dict[str, np.ndarray]]:
    meta = DatasetMeta(
        fps=fps,
        robot="ur5e_2f85",
        joint_names=list(JOINTS),
        camera_names=list(CAMS),
        keys={"state": KeySpec(units="rad"), "action": KeySpec(units="rad"), "qvel": KeySpec(units="rad/s")},
    )
    rb = ReplayBuffer.create(path, meta)
    eps = []
    for i, T in enumerate(LENGTHS):
        rng = np.random.default_rng(i)
        ep = {
            "state": rng.standard_normal((T, 6)).astype(np.float32),
            "action": rng.standard_normal((T, 6)).astype(np.float32),
            "qvel": rng.standard_normal((T, 5)).astype(np.float32),
        }
        for c, cam in enumerate(CAMS):
            ep[f"image_{cam}"] = _frames(T, seed=3 * i + c)
        rb.add_episode(ep, instruction=INSTRUCTIONS[i])
        eps.append(ep)
    return eps


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    d = tmp_path_factory.mktemp("export")
    eps = _store(d / "src.zarr")
    export_lerobot(d / "src.zarr", d / "lerobot", progress=False)
    return d / "lerobot", eps


def test_export_layout_read_independently(exported: tuple[Path, list]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = exported
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "data/chunk-000/file-000.parquet",
        "meta/episodes/chunk-000/file-000.parquet",
        "meta/info.json",
        "meta/tasks.parquet",
        *(f"videos/observation.images.{c}/chunk-000/file-000.mp4" for c in CAMS),
    ]
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and isinstance(info["fps"], int)
    assert info["total_frames"] == sum(LENGTHS) and info["total_episodes"] == 3 and info["total_tasks"] == 2
    f = info["features"]
    assert f["observation.state"] == {"dtype": "float32", "shape": [6], "names": JOINTS}
    assert f["action"] == {"dtype": "float32", "shape": [6], "names": JOINTS}
    assert f["observation.qvel"]["shape"] == [5]
    for c in CAMS:
        v = f[f"observation.images.{c}"]
        assert v["dtype"] == "video" and v["shape"] == [*HW, 3] and v["info"]["video.codec"] == "h264"
    for k in ("timestamp", "frame_index", "episode_index", "index", "task_index"):
        assert f[k]["shape"] == [1]

    data = pq.read_table(root / "data" / "chunk-000" / "file-000.parquet")
    assert data.num_rows == sum(LENGTHS)
    typ = data.schema.field("observation.state").type
    assert pa.types.is_fixed_size_list(typ) and typ.list_size == 6 and typ.value_type == pa.float32()
    assert data.column("index").to_pylist() == list(range(sum(LENGTHS)))
    assert data.column("episode_index").to_pylist() == [e for e, T in enumerate(LENGTHS) for _ in range(T)]
    assert data.column("frame_index").to_pylist() == [k for T in LENGTHS for k in range(T)]
    np.testing.assert_allclose(data.column("timestamp").to_numpy()[:5], np.arange(5) / 10, rtol=1e-6)

    tasks = pq.read_table(root / "meta" / "tasks.parquet").to_pylist()
    assert tasks == [{"task_index": 0, "task": INSTRUCTIONS[0]}, {"task_index": 1, "task": INSTRUCTIONS[1]}]
    rows = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert [r["length"] for r in rows] == list(LENGTHS)
    assert [r["tasks"] for r in rows] == [[t] for t in INSTRUCTIONS]
    assert [(r["dataset_from_index"], r["dataset_to_index"]) for r in rows] == [(0, 5), (5, 14), (14, 21)]
    key = "videos/observation.images.wrist"
    assert [(r[f"{key}/from_timestamp"], r[f"{key}/to_timestamp"]) for r in rows] == [
        (0.0, 0.5),
        (0.5, 1.4),
        (1.4, 2.1),
    ]


def test_export_round_trip_through_importer(exported: tuple[Path, list], tmp_path: Path) -> None:
    root, eps = exported
    report = convert(
        "lerobot", root, tmp_path / "back.zarr", {"qvel_key": "observation.qvel"}, progress=False
    )
    rb = ReplayBuffer.open(tmp_path / "back.zarr")
    assert rb.n_episodes == 3 and rb.meta.fps == 10 and rb.meta.robot == "ur5e_2f85"
    assert list(rb.episode_lengths) == list(LENGTHS) and rb.instructions == INSTRUCTIONS
    assert rb.meta.joint_names == JOINTS and rb.meta.camera_names == list(CAMS)
    for i, ep in enumerate(eps):
        got = rb.episode(i)
        for k in ("state", "action", "qvel"):
            np.testing.assert_array_equal(got[k], ep[k])
        for cam in CAMS:
            g, want = got[f"image_{cam}"].astype(np.int16), ep[f"image_{cam}"].astype(np.int16)
            assert g.shape == want.shape
            diff = np.abs(g - want)
            # H.264 crf 18 yuv444p on 12x16 frames, measured: mean 2.1-2.4, max 8-13 of 255.
            assert diff.mean() < 8 and diff.max() <= 32, (i, cam, diff.mean(), diff.max())
            for k in range(len(want)):  # each frame is nearest its own source frame (no off-by-one)
                assert int(np.argmin([np.abs(g[k] - want[j]).mean() for j in range(len(want))])) == k
    assert max(s.err_max_ms for e in report.episodes for s in e.streams) < 0.1


def test_export_fps_must_be_whole(tmp_path: Path) -> None:
    _store(tmp_path / "src.zarr", fps=12.5)
    with pytest.raises(ConvertError, match=r"src\.zarr: fps 12\.5 is not a whole number.*--fps-from-store"):
        export_lerobot(tmp_path / "src.zarr", tmp_path / "lr", progress=False)
    assert not (tmp_path / "lr").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src.zarr"]
    export_lerobot(tmp_path / "src.zarr", tmp_path / "lr", ExportOptions(fps_from_store=True), progress=False)
    assert json.loads((tmp_path / "lr" / "meta" / "info.json").read_text())["fps"] == 12.5
    convert("lerobot", tmp_path / "lr", tmp_path / "back.zarr", {}, progress=False)
    assert ReplayBuffer.open(tmp_path / "back.zarr").meta.fps == 12.5


def _cli(*args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("vla-dataset")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "vla.cli.dataset"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_export_cli_and_existing_destination(tmp_path: Path) -> None:
    eps = _store(tmp_path / "src.zarr")
    dst = tmp_path / "lr"
    r = _cli("export", "--format", "lerobot_v3", str(tmp_path / "src.zarr"), str(dst))
    assert r.returncode == 0, r.stderr
    assert "exported 3 episodes, 21 frames at 10 fps" in r.stdout
    convert("lerobot", dst, tmp_path / "back.zarr", {}, progress=False)
    np.testing.assert_array_equal(
        ReplayBuffer.open(tmp_path / "back.zarr").episode(2)["action"], eps[2]["action"]
    )

    before = {p: p.stat().st_mtime_ns for p in dst.rglob("*")}
    r = _cli("export", "--format", "lerobot_v3", str(tmp_path / "src.zarr"), str(dst))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "output exists" in r.stderr and "--overwrite" in r.stderr, r.stderr
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "back.zarr",
        "lr",
        "src.zarr",
    ]  # no staged leftovers

    r = _cli("export", "--format", "lerobot_v3", "--overwrite", str(tmp_path / "src.zarr"), str(dst))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.zarr", "lr", "src.zarr"]
