"""The mapping from a rosbag2 recording's topics to dataset keys (`configs/convert/<name>.yaml`).

Example (the shape of a mapping config)::

    fps: 20.0                      # control-rate clock every stream is aligned onto
    align: nearest                 # nearest | zoh (zero-order hold), per stream overridable
    time_source: header            # header (msg.header.stamp) | receive (bag time); header falls back
                                   #   to receive for types without a header or with zero stamps
    cameras: {front: /cam/front/image_raw}          # camera -> Image / CompressedImage topic
    lowdim:                                         # key -> stream
      state:  {topic: /joint_states, field: position, names: [j1, ...]}
      qvel:   {topic: /joint_states, field: velocity, names: [j1, ...]}
      action: {topic: /commands}   # JointTrajectory (first point) or Float64MultiArray
    instruction: {topic: /instruction, text: ""}    # std_msgs/String topic and/or fixed text
    episodes: {split: bag}         # bag: one bag = one episode; marker: start/stop on marker_topic
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vla.convert.align import ALIGN_METHODS
from vla.convert.errors import ConvertError

JOINT_STATE_FIELDS = ("position", "velocity", "effort")
TRAJECTORY_FIELDS = ("positions", "velocities", "accelerations", "effort")


@dataclass
class StreamSpec:
    """One low-dimensional key read from one topic.

    topic: the topic; its type decides how values are read (see `vla.convert.ros_msgs`).
    names: joint names to select, in this order (JointState ``name`` / JointTrajectory ``joint_names``);
        None keeps the message's own order (then it must not change between messages).
    field: JointState field (position | velocity | effort) or JointTrajectoryPoint field
        (positions | velocities | ...); empty = the type's default (position / positions).
    align: per-stream override of the mapping's method (nearest | zoh); empty = the mapping's.
    units / description: documentation stored with the key.
    """

    topic: str
    names: list[str] | None = None
    field: str = ""
    align: str = ""
    units: str = ""
    description: str = ""


@dataclass
class InstructionSpec:
    """topic: std_msgs/msg/String topic (latest message at or before the episode start, else the first one
    during it); text: fixed instruction, or the fallback when the topic has no message."""

    topic: str | None = None
    text: str = ""


@dataclass
class EpisodeSplit:
    """split: ``bag`` (each bag is one episode) or ``marker`` (episodes between start and stop markers).

    marker_topic: std_msgs/msg/Bool (true = start, false = stop) or std_msgs/msg/String (start_value /
    stop_value) topic; its bag receive time marks the boundaries.
    """

    split: str = "bag"
    marker_topic: str | None = None
    start_value: str = "start"
    stop_value: str = "stop"


@dataclass
class RosbagMapping:
    """How to turn rosbag2 recordings into episodes (see the module docstring for the YAML shape).

    max_error_ms: when set, a frame further than this from the message it takes raises ConvertError
        (a stalled camera or a gap in the joint states) instead of being only reported.
    typestore: rosbags type store used when a bag carries no message definitions (Humble-era sqlite3
        bags); e.g. ``ros2_humble``, ``ros2_jazzy``, ``ros2_kilted``.
    """

    fps: float = 20.0
    robot: str = "ur5e_2f85"
    align: str = "nearest"
    time_source: str = "header"
    cameras: dict[str, str] = field(default_factory=dict)
    lowdim: dict[str, StreamSpec] = field(default_factory=dict)
    instruction: InstructionSpec = field(default_factory=InstructionSpec)
    episodes: EpisodeSplit = field(default_factory=EpisodeSplit)
    max_error_ms: float | None = None
    typestore: str = "ros2_humble"

    def __post_init__(self) -> None:
        w = "mapping"
        if not isinstance(self.fps, int | float) or isinstance(self.fps, bool) or self.fps <= 0:
            raise ConvertError(f"{w}.fps: expected a positive number, got {self.fps!r}")
        self.fps = float(self.fps)
        if self.align not in ALIGN_METHODS:
            raise ConvertError(f"{w}.align: expected one of {ALIGN_METHODS}, got {self.align!r}")
        if self.time_source not in ("header", "receive"):
            raise ConvertError(f"{w}.time_source: expected 'header' or 'receive', got {self.time_source!r}")
        if not self.cameras and not self.lowdim:
            raise ConvertError(f"{w}: maps no topic (set cameras and/or lowdim)")
        for key, spec in self.lowdim.items():
            if spec.align and spec.align not in ALIGN_METHODS:
                raise ConvertError(
                    f"{w}.lowdim.{key}.align: expected one of {ALIGN_METHODS}, got {spec.align!r}"
                )
            if key.startswith("image_"):
                raise ConvertError(f"{w}.lowdim.{key}: image keys come from `cameras`, not `lowdim`")
        state, action = self.lowdim.get("state"), self.lowdim.get("action")
        if state and state.names and action and action.names and len(action.names) != len(state.names):
            raise ConvertError(
                f"{w}.lowdim.action.names: {len(action.names)} joints {action.names}, but "
                f"{w}.lowdim.state.names (the dataset's joint_names) has {len(state.names)}: {state.names}; "
                "a store's state and action have one value per joint name"
            )
        if self.episodes.split not in ("bag", "marker"):
            raise ConvertError(f"{w}.episodes.split: expected 'bag' or 'marker', got {self.episodes.split!r}")
        if self.episodes.split == "marker" and not self.episodes.marker_topic:
            raise ConvertError(f"{w}.episodes.marker_topic: required when split is 'marker'")
        if self.max_error_ms is not None and self.max_error_ms <= 0:
            raise ConvertError(
                f"{w}.max_error_ms: expected a positive number or null, got {self.max_error_ms!r}"
            )

    def align_of(self, key: str) -> str:
        spec = self.lowdim.get(key)
        return spec.align if spec is not None and spec.align else self.align

    @property
    def joint_names(self) -> list[str]:
        state = self.lowdim.get("state")
        return list(state.names) if state is not None and state.names else []

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "mapping") -> RosbagMapping:
        """Build from a plain dict (a resolved YAML config); unknown fields raise ConvertError."""
        if not isinstance(d, dict):
            raise ConvertError(f"{where}: expected a mapping, got {type(d).__name__}")
        d = {k: v for k, v in d.items() if k not in ("format", "description")}
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ConvertError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}")
        kw = dict(d)
        lowdim = {}
        for key, s in (kw.get("lowdim") or {}).items():
            if isinstance(s, str):
                s = {"topic": s}
            lowdim[key] = _build(StreamSpec, s, f"{where}.lowdim.{key}")
        kw["lowdim"] = lowdim
        kw["cameras"] = dict(kw.get("cameras") or {})
        for cam, topic in kw["cameras"].items():
            if not isinstance(topic, str) or not topic:
                raise ConvertError(f"{where}.cameras.{cam}: expected a topic name, got {topic!r}")
        ins = kw.get("instruction")
        if isinstance(ins, str):
            ins = {"text": ins}
        kw["instruction"] = _build(InstructionSpec, ins or {}, f"{where}.instruction")
        kw["episodes"] = _build(EpisodeSplit, kw.get("episodes") or {}, f"{where}.episodes")
        return cls(**kw)


def _build(cls: type, d: Any, where: str) -> Any:
    if not isinstance(d, dict):
        raise ConvertError(f"{where}: expected a mapping, got {d!r}")
    unknown = set(d) - set(cls.__dataclass_fields__)
    if unknown:
        raise ConvertError(
            f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
        )
    try:
        return cls(**d)
    except TypeError as e:
        raise ConvertError(f"{where}: {e}") from None
