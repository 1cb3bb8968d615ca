"""Every importer validates its staged store before moving it into place (issue 20).

`vla.data.staging.staged_output` (behind `vla.convert.sink.destination`, so behind every importer, and
behind `vla-collect overwrite=true`) runs the project's validator on the finished temporary store and
refuses with its first problem: no writer puts in place a store `vla-dataset validate` or `info` reject.
Also the report details: Diffusion Policy durations, LeRobot dropped features and the MP4 note.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import STATE_JOINTS, write_aloha, write_lerobot_v3

from vla.convert import ConvertError
from vla.convert.dp import DiffusionPolicyOptions, import_dp
from vla.convert.hdf5 import AlohaOptions, import_aloha
from vla.convert.lerobot import LeRobotOptions, import_lerobot
from vla.data import DatasetError, DatasetMeta, ReplayBuffer, validate_store
from vla.data.staging import staged_output


def _bad_store(path: Path) -> None:
    """A store the validator rejects: 7 joint_names, a 6-wide action (the ReplayBuffer allows it)."""
    rb = ReplayBuffer.create(path, DatasetMeta(fps=20.0, robot="ur5e_2f85", joint_names=list(STATE_JOINTS)))
    rb.add_episode(
        {"state": np.zeros((5, 7), np.float32), "action": np.zeros((5, 6), np.float32)}, instruction="x"
    )


def test_staged_output_refuses_a_store_its_validator_rejects(tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    with pytest.raises(DatasetError) as ei, staged_output(out, overwrite=False) as tmp:
        _bad_store(tmp)
    msg = str(ei.value)
    assert msg.startswith(f"{out}: not written: `vla-dataset validate` would reject the store: "), msg
    assert f"{out}/data/action: shape: shape (5, 6) does not match 7 joint_names" in msg, msg
    assert ".tmp-" not in msg and "\n" not in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing in place, no residue

    # With overwrite, the old store stays as it was.
    ReplayBuffer.create(out, DatasetMeta(fps=20.0, robot="r")).add_episode(
        {"state": np.ones((3, 2), np.float32)}, instruction="old"
    )
    with pytest.raises(DatasetError, match="does not match 7 joint_names"), staged_output(out, True) as tmp:
        _bad_store(tmp)
    assert ReplayBuffer.open(out).instructions == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


def test_staged_output_deep_check_finds_what_validate_finds(tmp_path: Path) -> None:
    """A chunk damaged after writing: the deep check (`deep=True`, as `vla-dataset validate`) sees it;
    the default quick check (structure and metadata) does not decode chunks."""
    out = tmp_path / "out.zarr"
    with pytest.raises(DatasetError, match=r"data/state"), staged_output(out, False, deep=True) as tmp:
        rb = ReplayBuffer.create(tmp, DatasetMeta(fps=20.0, robot="r"))
        rb.add_episode({"state": np.ones((3, 2), np.float32)}, instruction="x")
        chunk = next(p for p in (tmp / "data" / "state").rglob("*") if p.is_file() and p.name != "zarr.json")
        chunk.write_bytes(b"\x00" * 7)
    assert not out.exists()


def test_importer_refuses_with_the_validators_first_problem(tmp_path: Path) -> None:
    """A LeRobot info.json whose action names disagree with the data: the generic net catches it."""
    root = tmp_path / "ds"
    write_lerobot_v3(root, lengths=(4, 3), cams=())
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["action"]["names"] = STATE_JOINTS[:6]  # 6 names for 7 values
    (root / "meta" / "info.json").write_text(json.dumps(info))
    out = tmp_path / "out.zarr"
    with pytest.raises(ConvertError) as ei:
        import_lerobot(root, out, progress=False)
    msg = str(ei.value)
    assert f"{out}/data/action: shape: last dim of (7, 7) != 6 keys.names" in msg, msg
    assert not out.exists() and not list(tmp_path.glob(".out.zarr*"))


def test_lerobot_state_and_action_of_different_widths_convert_to_a_valid_store(tmp_path: Path) -> None:
    """joint_names name the state and the action dims; when they differ in width there is no such list:
    the store keeps each key's names (was: joint_names = the state's names, which validate rejects)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "ds"
    write_lerobot_v3(root, lengths=(4, 3), cams=())
    info = json.loads((root / "meta" / "info.json").read_text())
    info["features"]["action"].update(shape=[6], names=STATE_JOINTS[:6])
    (root / "meta" / "info.json").write_text(json.dumps(info))
    for f in (root / "data").rglob("*.parquet"):
        tbl = pq.read_table(f)
        col = pa.array([r[:6] for r in tbl.column("action").to_pylist()], pa.list_(pa.float32()))
        pq.write_table(tbl.set_column(tbl.column_names.index("action"), "action", col), f)
    report = import_lerobot(root, tmp_path / "out.zarr", progress=False)
    lay = validate_store(tmp_path / "out.zarr")
    assert lay.ok, lay.problems
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.meta.joint_names == [] and rb.meta.keys["action"].names == STATE_JOINTS[:6]
    assert rb.meta.keys["state"].names == STATE_JOINTS
    assert any("joint_names left empty" in n for n in report.notes)


def test_aloha_action_dims_other_than_joint_names_refused_up_front(tmp_path: Path) -> None:
    write_aloha(tmp_path / "src", n_episodes=1, dof=4)
    import h5py

    with h5py.File(tmp_path / "src" / "episode_0.hdf5", "a") as f:
        a = f["action"][()]
        del f["action"]
        f.create_dataset("action", data=a[:, :3])
    opts = AlohaOptions(joint_names=["a", "b", "c", "d"])
    with pytest.raises(ConvertError, match=r"episode_0\.hdf5: /action has 3 dims, joint_names lists 4"):
        import_aloha(tmp_path / "src", tmp_path / "out.zarr", opts, progress=False)
    assert not (tmp_path / "out.zarr").exists()


# ------------------------------------------------------------------------------------- report details
def test_dp_report_durations_from_frames_and_fps(tmp_path: Path) -> None:
    import zarr

    root = zarr.open_group(str(tmp_path / "dp.zarr"), mode="w", zarr_format=2)
    root.create_group("data").create_array("state", data=np.zeros((25, 2), np.float32), chunks=(10, 2))
    root.create_group("meta").create_array("episode_ends", data=np.array([10, 25], np.int64), chunks=(2,))
    for dry_run in (True, False):
        report = import_dp(
            tmp_path / "dp.zarr",
            tmp_path / "out.zarr",
            DiffusionPolicyOptions(fps=10.0),
            dry_run=dry_run,
            progress=False,
        )
        # First to last frame, as the other importers report it (was 0.00 s for every episode).
        assert [e.duration_s for e in report.episodes] == [0.9, 1.4]
        assert "0.90 s" in str(report) and "1.40 s" in str(report) and "frames, 0.00 s," not in str(report)


def test_lerobot_report_counts_dropped_features_in_frames_and_notes_mp4_only_with_video(
    tmp_path: Path,
) -> None:
    root = tmp_path / "ds"
    write_lerobot_v3(root, lengths=(4, 3), cams=("front",))
    no_video = import_lerobot(root, tmp_path / "a.zarr", LeRobotOptions(cameras={}), progress=False)
    text = str(no_video)
    assert "not mapped (dropped): observation.images.front (7 frames)" in text, text
    assert "0 messages" not in text and "MP4" not in text, text
    assert no_video.to_json()["ignored_unit"] == "frames"
    with_video = import_lerobot(root, tmp_path / "b.zarr", progress=False)
    assert any("MP4 decodes to" in n for n in with_video.notes)
    assert "not mapped" not in str(with_video)
    shutil.rmtree(root)
