"""`vla-dataset import-dp`: Diffusion Policy zarr v2 ReplayBuffer (PushT layout) -> native store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from vla.cli.dataset import main as dataset_cli
from vla.convert.dp import import_diffusion_policy
from vla.data import DatasetError, ReplayBuffer, validate_store

ENDS = np.array([6, 10, 17], dtype=np.int64)


def _pusht_v2(path: Path, ends: np.ndarray = ENDS, img_dtype: str = "float32") -> dict[str, np.ndarray]:
    """A small store in Diffusion Policy's layout, written with zarr's v2 format writer."""
    rng = np.random.default_rng(0)
    n = int(ends[-1])
    data = {
        "img": rng.integers(0, 256, size=(n, 12, 12, 3)).astype(img_dtype),  # float32 in [0, 255]
        "state": rng.normal(size=(n, 5)).astype(np.float32),
        "action": rng.normal(size=(n, 2)).astype(np.float64),
        "keypoint": rng.normal(size=(n, 9, 2)).astype(np.float32),
        "n_contacts": rng.integers(0, 3, size=(n, 1)).astype(np.float32),
    }
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    g = root.create_group("data")
    for k, v in data.items():
        g.create_array(k, data=v, chunks=(5, *v.shape[1:]))
    root.create_group("meta").create_array("episode_ends", data=ends, chunks=(len(ends),))
    assert (path / ".zgroup").is_file()  # really the v2 format
    return data


def test_import_pusht_layout(tmp_path: Path, capsys) -> None:
    src, dst = tmp_path / "pusht.zarr", tmp_path / "native.zarr"
    data = _pusht_v2(src)
    code = dataset_cli(
        ["import-dp", str(src), str(dst), "--camera", "top", "--fps", "10", "--instruction", "push the T"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "wrote 3 episodes, 17 frames" in out  # the vla-convert report: one importer
    assert "data/img" in out and "data/image_top" in out and "float32 [0, 255] -> uint8" in out
    assert "float64 -> float32" in out

    rb = ReplayBuffer.open(dst)
    assert validate_store(dst).ok
    assert rb.n_episodes == 3 and rb.episode_ends.tolist() == ENDS.tolist()
    assert rb.meta.camera_names == ["top"] and rb.meta.fps == 10.0
    assert rb.keys == ["action", "image_top", "keypoint", "n_contacts", "state"]
    assert rb.instructions == ["push the T"] * 3 and rb.episode_info(2)["source_episode"] == 2
    assert rb.dtype("image_top") == np.uint8 and rb.dtype("action") == np.float32
    ep1 = rb.episode(1)
    assert np.array_equal(ep1["image_top"], data["img"][6:10].astype(np.uint8))
    assert np.array_equal(ep1["state"], data["state"][6:10])
    assert np.array_equal(ep1["keypoint"], data["keypoint"][6:10])
    assert np.array_equal(ep1["action"], data["action"][6:10].astype(np.float32))


def test_import_channel_first_unit_range_images(tmp_path: Path) -> None:
    src, dst = tmp_path / "chw.zarr", tmp_path / "out.zarr"
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(4, 3, 6, 6)).astype(np.float32) / 255.0
    root = zarr.open_group(str(src), mode="w", zarr_format=2)
    root.create_group("data").create_array("agentview_image", data=img)
    root["data"].create_array("action", data=np.zeros((4, 2), np.float32))
    root.create_group("meta").create_array("episode_ends", data=np.array([4], np.int64))
    report = import_diffusion_policy(src, dst, image_max=1.0)
    assert "CHW -> HWC" in str(report)
    rb = ReplayBuffer.open(dst)
    assert rb.meta.camera_names == ["agentview"]
    assert np.array_equal(
        rb.episode(0)["image_agentview"], np.rint(np.moveaxis(img, 1, -1) * 255).astype(np.uint8)
    )


def test_import_rejects_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"nothing\.zarr: not a zarr store"):
        import_diffusion_policy(tmp_path / "nothing.zarr", tmp_path / "o1.zarr")
    src = tmp_path / "noends.zarr"
    root = zarr.open_group(str(src), mode="w", zarr_format=2)
    root.create_group("data").create_array("state", data=np.zeros((3, 2), np.float32))
    with pytest.raises(DatasetError, match=r"noends\.zarr/meta/episode_ends: missing array"):
        import_diffusion_policy(src, tmp_path / "o2.zarr")
    src = tmp_path / "short.zarr"
    _pusht_v2(src, ends=np.array([6, 10, 17], np.int64))
    zarr.open_array(str(src / "data/state"), mode="r+").resize((12, 5))
    with pytest.raises(DatasetError, match=r"short\.zarr/data/state: has 12 frames but .* ends at 17"):
        import_diffusion_policy(src, tmp_path / "o3.zarr")
    src = tmp_path / "bright.zarr"
    data = _pusht_v2(src)
    zarr.open_array(str(src / "data/img"), mode="r+")[3] = data["img"][3] + 300
    with pytest.raises(DatasetError, match=r"bright\.zarr/data/img: episode 0: values outside \[0, 255\]"):
        import_diffusion_policy(src, tmp_path / "o4.zarr")
