"""Native zarr store -> rosbag2 bags with mcap storage (`vla-dataset export --format mcap`).

The output reads back through the project's own importer (`vla-convert convert=ur5e_rosbag`,
configs/convert/ur5e_rosbag.yaml) and opens in Foxglove / `ros2 bag play` / `rosbags`::

    DST/episode_000000/metadata.yaml, episode_000000_0.mcap     one bag per episode (the mapping's
    DST/episode_000001/...                                      ``episodes: {split: bag}``)

Topics and types per frame k of an episode, stamped (header and receive time) at
``start + round(k * 1e9 / fps)`` ns, the importer's own control clock (`vla.convert.align.frame_clock`)::

    /joint_states                 sensor_msgs/msg/JointState        position = state, velocity = qvel
                                                                    (0 for joints qvel lacks: the gripper)
    /arm/command                  trajectory_msgs/msg/JointTrajectory  one point, positions = action
    /camera/<cam>/image_raw       sensor_msgs/msg/Image (rgb8)      or CompressedImage (png / jpeg)
    /instruction                  std_msgs/msg/String               once, at the episode start

Joint names on the wire: `McapExportOptions.wire_names` maps store names to published ones (the
entry point builds it from configs/robot/<robot>.yaml: ``gripper`` -> ``robotiq_85_left_knuckle_joint``);
other names are written as they are. Episode e starts
``EPISODE_GAP_S`` after episode e-1 ends. Low-dim values are float32 in the store, float64 on the wire:
exact both ways. Raw and png images are lossless, jpeg is not. Written to a hidden sibling and renamed
into place (`vla.data.staging`).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.errors import ConvertError
from vla.data import ReplayBuffer
from vla.data.format import camera_of, is_image_key
from vla.data.staging import staged_output
from vla.progress import progress_bar

JOINT_STATES_TOPIC = "/joint_states"
COMMAND_TOPIC = "/arm/command"
CAMERA_TOPIC = "/camera/{cam}/image_raw"
INSTRUCTION_TOPIC = "/instruction"
T0_NS = 1_700_000_000_000_000_000  # the first episode's start (a realistic epoch stamp)
EPISODE_GAP_S = 1.0
IMAGE_FORMATS = ("raw", "png", "jpeg")


@dataclass
class McapExportOptions:
    """episode: export only this episode (None = all). images: raw (sensor_msgs/Image rgb8, lossless),
    png (CompressedImage, lossless) or jpeg (CompressedImage, lossy). jpeg_quality: for jpeg.
    wire_names: dataset joint name -> the name the robot publishes (the entry point reads it from
        configs/robot/<robot>.yaml: dataset_joint_names -> joint_names); names not in it are kept."""

    episode: int | None = None
    images: str = "raw"
    jpeg_quality: int = 95
    wire_names: dict[str, str] | None = None


@dataclass
class McapExportSummary:
    out: Path
    n_episodes: int
    n_frames: int
    fps: float
    topics: dict[str, str]

    def __str__(self) -> str:
        topics = ", ".join(f"{t} ({mt.rsplit('/', 1)[-1]})" for t, mt in self.topics.items())
        return (
            f"exported {self.n_episodes} episodes, {self.n_frames} frames at {self.fps:g} fps to {self.out} "
            f"(rosbag2 mcap, one bag per episode; viewable in Foxglove; topics: {topics})"
        )


def wire_joint_names(names: list[str], wire_names: dict[str, str] | None) -> list[str]:
    """Store joint names -> the names the robot publishes (`wire_names`), others unchanged."""
    return [(wire_names or {}).get(n, n) for n in names]


def _encode(img: np.ndarray, fmt: str, quality: int) -> bytes:
    from PIL import Image as PILImage

    buf = io.BytesIO()
    if fmt == "png":
        PILImage.fromarray(img).save(buf, format="PNG")
    else:
        PILImage.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


class _Msgs:
    """Builds the CDR bytes of each message type from one rosbags type store."""

    def __init__(self) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.ts = get_typestore(Stores.ROS2_KILTED)
        self.t = self.ts.types

    def header(self, ns: int, frame: str) -> Any:
        Time = self.t["builtin_interfaces/msg/Time"]
        return self.t["std_msgs/msg/Header"](
            stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame
        )

    def cdr(self, msg: Any, msgtype: str) -> bytes:
        return bytes(self.ts.serialize_cdr(msg, msgtype))

    def joint_state(self, ns: int, names: list[str], pos: np.ndarray, vel: np.ndarray) -> bytes:
        msg = self.t["sensor_msgs/msg/JointState"](
            header=self.header(ns, ""),
            name=list(names),
            position=np.asarray(pos, np.float64),
            velocity=np.asarray(vel, np.float64),
            effort=np.zeros(0, np.float64),
        )
        return self.cdr(msg, "sensor_msgs/msg/JointState")

    def trajectory(self, ns: int, names: list[str], pos: np.ndarray, period_ns: int) -> bytes:
        z = np.zeros(0, np.float64)
        pt = self.t["trajectory_msgs/msg/JointTrajectoryPoint"](
            positions=np.asarray(pos, np.float64),
            velocities=z,
            accelerations=z,
            effort=z,
            time_from_start=self.t["builtin_interfaces/msg/Duration"](sec=0, nanosec=period_ns),
        )
        msg = self.t["trajectory_msgs/msg/JointTrajectory"](
            header=self.header(ns, "base_link"), joint_names=list(names), points=[pt]
        )
        return self.cdr(msg, "trajectory_msgs/msg/JointTrajectory")

    def image(self, ns: int, cam: str, img: np.ndarray, fmt: str, quality: int) -> bytes:
        hdr = self.header(ns, f"{cam}_camera_optical_frame")
        if fmt == "raw":
            h, w, _ = img.shape
            msg = self.t["sensor_msgs/msg/Image"](
                header=hdr,
                height=h,
                width=w,
                encoding="rgb8",
                is_bigendian=0,
                step=3 * w,
                data=np.ascontiguousarray(img, np.uint8).reshape(-1),
            )
            return self.cdr(msg, "sensor_msgs/msg/Image")
        msg = self.t["sensor_msgs/msg/CompressedImage"](
            header=hdr,
            format=f"rgb8; {fmt} compressed rgb8",
            data=np.frombuffer(_encode(img, fmt, quality), np.uint8),
        )
        return self.cdr(msg, "sensor_msgs/msg/CompressedImage")

    def string(self, text: str) -> bytes:
        return self.cdr(self.t["std_msgs/msg/String"](data=text), "std_msgs/msg/String")


def _velocity(qvel: np.ndarray | None, n_joints: int, where: str) -> np.ndarray:
    """(T, n_joints) velocities: qvel as is, or padded with 0 for the trailing joints it lacks."""
    if qvel is None:
        return np.zeros((0, 0))
    q = qvel.reshape(len(qvel), -1)
    if q.shape[1] > n_joints:
        raise ConvertError(f"{where}: qvel has {q.shape[1]} values per frame, more than {n_joints} joints")
    return np.pad(q, ((0, 0), (0, n_joints - q.shape[1])))


def export_mcap(
    src: str | Path,
    out: str | Path,
    opts: McapExportOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> McapExportSummary:
    """Write the native store `src` as a directory of rosbag2 mcap bags at `out` (staged, then renamed)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    opts = opts or McapExportOptions()
    if opts.images not in IMAGE_FORMATS:
        raise ConvertError(f"images: expected one of {IMAGE_FORMATS}, got {opts.images!r}")
    rb = ReplayBuffer.open(src)
    if Path(out).resolve() == rb.path.resolve():
        raise ConvertError(f"{out}: the destination is the source store")
    if rb.n_episodes == 0:
        raise ConvertError(f"{rb.path}: the store has no episodes; nothing to export")
    for k in ("state", "action"):
        if k not in rb.keys:
            raise ConvertError(f"{rb.path}: no {k!r} key (keys: {rb.keys}); a bag needs state and action")
    episodes = list(range(rb.n_episodes))
    if opts.episode is not None:
        if not 0 <= opts.episode < rb.n_episodes:
            raise ConvertError(
                f"episode: {opts.episode} is out of range; {rb.path} has episodes 0..{rb.n_episodes - 1}"
            )
        episodes = [opts.episode]
    fps = float(rb.meta.fps)
    period = 1e9 / fps
    names = list(rb.meta.joint_names)
    n_joints = int(np.prod(rb.shape("state")))
    if len(names) != n_joints:
        names = [f"joint_{i}" for i in range(n_joints)]
    names = wire_joint_names(names, opts.wire_names)
    cams = [camera_of(k) for k in rb.keys if is_image_key(k)]
    image_type = "sensor_msgs/msg/Image" if opts.images == "raw" else "sensor_msgs/msg/CompressedImage"
    topics = {
        JOINT_STATES_TOPIC: "sensor_msgs/msg/JointState",
        COMMAND_TOPIC: "trajectory_msgs/msg/JointTrajectory",
        **{CAMERA_TOPIC.format(cam=c): image_type for c in cams},
        INSTRUCTION_TOPIC: "std_msgs/msg/String",
    }
    lengths = rb.episode_lengths.astype(np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    m = _Msgs()
    n_frames = 0
    with staged_output(out, overwrite, validate=False) as tmp:
        tmp.mkdir(parents=True)
        t_start = T0_NS
        for e in progress_bar(episodes, desc="episodes", unit="ep", disable=not progress):
            a, b = int(starts[e]), int(ends[e])
            T = b - a
            stamps = t_start + np.rint(np.arange(T) * period).astype(np.int64)
            where = f"{rb.path}: episode {e}"
            state = rb.read("state", a, b).reshape(T, -1)
            action = rb.read("action", a, b).reshape(T, -1)
            if action.shape[1] != n_joints:
                raise ConvertError(f"{where}: action has {action.shape[1]} values, state {n_joints}")
            vel = _velocity(rb.read("qvel", a, b) if "qvel" in rb.keys else None, n_joints, where)
            images = {c: rb.read(f"image_{c}", a, b) for c in cams}
            writer = Writer(tmp / f"episode_{e:06d}", version=9, storage_plugin=StoragePlugin.MCAP)
            with writer:
                conns = {t: writer.add_connection(t, mt, typestore=m.ts) for t, mt in topics.items()}
                writer.write(conns[INSTRUCTION_TOPIC], int(stamps[0]), m.string(rb.instructions[e]))
                for k in range(T):
                    ns = int(stamps[k])
                    v = vel[k] if len(vel) else vel.reshape(0)
                    writer.write(conns[JOINT_STATES_TOPIC], ns, m.joint_state(ns, names, state[k], v))
                    writer.write(conns[COMMAND_TOPIC], ns, m.trajectory(ns, names, action[k], round(period)))
                    for c in cams:
                        img = m.image(ns, c, images[c][k], opts.images, opts.jpeg_quality)
                        writer.write(conns[CAMERA_TOPIC.format(cam=c)], ns, img)
            n_frames += T
            t_start = int(stamps[-1]) + round(period + EPISODE_GAP_S * 1e9)
    return McapExportSummary(Path(out), len(episodes), n_frames, fps, topics)
