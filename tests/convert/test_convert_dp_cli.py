"""Diffusion Policy zarr through `vla-convert`, and the CLI itself (Hydra config, flags, exit codes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import write_aloha, write_bag

from vla.convert import ConvertError
from vla.convert.dp import DiffusionPolicyOptions, import_dp
from vla.data import ReplayBuffer


def _pusht(path: Path) -> dict[str, np.ndarray]:
    import zarr

    rng = np.random.default_rng(0)
    data = {
        "img": rng.integers(0, 256, (9, 8, 8, 3)).astype(np.float32),
        "state": rng.standard_normal((9, 5)),
        "action": rng.standard_normal((9, 2)),
    }
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    g = root.create_group("data")
    for k, v in data.items():
        g.create_array(k, data=v, chunks=(4, *v.shape[1:]))
    root.create_group("meta").create_array("episode_ends", data=np.array([4, 9], np.int64), chunks=(2,))
    return data


def test_dp_import_dry_run_and_staging(tmp_path: Path) -> None:
    data = _pusht(tmp_path / "pusht.zarr")
    opts = DiffusionPolicyOptions(instruction="push the T")
    dry = import_dp(tmp_path / "pusht.zarr", tmp_path / "out.zarr", opts, dry_run=True, progress=False)
    assert [e.n_frames for e in dry.episodes] == [4, 5] and not (tmp_path / "out.zarr").exists()
    report = import_dp(tmp_path / "pusht.zarr", tmp_path / "out.zarr", opts, progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 2 and rb.instructions == ["push the T"] * 2
    np.testing.assert_array_equal(rb.episode(1)["image_front"], data["img"][4:].astype(np.uint8))
    np.testing.assert_array_equal(rb.episode(0)["state"], data["state"][:4].astype(np.float32))
    assert report.episodes[0].keys["image_front"] == [8, 8, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr", "pusht.zarr"]
    with pytest.raises(ConvertError, match="already a native vla store"):
        import_dp(tmp_path / "out.zarr", tmp_path / "again.zarr", progress=False)
    with pytest.raises(ConvertError, match=r"bag: not a Diffusion Policy zarr store"):
        (tmp_path / "bag").mkdir()
        import_dp(tmp_path / "bag", tmp_path / "again.zarr", progress=False)


def test_dp_import_first_episodes_only(tmp_path: Path) -> None:
    """max_episodes=N imports the first N episodes (a quick look at a big store); 0 is refused."""
    data = _pusht(tmp_path / "pusht.zarr")
    report = import_dp(
        tmp_path / "pusht.zarr", tmp_path / "out.zarr", DiffusionPolicyOptions(max_episodes=1), progress=False
    )
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 1 and rb.n_frames == 4 and len(report.episodes) == 1
    np.testing.assert_array_equal(rb.episode(0)["action"], data["action"][:4].astype(np.float32))
    assert "imported the first 1 of 2 episodes" in str(report)
    with pytest.raises(ConvertError, match=r"pusht.zarr: max_episodes must be >= 1"):
        import_dp(tmp_path / "pusht.zarr", tmp_path / "o2.zarr", DiffusionPolicyOptions(max_episodes=0))
    assert not (tmp_path / "o2.zarr").exists()


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "vla.cli.convert", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_cli_rosbag_report_flags_and_errors(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.3)
    out = tmp_path / "out.zarr"
    r = _cli(
        "convert=ur5e_rosbag",
        f"src={tmp_path / 'bag'}",
        f"out={out}",
        "--dry-run",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "would write 1 episodes" in r.stdout and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"]  # no Hydra log or output dirs either

    r = _cli(
        f"src={tmp_path / 'bag'}",
        f"out={out}",
        "mapping.lowdim.action.align=nearest",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads((tmp_path / "out.zarr.convert.json").read_text())
    assert rep["n_episodes"] == 1 and {s["name"] for s in rep["episodes"][0]["streams"]} >= {
        "state",
        "action",
    }
    assert "align: nearest" in (tmp_path / "out.zarr.convert.yaml").read_text()

    r = _cli(f"src={tmp_path / 'bag'}", f"out={out}", cwd=tmp_path)
    assert r.returncode == 2 and "output exists" in r.stderr
    r = _cli(
        f"src={tmp_path / 'bag'}", f"out={tmp_path / 'x.zarr'}", "mapping.cameras.front=/nope", cwd=tmp_path
    )
    assert r.returncode == 2 and "topic /nope" in r.stderr and str(tmp_path / "bag") in r.stderr


def test_cli_other_formats_and_help(tmp_path: Path) -> None:
    write_aloha(tmp_path / "aloha", n_episodes=1)
    r = _cli(
        "convert=aloha_hdf5",
        f"src={tmp_path / 'aloha'}",
        f"out={tmp_path / 'a.zarr'}",
        "mapping.instruction=fold",
        "--no-progress",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert ReplayBuffer.open(tmp_path / "a.zarr").instructions == ["fold"]
    r = _cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and "aloha_hdf5 | dp_pusht | lerobot_v3 | ur5e_rosbag" in r.stdout
    assert "--dry-run" in r.stdout
    r = _cli(cwd=tmp_path)
    assert r.returncode == 2 and "src=<source> and out=<store.zarr> are required" in r.stderr
