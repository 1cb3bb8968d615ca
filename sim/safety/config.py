"""Typed safety limits for one robot (one YAML file in ``configs/safety/`` per robot).

Every check has a limit and a margin; the margin always makes the check stricter:

- upper limits (velocity, acceleration, jump, force): effective limit = ``limit - margin``;
- joint position limits: the interval ``[lower + margin, upper - margin]``;
- workspace box: shrunk by ``margin`` on every side;
- collision: a contact counts when two geoms come closer than ``margin`` (before they touch).

Library code builds :class:`SafetyConfig` directly or from a plain dict (:func:`safety_config_from_dict`,
what a Hydra entry point passes after ``OmegaConf.to_container``); :func:`load_safety_config` reads a
YAML file with PyYAML for tools that run without Hydra (the ROS node, tests, benchmarks).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

N_ARM = 6
EXECUTIONS = ("step", "linear")


def _check_vec(owner: str, name: str, value: tuple[float, ...], n: int) -> None:
    if len(value) != n or not all(math.isfinite(v) for v in value):
        raise ValueError(f"{owner}.{name} must be {n} finite numbers, got {value!r}")


@dataclass(frozen=True)
class JointPositionLimits:
    """Joint position limits [rad] per arm joint, checked on every target and every simulated substep."""

    enabled: bool = True
    lower: tuple[float, ...] = (-6.2832, -6.2832, -3.1416, -6.2832, -6.2832, -6.2832)
    upper: tuple[float, ...] = (6.2832, 6.2832, 3.1416, 6.2832, 6.2832, 6.2832)
    margin: float = 0.05

    def __post_init__(self) -> None:
        _check_vec("joint_position", "lower", self.lower, N_ARM)
        _check_vec("joint_position", "upper", self.upper, N_ARM)
        if self.margin < 0:
            raise ValueError(f"joint_position.margin must be >= 0, got {self.margin}")
        lo, hi = self.effective()
        if any(h <= lo_ for lo_, h in zip(lo, hi)):
            raise ValueError(
                f"joint_position: lower + margin must stay below upper - margin, got {self.lower}, "
                f"{self.upper}, margin {self.margin}"
            )

    def effective(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return (
            tuple(v + self.margin for v in self.lower),
            tuple(v - self.margin for v in self.upper),
        )


@dataclass(frozen=True)
class JointRateLimit:
    """A per-joint bound on |rate| (velocity [rad/s] or acceleration [rad/s^2]).

    ``window_s`` (acceleration only) is the finite-difference window of the velocity [s]: one
    physics step resolves the servo's stiff transients, a few ms average them the way a joint
    encoder at the robot's control rate would.
    """

    enabled: bool = True
    limit: tuple[float, ...] = (3.14,) * N_ARM
    margin: float = 0.0
    window_s: float = 0.01

    def __post_init__(self) -> None:
        _check_vec("joint rate", "limit", self.limit, N_ARM)
        if self.margin < 0 or any(v - self.margin <= 0 for v in self.limit):
            raise ValueError(f"joint rate limit - margin must be > 0, got {self.limit}, margin {self.margin}")
        if self.window_s <= 0:
            raise ValueError(f"joint rate window_s must be > 0, got {self.window_s}")

    def effective(self) -> tuple[float, ...]:
        return tuple(v - self.margin for v in self.limit)


@dataclass(frozen=True)
class JumpLimit:
    """Largest |first target - current position| per arm joint [rad] (a chunk must start where the robot is)."""

    enabled: bool = True
    limit: float = 0.3
    margin: float = 0.0

    def __post_init__(self) -> None:
        if self.limit - self.margin <= 0 or self.margin < 0:
            raise ValueError(f"jump.limit - margin must be > 0, got {self.limit}, margin {self.margin}")

    def effective(self) -> float:
        return self.limit - self.margin


@dataclass(frozen=True)
class KeepOutBox:
    """A box of space the robot must stay out of (a fixture, a person's side of the table), world frame [m]."""

    name: str
    center: tuple[float, float, float]
    half_size: tuple[float, float, float]

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"keepout box name must be non-empty without '/', got {self.name!r}")
        _check_vec(f"keepout[{self.name}]", "center", self.center, 3)
        _check_vec(f"keepout[{self.name}]", "half_size", self.half_size, 3)
        if any(v <= 0 for v in self.half_size):
            raise ValueError(f"keepout[{self.name}].half_size must be > 0, got {self.half_size}")


@dataclass(frozen=True)
class CollisionConfig:
    """Self-collision and collision with the static scene and keep-out boxes.

    Attributes:
        margin: contacts closer than this [m] count (the world model detects them before touching).
        allowed_pairs: ``(pattern, pattern)`` geom-name globs (``fnmatch``) that may touch, in either
            order, e.g. ``("gripper/*", "obj/*")``. Everything else that touches is a violation.
        keepout: boxes added to the world model as detection-only geoms ``keepout/<name>``.
    """

    enabled: bool = True
    margin: float = 0.01
    allowed_pairs: tuple[tuple[str, str], ...] = ()
    keepout: tuple[KeepOutBox, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 <= self.margin <= 0.2:
            raise ValueError(f"collision.margin must be in [0, 0.2] m, got {self.margin}")
        for i, pair in enumerate(self.allowed_pairs):
            if len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
                raise ValueError(f"collision.allowed_pairs[{i}] must be two non-empty globs, got {pair!r}")
        names = [b.name for b in self.keepout]
        if len(set(names)) != len(names):
            raise ValueError(f"collision.keepout names must be unique, got {names}")


@dataclass(frozen=True)
class WorkspaceBounds:
    """Axis-aligned box the pinch site (fingertip centre) must stay in, world frame [m]."""

    enabled: bool = True
    low: tuple[float, float, float] = (0.1, -0.6, 0.0)
    high: tuple[float, float, float] = (0.9, 0.6, 0.8)
    margin: float = 0.0

    def __post_init__(self) -> None:
        _check_vec("workspace", "low", self.low, 3)
        _check_vec("workspace", "high", self.high, 3)
        if self.margin < 0 or any(h - lo - 2 * self.margin <= 0 for lo, h in zip(self.low, self.high)):
            raise ValueError(
                f"workspace: high - low must exceed 2 * margin, got {self.low}, {self.high}, {self.margin}"
            )

    def effective(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return tuple(v + self.margin for v in self.low), tuple(v - self.margin for v in self.high)


@dataclass(frozen=True)
class ContactForceLimit:
    """Forces the robot may exert [N].

    Attributes:
        limit: largest force of any single robot contact (norm of the contact force).
        body_limit: largest *total* force the robot exerts on any one other body: the net force on
            each object and pad, the sum of the contact forces on each static geom (table, floor),
            and the sum over the robot's contacts with itself. Pressing spread over several
            contacts is caught here, where every single contact stays under ``limit``.
        margin: subtracted from both limits.
        body_window_s: the total is quasi-static: averaged over this window (a finger closing onto
            an object gives a 2-4 ms impact spike that a force sensor filtering at ~100 Hz, and the
            transient-contact allowance of ISO/TS 15066, would not count; pressing lasts).
    """

    enabled: bool = True
    limit: float = 100.0
    body_limit: float = 100.0
    margin: float = 0.0
    body_window_s: float = 0.01

    def __post_init__(self) -> None:
        if self.margin < 0 or self.limit - self.margin <= 0 or self.body_limit - self.margin <= 0:
            raise ValueError(
                f"contact_force.limit / body_limit - margin must be > 0, got {self.limit}, "
                f"{self.body_limit}, {self.margin}"
            )
        if not 0 < self.body_window_s <= 0.1:
            raise ValueError(f"contact_force.body_window_s must be in (0, 0.1] s, got {self.body_window_s}")

    def effective(self) -> float:
        return self.limit - self.margin

    def effective_body(self) -> float:
        return self.body_limit - self.margin


@dataclass(frozen=True)
class StopConfig:
    """The certified stop after every chunk the gate returns.

    Executors run the returned rows and then hold the last one indefinitely; the gate simulates that
    hold for ``horizon_s`` after the rows (every substep checked) and requires the arm to be at rest
    at the end, so holding on from there is safe too.

    Attributes:
        horizon_s: simulated hold after the rows [s] (at least 1 s: the servos lag the targets by
            ~0.2 s and settle within a few lags).
        rest_speed: the arm is at rest when every joint is slower than this [rad/s].
        brake_gains: braking targets tried when the plain hold is unsafe: ``q + g * lag * qd`` for
            each gain ``g`` (1 = where the servo is heading now, a stop without a force jump; smaller
            gains stop sooner and brake harder). The world model judges each; the first safe one wins.
        search_batch: candidate prefix lengths simulated together while searching the longest prefix
            whose stop is safe (longest first).
    """

    horizon_s: float = 1.0
    rest_speed: float = 0.05
    brake_gains: tuple[float, ...] = (1.0, 0.5, 0.0)
    search_batch: int = 4

    def __post_init__(self) -> None:
        if not 1.0 <= self.horizon_s <= 10.0:
            raise ValueError(f"stop.horizon_s must be in [1, 10] s, got {self.horizon_s}")
        if not self.rest_speed > 0:
            raise ValueError(f"stop.rest_speed must be > 0 rad/s, got {self.rest_speed}")
        if not self.brake_gains or any(not 0.0 <= g <= 1.0 for g in self.brake_gains):
            raise ValueError(f"stop.brake_gains must be numbers in [0, 1], got {self.brake_gains}")
        if self.search_batch < 1:
            raise ValueError(f"stop.search_batch must be >= 1, got {self.search_batch}")


@dataclass(frozen=True)
class GateOptions:
    """How the gate runs.

    Attributes:
        nthread: rollout threads for best-of-K (0: run on the calling thread).
        reference: default best-of-K score when no task score is given: prefer the candidate closest
            to the ``"first"`` candidate (the policy's own sample) or to the ``"mean"`` of all.
        max_target_step: rate limiter on the arm targets [rad per control step], one value per arm
            joint (a single number applies to all six); ``None`` turns it off. Before a chunk is
            checked, each target may move at most this far from the previous one (the first from
            where the servo is heading now), like ros2_control's ``JointSaturationLimiter`` or
            libfranka's ``limitRate``: a policy's first target 0.2-0.3 rad from a resting arm then
            becomes a short ramp instead of a servo step that breaks the acceleration limit. The
            gripper column is never limited. See :func:`sim.safety.gate.limit_target_steps`.
        execution: how the executor applies the targets, which the world model reproduces:
            ``"step"``: each target is held for one control period (``TabletopEnv.step``, the
            runtime's simulator loop, a forward position controller); ``"linear"``: a joint
            trajectory controller interpolating linearly from the current command to each target
            over one period, sampled at ``command_rate_hz`` (``ros_bridge.robot_node.RobotNode``).
        command_rate_hz: the trajectory controller's update rate (``"linear"`` only); a whole
            number of updates per control period and of physics steps per update.
    """

    nthread: int = 2
    reference: str = "first"
    max_target_step: tuple[float, ...] | float | None = None
    execution: str = "step"
    command_rate_hz: float = 100.0

    def __post_init__(self) -> None:
        if self.nthread < 0:
            raise ValueError(f"gate.nthread must be >= 0, got {self.nthread}")
        if self.reference not in ("first", "mean"):
            raise ValueError(f"gate.reference must be 'first' or 'mean', got {self.reference!r}")
        if self.execution not in EXECUTIONS:
            raise ValueError(f"gate.execution must be one of {EXECUTIONS}, got {self.execution!r}")
        if not (math.isfinite(self.command_rate_hz) and self.command_rate_hz > 0):
            raise ValueError(f"gate.command_rate_hz must be > 0, got {self.command_rate_hz}")
        s = self.max_target_step
        if s is None:
            return
        if isinstance(s, int | float) and not isinstance(s, bool):
            s = (float(s),) * N_ARM
        if not isinstance(s, tuple | list):
            raise TypeError(f"gate.max_target_step must be null, a number or {N_ARM} numbers, got {s!r}")
        s = tuple(float(v) for v in s)
        _check_vec("gate", "max_target_step", s, N_ARM)
        if any(v <= 0 for v in s):
            raise ValueError(f"gate.max_target_step must be > 0 rad per step (null: off), got {s}")
        object.__setattr__(self, "max_target_step", s)


@dataclass(frozen=True)
class SafetyConfig:
    """All limits of one robot plus the control timing the gate simulates with.

    ``control_rate_hz`` and ``timestep`` must match the robot (and the simulator): each action is
    held for ``n_substeps = 1 / (control_rate_hz * timestep)`` physics steps.
    """

    name: str = "ur5e_default"
    control_rate_hz: float = 20.0
    timestep: float = 0.002
    joint_position: JointPositionLimits = field(default_factory=JointPositionLimits)
    joint_velocity: JointRateLimit = field(default_factory=JointRateLimit)
    joint_acceleration: JointRateLimit = field(
        default_factory=lambda: JointRateLimit(limit=(40.0,) * N_ARM, window_s=0.01)
    )
    jump: JumpLimit = field(default_factory=JumpLimit)
    collision: CollisionConfig = field(default_factory=CollisionConfig)
    workspace: WorkspaceBounds = field(default_factory=WorkspaceBounds)
    contact_force: ContactForceLimit = field(default_factory=ContactForceLimit)
    stop: StopConfig = field(default_factory=StopConfig)
    gate: GateOptions = field(default_factory=GateOptions)

    def __post_init__(self) -> None:
        if not 1.0 <= self.control_rate_hz <= 500.0:
            raise ValueError(f"control_rate_hz must be in [1, 500], got {self.control_rate_hz}")
        sub = 1.0 / (self.control_rate_hz * self.timestep)
        if abs(sub - round(sub)) > 1e-6 or round(sub) < 1:
            raise ValueError(
                f"1 / (control_rate_hz * timestep) must be a whole number of substeps, got {sub:.3f}"
            )
        if self.gate.execution == "linear":
            ticks = self.gate.command_rate_hz / self.control_rate_hz
            if abs(ticks - round(ticks)) > 1e-6 or round(ticks) < 1 or round(sub) % round(ticks):
                raise ValueError(
                    f"gate.command_rate_hz ({self.gate.command_rate_hz}) must be a whole multiple of "
                    f"control_rate_hz ({self.control_rate_hz}) that divides its {round(sub)} physics steps"
                )

    @property
    def n_substeps(self) -> int:
        return round(1.0 / (self.control_rate_hz * self.timestep))

    @property
    def stop_periods(self) -> int:
        """Control periods of the simulated hold after a chunk (``stop.horizon_s``, rounded up)."""
        return math.ceil(self.stop.horizon_s * self.control_rate_hz - 1e-9)

    @property
    def command_ticks(self) -> int:
        """Trajectory-controller updates per control period (1 for ``gate.execution = "step"``)."""
        if self.gate.execution != "linear":
            return 1
        return round(self.gate.command_rate_hz / self.control_rate_hz)


# -- building from plain data ---------------------------------------------------------------------
def _convert(tp: Any, value: Any, where: str) -> Any:
    """Turn plain YAML data into the annotated type ``tp`` (dataclasses, tuples, floats), or raise."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise TypeError(f"{where}: expected a mapping, got {type(value).__name__}")
        hints = typing.get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise KeyError(f"{where}: unknown field(s) {unknown}; valid fields: {sorted(known)}")
        kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in value.items()}
        try:
            return tp(**kwargs)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{where}: {err}") from err
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin in (typing.Union, types.UnionType):
        # ``X | Y | None``: null where allowed, else the first member type the value converts to.
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise TypeError(f"{where}: null is not allowed")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise TypeError(f"{where}: {value!r} matches none of {tp}: " + "; ".join(errors))
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{where}: unsupported type {tp}")


def safety_config_from_dict(data: dict[str, Any], source: str = "<dict>") -> SafetyConfig:
    """Build a :class:`SafetyConfig` from plain data; errors name ``source`` and the field."""
    return _convert(SafetyConfig, dict(data), source)


def load_safety_config(path: str | Path) -> SafetyConfig:
    """Read one ``configs/safety/*.yaml`` file (PyYAML, no Hydra)."""
    import yaml

    path = Path(path)
    with path.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return safety_config_from_dict(data, source=str(path))
