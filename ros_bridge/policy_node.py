"""The lifecycle policy node: observations in, gated joint trajectories out.

Follows ros2/demos' lifecycle_py talker: `on_configure` builds the collaborators (through an
injected factory, so this module never imports a model) and the publishers; `on_activate`
starts the subscriptions and the control timer; `on_deactivate` holds the robot and stops them;
`on_cleanup` / `on_shutdown` release everything.

Each control tick either continues the current gated chunk, or (when it is used up) builds an
`Observation`, asks the `ChunkSource` for a chunk, passes it through the `ChunkGate` and publishes
the first `n_action_steps` of the safe prefix as a `JointTrajectory`. A hold (a one-point
trajectory at the current position) is published instead whenever the watchdog objects (stale
inputs, e-stop, empty instruction) or the gate lets nothing through; a status JSON says why.

Threads: subscriptions and the timer sit in separate callback groups, so with a
`MultiThreadedExecutor` inputs (and the e-stop) keep arriving while a chunk is being computed.
Shared state is guarded by one lock; a chunk computed while the situation changed (e-stop,
new instruction, deactivation) is discarded, never published.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Bool, Float64MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ros_bridge.config import PolicyNodeConfig
from ros_bridge.conversions import (
    chunk_to_joint_trajectory,
    image_to_rgb,
    joint_state_to_numpy,
    numpy_to_float64_multi_array,
    time_to_seconds,
)
from ros_bridge.interfaces import Collaborators, GateDecision, Observation
from ros_bridge.params import declare_config, read_config
from ros_bridge.watchdog import hold_reasons

CollaboratorFactory = Callable[[PolicyNodeConfig], Collaborators]
"""Builds the chunk source and gate from the node's config (reads `config.checkpoint`)."""

_RELIABLE = QoSProfile(depth=10)


@dataclass
class _Inputs:
    """Latest messages and their monotonic receipt times (guarded by the node's lock)."""

    joint_state: JointState | None = None
    joint_state_received: float | None = None
    images: dict[str, Image | None] | None = None
    images_received: dict[str, float | None] | None = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


class PolicyNode(LifecycleNode):
    """Lifecycle node running a gated chunking policy at `control_rate_hz`.

    factory: called in `on_configure` with the validated `PolicyNodeConfig`; returns the chunk
        source (policy or scripted expert) and the gate. Exceptions fail the transition.
    config: defaults for the declared parameters (ROS overrides still apply).
    node_kwargs: passed to `rclpy.node.Node` (context, namespace, parameter_overrides, ...).
    """

    def __init__(
        self,
        factory: CollaboratorFactory,
        config: PolicyNodeConfig | None = None,
        *,
        node_name: str = "vla_policy",
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        self._factory = factory
        declare_config(self, config or PolicyNodeConfig())
        self._lock = threading.RLock()
        self._cfg: PolicyNodeConfig | None = None
        self._collab: Collaborators | None = None
        self._traj_pub = self._status_pub = self._forward_pub = None
        self._subs: list[Any] = []
        self._timer = None
        self._reset_runtime("")

    # ------------------------------------------------------------------ lifecycle transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            cfg = read_config(self, PolicyNodeConfig)
            collab = self._factory(cfg)
        except Exception as exc:  # a bad checkpoint must fail the transition, not kill the process
            self.get_logger().error(
                f"configure failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            )
            return TransitionCallbackReturn.FAILURE
        self._cfg, self._collab = cfg, collab
        self._traj_pub = self.create_lifecycle_publisher(JointTrajectory, cfg.trajectory_topic, _RELIABLE)
        self._status_pub = self.create_lifecycle_publisher(String, cfg.status_topic, _RELIABLE)
        if cfg.forward_command_topic:
            self._forward_pub = self.create_lifecycle_publisher(
                Float64MultiArray, cfg.forward_command_topic, _RELIABLE
            )
        self._reset_runtime(cfg.instruction)
        self.get_logger().info(
            f"configured: {len(cfg.camera_names)} camera(s) {list(cfg.camera_names)}, {cfg.control_rate_hz} Hz, "
            f"Ta={cfg.n_action_steps}, max input age {cfg.max_age_s:.3f} s"
        )
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self._require_cfg()
        with self._lock:
            self._reset_runtime(self._instruction)  # nothing received before activation counts
        inputs = MutuallyExclusiveCallbackGroup()
        self._subs = [
            self.create_subscription(
                JointState,
                cfg.joint_state_topic,
                self._on_joint_state,
                qos_profile_sensor_data,
                callback_group=inputs,
            ),
            self.create_subscription(
                String, cfg.instruction_topic, self._on_instruction, _RELIABLE, callback_group=inputs
            ),
            self.create_subscription(Bool, cfg.estop_topic, self._on_estop, _RELIABLE, callback_group=inputs),
        ]
        for camera, topic in zip(cfg.camera_names, cfg.image_topics):
            self._subs.append(
                self.create_subscription(
                    Image,
                    topic,
                    lambda msg, cam=camera: self._on_image(cam, msg),
                    qos_profile_sensor_data,
                    callback_group=inputs,
                )
            )
        ret = super().on_activate(state)  # enables the lifecycle publishers
        self._timer = self.create_timer(
            cfg.period_s, self._tick, callback_group=MutuallyExclusiveCallbackGroup()
        )
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        with self._lock:
            self._active_epoch_bump()
            self._enter_hold("node deactivated")
        self._stop_io()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()
        self._release()
        return super().on_shutdown(state)

    # --------------------------------------------------------------------------- subscriptions

    def _on_joint_state(self, msg: JointState) -> None:
        with self._lock:
            self._inputs.joint_state = msg
            self._inputs.joint_state_received = time.monotonic()

    def _on_image(self, camera: str, msg: Image) -> None:
        with self._lock:
            assert self._inputs.images is not None and self._inputs.images_received is not None
            self._inputs.images[camera] = msg
            self._inputs.images_received[camera] = time.monotonic()

    def _on_instruction(self, msg: String) -> None:
        with self._lock:
            if msg.data != self._instruction:
                self._instruction = msg.data
                self._active_epoch_bump()  # re-plan for the new instruction at the next tick

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            engaged = bool(msg.data)
            if engaged and not self._estop:
                self._estop = True
                self._active_epoch_bump()
                self._enter_hold("e-stop engaged")  # at once, not at the next tick
                self._publish_status({})
            elif not engaged:
                self._estop = False

    # ------------------------------------------------------------------------------- control

    def _tick(self) -> None:
        if self._cfg is None or self._timer is None:
            return  # a tick queued before deactivate/cleanup ran: nothing to control any more
        cfg = self._cfg
        t0 = time.monotonic()
        with self._lock:
            if self._last_tick is not None and t0 - self._last_tick > 1.5 * cfg.period_s:
                self._overruns += 1
            self._last_tick = t0
            self._ticks += 1
            reasons = self._watchdog(t0)
            if reasons:
                self._enter_hold("; ".join(reasons))
                self._publish_status({})
                return
            if self._plan is not None and self._plan_index < len(self._plan):
                self._publish_forward(self._plan[self._plan_index])
                self._plan_index += 1
                self._publish_status({})
                return
            epoch = self._epoch
            snapshot = (self._inputs.joint_state, dict(self._inputs.images or {}), self._instruction)
        # Heavy work outside the lock: inputs (and an e-stop) keep arriving meanwhile.
        info: dict[str, Any] = {}
        prefix, reason = self._compute(snapshot, cfg, info, t0)
        with self._lock:
            if epoch != self._epoch or self._estop:
                info["discarded"] = "inputs changed while computing (e-stop, instruction or deactivation)"
                self._publish_status(info)
                return
            if reason is not None:
                self._enter_hold(reason)
            else:
                assert prefix is not None
                self._start_plan(prefix, cfg)
            info["latency_ms"] = 1e3 * (time.monotonic() - t0)
            self._publish_status(info)

    def _compute(
        self,
        snapshot: tuple[Any, dict[str, Any], str],
        cfg: PolicyNodeConfig,
        info: dict[str, Any],
        t0: float,
    ) -> tuple[np.ndarray | None, str | None]:
        """Observation -> chunk -> gate. Returns (prefix (K>=1, D), None) or (None, hold reason)."""
        assert self._collab is not None
        joint_msg, image_msgs, instruction = snapshot
        try:
            obs = self._observation(joint_msg, image_msgs, instruction, cfg)
        except ValueError as exc:
            return None, f"bad input: {exc}"
        info["obs_stamp"] = obs.stamp
        t1 = time.monotonic()
        try:
            chunk = np.asarray(self._collab.source(obs), dtype=np.float64)
            _check_rows(chunk, len(cfg.joint_names), "chunk source", min_rows=1)
        except Exception as exc:
            self.get_logger().error(f"chunk source failed: {exc}\n{traceback.format_exc()}")
            return None, f"chunk source error: {type(exc).__name__}: {exc}"
        t2 = time.monotonic()
        try:
            decision = self._collab.gate(obs.joint_positions, obs.joint_velocities, chunk)
            if not isinstance(decision, GateDecision):
                raise TypeError(f"gate returned {type(decision).__name__}, expected GateDecision")
            prefix = np.asarray(decision.safe_prefix, dtype=np.float64)
            if prefix.size == 0:  # "nothing is safe" may come as any empty array
                prefix = prefix.reshape(0, chunk.shape[1])
            _check_rows(prefix, len(cfg.joint_names), "gate safe_prefix", min_rows=0, max_rows=len(chunk))
        except Exception as exc:
            self.get_logger().error(f"gate failed: {exc}\n{traceback.format_exc()}")
            return None, f"gate error: {type(exc).__name__}: {exc}"
        t3 = time.monotonic()
        self._chunks += 1
        info.update(
            prepare_ms=1e3 * (t1 - t0),
            infer_ms=1e3 * (t2 - t1),
            gate_ms=1e3 * (t3 - t2),
            chunk_len=len(chunk),
            safe_len=len(prefix),
            gate_reason=decision.reason,
            gate=decision.verdict,
        )
        if len(prefix) == 0:
            return None, f"gate rejected the first step: {decision.reason or 'no reason given'}"
        return prefix[: cfg.n_action_steps], None

    def _observation(
        self, joint_msg: JointState, image_msgs: dict[str, Image], instruction: str, cfg: PolicyNodeConfig
    ) -> Observation:
        joints = joint_state_to_numpy(joint_msg, cfg.joint_names)
        if joints.velocity is None:
            raise ValueError("JointState.velocity is empty; the gate needs joint velocities")
        images = {}
        for camera in cfg.camera_names:
            try:
                images[camera] = np.array(image_to_rgb(image_msgs[camera]))  # own copy
            except ValueError as exc:
                raise ValueError(f"camera '{camera}': {exc}") from None
        return Observation(
            images=images,
            joint_positions=joints.position,
            joint_velocities=joints.velocity,
            instruction=instruction,
            stamp=time_to_seconds(joint_msg.header.stamp),
        )

    # ----------------------------------------------------------------- holding and publishing

    def _watchdog(self, now: float) -> list[str]:
        cfg = self._require_cfg()
        return hold_reasons(
            now,
            joint_state_received=self._inputs.joint_state_received,
            images_received=self._inputs.images_received or {},
            max_age_s=cfg.max_age_s,
            estop=self._estop,
            instruction=self._instruction,
        )

    def _current_position(self) -> np.ndarray | None:
        if self._inputs.joint_state is None:
            return None
        try:
            return joint_state_to_numpy(self._inputs.joint_state, self._require_cfg().joint_names).position
        except ValueError:
            return None

    def _enter_hold(self, reason: str) -> None:
        """Publish a hold (current position; no points if none is known) when the reason changes."""
        self._plan = None
        if reason == self._hold_reason:
            return
        self._hold_reason = reason
        self._holds += 1
        cfg = self._require_cfg()
        q = self._current_position()
        self.get_logger().warning(f"holding: {reason}")
        if self._traj_pub is None:
            return
        # One point one period ahead: a joint trajectory controller treats time 0 as a jump.
        if q is not None and self._last_command is not None and cfg.hold_keeps_gripper_command:
            q = q.copy()
            q[-1] = self._last_command[-1]  # the gripper keeps its grip; the arm stops where it is
        chunk = np.zeros((0, len(cfg.joint_names))) if q is None else q[None]
        self._traj_pub.publish(chunk_to_joint_trajectory(chunk, cfg.joint_names, cfg.period_s))
        if q is not None:
            self._publish_forward(q)

    def _start_plan(self, prefix: np.ndarray, cfg: PolicyNodeConfig) -> None:
        if self._hold_reason is not None:
            self.get_logger().info(f"resuming after hold ({self._hold_reason})")
        self._hold_reason = None
        self._plan, self._plan_index = prefix, 1
        self._last_command = np.array(prefix[-1], dtype=np.float64)
        assert self._traj_pub is not None
        self._traj_pub.publish(chunk_to_joint_trajectory(prefix, cfg.joint_names, cfg.period_s))
        self._publish_forward(prefix[0])

    def _publish_forward(self, q: np.ndarray) -> None:
        if self._forward_pub is not None:
            self._forward_pub.publish(numpy_to_float64_multi_array(q, ["joints"]))

    def _publish_status(self, info: dict[str, Any]) -> None:
        if self._status_pub is None:
            return
        now = time.monotonic()
        ages = {"joint_state": self._inputs.joint_state_received}
        ages.update({f"image_{c}": t for c, t in (self._inputs.images_received or {}).items()})
        status = {
            "state": "holding" if self._hold_reason is not None else "running",
            "reason": self._hold_reason or "",
            "tick": self._ticks,
            "chunks": self._chunks,
            "holds": self._holds,
            "overruns": self._overruns,
            "plan_step": self._plan_index if self._plan is not None else None,
            "plan_len": len(self._plan) if self._plan is not None else 0,
            "input_age_ms": {k: (None if t is None else 1e3 * (now - t)) for k, t in ages.items()},
            "estop": self._estop,
            "instruction": self._instruction,
            "stamp": self.get_clock().now().nanoseconds * 1e-9,
            **info,
        }
        self._status_pub.publish(String(data=json.dumps(status, default=_jsonable, allow_nan=True)))

    # ------------------------------------------------------------------------------- helpers

    def _reset_runtime(self, instruction: str) -> None:
        cfg = self._cfg
        cameras = cfg.camera_names if cfg is not None else ()
        self._inputs = _Inputs(images=dict.fromkeys(cameras), images_received=dict.fromkeys(cameras))
        self._instruction = instruction
        self._estop = False
        self._hold_reason: str | None = None
        self._plan: np.ndarray | None = None
        self._plan_index = 0
        self._last_command: np.ndarray | None = None
        self._epoch = 0
        self._ticks = self._chunks = self._holds = self._overruns = 0
        self._last_tick: float | None = None

    def _active_epoch_bump(self) -> None:
        self._epoch += 1
        self._plan = None

    def _require_cfg(self) -> PolicyNodeConfig:
        if self._cfg is None:
            raise RuntimeError("PolicyNode is not configured (call trigger_configure first)")
        return self._cfg

    def _stop_io(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self.destroy_timer(self._timer)
            self._timer = None
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []

    def _release(self) -> None:
        for pub in (self._traj_pub, self._status_pub, self._forward_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._traj_pub = self._status_pub = self._forward_pub = None
        collab, self._collab = self._collab, None
        if collab is not None and collab.close is not None:
            collab.close()
        self._cfg = None

    @property
    def config(self) -> PolicyNodeConfig | None:
        """The config in force since the last `on_configure` (None when unconfigured)."""
        return self._cfg


def _check_rows(
    arr: np.ndarray, width: int, what: str, *, min_rows: int, max_rows: int | None = None
) -> None:
    if arr.ndim != 2 or arr.shape[1] != width or arr.shape[0] < min_rows:
        raise ValueError(f"{what} returned shape {arr.shape}, expected (H>={min_rows}, {width})")
    if max_rows is not None and arr.shape[0] > max_rows:
        raise ValueError(f"{what} returned {arr.shape[0]} rows, more than the chunk's {max_rows}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} returned NaN or inf")


__all__ = ["CollaboratorFactory", "PolicyNode"]
