"""numpy <-> ROS 2 message conversions, without a ROS graph (real message classes)."""

from __future__ import annotations

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ros_bridge.conversions import (
    chunk_to_joint_trajectory,
    float64_multi_array_to_numpy,
    image_to_numpy,
    image_to_rgb,
    joint_state_to_numpy,
    joint_trajectory_to_numpy,
    numpy_to_float64_multi_array,
    numpy_to_image,
    numpy_to_joint_state,
    seconds_to_duration,
    seconds_to_time,
    time_to_seconds,
)

pytestmark = pytest.mark.ros
RNG = np.random.default_rng(0)
NAMES = ["a", "b", "c"]


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
@pytest.mark.parametrize("step", [None, 3 * 5 + 7])
def test_colour_image_round_trip(encoding: str, step: int | None) -> None:
    img = RNG.integers(0, 256, size=(4, 5, 3), dtype=np.uint8)
    msg = numpy_to_image(img, encoding, stamp=12.5, frame_id="cam", step=step)
    assert (msg.height, msg.width, msg.encoding) == (4, 5, encoding)
    assert msg.step == (step or 15) and len(msg.data) == 4 * msg.step
    assert time_to_seconds(msg.header.stamp) == 12.5 and msg.header.frame_id == "cam"
    np.testing.assert_array_equal(image_to_numpy(msg), img)


def test_bgr_and_mono_convert_to_rgb() -> None:
    rgb = RNG.integers(0, 256, size=(3, 2, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgb[..., ::-1], "bgr8")), rgb)
    np.testing.assert_array_equal(image_to_rgb(numpy_to_image(rgb, "rgb8")), rgb)
    gray = RNG.integers(0, 256, size=(3, 2), dtype=np.uint8)
    msg = numpy_to_image(gray, "mono8", step=4)  # padded rows
    np.testing.assert_array_equal(image_to_numpy(msg), gray)
    out = image_to_rgb(msg)
    assert out.shape == (3, 2, 3) and all((out[..., c] == gray).all() for c in range(3))


def test_padded_image_from_a_foreign_publisher() -> None:
    """A driver that pads rows to 8 bytes: padding bytes must not leak into pixels."""
    img = RNG.integers(0, 256, size=(2, 2, 3), dtype=np.uint8)
    rows = np.full((2, 8), 0xEE, dtype=np.uint8)
    rows[:, :6] = img.reshape(2, 6)
    msg = Image(height=2, width=2, encoding="rgb8", step=8, data=rows.tobytes())
    np.testing.assert_array_equal(image_to_numpy(msg), img)


@pytest.mark.parametrize("encoding", ["rgba8", "16UC1", "yuv422", "bayer_rggb8"])
def test_unsupported_encodings_are_named(encoding: str) -> None:
    msg = Image(height=1, width=1, encoding=encoding, step=4, data=b"\0\0\0\0")
    msg.header.frame_id = "wrist_cam"
    with pytest.raises(
        ValueError, match=rf"unsupported image encoding '{encoding}'.*rgb8, bgr8, mono8"
    ) as err:
        image_to_numpy(msg)
    assert "wrist_cam" in str(err.value)
    with pytest.raises(ValueError, match=encoding):
        numpy_to_image(np.zeros((1, 1, 3), np.uint8), encoding)


def test_bad_images_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match=r"step=2 is smaller than width\*channels=6"):
        image_to_numpy(Image(height=1, width=2, encoding="rgb8", step=2, data=b"\0" * 6))
    with pytest.raises(ValueError, match=r"data has 5 bytes, expected height\*step=6"):
        image_to_numpy(Image(height=1, width=2, encoding="rgb8", step=6, data=b"\0" * 5))
    with pytest.raises(ValueError, match="uint8"):
        numpy_to_image(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match=r"needs shape \(H, W\)"):
        numpy_to_image(np.zeros((2, 2, 3), np.uint8), "mono8")


def test_joint_state_round_trip_and_reordering() -> None:
    q, qd, eff = RNG.normal(size=3), RNG.normal(size=3), RNG.normal(size=3)
    msg = numpy_to_joint_state(NAMES, q, qd, eff, stamp=3.25)
    back = joint_state_to_numpy(msg, NAMES)
    np.testing.assert_array_equal(back.position, q)
    np.testing.assert_array_equal(back.velocity, qd)
    np.testing.assert_array_equal(back.effort, eff)
    assert time_to_seconds(msg.header.stamp) == 3.25
    # Another order, extra joints ignored, missing fields are None.
    msg = JointState(name=["x", "c", "a", "b"], position=[9.0, 3.0, 1.0, 2.0])
    back = joint_state_to_numpy(msg, NAMES)
    np.testing.assert_array_equal(back.position, [1.0, 2.0, 3.0])
    assert back.velocity is None and back.effort is None


def test_joint_state_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match=r"lacks joints \['c'\]"):
        joint_state_to_numpy(JointState(name=["a", "b"], position=[0.0, 0.0]), NAMES)
    with pytest.raises(ValueError, match=r"JointState\.velocity has 2 entries"):
        joint_state_to_numpy(JointState(name=NAMES, position=[0.0] * 3, velocity=[0.0] * 2), NAMES)
    with pytest.raises(ValueError, match=r"JointState\.position is empty"):
        joint_state_to_numpy(JointState(name=NAMES), NAMES)
    with pytest.raises(ValueError, match="velocity has 2 entries for 3 joints"):
        numpy_to_joint_state(NAMES, np.zeros(3), np.zeros(2))


def test_chunk_to_trajectory_timing_and_round_trip() -> None:
    chunk = RNG.normal(size=(5, 3))
    msg = chunk_to_joint_trajectory(chunk, NAMES, dt=0.05)
    assert list(msg.joint_names) == NAMES and len(msg.points) == 5
    assert msg.header.stamp == Time()  # zero: the controller starts it on receipt
    times = [time_to_seconds(p.time_from_start) for p in msg.points]
    np.testing.assert_allclose(times, 0.05 * np.arange(1, 6), atol=1e-9)
    t, pts = joint_trajectory_to_numpy(msg, ["c", "a", "b"])
    np.testing.assert_allclose(t, times)
    np.testing.assert_array_equal(pts, chunk[:, [2, 0, 1]])
    empty = chunk_to_joint_trajectory(np.zeros((0, 3)), NAMES, dt=0.05)
    assert len(empty.points) == 0 and list(empty.joint_names) == NAMES


def test_trajectory_errors() -> None:
    with pytest.raises(ValueError, match=r"chunk shape \(2, 4\) does not match 3 joints"):
        chunk_to_joint_trajectory(np.zeros((2, 4)), NAMES, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        chunk_to_joint_trajectory(np.full((1, 3), np.nan), NAMES, 0.1)
    with pytest.raises(ValueError, match="dt must be > 0"):
        chunk_to_joint_trajectory(np.zeros((1, 3)), NAMES, 0.0)
    msg = JointTrajectory(joint_names=["a", "b"])
    with pytest.raises(ValueError, match=r"lacks joints \['c'\]"):
        joint_trajectory_to_numpy(msg, NAMES)
    msg = JointTrajectory(joint_names=NAMES)
    msg.points = [
        JointTrajectoryPoint(positions=[0.0] * 3, time_from_start=seconds_to_duration(0.2)),
        JointTrajectoryPoint(positions=[0.0] * 3, time_from_start=seconds_to_duration(0.1)),
    ]
    with pytest.raises(ValueError, match="strictly increase"):
        joint_trajectory_to_numpy(msg, NAMES)
    msg.points = [JointTrajectoryPoint(positions=[0.0] * 2, time_from_start=seconds_to_duration(0.1))]
    with pytest.raises(ValueError, match=r"points\[0\].positions has 2 entries for 3 joints"):
        joint_trajectory_to_numpy(msg, NAMES)


def test_float64_multi_array_round_trip() -> None:
    vec = RNG.normal(size=7)
    msg = numpy_to_float64_multi_array(vec, ["joints"])
    assert msg.layout.dim[0].label == "joints" and msg.layout.dim[0].size == 7
    np.testing.assert_array_equal(float64_multi_array_to_numpy(msg), vec)
    mat = RNG.normal(size=(4, 7))
    msg = numpy_to_float64_multi_array(mat)
    assert [d.stride for d in msg.layout.dim] == [28, 7]
    np.testing.assert_array_equal(float64_multi_array_to_numpy(msg), mat)
    np.testing.assert_array_equal(
        float64_multi_array_to_numpy(Float64MultiArray(data=[1.0, 2.0])), [1.0, 2.0]
    )


@pytest.mark.parametrize("seconds", [0.0, 1e-9, 0.05, 1.5, 1234567.123456789])
def test_time_round_trips(seconds: float) -> None:
    assert abs(time_to_seconds(seconds_to_time(seconds)) - seconds) < 1e-9
    assert abs(time_to_seconds(seconds_to_duration(seconds)) - seconds) < 1e-9
    assert seconds_to_time(1.999999999999).sec == 2 and seconds_to_time(1.999999999999).nanosec == 0


def test_negative_time_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        seconds_to_time(-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        seconds_to_duration(float("nan"))
