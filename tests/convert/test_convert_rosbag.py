"""rosbag2 (mcap and sqlite3) -> zarr: values at aligned times, episode cutting, every bad-input error."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from convert_fixtures import ARM, STATE_JOINTS, T0_NS, expected_at, rosbag_mapping_dict, write_bag

from vla.convert import ConvertError, RosbagMapping, frame_clock, import_rosbag
from vla.data import ReplayBuffer, validate_store

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
    # The clock starts when every stream has started and stops when the first one ends (a frame within
    # 1% of a period after that end still counts: stamp rounding, see vla.convert.align).
    t0 = max(truth[t].stamps[0] for t in topics.values())
    t_end = min(truth[t].stamps[-1] for t in topics.values())
    n = int(np.floor((t_end - t0) * 20.0 / 1e9 + 0.01)) + 1
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


# ------------------------------------------------------------------------------------------ issue 20
@pytest.mark.parametrize(("storage", "cmd_type"), [("mcap", "trajectory"), ("sqlite3", "float64")])
def test_action_with_fewer_joints_than_joint_names_is_refused(
    tmp_path: Path, storage: str, cmd_type: str
) -> None:
    """A 6-joint arm command without the gripper, read in its own order (`names` unset), against 7
    joint_names: refused up front (dry run too) instead of writing a store validate rejects."""
    write_bag(tmp_path / "bag", storage, duration_s=0.3, cmd_type=cmd_type, cmd_joints=list(ARM))
    d = rosbag_mapping_dict()
    d["lowdim"]["action"]["names"] = None
    m = RosbagMapping.from_dict(d)
    for dry_run in (True, False):
        with pytest.raises(ConvertError) as ei:
            import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", m, dry_run=dry_run, progress=False)
        msg = str(ei.value)
        assert "\n" not in msg and str(tmp_path / "bag") in msg
        assert "topic /arm/command (mapping.lowdim.action): 6 values per message" in msg, msg
        assert f"want 7: {STATE_JOINTS}" in msg, msg
        if cmd_type == "trajectory":  # the names it has, and the one it lacks
            assert f"its joints {ARM}" in msg and "missing ['robotiq_85_left_knuckle_joint']" in msg, msg
        else:
            assert "std_msgs/msg/Float64MultiArray has no joint names" in msg, msg
        assert not (tmp_path / "out.zarr").exists() and not list(tmp_path.glob(".out.zarr.*"))
    # Naming the arm joints for both state and action is well-defined: it converts to a valid store.
    d["lowdim"]["state"]["names"] = list(ARM)
    d["lowdim"]["action"]["names"] = list(ARM)
    import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", RosbagMapping.from_dict(d), progress=False)
    lay = validate_store(tmp_path / "out.zarr")
    assert lay.ok, lay.problems
    assert ReplayBuffer.open(tmp_path / "out.zarr").episode(0)["action"].shape[1] == 6


def test_action_names_of_another_length_than_state_names_are_refused() -> None:
    d = rosbag_mapping_dict()
    d["lowdim"]["action"]["names"] = list(ARM)
    with pytest.raises(ConvertError, match=r"mapping\.lowdim\.action\.names: 6 joints .* has 7"):
        RosbagMapping.from_dict(d)


def test_non_finite_joint_value_is_refused_naming_topic_and_joint(tmp_path: Path) -> None:
    """A NaN would make `vla-dataset validate` reject the store: refused while reading, named."""
    write_bag(tmp_path / "bag", "mcap", duration_s=0.3, tweak={"nan_at": 4})
    _expect(
        tmp_path,
        _mapping(),
        "topic /joint_states: message 4 (stamp 1700000000.",
        "velocity of joint 'wrist_1_joint' is nan",
    )


def test_frame_clock_keeps_the_last_frame() -> None:
    """Both ends are frames: 0-5.95 s at 20 Hz is 120 frames, also when stamps were rounded."""
    assert len(frame_clock(0, 5_950_000_000, 20.0)) == 120
    assert len(frame_clock(0, 5_950_000_000 - 1, 20.0)) == 120  # int(t * 1e9) truncation
    assert len(frame_clock(0, 5_950_000_000 - 1_000, 20.0)) == 120  # 1 us early (another clock)
    assert len(frame_clock(7, 5_950_000_000, 20.0)) == 120
    assert len(frame_clock(0, 3_966_666_666, 30.0)) == 120  # 119 / 30 s truncated to integer ns
    # A stream that ends clearly before the frame (10% of a period) does not get it.
    assert len(frame_clock(0, 5_950_000_000 - 5_000_000, 20.0)) == 119
    assert len(frame_clock(0, 0, 20.0)) == 1 and len(frame_clock(5, 4, 20.0)) == 0
    grid = frame_clock(T0_NS, T0_NS + 5_950_000_000 - 1, 20.0)
    np.testing.assert_array_equal(grid - T0_NS, np.arange(120) * 50_000_000)


def _write_known_bag(path: Path, storage: str) -> tuple[np.ndarray, np.ndarray]:
    """JointState and a JointTrajectory command at 20 Hz over 0-5.95 s (120 messages each); the state
    is stamped exactly on the 50 ms grid, the command 1 us before it (another clock, or float seconds
    truncated to ns). Returns the published (state, action) values, (120, 7) each."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    T = ts.types
    state = np.arange(120 * 7, dtype=np.float64).reshape(120, 7) / 100
    action = -state
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]

    def header(ns: int):
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""
        )

    with Writer(path, version=9, storage_plugin=plugin) as w:
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        cmd = w.add_connection("/arm/command", "trajectory_msgs/msg/JointTrajectory", typestore=ts)
        msgs = []
        for k in range(120):
            t = T0_NS + k * 50_000_000
            m = T["sensor_msgs/msg/JointState"](
                header=header(t),
                name=list(STATE_JOINTS),
                position=state[k],
                velocity=np.zeros(7),
                effort=np.zeros(0),
            )
            msgs.append((t + 100_000, js, bytes(ts.serialize_cdr(m, "sensor_msgs/msg/JointState"))))
            pt = T["trajectory_msgs/msg/JointTrajectoryPoint"](
                positions=action[k],
                velocities=np.zeros(0),
                accelerations=np.zeros(0),
                effort=np.zeros(0),
                time_from_start=T["builtin_interfaces/msg/Duration"](sec=0, nanosec=50_000_000),
            )
            m = T["trajectory_msgs/msg/JointTrajectory"](
                header=header(t - 1_000), joint_names=list(STATE_JOINTS), points=[pt]
            )
            msgs.append((t + 200_000, cmd, bytes(ts.serialize_cdr(m, "trajectory_msgs/msg/JointTrajectory"))))
        for recv, conn, raw in sorted(msgs, key=lambda x: x[0]):
            w.write(conn, recv, raw)
    return state, action


@pytest.mark.parametrize("storage", STORAGES)
def test_last_frame_kept_when_every_stream_has_a_message_there(tmp_path: Path, storage: str) -> None:
    state, action = _write_known_bag(tmp_path / "bag", storage)
    d = rosbag_mapping_dict(cameras={}, instruction={"text": "wave"})
    del d["lowdim"]["qvel"]
    report = import_rosbag(
        tmp_path / "bag", tmp_path / "out.zarr", RosbagMapping.from_dict(d), progress=False
    )
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    assert rb.n_frames == report.n_frames == 120, rb.n_frames  # was 119: the last frame was dropped
    ep = rb.episode(0)
    np.testing.assert_array_equal(ep["state"], state.astype(np.float32))
    np.testing.assert_array_equal(ep["action"], action.astype(np.float32))
    assert report.episodes[0].duration_s == pytest.approx(5.95)
    assert rb.episode_info(0)["t_end_ns"] == T0_NS + 5_950_000_000


@pytest.mark.parametrize("storage", STORAGES)
def test_unmapped_service_event_channel_does_not_block_the_import(tmp_path: Path, storage: str) -> None:
    """Bags recorded with services embed `srv` definitions rosbags cannot parse; only the mapped
    topics' definitions are read, so the bag converts (was: "cannot read the bag ... truncated")."""
    truth = write_bag(tmp_path / "bag", storage, duration_s=0.4, service_events=True)
    report = import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(), progress=False)
    assert report.ignored_topics == {"/diagnostics": 5, "/gripper/set/_service_event": 4}
    rb = ReplayBuffer.open(tmp_path / "out.zarr")
    grid = _grid(rb.episode_info(0)["t_start_ns"], rb.n_frames, 20.0)
    tt = truth["/joint_states"]
    want = np.stack([v["position"] for v in expected_at(tt.stamps, tt.values, grid, "nearest")])
    np.testing.assert_array_equal(rb.episode(0)["state"], want.astype(np.float32))
    # Mapping the service channel itself is refused for the real reason, in one line.
    m = _mapping(lowdim={"state": {"topic": "/gripper/set/_service_event"}})
    with pytest.raises(ConvertError) as ei:
        import_rosbag(tmp_path / "bag", tmp_path / "o2.zarr", m, progress=False)
    msg = str(ei.value)
    assert "\n" not in msg and "truncated" not in msg, msg
    assert "topic /gripper/set/_service_event: message type 'example_interfaces/srv/AddTwoInts_Event'" in msg


def test_mapped_topic_with_unparseable_definition_is_refused_in_one_line(tmp_path: Path) -> None:
    """The real reason, not "a truncated file": the mapped topic's embedded definition is broken."""
    import sqlite3

    write_bag(tmp_path / "bag", "sqlite3", duration_s=0.3)
    con = sqlite3.connect(next((tmp_path / "bag").glob("*.db3")))
    con.execute(
        "UPDATE message_definitions SET encoded_message_definition = 'float64[ broken' "
        "WHERE topic_type = 'sensor_msgs/msg/JointState'"
    )
    con.commit()
    con.close()
    _expect(tmp_path, _mapping(), "topic /joint_states", "definition of sensor_msgs/msg/JointState")
    with pytest.raises(ConvertError) as ei:
        import_rosbag(tmp_path / "bag", tmp_path / "out.zarr", _mapping(), progress=False)
    assert "\n" not in str(ei.value) and "truncated" not in str(ei.value)


def test_directory_bag_whose_storage_qos_differs_from_metadata_is_refused_not_emptied(tmp_path: Path) -> None:
    """rosbags yields nothing for a topic whose metadata.yaml QoS differs from the storage's (as in
    ros2/rosbag2's talker test bags): refused naming the topic and the counts, in one line."""
    import yaml

    write_bag(tmp_path / "bag", "mcap", duration_s=0.3)
    meta_path = tmp_path / "bag" / "metadata.yaml"
    meta = yaml.safe_load(meta_path.read_text())
    qos = (
        "- history: 3\n  depth: 0\n  reliability: 1\n  durability: 2\n  deadline:\n    sec: 0\n    nsec: 0\n"
        "  lifespan:\n    sec: 0\n    nsec: 0\n  liveliness: 1\n  liveliness_lease_duration:\n    sec: 0\n"
        "    nsec: 0\n  avoid_ros_namespace_conventions: false"
    )
    for t in meta["rosbag2_bagfile_information"]["topics_with_message_count"]:
        if t["topic_metadata"]["name"] == "/joint_states":
            t["topic_metadata"]["offered_qos_profiles"] = qos
            listed = t["message_count"]
    meta_path.write_text(yaml.safe_dump(meta))
    _expect(tmp_path, _mapping(), f"topic /joint_states: the bag lists {listed} messages but 0 could be read")
