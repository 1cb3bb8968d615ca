"""A recorder node: a teleoperation session from live topics into episodes, started and stopped at will.

Subscribes to the joint states, one image topic per camera, the commands sent to the robot
(`JointTrajectory` to a joint trajectory controller, or `Float64MultiArray` to a forward controller)
and the instruction. While recording, a timer at `record_rate_hz` samples the newest message of each
stream into one frame (zero-order hold) and hands it to an injected `EpisodeSink`, which stores it
(`vla` provides a zarr sink that appends each episode atomically: a crash loses at most the episode
being recorded). This module never imports a storage library.

Frame keys (what the sink receives per tick, numpy):
    state (7,) float32        joint positions in `joint_names` order (6 arm [rad] + gripper [0, 1])
    qvel (6,) float32         arm joint velocities [rad/s] (when `record_velocity`)
    action (7,) float32       the newest command: first point of the last JointTrajectory (the target
                              one period ahead), or the last Float64MultiArray; before any command
                              arrives, the current joint positions (a position-controlled robot holds)
    image_<cam> (H, W, 3) uint8 RGB
A tick whose joint state or images are missing or older than `max_input_age_s` is skipped and counted.

Start/stop:
    topic   `control_topic` (std_msgs/String): "start", "stop" (store the episode), "discard"
    service `~/start`, `~/stop`, `~/discard` (std_srvs/Trigger), answering what happened
The instruction of an episode is the newest message on `instruction_topic` when it starts (or the
`instruction` parameter). Status (JSON on `status_topic`): recording, frames, episodes, skips.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import (
    DEFAULT_CAMERAS,
    UR5E_2F85_JOINTS,
    check_names,
    check_rate,
    check_topic,
    resolve_image_topics,
)
from ros_bridge.conversions import (
    float64_multi_array_to_numpy,
    image_to_rgb,
    joint_state_to_numpy,
    joint_trajectory_to_numpy,
)
from ros_bridge.params import declare_config, read_config

COMMAND_TYPES = ("joint_trajectory", "float64_multi_array")


class EpisodeSink(Protocol):
    """Where recorded episodes go. Calls come from one thread, in the order begin, add_frame*, end."""

    def begin(self, instruction: str) -> None:
        """Start a new episode with this language instruction."""
        ...

    def add_frame(self, frame: dict[str, np.ndarray]) -> None:
        """Append one frame (keys in the module docstring); ValueError if it does not fit the episode."""
        ...

    def end(self, keep: bool) -> int | None:
        """Finish the episode: store it when `keep` (return its index), else drop it (return None)."""
        ...


@dataclass
class RecorderConfig:
    """Parameters of the recorder node (each field is a ROS parameter of the same name).

    image_topics: one per camera, aligned with camera_names; empty -> /camera/<name>/image_raw.
    command_type: "joint_trajectory" or "float64_multi_array" (the message on command_topic).
    max_input_age_s: joint states / images older than this skip the tick; 0 -> three periods.
    max_frames: an episode reaching this many frames is stored and recording stops (memory bound).
    """

    joint_names: tuple[str, ...] = UR5E_2F85_JOINTS
    camera_names: tuple[str, ...] = DEFAULT_CAMERAS
    image_topics: tuple[str, ...] = ()
    joint_state_topic: str = "/joint_states"
    command_topic: str = "/joint_trajectory_controller/joint_trajectory"
    command_type: str = "joint_trajectory"
    instruction_topic: str = "/vla/instruction"
    control_topic: str = "/vla/record/control"
    status_topic: str = "/vla/record/status"
    record_rate_hz: float = 20.0
    max_input_age_s: float = 0.0
    record_velocity: bool = True
    max_frames: int = 36000
    instruction: str = ""

    def __post_init__(self) -> None:
        cls = type(self).__name__
        self.joint_names = tuple(self.joint_names)
        self.camera_names = tuple(self.camera_names)
        check_names(cls, "joint_names", self.joint_names)
        if len(self.joint_names) != 7:
            raise ValueError(
                f"{cls}.joint_names needs 7 names (6 arm joints + gripper), got {self.joint_names}"
            )
        if self.camera_names:
            check_names(cls, "camera_names", self.camera_names)
        self.image_topics = resolve_image_topics(cls, self.camera_names, tuple(self.image_topics))
        for i, topic in enumerate(self.image_topics):
            check_topic(cls, f"image_topics[{i}]", topic)
        for name in (
            "joint_state_topic",
            "command_topic",
            "instruction_topic",
            "control_topic",
            "status_topic",
        ):
            check_topic(cls, name, getattr(self, name))
        if self.command_type not in COMMAND_TYPES:
            raise ValueError(f"{cls}.command_type must be one of {COMMAND_TYPES}, got {self.command_type!r}")
        check_rate(cls, "record_rate_hz", self.record_rate_hz)
        if not (math.isfinite(self.max_input_age_s) and self.max_input_age_s >= 0):
            raise ValueError(
                f"{cls}.max_input_age_s must be >= 0 (0 = three periods), got {self.max_input_age_s!r}"
            )
        if not (isinstance(self.max_frames, int) and self.max_frames >= 1):
            raise ValueError(f"{cls}.max_frames must be an integer >= 1, got {self.max_frames!r}")

    @property
    def period_s(self) -> float:
        return 1.0 / self.record_rate_hz

    @property
    def max_age_s(self) -> float:
        return self.max_input_age_s if self.max_input_age_s > 0 else 3.0 * self.period_s


class RecorderNode(Node):
    """Records frames from live topics into `sink` between start and stop (see the module docstring).

    All callbacks share the node's default mutually exclusive group, and `start`/`stop`/`discard`
    (callable from any thread) take the node's lock: the sink is called from one thread at a time,
    and a stop (which may write the episode to disk) never races a frame.
    """

    def __init__(
        self,
        sink: EpisodeSink,
        config: RecorderConfig | None = None,
        *,
        node_name: str = "vla_recorder",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self._sink = sink
        declare_config(self, config or RecorderConfig())
        cfg = self.cfg = read_config(self, RecorderConfig)
        self._joint_msg: JointState | None = None
        self._joint_received: float | None = None
        self._images: dict[str, tuple[Image, float] | None] = dict.fromkeys(cfg.camera_names)
        self._command: np.ndarray | None = None
        self._instruction = cfg.instruction
        self.recording = False
        self.frames = 0  # in the current episode
        self.episodes_saved = 0
        self.last_episode: int | None = None
        self.skipped: dict[str, int] = {}
        self.frames_without_command = 0
        self._last_error = ""
        self._lock = threading.RLock()

        reliable = QoSProfile(depth=10)
        self.create_subscription(
            JointState, cfg.joint_state_topic, self._on_joint_state, qos_profile_sensor_data
        )
        for cam, topic in zip(cfg.camera_names, cfg.image_topics):
            self.create_subscription(
                Image, topic, lambda m, c=cam: self._on_image(c, m), qos_profile_sensor_data
            )
        if cfg.command_type == "joint_trajectory":
            self.create_subscription(JointTrajectory, cfg.command_topic, self._on_trajectory, reliable)
        else:
            self.create_subscription(Float64MultiArray, cfg.command_topic, self._on_forward, reliable)
        self.create_subscription(String, cfg.instruction_topic, self._on_instruction, reliable)
        self.create_subscription(String, cfg.control_topic, self._on_control, reliable)
        self._status_pub = self.create_publisher(String, cfg.status_topic, reliable)
        self.create_service(Trigger, "~/start", lambda req, res: self._service(self.start, res))
        self.create_service(Trigger, "~/stop", lambda req, res: self._service(self.stop, res))
        self.create_service(Trigger, "~/discard", lambda req, res: self._service(self.discard, res))
        self._ticks = 0
        self.create_timer(cfg.period_s, self._tick)

    # ------------------------------------------------------------------------------- inputs

    def _on_joint_state(self, msg: JointState) -> None:
        self._joint_msg, self._joint_received = msg, time.monotonic()

    def _on_image(self, camera: str, msg: Image) -> None:
        self._images[camera] = (msg, time.monotonic())

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        try:
            _, points = joint_trajectory_to_numpy(msg, self.cfg.joint_names)
        except ValueError as exc:
            self._error(f"command on {self.cfg.command_topic} ignored: {exc}")
            return
        if len(points):  # an empty trajectory (stop) keeps the last target
            self._command = points[0]

    def _on_forward(self, msg: Float64MultiArray) -> None:
        cmd = float64_multi_array_to_numpy(msg).reshape(-1)
        if cmd.shape != (7,) or not np.isfinite(cmd).all():
            self._error(
                f"command on {self.cfg.command_topic} ignored: expected 7 finite values, got {cmd.shape}"
            )
            return
        self._command = cmd

    def _on_instruction(self, msg: String) -> None:
        self._instruction = msg.data

    def _on_control(self, msg: String) -> None:
        word = msg.data.strip().lower()
        actions = {"start": self.start, "stop": self.stop, "discard": self.discard}
        if word not in actions:
            self._error(
                f"unknown command {msg.data!r} on {self.cfg.control_topic}; use start, stop or discard"
            )
            return
        ok, text = actions[word]()
        # Separate call sites: rclpy refuses one call site logging at two severities.
        if ok:
            self.get_logger().info(text)
        else:
            self.get_logger().warning(text)

    def _service(self, action: Any, response: Trigger.Response) -> Trigger.Response:
        response.success, response.message = action()
        return response

    # ---------------------------------------------------------------------------- start/stop

    def start(self) -> tuple[bool, str]:
        """Begin an episode with the current instruction. (ok, message)."""
        with self._lock:
            return self._start()

    def _start(self) -> tuple[bool, str]:
        if self.recording:
            return False, f"already recording (frame {self.frames})"
        self._sink.begin(self._instruction)
        self.recording, self.frames = True, 0
        self.skipped, self.frames_without_command = {}, 0
        self._publish_status("started")
        return True, f"recording episode (instruction {self._instruction!r})"

    def stop(self) -> tuple[bool, str]:
        """Store the episode being recorded. (ok, message)."""
        return self._finish(keep=True)

    def discard(self) -> tuple[bool, str]:
        """Drop the episode being recorded. (ok, message)."""
        return self._finish(keep=False)

    def _finish(self, keep: bool) -> tuple[bool, str]:
        with self._lock:
            return self._finish_locked(keep)

    def _finish_locked(self, keep: bool) -> tuple[bool, str]:
        if not self.recording:
            return False, "not recording"
        self.recording = False
        frames = self.frames
        if keep and frames == 0:
            self._sink.end(keep=False)
            self._publish_status("empty episode dropped")
            return False, f"no frame was recorded (skipped ticks: {self.skipped}); nothing stored"
        try:
            index = self._sink.end(keep=keep)
        except Exception as exc:  # the store refused the episode: say so, keep the node alive
            self._error(f"storing the episode failed: {type(exc).__name__}: {exc}")
            return False, f"storing the episode failed: {exc}"
        if keep:
            self.episodes_saved += 1
            self.last_episode = index
            text = f"stored episode {index} ({frames} frames)"
        else:
            text = f"discarded the episode ({frames} frames)"
        self._publish_status(text)
        return True, text

    # --------------------------------------------------------------------------------- frames

    def _tick(self) -> None:
        with self._lock:
            self._tick_locked()

    def _tick_locked(self) -> None:
        self._ticks += 1
        if not self.recording:
            if self._ticks % max(1, round(self.cfg.record_rate_hz)) == 0:
                self._publish_status("")
            return
        frame, why = self._frame(time.monotonic())
        if frame is None:
            self.skipped[why] = self.skipped.get(why, 0) + 1
        else:
            try:
                self._sink.add_frame(frame)
            except ValueError as exc:
                why = f"frame refused by the sink: {exc}"
                self.skipped[why] = self.skipped.get(why, 0) + 1
            else:
                self.frames += 1
        if self.frames >= self.cfg.max_frames:
            self.get_logger().warning(f"max_frames={self.cfg.max_frames} reached: storing the episode")
            self._finish_locked(keep=True)
        elif self._ticks % max(1, round(self.cfg.record_rate_hz / 4)) == 0:
            self._publish_status("")

    def _frame(self, now: float) -> tuple[dict[str, np.ndarray] | None, str]:
        """The newest inputs as one frame, or (None, why the tick is skipped)."""
        cfg = self.cfg
        if self._joint_msg is None or self._joint_received is None:
            return None, "no joint state yet"
        if now - self._joint_received > cfg.max_age_s:
            return None, "stale joint state"
        try:
            joints = joint_state_to_numpy(self._joint_msg, cfg.joint_names)
        except ValueError as exc:
            return None, f"bad joint state: {exc}"
        frame: dict[str, np.ndarray] = {"state": joints.position.astype(np.float32)}
        if cfg.record_velocity:
            if joints.velocity is None:
                return None, "joint state without velocities"
            frame["qvel"] = joints.velocity[:6].astype(np.float32)
        if self._command is None:
            self.frames_without_command += 1
            frame["action"] = joints.position.astype(np.float32)
        else:
            frame["action"] = self._command.astype(np.float32)
        for cam, entry in self._images.items():
            if entry is None:
                return None, f"no image from camera '{cam}' yet"
            msg, received = entry
            if now - received > cfg.max_age_s:
                return None, f"stale image from camera '{cam}'"
            try:
                frame[f"image_{cam}"] = np.array(image_to_rgb(msg))  # own copy, not the message buffer
            except ValueError as exc:
                return None, f"camera '{cam}': {exc}"
        return frame, ""

    # --------------------------------------------------------------------------------- status

    def _error(self, text: str) -> None:
        self._last_error = text
        self.get_logger().error(text)

    def status(self) -> dict[str, Any]:
        return {
            "recording": self.recording,
            "frames": self.frames,
            "episodes_saved": self.episodes_saved,
            "last_episode": self.last_episode,
            "instruction": self._instruction,
            "skipped": dict(self.skipped),
            "frames_without_command": self.frames_without_command,
            "last_error": self._last_error,
        }

    def _publish_status(self, event: str) -> None:
        self._status_pub.publish(String(data=json.dumps({**self.status(), "event": event})))


__all__ = ["COMMAND_TYPES", "EpisodeSink", "RecorderConfig", "RecorderNode"]
