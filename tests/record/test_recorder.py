"""The ROS recorder node writes a teleoperation session from real topics into a valid zarr store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("std_srvs")
from std_srvs.srv import Trigger
from teleop import COLOURS, COMMAND_OFFSET, HOME, Teleop, q_at

from ros_bridge.recorder_node import RecorderConfig, RecorderNode
from ros_bridge.run import RosRuntime, wait_until
from vla.data import DatasetError, ReplayBuffer, validate_store
from vla.record import ZarrEpisodeSink, record_meta

ROOT = Path(__file__).resolve().parents[2]


def _k_of(rows: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Which published sample each recorded row is (rows must be exactly q_at(k) + offset)."""
    k = np.round((rows[:, 4] - offset - HOME[4]) / 0.003).astype(int)
    np.testing.assert_allclose(rows, np.stack([q_at(i) for i in k]) + offset, atol=1e-6)
    return k


def _command(teleop: Teleop, node: RecorderNode, word: str, until) -> None:
    """Send `word` on the control topic until `until()` holds (the first may precede discovery)."""
    deadline = time.monotonic() + 5.0
    while not until():
        assert time.monotonic() < deadline, f"recorder did not react to {word!r}: {node.status()}"
        teleop.send(word)
        time.sleep(0.1)


def _call(ros: RosRuntime, teleop: Teleop, name: str) -> Trigger.Response:
    client = teleop.node.create_client(Trigger, f"/vla_recorder/{name}")
    assert client.wait_for_service(timeout_sec=5.0), f"service /vla_recorder/{name} not offered"
    future = client.call_async(Trigger.Request())
    wait_until(future.done, 5.0, what=f"the answer of /vla_recorder/{name}")
    teleop.node.destroy_client(client)
    return future.result()


@pytest.mark.ros
def test_records_session_by_topic_and_service(ros: RosRuntime, tmp_path: Path) -> None:
    path = tmp_path / "teleop.zarr"
    sink = ZarrEpisodeSink.open_or_create(path, record_meta(fps=20.0))
    rec = ros.add(RecorderNode(sink, RecorderConfig(), context=ros.context))
    teleop = Teleop(ros)
    wait_until(lambda: rec.status()["instruction"] == teleop.instruction, 5.0, what="the instruction")

    # Episode 0: start/stop by topic.
    _command(teleop, rec, "start", lambda: rec.recording)
    wait_until(lambda: rec.frames >= 12, 5.0, what="12 recorded frames")
    _command(teleop, rec, "stop", lambda: rec.episodes_saved == 1)
    assert not rec.recording and rec.last_episode == 0

    # Episode 1: start/stop by service; a discarded episode leaves nothing.
    res = _call(ros, teleop, "start")
    assert res.success and "recording" in res.message
    assert not _call(ros, teleop, "start").success  # already recording
    wait_until(lambda: rec.frames >= 8, 5.0, what="8 recorded frames")
    res = _call(ros, teleop, "stop")
    assert res.success and res.message.startswith("stored episode 1"), res.message
    assert _call(ros, teleop, "start").success
    wait_until(lambda: rec.frames >= 3, 5.0, what="3 recorded frames")
    res = _call(ros, teleop, "discard")
    assert res.success and "discarded" in res.message
    assert not _call(ros, teleop, "stop").success  # not recording

    assert not validate_store(path).problems
    rb = ReplayBuffer.open(path)
    assert rb.n_episodes == 2 and rb.instructions == [teleop.instruction] * 2
    assert set(rb.keys) == {"state", "qvel", "action", "image_front", "image_wrist"}
    assert rb.meta.fps == 20.0 and rb.meta.camera_names == ["front", "wrist"]
    for i, n_min in ((0, 12), (1, 8)):
        ep = rb.episode(i)
        T = len(ep["state"])
        assert n_min <= T and rb.episode_info(i)["frames"] == T
        # Values are exactly what was published: each state row is one JointState, its velocities
        # (k / 100) come from the same message, the action is a command (q + offset) sent nearby.
        k = _k_of(ep["state"].astype(np.float64))
        assert (np.diff(k) >= 0).all() and k[-1] > k[0]
        np.testing.assert_allclose(ep["qvel"], np.repeat(k[:, None] / 100.0, 6, axis=1), atol=1e-5)
        ka = _k_of(ep["action"].astype(np.float64), COMMAND_OFFSET)
        assert np.abs(ka - k).max() <= 3  # zero-order hold of streams at 50 Hz, sampled at 20 Hz
        for cam, colour in COLOURS.items():
            img = ep[f"image_{cam}"]
            assert img.shape == (T, 6, 8, 3) and (img == np.array(colour, np.uint8)).all()


@pytest.mark.ros
def test_kill_mid_episode_keeps_stored_episodes(ros: RosRuntime, tmp_path: Path) -> None:
    """SIGKILL of `vla-record` while recording: the stored episode survives, the store stays appendable."""
    path = tmp_path / "crash.zarr"
    cmd = [sys.executable, "-m", "vla.cli.record", f"dataset={path}", "recorder.camera_names=[front]"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        teleop = Teleop(ros)

        def status(pred) -> None:
            def check() -> bool:
                assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
                return bool(pred(teleop.last_status()))

            wait_until(check, 30.0, what="a recorder status")

        status(lambda s: s.get("instruction") == teleop.instruction)
        teleop.send("start")
        status(lambda s: s.get("recording") and s.get("frames", 0) >= 6)
        teleop.send("stop")
        status(lambda s: s.get("episodes_saved") == 1)
        teleop.send("start")
        status(lambda s: s.get("recording") and s.get("frames", 0) >= 6)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert not validate_store(path).problems
    rb = ReplayBuffer.open(path)
    assert rb.n_episodes == 1 and len(rb.episode(0)["state"]) >= 6
    assert (path.parent / "crash.zarr.record.yaml").is_file()
    # Recording goes on into the same store after the crash.
    sink = ZarrEpisodeSink.open_or_create(path, record_meta(20.0, ["front"]))
    sink.begin("after the crash")
    first = rb.episode(0)
    for t in range(3):
        sink.add_frame({k: v[t] for k, v in first.items()})
    assert sink.end(keep=True) == 1
    assert ReplayBuffer.open(path).instructions[1] == "after the crash"


def test_sink_refuses_inconsistent_frames_and_stores(tmp_path: Path) -> None:
    path = tmp_path / "s.zarr"
    sink = ZarrEpisodeSink.open_or_create(path, record_meta(20.0, ["front"]))
    frame = {"state": np.zeros(7, np.float32), "action": np.zeros(7, np.float32),
             "image_front": np.zeros((4, 4, 3), np.uint8)}  # fmt: skip
    sink.begin("x")
    sink.add_frame(frame)
    with pytest.raises(ValueError, match=r"frame 1: image_front has shape \(5, 4, 3\)"):
        sink.add_frame({**frame, "image_front": np.zeros((5, 4, 3), np.uint8)})
    with pytest.raises(ValueError, match="frame 1: keys"):
        sink.add_frame({"state": frame["state"]})
    assert sink.end(keep=False) is None and ReplayBuffer.open(path).n_episodes == 0
    with pytest.raises(DatasetError, match=r"s.zarr/zarr.json: fps is 20.0"):
        ZarrEpisodeSink.open_or_create(path, record_meta(10.0, ["front"]))
    with pytest.raises(ValueError, match="command_type"):
        RecorderConfig(command_type="twist")


@pytest.mark.ros
def test_forward_commands_without_cameras_and_skipped_ticks(ros: RosRuntime, tmp_path: Path) -> None:
    """Float64MultiArray commands (forward controller), no cameras, no velocities; stale input skips."""
    from rclpy.node import Node
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from ros_bridge.config import UR5E_2F85_JOINTS
    from ros_bridge.conversions import numpy_to_float64_multi_array, numpy_to_joint_state

    path = tmp_path / "fwd.zarr"
    sink = ZarrEpisodeSink.open_or_create(path, record_meta(fps=50.0, camera_names=[]))
    cfg = RecorderConfig(camera_names=(), command_topic="/forward_position_controller/commands",
                         command_type="float64_multi_array", record_velocity=False, record_rate_hz=50.0,
                         instruction="wipe the table")  # fmt: skip
    rec = ros.add(RecorderNode(sink, cfg, context=ros.context))
    pub_node = Node("pub", context=ros.context)
    joints = pub_node.create_publisher(JointState, "/joint_states", 10)
    cmds = pub_node.create_publisher(Float64MultiArray, cfg.command_topic, 10)
    ros.add(pub_node)
    state = {"on": True, "k": 0}

    def tick() -> None:
        if state["on"]:
            k = state["k"] = state["k"] + 1
            joints.publish(numpy_to_joint_state(UR5E_2F85_JOINTS, q_at(k)))  # positions only
            cmds.publish(numpy_to_float64_multi_array(q_at(k) + COMMAND_OFFSET, ["joints"]))

    pub_node.create_timer(0.01, tick)
    wait_until(lambda: state["k"] > 5, 5.0, what="the publisher")
    assert rec.start()[0]
    wait_until(lambda: rec.frames >= 10, 5.0, what="10 frames")
    state["on"] = False  # the joint state goes stale: ticks are skipped, not recorded
    wait_until(lambda: rec.skipped.get("stale joint state", 0) >= 3, 5.0, what="skipped ticks")
    n = rec.frames
    ok, msg = rec.stop()
    assert ok and msg == f"stored episode 0 ({n} frames)"
    rb = ReplayBuffer.open(path)
    assert set(rb.keys) == {"state", "action"} and rb.instructions == ["wipe the table"]
    ep = rb.episode(0)
    k = _k_of(ep["state"].astype(np.float64))
    ka = _k_of(ep["action"].astype(np.float64), COMMAND_OFFSET)
    assert np.abs(ka - k).max() <= 2
