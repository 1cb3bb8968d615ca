"""Teleoperation recording into the native zarr store: the `EpisodeSink` behind the ROS recorder node.

``ros_bridge.recorder_node.RecorderNode`` samples live topics into frames; :class:`ZarrEpisodeSink`
keeps the frames of the episode being recorded in memory and appends the whole episode with
``ReplayBuffer.add_episode`` at stop (one atomic commit). A crash or kill while recording loses only
that episode: every stored one stays readable (see ``docs/dataset_format.md``, "Writing").

    sink = ZarrEpisodeSink.open_or_create("teleop.zarr", record_meta(fps=20.0))
    node = RecorderNode(sink, RecorderConfig(...))
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla.data import DatasetError, DatasetMeta, KeySpec, ReplayBuffer

# Dataset names of the 7 dims (the wire names of the gripper joint differ between drivers).
DATASET_JOINT_NAMES = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
    "gripper",
)


def record_meta(
    fps: float,
    camera_names: list[str] | tuple[str, ...] = ("front", "wrist"),
    robot: str = "ur5e_2f85",
    joint_names: list[str] | tuple[str, ...] = DATASET_JOINT_NAMES,
    extra: Mapping[str, Any] | None = None,
) -> DatasetMeta:
    """Store metadata for a recorded session (fps = the recorder's rate)."""
    return DatasetMeta(
        fps=float(fps),
        robot=robot,
        joint_names=list(joint_names),
        camera_names=list(camera_names),
        keys={
            "state": KeySpec("rad|[0,1]", "measured joint positions (JointState) + gripper opening"),
            "qvel": KeySpec("rad/s", "measured arm joint velocities (JointState)"),
            "action": KeySpec("rad|[0,1]", "teleop command: joint targets one period ahead + gripper"),
        },
        extra={"source": "ros recorder", **dict(extra or {})},
    )


class ZarrEpisodeSink:
    """``EpisodeSink`` writing one episode per ``end(keep=True)`` into a ``ReplayBuffer``.

    Frames are (7,) ``state``/``action``, (6,) ``qvel``, (H, W, 3) uint8 ``image_<cam>``; every frame of
    an episode must have the keys and shapes of its first frame (a camera changing resolution is
    refused with ValueError naming the key and frame).
    """

    def __init__(self, rb: ReplayBuffer, info: Mapping[str, Any] | None = None) -> None:
        if rb.mode != "a":
            raise DatasetError(f"{rb.path}: the recorder needs the store opened for appending (mode='a')")
        self.rb = rb
        self._info = dict(info or {})
        self._frames: dict[str, list[np.ndarray]] | None = None
        self._instruction = ""
        self._started = ""

    @classmethod
    def open_or_create(
        cls, path: str | Path, meta: DatasetMeta, info: Mapping[str, Any] | None = None
    ) -> ZarrEpisodeSink:
        """Append to the store at ``path`` (its fps and cameras must match ``meta``), or create it."""
        path = Path(path)
        if not path.exists():
            return cls(ReplayBuffer.create(path, meta), info)
        rb = ReplayBuffer.open(path, mode="a")  # also trims the residue of a crash during a write
        have = rb.meta
        for name in ("fps", "camera_names", "joint_names"):
            if getattr(have, name) != getattr(meta, name):
                raise DatasetError(
                    f"{path}/zarr.json: {name} is {getattr(have, name)!r} but the recorder records "
                    f"{getattr(meta, name)!r}; record into a new store"
                )
        return cls(rb, info)

    @property
    def recording(self) -> bool:
        return self._frames is not None

    @property
    def n_frames(self) -> int:
        """Frames of the episode being recorded."""
        return 0 if self._frames is None else len(next(iter(self._frames.values()), []))

    def begin(self, instruction: str) -> None:
        if self._frames is not None:
            raise RuntimeError(f"{self.rb.path}: begin() while an episode is being recorded")
        self._frames = {}
        self._instruction = instruction
        self._started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")

    def add_frame(self, frame: dict[str, np.ndarray]) -> None:
        if self._frames is None:
            raise RuntimeError(f"{self.rb.path}: add_frame() before begin()")
        t = self.n_frames
        if t == 0 and not self._frames:
            self._frames = {k: [] for k in frame}
        elif set(frame) != set(self._frames):
            raise ValueError(
                f"frame {t}: keys {sorted(frame)} differ from the episode's {sorted(self._frames)}"
            )
        for key, value in frame.items():
            x = np.asarray(value)
            if t > 0 and x.shape != self._frames[key][0].shape:
                raise ValueError(
                    f"frame {t}: {key} has shape {x.shape}, the episode started with {self._frames[key][0].shape}"
                )
        for key, value in frame.items():
            self._frames[key].append(np.array(value))  # own copy

    def end(self, keep: bool) -> int | None:
        if self._frames is None:
            raise RuntimeError(f"{self.rb.path}: end() before begin()")
        frames, self._frames = self._frames, None
        if not keep or not frames or not next(iter(frames.values())):
            return None
        data = {k: np.stack(v) for k, v in frames.items()}
        info = {
            **self._info,
            "source": "ros recorder",
            "recorded_at": self._started,
            "frames": len(data["state"]),
        }
        return self.rb.add_episode(data, instruction=self._instruction, info=info)
