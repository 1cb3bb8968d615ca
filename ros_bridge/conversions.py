"""numpy <-> ROS 2 message conversion, written here (ros2-numpy breaks on numpy 2).

Pure functions on message objects: no node, no graph, so every one is unit-tested alone.
Errors name the message field (and the encoding or joint) that was wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# encoding -> channels; 8-bit only, so byte order (is_bigendian) never matters.
_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1}
SUPPORTED_ENCODINGS = tuple(_CHANNELS)


# ---------------------------------------------------------------------------------------- time


def seconds_to_time(seconds: float) -> Time:
    """Float seconds -> `builtin_interfaces/Time` (nanoseconds rounded, never negative)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"Time stamp must be a finite non-negative number of seconds, got {seconds!r}")
    ns = round(seconds * 1e9)
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def time_to_seconds(stamp: Time | Duration) -> float:
    """`builtin_interfaces/Time` or `Duration` -> float seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def seconds_to_duration(seconds: float) -> Duration:
    """Float seconds -> `builtin_interfaces/Duration` (non-negative, as in `time_from_start`)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"Duration must be a finite non-negative number of seconds, got {seconds!r}")
    ns = round(seconds * 1e9)
    return Duration(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


# --------------------------------------------------------------------------------------- image


def _check_encoding(encoding: str, where: str) -> int:
    try:
        return _CHANNELS[encoding]
    except KeyError:
        raise ValueError(
            f"{where}: unsupported image encoding '{encoding}'; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        ) from None


def image_to_numpy(msg: Image) -> np.ndarray:
    """`sensor_msgs/Image` -> uint8 array in the message's own channel order.

    Returns (H, W, 3) for rgb8/bgr8 and (H, W) for mono8. Row padding (`step` > width * channels)
    is stripped. The result is a view on the message buffer when no padding is present: copy it
    before mutating.
    """
    where = f"Image(frame_id='{msg.header.frame_id}')"
    channels = _check_encoding(msg.encoding, where)
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    row = w * channels
    if step < row:
        raise ValueError(f"{where}.step={step} is smaller than width*channels={row} ('{msg.encoding}')")
    buf = np.frombuffer(msg.data, dtype=np.uint8)
    if buf.size < h * step:
        raise ValueError(f"{where}.data has {buf.size} bytes, expected height*step={h * step}")
    rows = buf[: h * step].reshape(h, step)[:, :row]
    return rows.reshape(h, w) if channels == 1 else rows.reshape(h, w, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """`sensor_msgs/Image` -> RGB uint8 (H, W, 3): bgr8 is reordered, mono8 is replicated."""
    arr = image_to_numpy(msg)
    if msg.encoding == "bgr8":
        return np.ascontiguousarray(arr[..., ::-1])
    if msg.encoding == "mono8":
        return np.repeat(arr[..., None], 3, axis=2)
    return arr


def numpy_to_image(
    array: np.ndarray,
    encoding: str = "rgb8",
    *,
    stamp: float | Time | None = None,
    frame_id: str = "",
    step: int | None = None,
) -> Image:
    """uint8 (H, W, 3) for rgb8/bgr8 or (H, W) for mono8 -> `sensor_msgs/Image`.

    The array is taken as already being in `encoding`'s channel order. `step` pads each row to
    that many bytes (default: no padding).
    """
    channels = _check_encoding(encoding, "numpy_to_image")
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"numpy_to_image: expected dtype uint8, got {array.dtype}")
    expected = "(H, W)" if channels == 1 else "(H, W, 3)"
    if (channels == 1 and array.ndim != 2) or (channels == 3 and (array.ndim != 3 or array.shape[2] != 3)):
        raise ValueError(f"numpy_to_image: encoding '{encoding}' needs shape {expected}, got {array.shape}")
    h, w = array.shape[:2]
    row = w * channels
    step = row if step is None else int(step)
    if step < row:
        raise ValueError(f"numpy_to_image: step={step} is smaller than width*channels={row}")
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=step)
    if stamp is not None:
        msg.header.stamp = stamp if isinstance(stamp, Time) else seconds_to_time(stamp)
    msg.header.frame_id = frame_id
    if step == row:
        msg.data = np.ascontiguousarray(array).tobytes()
    else:
        padded = np.zeros((h, step), dtype=np.uint8)
        padded[:, :row] = array.reshape(h, row)
        msg.data = padded.tobytes()
    return msg


# --------------------------------------------------------------------------------- joint state


@dataclass
class JointArrays:
    """Joint arrays in a requested name order; velocity/effort are None when the message has none."""

    position: np.ndarray
    velocity: np.ndarray | None
    effort: np.ndarray | None


def _field_in_order(msg: JointState, field: str, index: list[int]) -> np.ndarray | None:
    values = getattr(msg, field)
    if len(values) == 0:
        return None
    if len(values) != len(msg.name):
        raise ValueError(
            f"JointState.{field} has {len(values)} entries but JointState.name has {len(msg.name)}"
        )
    return np.asarray(values, dtype=np.float64)[index]


def joint_state_to_numpy(msg: JointState, joint_names: Sequence[str]) -> JointArrays:
    """`sensor_msgs/JointState` -> arrays (D,) ordered as `joint_names` (extra joints ignored).

    Raises ValueError naming the joints that `joint_names` wants and the message lacks.
    """
    lookup = {name: i for i, name in enumerate(msg.name)}
    missing = [n for n in joint_names if n not in lookup]
    if missing:
        raise ValueError(f"JointState.name lacks joints {missing}; it has {list(msg.name)}")
    index = [lookup[n] for n in joint_names]
    position = _field_in_order(msg, "position", index)
    if position is None:
        raise ValueError("JointState.position is empty")
    return JointArrays(
        position, _field_in_order(msg, "velocity", index), _field_in_order(msg, "effort", index)
    )


def numpy_to_joint_state(
    joint_names: Sequence[str],
    position: np.ndarray,
    velocity: np.ndarray | None = None,
    effort: np.ndarray | None = None,
    *,
    stamp: float | Time | None = None,
) -> JointState:
    """Arrays (D,) in `joint_names` order -> `sensor_msgs/JointState`."""
    names = list(joint_names)
    msg = JointState(name=names)
    for field, values in (("position", position), ("velocity", velocity), ("effort", effort)):
        if values is None:
            continue
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        if arr.shape[0] != len(names):
            raise ValueError(
                f"numpy_to_joint_state: {field} has {arr.shape[0]} entries for {len(names)} joints"
            )
        setattr(msg, field, arr.tolist())
    if stamp is not None:
        msg.header.stamp = stamp if isinstance(stamp, Time) else seconds_to_time(stamp)
    return msg


# -------------------------------------------------------------------------------- trajectories


def chunk_to_joint_trajectory(
    chunk: np.ndarray,
    joint_names: Sequence[str],
    dt: float,
    *,
    stamp: float | Time | None = None,
) -> JointTrajectory:
    """Action chunk (K, D) -> `trajectory_msgs/JointTrajectory` for a joint trajectory controller.

    Point k has `time_from_start` = (k + 1) * dt: row 0 is the target one control period ahead.
    K = 0 gives a trajectory with no points, which ros2_control's controller (and our robot node)
    treat as "stop and hold the current position". The header stamp stays zero ("start on
    receipt") unless given.
    """
    chunk = np.asarray(chunk, dtype=np.float64)
    names = list(joint_names)
    if chunk.ndim != 2 or chunk.shape[1] != len(names):
        raise ValueError(
            f"chunk_to_joint_trajectory: chunk shape {chunk.shape} does not match {len(names)} joints"
        )
    if not np.isfinite(chunk).all():
        raise ValueError("chunk_to_joint_trajectory: chunk contains NaN or inf")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"chunk_to_joint_trajectory: dt must be > 0, got {dt!r}")
    msg = JointTrajectory(joint_names=names)
    if stamp is not None:
        msg.header.stamp = stamp if isinstance(stamp, Time) else seconds_to_time(stamp)
    msg.points = [
        JointTrajectoryPoint(positions=row.tolist(), time_from_start=seconds_to_duration((k + 1) * dt))
        for k, row in enumerate(chunk)
    ]
    return msg


def joint_trajectory_to_numpy(
    msg: JointTrajectory, joint_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """`JointTrajectory` -> times (K,) [s] and positions (K, D) ordered as `joint_names`.

    Raises ValueError when joints are missing, a point has the wrong number of positions, or
    `time_from_start` does not strictly increase.
    """
    lookup = {name: i for i, name in enumerate(msg.joint_names)}
    missing = [n for n in joint_names if n not in lookup]
    if missing:
        raise ValueError(
            f"JointTrajectory.joint_names lacks joints {missing}; it has {list(msg.joint_names)}"
        )
    index = [lookup[n] for n in joint_names]
    n = len(msg.joint_names)
    times = np.empty(len(msg.points))
    positions = np.empty((len(msg.points), len(index)))
    for k, point in enumerate(msg.points):
        if len(point.positions) != n:
            raise ValueError(
                f"JointTrajectory.points[{k}].positions has {len(point.positions)} entries for {n} joints"
            )
        times[k] = time_to_seconds(point.time_from_start)
        positions[k] = np.asarray(point.positions, dtype=np.float64)[index]
    if len(times) > 1 and not (np.diff(times) > 0).all():
        raise ValueError(
            f"JointTrajectory.points[*].time_from_start must strictly increase, got {times.tolist()}"
        )
    if not np.isfinite(positions).all():
        raise ValueError("JointTrajectory.points[*].positions contains NaN or inf")
    return times, positions


# -------------------------------------------------------------------------- forward controllers


def numpy_to_float64_multi_array(array: np.ndarray, labels: Sequence[str] | None = None) -> Float64MultiArray:
    """Array of any shape -> `std_msgs/Float64MultiArray` with a row-major layout.

    A forward_command_controller expects a flat (D,) vector; `labels` name each dimension.
    """
    arr = np.asarray(array, dtype=np.float64)
    labels = list(labels) if labels is not None else [f"dim{i}" for i in range(arr.ndim)]
    if len(labels) != arr.ndim:
        raise ValueError(f"numpy_to_float64_multi_array: {len(labels)} labels for {arr.ndim} dimensions")
    msg = Float64MultiArray()
    strides = np.cumprod(arr.shape[::-1] or (1,))[::-1]  # elements per step of each dimension
    msg.layout.dim = [
        MultiArrayDimension(label=lab, size=int(s), stride=int(st))
        for lab, s, st in zip(labels, arr.shape, strides)
    ]
    msg.data = arr.reshape(-1).tolist()
    return msg


def float64_multi_array_to_numpy(msg: Float64MultiArray) -> np.ndarray:
    """`std_msgs/Float64MultiArray` -> array shaped by its layout (flat when the layout is empty)."""
    data = np.asarray(msg.data, dtype=np.float64)
    if not msg.layout.dim:
        return data
    shape = tuple(int(d.size) for d in msg.layout.dim)
    offset = int(msg.layout.data_offset)
    need = offset + int(np.prod(shape))
    if data.size < need:
        raise ValueError(f"Float64MultiArray.data has {data.size} values, layout needs {need}")
    return data[offset:need].reshape(shape)
