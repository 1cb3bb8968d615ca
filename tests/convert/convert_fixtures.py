"""Builders of real source datasets for the importer tests and the benchmark.

- `write_bag`: a rosbag2 bag written with `rosbags.rosbag2.Writer` (mcap or sqlite3, format version 9,
  standard message definitions from the Kilted type store, header stamps, receive times a few ms after
  them, messages in receive order): what `ros2 bag record` writes.
- `write_aloha`: ALOHA/ACT episode_<i>.hdf5 files.
- `write_lerobot_v3`: a LeRobotDataset v3 directory (info.json, tasks.parquet, episodes parquet, data
  parquet, several episodes per MP4 encoded with PyAV).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ARM = [
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
]
GRIPPER = "robotiq_85_left_knuckle_joint"
STATE_JOINTS = [*ARM, GRIPPER]
T0_NS = 1_700_000_000_000_000_000  # a realistic epoch stamp: nanosecond arithmetic must stay exact
# A service-event channel as rosbag2 (Iron and later) records it: definition as embedded in ros2/rosbag2's
# test bag rosbag2_cpp/test/rosbag2_cpp/bags/topics_and_services.mcap, hash as its .db3 twin records it.
# rosbags cannot parse a `srv` definition ("---" between request and response).
SERVICE_EVENT_TYPE = "example_interfaces/srv/AddTwoInts_Event"
SERVICE_EVENT_MSGDEF = "int64 a\nint64 b\n---\nint64 sum\n"
SERVICE_EVENT_RIHS01 = "RIHS01_32c1d140259c71e5c355115942bcb31df98b4330e4d906b1b75ccb1c9b3ce6c8"


@dataclass
class TopicTruth:
    """What was published on one topic: header stamps (ns), receive times (ns) and the values."""

    stamps: list[int] = field(default_factory=list)
    recv: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


def image_pattern(cam_index: int, k: int, h: int, w: int) -> np.ndarray:
    """A deterministic RGB frame that differs per camera and per frame k: uint8 (h, w, 3)."""
    rng = np.random.default_rng(1000 * cam_index + k)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def write_bag(
    path: Path,
    storage: str = "mcap",
    *,
    duration_s: float = 1.0,
    cam_hz: float = 25.0,
    js_hz: float = 100.0,
    cmd_hz: float = 50.0,
    cams: tuple[str, ...] = ("front", "wrist"),
    hw: tuple[int, int] = (12, 16),
    encoding: str = "rgb8",
    cmd_type: str = "trajectory",
    instruction: str | None = "pick up the red cube",
    markers: list[tuple[float, bool]] | None = None,
    extra_topic: bool = True,
    seed: int = 0,
    tweak: dict[str, Any] | None = None,
    cmd_joints: list[str] | None = None,
    service_events: bool = False,
) -> dict[str, TopicTruth]:
    """Write a teleoperation bag; return {topic: TopicTruth} (images in RGB as published before encoding).

    Topics: /camera/<cam>/image_raw (sensor_msgs/Image), /joint_states (JointState, joints shuffled plus
    an extra finger joint: the importer must select by name), /arm/command (JointTrajectory with one
    point, or Float64MultiArray), /instruction (String, once at the start), /episode_marker (Bool) when
    `markers` [(time_s, on), ...] is given, and an unmapped /diagnostics String topic.
    cmd_joints: the joints /arm/command carries, in its order (default: all 7, reversed); e.g. the 6 arm
    joints of a JointTrajectory without the gripper. The truth's values follow STATE_JOINTS order,
    restricted to these joints.
    service_events: also record a service (`/gripper/set/_service_event`, example_interfaces/srv/
    AddTwoInts_Event with its ``srv`` definition embedded, as `ros2 bag record --all-services` writes
    it): a channel rosbags cannot parse the definition of, which the mapping does not read.
    tweak: faults for the error tests: {"backwards_at": k} (joint state k stamped in the past),
    {"resize_at": k} (camera front frame k has another size), {"encoding": "16UC1"}, {"nan_at": k}
    (joint state k has a NaN velocity for wrist_1_joint).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    tweak = tweak or {}
    ts = get_typestore(Stores.ROS2_KILTED)
    Image = ts.types["sensor_msgs/msg/Image"]
    CompressedImage = ts.types["sensor_msgs/msg/CompressedImage"]
    JointState = ts.types["sensor_msgs/msg/JointState"]
    JointTrajectory = ts.types["trajectory_msgs/msg/JointTrajectory"]
    JointTrajectoryPoint = ts.types["trajectory_msgs/msg/JointTrajectoryPoint"]
    Float64MultiArray = ts.types["std_msgs/msg/Float64MultiArray"]
    MultiArrayLayout = ts.types["std_msgs/msg/MultiArrayLayout"]
    String = ts.types["std_msgs/msg/String"]
    Bool = ts.types["std_msgs/msg/Bool"]
    Header = ts.types["std_msgs/msg/Header"]
    Time = ts.types["builtin_interfaces/msg/Time"]
    Duration = ts.types["builtin_interfaces/msg/Duration"]

    rng = np.random.default_rng(seed)

    def header(ns: int, frame: str) -> Any:
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    def latency() -> int:
        return int(rng.integers(500_000, 4_000_000))  # 0.5-4 ms transport delay

    truth: dict[str, TopicTruth] = {}
    pending: list[tuple[int, str, bytes]] = []  # (recv, topic, cdr)
    types: dict[str, str] = {}

    def publish(
        topic: str, msgtype: str, msg: Any, stamp: int, value: Any, recv_at: int | None = None
    ) -> None:
        recv = (stamp if recv_at is None else recv_at) + latency()
        types[topic] = msgtype
        pending.append((recv, topic, bytes(ts.serialize_cdr(msg, msgtype))))
        tt = truth.setdefault(topic, TopicTruth())
        tt.stamps.append(stamp)
        tt.recv.append(recv)
        tt.values.append(value)

    h, w = hw
    enc = tweak.get("encoding", encoding)
    for ci, cam in enumerate(cams):
        n = int(duration_s * cam_hz)
        for k in range(n):
            stamp = T0_NS + round(k * 1e9 / cam_hz) + int(rng.integers(0, 2_000_000)) + 3_000_000 * ci
            hh, ww = (h + 2, w) if (cam == cams[0] and tweak.get("resize_at") == k) else (h, w)
            rgb = image_pattern(ci, k, hh, ww)
            if enc == "bgr8":
                payload, step = rgb[..., ::-1], 3 * ww
            elif enc == "mono8":
                rgb = np.repeat(rgb[..., :1], 3, axis=-1)
                payload, step = rgb[..., 0], ww
            elif enc == "16UC1":
                payload, step = np.zeros((hh, ww, 2), np.uint8), 2 * ww
            else:
                payload, step = rgb, 3 * ww
            if enc == "png":  # image_transport's compressed topic, lossless flavour
                import io

                from PIL import Image as PILImage

                buf = io.BytesIO()
                PILImage.fromarray(rgb).save(buf, format="PNG")
                cmsg = CompressedImage(
                    header=header(stamp, f"{cam}_camera_optical_frame"),
                    format="rgb8; png compressed rgb8",
                    data=np.frombuffer(buf.getvalue(), np.uint8),
                )
                publish(f"/camera/{cam}/image_raw", "sensor_msgs/msg/CompressedImage", cmsg, stamp, rgb)
                continue
            msg = Image(
                header=header(stamp, f"{cam}_camera_optical_frame"),
                height=hh,
                width=ww,
                encoding=enc,
                is_bigendian=0,
                step=step,
                data=np.ascontiguousarray(payload).reshape(-1),
            )
            publish(f"/camera/{cam}/image_raw", "sensor_msgs/msg/Image", msg, stamp, rgb)

    order = [*STATE_JOINTS, "robotiq_85_right_knuckle_joint"]
    order = [order[i] for i in rng.permutation(len(order))]
    n = int(duration_s * js_hz)
    for k in range(n):
        stamp = recv_at = T0_NS + round(k * 1e9 / js_hz) + int(rng.integers(0, 300_000))
        if tweak.get("backwards_at") == k:
            stamp -= 50_000_000  # a publisher clock jump: stamped in the past, received on time
        pos = {j: float(np.sin(0.3 * k + i) + 0.01 * k) for i, j in enumerate(order)}
        vel = {j: float(np.cos(0.2 * k + i)) for i, j in enumerate(order)}
        if tweak.get("nan_at") == k:
            vel[ARM[3]] = float("nan")  # a driver that publishes NaN for an unknown velocity
        msg = JointState(
            header=header(stamp, ""),
            name=list(order),
            position=np.array([pos[j] for j in order]),
            velocity=np.array([vel[j] for j in order]),
            effort=np.zeros(0),
        )
        publish(
            "/joint_states",
            "sensor_msgs/msg/JointState",
            msg,
            stamp,
            {
                "position": np.array([pos[j] for j in STATE_JOINTS]),
                "velocity": np.array([vel[j] for j in ARM]),
            },
            recv_at=recv_at,
        )

    n = int(duration_s * cmd_hz)
    # The command's own order differs from the state order.
    cmd_joints = list(cmd_joints) if cmd_joints is not None else list(reversed(STATE_JOINTS))
    for k in range(n):
        stamp = T0_NS + round(k * 1e9 / cmd_hz) + 1_000_000
        target = {j: float(0.5 * np.sin(0.1 * k + i)) for i, j in enumerate(cmd_joints)}
        value = np.array([target[j] for j in STATE_JOINTS if j in target])
        if cmd_type == "trajectory":
            pt = JointTrajectoryPoint(
                positions=np.array([target[j] for j in cmd_joints]),
                velocities=np.zeros(0),
                accelerations=np.zeros(0),
                effort=np.zeros(0),
                time_from_start=Duration(sec=0, nanosec=int(1e9 / cmd_hz)),
            )
            msg = JointTrajectory(header=header(stamp, "base_link"), joint_names=cmd_joints, points=[pt])
            publish("/arm/command", "trajectory_msgs/msg/JointTrajectory", msg, stamp, value)
        else:
            msg = Float64MultiArray(layout=MultiArrayLayout(dim=[], data_offset=0), data=value.copy())
            # No header: the importer must fall back to the receive time; record it as the truth's stamp.
            publish("/arm/command", "std_msgs/msg/Float64MultiArray", msg, stamp, value)

    if instruction is not None:
        publish(
            "/instruction", "std_msgs/msg/String", String(data=instruction), T0_NS - 50_000_000, instruction
        )
    for t_s, on in markers or []:
        publish("/episode_marker", "std_msgs/msg/Bool", Bool(data=on), T0_NS + int(t_s * 1e9), on)
    if extra_topic:
        for k in range(5):
            publish(
                "/diagnostics", "std_msgs/msg/String", String(data=f"ok {k}"), T0_NS + k * 200_000_000, ""
            )

    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    writer = Writer(path, version=9, storage_plugin=plugin)
    with writer:
        conns = {t: writer.add_connection(t, mt, typestore=ts) for t, mt in types.items()}
        if service_events:
            topic = "/gripper/set/_service_event"
            conns[topic] = writer.add_connection(
                topic,
                SERVICE_EVENT_TYPE,
                msgdef=SERVICE_EVENT_MSGDEF,
                rihs01=SERVICE_EVENT_RIHS01,
            )
            for k in range(4):  # never deserialized: the mapping does not read this channel
                pending.append((T0_NS + k * 100_000_000 + 7, topic, bytes(8 + k)))
            truth[topic] = TopicTruth()
        for recv, topic, data in sorted(pending, key=lambda p: p[0]):
            writer.write(conns[topic], recv, data)
    # Header-less types are stamped by their receive time; record that as the truth.
    for topic, mt in types.items():
        if mt in ("std_msgs/msg/Float64MultiArray", "std_msgs/msg/String", "std_msgs/msg/Bool"):
            truth[topic].stamps = list(truth[topic].recv)
    return truth


def expected_at(stamps: list[int], values: list[Any], grid: np.ndarray, method: str) -> list[Any]:
    """Brute-force reference of the alignment: for each frame time, the value the method must pick."""
    st = np.asarray(stamps, dtype=np.int64)
    out = []
    for t in grid:
        if method == "zoh":
            i = int(np.flatnonzero(st <= t)[-1])
        else:
            d = np.abs(st - t)
            i = int(np.flatnonzero(d == d.min())[0])
        out.append(values[i])
    return out


def rosbag_mapping_dict(**over: Any) -> dict[str, Any]:
    """The mapping the bag tests use (the shape of configs/convert/*.yaml)."""
    d: dict[str, Any] = {
        "fps": 20.0,
        "robot": "ur5e_2f85",
        "align": "nearest",
        "time_source": "header",
        "cameras": {"front": "/camera/front/image_raw", "wrist": "/camera/wrist/image_raw"},
        "lowdim": {
            "state": {"topic": "/joint_states", "field": "position", "names": list(STATE_JOINTS)},
            "qvel": {"topic": "/joint_states", "field": "velocity", "names": list(ARM)},
            "action": {"topic": "/arm/command", "names": list(STATE_JOINTS)},
        },
        "instruction": {"topic": "/instruction", "text": ""},
        "episodes": {"split": "bag"},
    }
    d.update(over)
    return d


# ----------------------------------------------------------------------------------------------- HDF5
def write_aloha(
    directory: Path,
    n_episodes: int = 2,
    T: int = 12,
    cams: tuple[str, ...] = ("top", "angle"),
    hw: tuple[int, int] = (10, 14),
    dof: int = 14,
    sim: bool = True,
) -> list[dict[str, np.ndarray]]:
    """ALOHA/ACT episodes as written by ACT's record_sim_episodes.py; returns the arrays written."""
    import h5py

    directory.mkdir(parents=True, exist_ok=True)
    eps = []
    for i in range(n_episodes):
        rng = np.random.default_rng(i)
        ep = {
            "qpos": rng.standard_normal((T + i, dof)),
            "qvel": rng.standard_normal((T + i, dof)),
            "action": rng.standard_normal((T + i, dof)),
            **{f"cam_{c}": rng.integers(0, 256, (T + i, *hw, 3), dtype=np.uint8) for c in cams},
        }
        with h5py.File(directory / f"episode_{i}.hdf5", "w", rdcc_nbytes=1024**2 * 2) as root:
            root.attrs["sim"] = sim
            obs = root.create_group("observations")
            image = obs.create_group("images")
            for c in cams:
                image.create_dataset(c, data=ep[f"cam_{c}"], chunks=(1, *hw, 3))
            obs.create_dataset("qpos", data=ep["qpos"])
            obs.create_dataset("qvel", data=ep["qvel"])
            root.create_dataset("action", data=ep["action"])
        eps.append(ep)
    return eps


# ------------------------------------------------------------------------------------------- LeRobot v3
def _encode_video(path: Path, frames: np.ndarray, fps: int) -> None:
    """H.264 at crf 0 in yuv444p: as close to lossless as an mp4 gets (RGB->YUV rounding remains)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0", "preset": "ultrafast", "g": "2"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _smooth_frames(n: int, hw: tuple[int, int], seed: int) -> np.ndarray:
    """Smooth gradients (video codecs are lossy on noise): uint8 (n, H, W, 3)."""
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for k in range(n):
        out[k, ..., 0] = (xx * 255 // max(w - 1, 1) + 7 * k + seed * 40) % 256
        out[k, ..., 1] = (yy * 255 // max(h - 1, 1) + 3 * k) % 256
        out[k, ..., 2] = (128 + 60 * np.sin(0.3 * k + seed)) * np.ones_like(xx)
    return out


def write_lerobot_v3(
    root: Path,
    lengths: tuple[int, ...] = (6, 9, 5),
    fps: int = 10,
    cams: tuple[str, ...] = ("front", "wrist"),
    hw: tuple[int, int] = (16, 16),
    tasks: tuple[str, ...] = ("pick up the cube", "stack the cubes"),
    episodes_per_file: int = 2,
    task_index_named: bool = True,
) -> dict[str, Any]:
    """A LeRobotDataset v3.0 directory as `lerobot` writes it; returns the ground truth per episode.

    Data parquet and videos pack `episodes_per_file` episodes per file (so episodes start mid-file);
    the episodes parquet carries data/video chunk/file indices and from/to timestamps.
    tasks.parquet is what pandas writes for a DataFrame indexed by the task text (index named "task"
    as recent lerobot versions write it, or unnamed as older converters do).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    dof = 7
    truth: dict[str, Any] = {"episodes": []}
    features: dict[str, Any] = {
        "observation.state": {"dtype": "float32", "shape": [dof], "names": list(STATE_JOINTS)},
        "action": {"dtype": "float32", "shape": [dof], "names": list(STATE_JOINTS)},
    }
    for c in cams:
        features[f"observation.images.{c}"] = {
            "dtype": "video",
            "shape": [hw[0], hw[1], 3],
            "names": ["height", "width", "channels"],
            "info": {
                "video.height": hw[0],
                "video.width": hw[1],
                "video.codec": "h264",
                "video.pix_fmt": "yuv444p",
                "video.is_depth_map": False,
                "video.fps": fps,
                "video.channels": 3,
                "has_audio": False,
            },
        }
    for name in ("timestamp",):
        features[name] = {"dtype": "float32", "shape": [1], "names": None}
    for name in ("frame_index", "episode_index", "index", "task_index"):
        features[name] = {"dtype": "int64", "shape": [1], "names": None}

    info = {
        "codebase_version": "v3.0",
        "robot_type": "ur5e_2f85",
        "total_episodes": len(lengths),
        "total_frames": int(sum(lengths)),
        "total_tasks": len(tasks),
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 500,
        "fps": fps,
        "splits": {"train": f"0:{len(lengths)}"},
        "data_path": "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet",
        "video_path": "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4",
        "features": features,
    }
    (root / "meta").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "info.json").write_text(json.dumps(info, indent=4))

    # tasks.parquet, laid out as pandas' DataFrame.to_parquet writes it (index column + pandas metadata).
    index_col = "task" if task_index_named else "__index_level_0__"
    pandas_meta = {
        "index_columns": [index_col],
        "column_indexes": [],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task" if task_index_named else None,
                "field_name": index_col,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    tasks_tbl = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), index_col: pa.array(list(tasks))}
    )
    tasks_tbl = tasks_tbl.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})
    pq.write_table(tasks_tbl, root / "meta" / "tasks.parquet")

    ep_rows: list[dict[str, Any]] = []
    index = 0
    groups = [
        list(range(i, min(i + episodes_per_file, len(lengths))))
        for i in range(0, len(lengths), episodes_per_file)
    ]
    for file_index, group in enumerate(groups):
        cols: dict[str, list[Any]] = {
            k: []
            for k in (
                "observation.state",
                "action",
                "timestamp",
                "frame_index",
                "episode_index",
                "index",
                "task_index",
            )
        }
        videos = {c: [] for c in cams}
        t_file = 0.0
        for e in group:
            T = lengths[e]
            rng = np.random.default_rng(100 + e)
            state = rng.standard_normal((T, dof)).astype(np.float32)
            action = rng.standard_normal((T, dof)).astype(np.float32)
            task_index = e % len(tasks)
            frames = {c: _smooth_frames(T, hw, seed=10 * e + ci) for ci, c in enumerate(cams)}
            cols["observation.state"] += list(state)
            cols["action"] += list(action)
            cols["timestamp"] += [k / fps for k in range(T)]
            cols["frame_index"] += list(range(T))
            cols["episode_index"] += [e] * T
            cols["index"] += list(range(index, index + T))
            cols["task_index"] += [task_index] * T
            row = {
                "episode_index": e,
                "tasks": [tasks[task_index]],
                "length": T,
                "data/chunk_index": 0,
                "data/file_index": file_index,
                "dataset_from_index": index,
                "dataset_to_index": index + T,
                "meta/episodes/chunk_index": 0,
                "meta/episodes/file_index": 0,
            }
            for c in cams:
                videos[c].append(frames[c])
                row[f"videos/observation.images.{c}/chunk_index"] = 0
                row[f"videos/observation.images.{c}/file_index"] = file_index
                row[f"videos/observation.images.{c}/from_timestamp"] = t_file
                row[f"videos/observation.images.{c}/to_timestamp"] = t_file + T / fps
            row["stats/action/mean"] = action.mean(0).astype(np.float64).tolist()
            ep_rows.append(row)
            truth["episodes"].append(
                {"state": state, "action": action, "task": tasks[task_index], "frames": frames}
            )
            t_file += T / fps
            index += T
        tbl = pa.table(
            {
                "observation.state": pa.array(
                    [list(map(float, x)) for x in cols["observation.state"]], pa.list_(pa.float32(), dof)
                ),
                "action": pa.array(
                    [list(map(float, x)) for x in cols["action"]], pa.list_(pa.float32(), dof)
                ),
                "timestamp": pa.array(cols["timestamp"], pa.float32()),
                "frame_index": pa.array(cols["frame_index"], pa.int64()),
                "episode_index": pa.array(cols["episode_index"], pa.int64()),
                "index": pa.array(cols["index"], pa.int64()),
                "task_index": pa.array(cols["task_index"], pa.int64()),
            }
        )
        p = root / info["data_path"].format(chunk_index=0, file_index=file_index)
        p.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(tbl, p)
        for c in cams:
            vp = root / info["video_path"].format(
                video_key=f"observation.images.{c}", chunk_index=0, file_index=file_index
            )
            _encode_video(vp, np.concatenate(videos[c]), fps)
    ep_path = root / "meta" / "episodes" / "chunk-000" / "file-000.parquet"
    ep_path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(ep_rows), ep_path)
    return truth
