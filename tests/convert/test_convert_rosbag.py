"""rosbag2 (mcap and sqlite3) -> zarr: values at aligned times, episode cutting, every bad-input error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import ARM, STATE_JOINTS, expected_at, rosbag_mapping_dict, write_bag

from vla.convert import ConvertError, RosbagMapping, import_rosbag
from vla.data import ReplayBuffer

STORAGES = ["mcap", "sqlite3"]


def _mapping(**over) -> RosbagMapping:
    return RosbagMapping.from_dict(rosbag_mapping_dict(**over))


def _grid(t0: int, n: int, fps: float) -> np.ndarray:
    return t0 + np.rint(np.arange(n) * 1e9 / fps).astype(np.int64)


@pytest.mark.parametrize("storage", STORAGES)
@pytest.mark.parametrize("method", ["nearest", "zoh"])
def test_bag_round_trip_values_at_aligned_times(tmp_path: Path, storage: str, method: str) -> None:
    cmd_type = "trajectory" if storage == "mcap" else "float64"
    truth = write_bag(tmp_path / "bag", storage, cmd_type=cmd_type)
    report = import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(align=method), progress=False)

    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 1 and rb.meta.fps == 20.0
    assert rb.meta.camera_names == ["front", "wrist"] and rb.meta.joint_names == STATE_JOINTS
    assert rb.instructions == ["pick up the red cube"]
    ep = rb.episode(0)
    info = rb.episode_info(0)

    topics = {
        "image_front": "/camera/front/image_raw",
        "image_wrist": "/camera/wrist/image_raw",
        "state": "/joint_states",
        "qvel": "/joint_states",
        "action": "/arm/command",
    }
    # The clock starts when every stream has started and stops when the first one ends.
    t0 = max(truth[t].stamps[0] for t in topics.values())
    t_end = min(truth[t].stamps[-1] for t in topics.values())
    n = int(np.floor((t_end - t0) * 20.0 / 1e9)) + 1
    assert info["t_start_ns"] == t0
    assert rb.n_frames == n == report.n_frames
    grid = _grid(t0, n, 20.0)

    for key, topic in topics.items():
        tt = truth[topic]
        want = expected_at(tt.stamps, tt.values, grid, method)
        if key == "state":
            want = [v["position"] for v in want]
        elif key == "qvel":
            want = [v["velocity"] for v in want]
        want = np.stack(want)
        if key.startswith("image_"):
            np.testing.assert_array_equal(ep[key], want)  # images are lossless
        else:
            assert ep[key].dtype == np.float32
            np.testing.assert_array_equal(ep[key], want.astype(np.float32))
    assert rb.meta.keys["qvel"].names == ARM

    rows = {s.name: s for s in report.episodes[0].streams}
    assert rows["state"].n_messages == 100 and rows["state"].n_used == n
    assert rows["state"].n_dropped == 100 - n
    assert 0 < rows["image_front"].err_max_ms < 1000 / 20
    if method == "zoh":
        assert (
            info["alignment"]["image_front"]["err_max_ms"] >= info["alignment"]["image_front"]["err_mean_ms"]
        )
    assert report.ignored_topics == {"/diagnostics": 5}
    if cmd_type == "float64":
        assert rows["action"].time_source.startswith("receive")


@pytest.mark.parametrize("encoding", ["bgr8", "mono8"])
def test_bgr_and_mono_images_become_rgb(tmp_path: Path, encoding: str) -> None:
    truth = write_bag(tmp_path / "bag", "mcap", encoding=encoding, duration_s=0.4)
    import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(), progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    info = rb.episode_info(0)
    grid = _grid(info["t_start_ns"], rb.n_frames, 20.0)
    tt = truth["/camera/front/image_raw"]
    np.testing.assert_array_equal(
        rb.episode(0)["image_front"], np.stack(expected_at(tt.stamps, tt.values, grid, "nearest"))
    )


def test_compressed_png_images_are_exact(tmp_path: Path) -> None:
    truth = write_bag(tmp_path / "bag", "mcap", encoding="png", duration_s=0.3)
    import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(), progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    grid = _grid(rb.episode_info(0)["t_start_ns"], rb.n_frames, 20.0)
    tt = truth["/camera/wrist/image_raw"]
    np.testing.assert_array_equal(
        rb.episode(0)["image_wrist"], np.stack(expected_at(tt.stamps, tt.values, grid, "nearest"))
    )


def test_bag_without_message_definitions_uses_mapping_typestore(tmp_path: Path) -> None:
    """Humble-era sqlite3 bags store no message definitions: types come from `mapping.typestore`."""
    import sqlite3

    write_bag(tmp_path / "bag", "sqlite3", duration_s=0.3)
    con = sqlite3.connect(next((tmp_path / "bag").glob("*.db3")))
    con.execute("DELETE FROM message_definitions")
    con.commit()
    con.close()
    report = import_rosbag(
        tmp_path / "bag", tmp_path / "out.zarr", _mapping(typestore="ros2_humble"), progress=False
    )
    assert report.n_frames == ReplayBuffer.open(tmp_path / "out.zarr").n_frames > 0
    with pytest.raises(ConvertError, match=r"mapping\.typestore: unknown type store 'ros2_rolling_x'"):
        import_rosbag(
            tmp_path / "bag", tmp_path / "o2.zarr", _mapping(typestore="ros2_rolling_x"), progress=False
        )


def test_marker_topic_cuts_episodes(tmp_path: Path) -> None:
    markers = [(0.10, True), (0.45, False), (0.55, True), (0.90, False)]
    write_bag(tmp_path / "bag", "sqlite3", markers=markers)
    m = _mapping(episodes={"split": "marker", "marker_topic": "/episode_marker"})
    report = import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", m, progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 2
    assert [e.source for e in report.episodes] == ["bag[0]", "bag[1]"]
    for i in range(2):
        info = rb.episode_info(i)
        # Each episode lies between its markers (receive times ~ marker time + <= 4 ms latency).
        lo, hi = markers[2 * i][0], markers[2 * i + 1][0]
        t0 = 1_700_000_000_000_000_000
        assert t0 + lo * 1e9 <= info["t_start_ns"] and info["t_end_ns"] < t0 + (hi + 0.005) * 1e9
    assert rb.instructions == ["pick up the red cube"] * 2


def test_fixed_instruction_text_when_no_topic(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", instruction=None, duration_s=0.3)
    m = _mapping(instruction={"text": "wave"})
    import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", m, progress=False)
    assert ReplayBuffer.open(tmp_path / "out.zarr").instructions == ["wave"]


def test_directory_of_bags_is_one_episode_per_bag(tmp_path: Path) -> None:
    write_bag(tmp_path / "bags" / "ep0", "mcap", duration_s=0.3, seed=0)
    write_bag(tmp_path / "bags" / "ep1", "sqlite3", duration_s=0.5, seed=1)
    report = import_rosbag(tmp_path / "bags", tmp_path / "out.zarr", _mapping(), progress=False)
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_episodes == 2 and [e.source for e in report.episodes] == ["ep0", "ep1"]
    assert rb.episode_info(1)["source"].endswith("ep1")


# ------------------------------------------------------------------------------------------ bad input
def _expect(tmp_path: Path, m: RosbagMapping, *fragments: str) -> None:
    with pytest.raises(ConvertError) as ei:
        import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", m, progress=False)
    msg = str(ei.value)
    assert str(tmp_path / "bag") in msg, msg  # names the file
    for f in fragments:
        assert f in msg, msg
    assert not (tmp_path / "out.zarr").exists()
    assert not list(tmp_path.glob(".out.zarr.tmp-*"))  # no residue of the staged store


@pytest.mark.parametrize("storage", STORAGES)
def test_missing_topic(tmp_path: Path, storage: str) -> None:
    write_bag(tmp_path / "bag", storage, duration_s=0.2)
    m = _mapping(cameras={"front": "/camera/top/image_raw"})
    _expect(tmp_path, m, "topic /camera/top/image_raw", "camera front", "recorded topics")


def test_unknown_message_type_for_role(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.2)
    m = _mapping(cameras={"front": "/joint_states"})
    _expect(tmp_path, m, "topic /joint_states", "sensor_msgs/msg/JointState", "camera front")


def test_unsupported_image_encoding(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.2, tweak={"encoding": "16UC1"})
    _expect(tmp_path, _mapping(), "topic /camera/front/image_raw", "'16UC1'", "stamp 1700000000.")


@pytest.mark.parametrize("storage", STORAGES)
def test_non_monotonic_stamps(tmp_path: Path, storage: str) -> None:
    write_bag(tmp_path / "bag", storage, duration_s=0.3, tweak={"backwards_at": 12})
    _expect(
        tmp_path, _mapping(), "topic /joint_states", "(message 12)", "must not go backwards", "1700000000."
    )


def test_image_size_change_mid_episode(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "sqlite3", duration_s=0.4, tweak={"resize_at": 5})
    _expect(
        tmp_path, _mapping(), "topic /camera/front/image_raw", "message 5", "16x12", "16x14", "size changed"
    )


@pytest.mark.parametrize(("storage", "suffix"), [("mcap", ".mcap"), ("sqlite3", ".db3")])
def test_truncated_file(tmp_path: Path, storage: str, suffix: str) -> None:
    write_bag(tmp_path / "bag", storage, duration_s=0.3)
    f = next((tmp_path / "bag").glob(f"*{suffix}"))
    os.truncate(f, f.stat().st_size // 2)
    _expect(tmp_path, _mapping(), f.name, "cannot read the bag")


def test_gap_beyond_max_error(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.4, cam_hz=5.0)
    _expect(tmp_path, _mapping(max_error_ms=30.0), "topic /camera/", "max_error_ms 30")


def test_bad_mapping_fields() -> None:
    with pytest.raises(ConvertError, match=r"mapping.align"):
        _mapping(align="linear")
    with pytest.raises(ConvertError, match=r"unknown field"):
        _mapping(camera={"front": "/x"})
    with pytest.raises(ConvertError, match=r"marker_topic"):
        _mapping(episodes={"split": "marker"})


# ------------------------------------------------------------------------------- dry run and re-runs
def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.3)
    before = sorted(p.name for p in tmp_path.iterdir())
    report = import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(), dry_run=True, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert report.dry_run and report.n_frames > 0 and "would write" in str(report)


def test_rerun_never_corrupts_existing_output(tmp_path: Path) -> None:
    write_bag(tmp_path / "bag", "mcap", duration_s=0.3, seed=0)
    out = tmp_path / "out.zarr"
    import_rosbag(tmp_path / "bag", out, _mapping(), progress=False)
    first = ReplayBuffer.open(out).episode(0)

    with pytest.raises(FileExistsError, match="overwrite"):
        import_rosbag(tmp_path / "bag", out, _mapping(), progress=False)
    # A failing re-run with overwrite leaves the old store as it was.
    with pytest.raises(ConvertError):
        import_rosbag(
            tmp_path / "bag", out, _mapping(cameras={"front": "/nope"}), overwrite=True, progress=False
        )
    again = ReplayBuffer.open(out).episode(0)
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])
    # A successful overwrite replaces it whole.
    shutil.rmtree(tmp_path / "bag")
    write_bag(tmp_path / "bag", "mcap", duration_s=0.5, seed=3)
    import_rosbag(tmp_path / "bag", out, _mapping(), overwrite=True, progress=False)
    assert ReplayBuffer.open(out).n_frames > len(first["state"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag", "out.zarr"]
