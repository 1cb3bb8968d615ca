"""The lifecycle policy node: observations in, the control loop's certified commands out.

Follows ros2/demos' lifecycle_py talker: `on_configure` builds the collaborators (through an
injected factory, so this module never imports a model or the control loop) and the publishers;
`on_activate` starts the subscriptions and the control timer; `on_deactivate` stops the robot and
the timer; `on_cleanup` / `on_shutdown` release everything.

Every control period the timer hands the latest observation (joint state, one frame per camera,
the instruction) to the injected `Controller` (in practice `vla.runtime.ControlLoop`, the loop
simulator evaluation runs: asynchronous inference, real-time chunking, the world-model gate) and
publishes what it returns: the period's target on the forward-controller topic and the certified
plan from this period on as one `JointTrajectory`, so a robot that hears nothing more runs the plan
out and holds its last row (the stop the gate simulated). The controller's `step` never blocks past
the period: the policy computes on a worker thread while the node keeps commanding.

Holds: when the watchdog objects (stale inputs, e-stop, empty instruction) the node asks the
controller to stop (a braking plan from a fresh state; with stale inputs the robot keeps the plan
it has) and stops querying the policy until the inputs are fine again; a new instruction starts a
new episode (the controller's history is reset). When the gate reports that no safe stop exists,
the node publishes True on its e-stop output and holds until the e-stop input is cycled or the node
is re-activated. A status JSON says what happens every period.

Threads: subscriptions and the timer sit in separate callback groups, so with a
`MultiThreadedExecutor` inputs (and the e-stop) keep arriving while the controller runs.
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
from rclpy.qos import DurabilityPolicy, QoSProfile, qos_profile_sensor_data
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
from ros_bridge.interfaces import Collaborators, Command, Observation
from ros_bridge.params import declare_config, read_config
from ros_bridge.watchdog import hold_reasons

CollaboratorFactory = Callable[[PolicyNodeConfig], Collaborators]
"""Builds the controller from the node's config (reads `config.checkpoint`)."""

_RELIABLE = QoSProfile(depth=10)
# The e-stop request is state, not an event: a late subscriber must still see it.
_LATCHED = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
GATE_ESTOP = "no safe stop: e-stop requested"


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
    """Lifecycle node running an injected controller at `control_rate_hz`.

    factory: called in `on_configure` with the validated `PolicyNodeConfig`; returns the controller.
        Exceptions fail the transition.
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
        # The controller is not thread-safe: the timer steps it, the e-stop callback stops it. Always
        # taken after `_lock` when both are held (never the other way round).
        self._ctrl_lock = threading.Lock()
        self._cfg: PolicyNodeConfig | None = None
        self._collab: Collaborators | None = None
        self._traj_pub = self._status_pub = self._forward_pub = self._estop_out_pub = None
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
        if cfg.trajectory_topic:
            self._traj_pub = self.create_lifecycle_publisher(JointTrajectory, cfg.trajectory_topic, _RELIABLE)
        if cfg.forward_command_topic:
            self._forward_pub = self.create_lifecycle_publisher(
                Float64MultiArray, cfg.forward_command_topic, _RELIABLE
            )
        self._status_pub = self.create_lifecycle_publisher(String, cfg.status_topic, _RELIABLE)
        if cfg.estop_output_topic:
            self._estop_out_pub = self.create_lifecycle_publisher(Bool, cfg.estop_output_topic, _LATCHED)
        self._reset_runtime(cfg.instruction)
        self.get_logger().info(
            f"configured: {len(cfg.camera_names)} camera(s) {list(cfg.camera_names)}, {cfg.control_rate_hz} Hz, "
            f"Ta={cfg.n_action_steps}, {cfg.mode}/{cfg.smoothing}, max input age {cfg.max_age_s:.3f} s"
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
        if self._estop_out_pub is not None:
            self._estop_out_pub.publish(Bool(data=False))
        self._timer = self.create_timer(
            cfg.period_s, self._tick, callback_group=MutuallyExclusiveCallbackGroup()
        )
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_io()  # no tick runs after this (the timer's group is exclusive)
        with self._lock:
            self._stop_robot("node deactivated", self._fresh_observation(time.monotonic()))
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
                self._new_episode = True  # the controller starts afresh at the next tick

    def _on_estop(self, msg: Bool) -> None:
        with self._lock:
            engaged = bool(msg.data)
            if engaged and not self._estop:
                self._estop = True
                self._stop_robot("e-stop engaged", self._fresh_observation(time.monotonic()))  # now
                self._publish_status({})
            elif not engaged:
                self._estop = False
                if self._gate_estop:  # an operator cycled the e-stop: the gate's request is cleared
                    self._gate_estop = False
                    self._publish_estop_output(False)

    # ------------------------------------------------------------------------------- control

    def _tick(self) -> None:
        if self._cfg is None or self._timer is None or self._collab is None:
            return  # a tick queued before deactivate/cleanup ran: nothing to control any more
        cfg = self._cfg
        t0 = time.monotonic()
        with self._lock:
            if self._last_tick is not None and t0 - self._last_tick > 1.5 * cfg.period_s:
                self._overruns += 1
            self._last_tick = t0
            self._ticks += 1
            reasons = self._watchdog(t0)
            if self._gate_estop:
                reasons.insert(0, GATE_ESTOP)
            if reasons:
                self._stop_robot("; ".join(reasons), self._fresh_observation(t0))
                self._publish_status({})
                return
            snapshot = (self._inputs.joint_state, dict(self._inputs.images or {}), self._instruction)
            received = self._inputs.joint_state_received or t0
            new_episode, self._new_episode = self._new_episode or self._stopped, False
        try:
            obs = self._observation(*snapshot, cfg, received)
        except ValueError as exc:
            with self._lock:
                self._stop_robot(f"bad input: {exc}", None)
                self._publish_status({})
            return
        controller = self._collab.controller
        try:
            with self._ctrl_lock:
                if new_episode:
                    controller.reset()
                cmd = controller.step(obs)
        except Exception as exc:
            self.get_logger().error(f"controller failed: {exc}\n{traceback.format_exc()}")
            with self._lock:
                self._stop_robot(f"controller error: {type(exc).__name__}: {exc}", None)
                self._publish_status({})
            return
        with self._lock:
            if self._estop or self._timer is None:  # an e-stop arrived meanwhile: it wins
                return
            self._stopped = False
            self._hold_reason = cmd.reason if cmd.status == "hold" else None
            self._publish_command(cmd)
            if cmd.estop and not self._gate_estop:
                self._gate_estop = True
                self._publish_estop_output(True)
                self.get_logger().error(f"{GATE_ESTOP}: {cmd.reason}")
            self._misses += int(cmd.status in ("miss", "late"))
            self._publish_status(
                {
                    "step_status": cmd.status,
                    "step_ms": 1e3 * (time.monotonic() - t0),
                    "obs_stamp": obs.stamp,
                    **cmd.info,
                }
            )

    def _observation(
        self,
        joint_msg: JointState,
        image_msgs: dict[str, Image],
        instruction: str,
        cfg: PolicyNodeConfig,
        received: float,
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
            received=received,
        )

    def _fresh_observation(self, now: float) -> Observation | None:
        """The current state when the joint state is fresh (images may be absent): for braking."""
        cfg = self._cfg
        js, received = self._inputs.joint_state, self._inputs.joint_state_received
        if cfg is None or js is None or received is None or now - received > cfg.max_age_s:
            return None
        try:
            joints = joint_state_to_numpy(js, cfg.joint_names)
        except ValueError:
            return None
        if joints.velocity is None:
            return None
        return Observation({}, joints.position, joints.velocity, self._instruction, 0.0, received)

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

    def _stop_robot(self, reason: str, obs: Observation | None) -> None:
        """Stop querying the policy and brake, once per hold reason (called with the lock held)."""
        if reason == self._hold_reason and self._stopped:
            return
        self._hold_reason = reason
        self._stopped = True
        self._holds += 1
        self.get_logger().warning(f"holding: {reason}")
        if self._collab is None:
            return
        try:
            with self._ctrl_lock:
                cmd = self._collab.controller.stop(obs, reason)
        except Exception as exc:  # braking is best effort; the robot still holds its certified plan
            self.get_logger().error(f"controller stop failed: {exc}\n{traceback.format_exc()}")
            return
        if cmd is not None:
            self._publish_command(cmd)
            if cmd.estop and not self._gate_estop:
                self._gate_estop = True
                self._publish_estop_output(True)
                self.get_logger().error(f"{GATE_ESTOP}: {cmd.reason}")

    def _publish_command(self, cmd: Command) -> None:
        cfg = self._require_cfg()
        plan = np.asarray(cmd.plan, np.float64).reshape(-1, len(cfg.joint_names))
        last = self._last_plan
        if last is not None and len(plan) == 1 and last.shape == plan.shape and np.array_equal(last, plan):
            return  # holding the same target: the robot already has it
        self._last_plan = plan
        if self._traj_pub is not None and len(plan):
            self._traj_pub.publish(chunk_to_joint_trajectory(plan, cfg.joint_names, cfg.period_s))
        if self._forward_pub is not None:
            self._forward_pub.publish(numpy_to_float64_multi_array(np.asarray(cmd.action), ["joints"]))
        self._published += 1

    def _publish_estop_output(self, engaged: bool) -> None:
        if self._estop_out_pub is not None:
            self._estop_out_pub.publish(Bool(data=engaged))

    def _publish_status(self, info: dict[str, Any]) -> None:
        if self._status_pub is None:
            return
        now = time.monotonic()
        ages = {"joint_state": self._inputs.joint_state_received}
        ages.update({f"image_{c}": t for c, t in (self._inputs.images_received or {}).items()})
        summary = {}
        if self._collab is not None:
            with self._ctrl_lock:
                summary = self._collab.controller.summary()
        status = {
            "state": "holding" if self._hold_reason is not None else "running",
            "reason": self._hold_reason or "",
            "tick": self._ticks,
            "holds": self._holds,
            "misses": self._misses,
            "overruns": self._overruns,
            "published": self._published,
            "input_age_ms": {k: (None if t is None else 1e3 * (now - t)) for k, t in ages.items()},
            "estop": self._estop,
            "estop_requested": self._gate_estop,
            "instruction": self._instruction,
            "stamp": self.get_clock().now().nanoseconds * 1e-9,
            "controller": summary,
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
        self._gate_estop = False
        self._hold_reason: str | None = None
        self._stopped = True  # the first good tick starts an episode
        self._new_episode = True
        self._ticks = self._holds = self._overruns = self._misses = self._published = 0
        self._last_plan: np.ndarray | None = None
        self._last_tick: float | None = None

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
        for pub in (self._traj_pub, self._status_pub, self._forward_pub, self._estop_out_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self._traj_pub = self._status_pub = self._forward_pub = self._estop_out_pub = None
        collab, self._collab = self._collab, None
        if collab is not None and collab.close is not None:
            collab.close()
        self._cfg = None

    @property
    def config(self) -> PolicyNodeConfig | None:
        """The config in force since the last `on_configure` (None when unconfigured)."""
        return self._cfg


__all__ = ["GATE_ESTOP", "CollaboratorFactory", "PolicyNode"]
