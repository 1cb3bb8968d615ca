"""Reading values out of deserialized ROS 2 messages (rosbags message objects), one function per role.

Each function takes the message and `where` (``"<bag>: topic <t>: message <i> at <stamp>"``) so a bad
message raises ConvertError naming the file, topic and timestamp.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from vla.convert.errors import ConvertError

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
LOWDIM_TYPES = (
    "sensor_msgs/msg/JointState",
    "trajectory_msgs/msg/JointTrajectory",
    "std_msgs/msg/Float64MultiArray",
    "std_msgs/msg/Float32MultiArray",
)
INSTRUCTION_TYPES = ("std_msgs/msg/String",)
MARKER_TYPES = ("std_msgs/msg/Bool", "std_msgs/msg/String")

# Raw encodings converted to RGB uint8 (channels, channel order). Everything else is refused clearly.
_RAW_ENCODINGS = {"rgb8": (3, "rgb"), "bgr8": (3, "bgr"), "mono8": (1, "mono")}


def header_stamp_ns(msg: Any) -> int | None:
    """``msg.header.stamp`` in ns, or None when the type has no header."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_to_rgb(msg: Any, msgtype: str, where: str) -> np.ndarray:
    """sensor_msgs/msg/Image (rgb8, bgr8, mono8) or CompressedImage (jpeg/png) -> uint8 (H, W, 3) RGB."""
    if msgtype == "sensor_msgs/msg/CompressedImage":
        from PIL import Image as PILImage

        try:
            with PILImage.open(io.BytesIO(np.asarray(msg.data, np.uint8).tobytes())) as im:
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
        except Exception as e:
            raise ConvertError(
                f"{where}: CompressedImage (format {msg.format!r}) does not decode ({type(e).__name__}: {e})"
            ) from None
    enc = str(msg.encoding)
    if enc.lower() not in _RAW_ENCODINGS:
        raise ConvertError(
            f"{where}: image encoding {enc!r} is not supported (supported: {sorted(_RAW_ENCODINGS)}; "
            "depth or 16-bit images cannot become an RGB uint8 camera key)"
        )
    channels, order = _RAW_ENCODINGS[enc.lower()]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if h <= 0 or w <= 0 or step < w * channels or data.size < h * step:
        raise ConvertError(
            f"{where}: image {w}x{h} {enc} with step {step} needs {h * step} bytes, data has {data.size} "
            f"(step must be >= width * {channels})"
        )
    img = data[: h * step].reshape(h, step)[:, : w * channels].reshape(h, w, channels)
    if order == "bgr":
        img = img[..., ::-1]
    elif order == "mono":
        img = np.repeat(img, 3, axis=-1)
    return np.ascontiguousarray(img)


class LowdimReader:
    """Reads one low-dimensional stream's values, selecting and ordering joints by name.

    names: joint names to select in order; None keeps the message's order (checked to stay the same).
    field: JointState field / JointTrajectoryPoint field; "" = position(s).
    """

    def __init__(self, msgtype: str, names: list[str] | None, field: str, where: str) -> None:
        if msgtype not in LOWDIM_TYPES:
            raise ConvertError(
                f"{where}: message type {msgtype!r} cannot be a low-dim key; expected one of {LOWDIM_TYPES}"
            )
        self.msgtype = msgtype
        self.names = list(names) if names else None
        if msgtype == "sensor_msgs/msg/JointState":
            self.field = field or "position"
            allowed: tuple[str, ...] = ("position", "velocity", "effort")
        elif msgtype == "trajectory_msgs/msg/JointTrajectory":
            self.field = field or "positions"
            allowed = ("positions", "velocities", "accelerations", "effort")
        else:
            self.field = field or "data"
            allowed = ("data",)
        if self.field not in allowed:
            raise ConvertError(
                f"{where}: field {self.field!r} is not a field of {msgtype} (one of {allowed})"
            )
        self._index_cache: dict[tuple[str, ...], np.ndarray] = {}
        self._first_names: tuple[str, ...] | None = None
        # The joint names of the first message read ([] for multi-arrays, which carry none).
        self.message_names: list[str] = []

    def _select(self, msg_names: list[str], values: np.ndarray, where: str) -> np.ndarray:
        key = tuple(msg_names)
        if not self.message_names:
            self.message_names = list(msg_names)
        if self.names is None:
            if self._first_names is None:
                self._first_names = key
            elif key != self._first_names:
                raise ConvertError(
                    f"{where}: joint names changed from {list(self._first_names)} to {list(key)}; "
                    "list the joints in the mapping (`names`) to select them by name"
                )
            if len(values) != len(key) and key:
                raise ConvertError(
                    f"{where}: {self.field} has {len(values)} values for {len(key)} joint names"
                )
            return values
        idx = self._index_cache.get(key)
        if idx is None:
            pos = {n: i for i, n in enumerate(msg_names)}
            missing = [n for n in self.names if n not in pos]
            if missing:
                raise ConvertError(
                    f"{where}: joint(s) {missing} not in the message's names {list(msg_names)}"
                )
            idx = np.array([pos[n] for n in self.names], dtype=np.int64)
            self._index_cache[key] = idx
        if len(values) != len(msg_names):
            raise ConvertError(
                f"{where}: {self.field} has {len(values)} values for {len(msg_names)} joint names "
                f"(is the {self.field} field filled by the publisher?)"
            )
        return values[idx]

    def read(self, msg: Any, where: str) -> np.ndarray:
        """-> float64 (D,), finite (a NaN/Inf is refused here, naming the joint, not by the validator)."""
        values = self._values(msg, where)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            k = int(bad[0])
            names = self.names or self.message_names
            joint = f"joint {names[k]!r}" if k < len(names) else f"index {k}"
            raise ConvertError(
                f"{where}: {self.field} of {joint} is {values[k]}: a dataset stores finite values only "
                "(map another field, or leave that joint out with `names`)"
            )
        return values

    def _values(self, msg: Any, where: str) -> np.ndarray:
        if self.msgtype == "sensor_msgs/msg/JointState":
            values = np.asarray(getattr(msg, self.field), dtype=np.float64)
            return self._select(list(msg.name), values, where)
        if self.msgtype == "trajectory_msgs/msg/JointTrajectory":
            if len(msg.points) == 0:
                raise ConvertError(f"{where}: JointTrajectory has no points (a command needs at least one)")
            values = np.asarray(getattr(msg.points[0], self.field), dtype=np.float64)
            return self._select(list(msg.joint_names), values, where)
        values = np.asarray(msg.data, dtype=np.float64)
        if self.names is not None and len(values) != len(self.names):
            raise ConvertError(
                f"{where}: {self.msgtype} has {len(values)} values, the mapping names {len(self.names)} joints"
            )
        return values


def marker_value(msg: Any, msgtype: str, start_value: str, stop_value: str, where: str) -> bool:
    """Bool: data; String: data == start_value (True) / stop_value (False); anything else raises."""
    if msgtype == "std_msgs/msg/Bool":
        return bool(msg.data)
    text = str(msg.data).strip()
    if text == start_value:
        return True
    if text == stop_value:
        return False
    raise ConvertError(f"{where}: marker {text!r} is neither start {start_value!r} nor stop {stop_value!r}")
