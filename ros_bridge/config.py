"""Typed configuration of the nodes, mirrored 1:1 by validated ROS 2 parameters.

`vla` builds these dataclasses from a Hydra deploy config; the nodes declare one ROS parameter
per field (defaults from the dataclass they were given), so `--ros-args -p name:=value` or a
params file can still override, and every change goes through the same `__post_init__`
validation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from rclpy.exceptions import InvalidTopicNameException
from rclpy.validate_topic_name import validate_topic_name

UR5E_2F85_JOINTS = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
    "robotiq_85_left_knuckle_joint",
)
DEFAULT_CAMERAS = ("front", "wrist")
# The control loop's scheduling and blending options (mirrors vla.runtime.config, which ros_bridge
# must not import).
MODES = ("async", "sync")
SMOOTHINGS = ("rtc", "none", "ensemble")


def default_image_topic(camera: str) -> str:
    """Topic a camera named `camera` publishes on when no explicit topic is configured."""
    return f"/camera/{camera}/image_raw"


def check_topic(cls: str, name: str, value: str) -> None:
    try:
        validate_topic_name(value)
    except InvalidTopicNameException as exc:
        raise ValueError(f"{cls}.{name}: invalid topic name {value!r}: {str(exc).splitlines()[0]}") from None


def check_names(cls: str, name: str, values: tuple[str, ...]) -> None:
    if not values:
        raise ValueError(f"{cls}.{name} must not be empty")
    if any(not isinstance(v, str) or not v for v in values):
        raise ValueError(f"{cls}.{name} must hold non-empty strings, got {list(values)}")
    if len(set(values)) != len(values):
        raise ValueError(f"{cls}.{name} has duplicates: {list(values)}")


def check_rate(cls: str, name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{cls}.{name} must be a positive finite number [Hz], got {value!r}")


def resolve_image_topics(cls: str, cameras: tuple[str, ...], topics: tuple[str, ...]) -> tuple[str, ...]:
    if not topics:
        return tuple(default_image_topic(c) for c in cameras)
    if len(topics) != len(cameras):
        raise ValueError(f"{cls}.image_topics has {len(topics)} entries for {len(cameras)} camera_names")
    return topics


@dataclass
class PolicyNodeConfig:
    """Parameters of the lifecycle policy node (each field is a ROS parameter of the same name).

    image_topics: one per camera, aligned with camera_names; empty -> /camera/<name>/image_raw.
    trajectory_topic: the `JointTrajectory` output (joint trajectory controller); empty disables it.
    forward_command_topic: empty disables the `Float64MultiArray` output for forward controllers.
    estop_output_topic: `std_msgs/Bool` output: True when the safety gate found no safe stop (wire
        it to the robot's protective stop); latched until the e-stop input is released or the
        node is re-activated.
    n_action_steps: Ta, how many steps of each chunk run before the next is due.
    mode / smoothing: how the control loop schedules inference ("async": a worker computes the
        next chunk while the current one runs; "sync": the robot waits) and blends chunks ("rtc":
        real-time chunking, "ensemble": temporal ensembling, "none"), as `vla.runtime.RuntimeConfig`.
    max_input_age_s: images / joint states older than this trigger a hold; 0 -> 2 control periods.
    checkpoint: opaque to ros_bridge; the injected factory reads it (a run directory, for vla).
    instruction: initial instruction; the instruction topic replaces it at run time.
    hold_keeps_gripper_command: a hold keeps the last commanded value of the gripper (the last
        entry of joint_names) instead of the measured opening, so a gripper closed on an object
        stays closed while the arm holds.
    """

    joint_names: tuple[str, ...] = UR5E_2F85_JOINTS
    camera_names: tuple[str, ...] = DEFAULT_CAMERAS
    image_topics: tuple[str, ...] = ()
    joint_state_topic: str = "/joint_states"
    instruction_topic: str = "/vla/instruction"
    estop_topic: str = "/vla/estop"
    trajectory_topic: str = "/joint_trajectory_controller/joint_trajectory"
    forward_command_topic: str = ""
    status_topic: str = "/vla/status"
    estop_output_topic: str = "/vla/estop_request"
    control_rate_hz: float = 20.0
    n_action_steps: int = 8
    mode: str = "async"
    smoothing: str = "rtc"
    max_input_age_s: float = 0.0
    checkpoint: str = ""
    instruction: str = ""
    hold_keeps_gripper_command: bool = True

    def __post_init__(self) -> None:
        cls = type(self).__name__
        self.joint_names = tuple(self.joint_names)
        self.camera_names = tuple(self.camera_names)
        check_names(cls, "joint_names", self.joint_names)
        # Zero cameras is allowed: a proprioception-only policy.
        if self.camera_names:
            check_names(cls, "camera_names", self.camera_names)
        self.image_topics = resolve_image_topics(cls, self.camera_names, tuple(self.image_topics))
        for i, topic in enumerate(self.image_topics):
            check_topic(cls, f"image_topics[{i}]", topic)
        for name in ("joint_state_topic", "instruction_topic", "estop_topic", "status_topic"):
            check_topic(cls, name, getattr(self, name))
        for name in ("trajectory_topic", "forward_command_topic", "estop_output_topic"):
            if getattr(self, name):
                check_topic(cls, name, getattr(self, name))
        if not (self.trajectory_topic or self.forward_command_topic):
            raise ValueError(f"{cls}: trajectory_topic and forward_command_topic are both empty: no output")
        check_rate(cls, "control_rate_hz", self.control_rate_hz)
        if not (isinstance(self.n_action_steps, int) and self.n_action_steps >= 1):
            raise ValueError(f"{cls}.n_action_steps must be an integer >= 1, got {self.n_action_steps!r}")
        if self.mode not in MODES:
            raise ValueError(f"{cls}.mode must be one of {MODES}, got {self.mode!r}")
        if self.smoothing not in SMOOTHINGS:
            raise ValueError(f"{cls}.smoothing must be one of {SMOOTHINGS}, got {self.smoothing!r}")
        if self.smoothing == "rtc" and self.mode != "async":
            raise ValueError(f"{cls}: smoothing 'rtc' needs mode 'async' (sync runs nothing while it infers)")
        if not (math.isfinite(self.max_input_age_s) and self.max_input_age_s >= 0):
            raise ValueError(
                f"{cls}.max_input_age_s must be >= 0 (0 = two control periods), got {self.max_input_age_s!r}"
            )

    @property
    def period_s(self) -> float:
        """One control period [s]."""
        return 1.0 / self.control_rate_hz

    @property
    def max_age_s(self) -> float:
        """The effective input age limit [s] (two control periods unless set)."""
        return self.max_input_age_s if self.max_input_age_s > 0 else 2.0 * self.period_s


@dataclass
class RobotNodeConfig:
    """Parameters of the generic robot node (each field is a ROS parameter of the same name).

    joint_names / camera_names: empty -> taken from the backend.
    trajectory_topic / forward_command_topic: the two command inputs, like ros2_control's joint
        trajectory controller (linear interpolation through the points) and forward position
        controller (`Float64MultiArray`, the target holds until the next); the latest message of
        either wins. Empty disables one.
    command_rate_hz: interpolation and simulation step rate; each tick advances the backend by
        1 / command_rate_hz seconds, and publication rates are counted in that simulated time.
    sensor_latency_s: joint states and images leave this long after they were measured (simulated
        time, rounded to ticks): a slow driver or network.
    actuation_latency_s: commands act this long after they arrived (simulated time, ticks).
    """

    joint_names: tuple[str, ...] = ()
    camera_names: tuple[str, ...] = ()
    image_topics: tuple[str, ...] = ()
    joint_state_topic: str = "/joint_states"
    trajectory_topic: str = "/joint_trajectory_controller/joint_trajectory"
    forward_command_topic: str = "/forward_position_controller/commands"
    command_rate_hz: float = 100.0
    joint_state_rate_hz: float = 50.0
    camera_rate_hz: float = 20.0
    frame_id_prefix: str = ""
    sensor_latency_s: float = 0.0
    actuation_latency_s: float = 0.0

    def __post_init__(self) -> None:
        cls = type(self).__name__
        self.joint_names = tuple(self.joint_names)
        self.camera_names = tuple(self.camera_names)
        if self.joint_names:
            check_names(cls, "joint_names", self.joint_names)
        if self.camera_names:
            check_names(cls, "camera_names", self.camera_names)
            self.image_topics = resolve_image_topics(cls, self.camera_names, tuple(self.image_topics))
        elif self.image_topics:
            raise ValueError(f"{cls}.image_topics given without camera_names")
        for i, topic in enumerate(self.image_topics):
            check_topic(cls, f"image_topics[{i}]", topic)
        check_topic(cls, "joint_state_topic", self.joint_state_topic)
        for name in ("trajectory_topic", "forward_command_topic"):
            if getattr(self, name):
                check_topic(cls, name, getattr(self, name))
        for name in ("command_rate_hz", "joint_state_rate_hz", "camera_rate_hz"):
            check_rate(cls, name, getattr(self, name))
        for name in ("sensor_latency_s", "actuation_latency_s"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and 0 <= v <= 5.0):
                raise ValueError(f"{cls}.{name} must be in [0, 5] s, got {v!r}")

    def resolved(self, joint_names: list[str], camera_names: list[str]) -> RobotNodeConfig:
        """Fill empty joint/camera names (and their topics) from a backend's lists."""
        joints = self.joint_names or tuple(joint_names)
        cameras = self.camera_names or tuple(camera_names)
        topics = self.image_topics if self.camera_names else ()
        return dataclasses.replace(self, joint_names=joints, camera_names=cameras, image_topics=topics)


# -------------------------------------------------------------------- dataclass <-> parameters

# One line per parameter, shown by `ros2 param describe`.
DESCRIPTIONS = {
    "joint_names": "Joint names, in the order of the action / state vectors (7: 6 arm joints + gripper).",
    "camera_names": "Camera names, in the order the policy expects its images.",
    "image_topics": "sensor_msgs/Image topic per camera (aligned with camera_names); empty: /camera/<name>/image_raw.",
    "joint_state_topic": "sensor_msgs/JointState topic.",
    "instruction_topic": "std_msgs/String topic carrying the language instruction.",
    "estop_topic": "std_msgs/Bool topic; true holds the robot until false arrives.",
    "trajectory_topic": "trajectory_msgs/JointTrajectory topic (joint trajectory controller); empty disables it.",
    "forward_command_topic": "std_msgs/Float64MultiArray topic for a forward position controller; empty disables it.",
    "status_topic": "std_msgs/String topic with a JSON status (latency, gate verdict, hold reason).",
    "estop_output_topic": "std_msgs/Bool topic: true when the safety gate found no safe stop (latched).",
    "control_rate_hz": "Control rate [Hz]: one chunk step per period.",
    "n_action_steps": "Ta: steps of each chunk executed before the next one is due.",
    "mode": "Inference scheduling: async (a worker computes the next chunk meanwhile) or sync (the robot waits).",
    "smoothing": "Chunk blending: rtc (real-time chunking), ensemble (temporal ensembling) or none.",
    "sensor_latency_s": "Delay [s] of joint states and images (simulated time).",
    "actuation_latency_s": "Delay [s] before a command acts (simulated time).",
    "max_input_age_s": "Inputs older than this [s] cause a hold; 0 means two control periods.",
    "checkpoint": "Checkpoint / run directory handed to the collaborator factory.",
    "instruction": "Initial language instruction (the instruction topic replaces it).",
    "command_rate_hz": "Interpolation and simulation step rate [Hz].",
    "joint_state_rate_hz": "JointState publication rate [Hz] (in simulated time).",
    "camera_rate_hz": "Image publication rate per camera [Hz] (in simulated time).",
    "frame_id_prefix": "Prefix for image frame ids (<prefix><camera>_optical_frame).",
}


def config_fields(cls: type) -> dict[str, dataclasses.Field[Any]]:
    """The dataclass fields of a node config, by name."""
    return {f.name: f for f in dataclasses.fields(cls)}


def to_parameter_value(value: Any) -> Any:
    """A config field value -> what `Node.declare_parameter` accepts (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def from_parameters(cls: type, values: dict[str, Any]) -> Any:
    """Build (and so validate) a config dataclass from ROS parameter values.

    ROS has no typed empty arrays: an empty string array parameter can arrive as an empty list of
    any type, so lists are turned back into tuples of str, ints into floats where the field is
    a float, and an unknown name raises.
    """
    fields = config_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown parameters {unknown}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = fields[name].default if fields[name].default is not dataclasses.MISSING else None
        if isinstance(default, tuple):
            items = list(value) if value is not None else []
            if not all(isinstance(v, str) for v in items):
                raise ValueError(f"{cls.__name__}.{name} must be a list of strings, got {items!r}")
            kwargs[name] = tuple(items)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = float(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass -> plain JSON-ready dict (tuples as lists)."""
    return {k: to_parameter_value(v) for k, v in dataclasses.asdict(config).items()}


__all__ = [
    "DEFAULT_CAMERAS",
    "UR5E_2F85_JOINTS",
    "PolicyNodeConfig",
    "RobotNodeConfig",
    "default_image_topic",
    "from_parameters",
    "to_dict",
]
