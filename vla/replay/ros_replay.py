"""Replay an episode on a robot: its actions through the ROS policy node's control loop, every chunk gated.

The episode stands in for the policy: :class:`ReplayPolicy` is a ``ChunkPolicy`` returning the
recorded actions from the loop's current step, and :class:`ReplayController` runs it in the same
``vla.runtime.ControlLoop`` (synchronous, ``n_action_steps`` per chunk) the policy node runs for a
trained policy, with the world-model gate. The node (``ros_bridge.PolicyNode``) runs at
``fps * speed``, so the actions go out at the recorded timing, scaled, and the gate simulates them
at that same rate and the way the robot's trajectory controller interpolates them. When the gate
cuts a chunk (or holds), what it certified is executed (then its last row held) and the replay
stops; the reason is reported. Nothing moves before :func:`vla.replay.confirm.confirm_motion` says yes.

    result = replay_on_robot(episode, RosReplayConfig(speed=0.5), safety_cfg)
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ros_bridge.config import UR5E_2F85_JOINTS
from ros_bridge.interfaces import Command, Observation
from sim.safety import SafetyConfig, SafetyGate
from vla.deploy.controller import LoopController
from vla.deploy.gate import SafetyChunkGate, gate_config_for
from vla.replay.confirm import check_confirmable, confirm_motion
from vla.replay.episode import RecordedEpisode
from vla.replay.timing import safety_config_at_rate
from vla.runtime import RuntimeConfig

_PROBE_IDS = itertools.count()


@dataclass(frozen=True)
class RosReplayConfig:
    """How to replay on a robot over ROS 2.

    Attributes:
        speed: time scale of the recorded timing (0.5: half speed, twice as long); (0, 2].
        n_action_steps: actions per gated chunk (one ``JointTrajectory`` each).
        confirm: ask ``Start motion? [y/N]`` first; False only by an explicit flag (``--yes``).
        joint_names: names on the wire for the 7 action dims, in action order.
        joint_state_topic / trajectory_topic / status_topic / estop_topic: the policy node's topics.
        wait_for_robot_s: how long to wait for the first JointState before giving up.
        timeout_s: abort (hold) after this long; None -> 2 x the scaled duration + 10 s.
        command_rate_hz: the robot's trajectory controller update rate (the gate interpolates
            targets like it).
    """

    speed: float = 1.0
    n_action_steps: int = 8
    confirm: bool = True
    joint_names: tuple[str, ...] = UR5E_2F85_JOINTS
    joint_state_topic: str = "/joint_states"
    trajectory_topic: str = "/joint_trajectory_controller/joint_trajectory"
    status_topic: str = "/vla/replay/status"
    estop_topic: str = "/vla/estop"
    wait_for_robot_s: float = 5.0
    timeout_s: float | None = None
    command_rate_hz: float = 100.0

    def __post_init__(self) -> None:
        if not (0.0 < self.speed <= 2.0):
            raise ValueError(f"RosReplayConfig.speed must be in (0, 2], got {self.speed}")
        if self.n_action_steps < 1:
            raise ValueError(f"RosReplayConfig.n_action_steps must be >= 1, got {self.n_action_steps}")
        if len(self.joint_names) != 7:
            raise ValueError(f"RosReplayConfig.joint_names needs 7 names, got {list(self.joint_names)}")


@dataclass
class ChunkRecord:
    """One gate decision during a replay: recorded steps ``[start, start + executed)`` went out."""

    start: int
    proposed: int
    executed: int
    status: str  # "pass", "truncated", "hold"
    reason: str
    verdict: dict[str, Any]


@dataclass
class RosReplayResult:
    """Outcome of a robot replay."""

    completed: bool
    steps_executed: int
    n_steps: int
    stop_reason: str
    speed: float
    control_rate_hz: float
    wall_seconds: float
    chunks: list[ChunkRecord] = field(default_factory=list)

    @property
    def held(self) -> bool:
        return any(c.status == "hold" for c in self.chunks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "completed": self.completed,
            "steps_executed": self.steps_executed,
            "n_steps": self.n_steps,
            "stop_reason": self.stop_reason,
            "speed": self.speed,
            "control_rate_hz": self.control_rate_hz,
            "wall_seconds": self.wall_seconds,
            "chunks": [c.__dict__ for c in self.chunks],
        }


class ReplayPolicy:
    """The recorded actions as a ``ChunkPolicy``: ``horizon`` actions from the loop's step on (the
    last one repeated past the end)."""

    def __init__(self, actions: np.ndarray, horizon: int) -> None:
        self.actions = np.asarray(actions, np.float32)
        self.horizon = horizon
        self.n_obs_steps = 1

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None = None) -> np.ndarray:
        k = min(int(obs["step"]), len(self.actions) - 1)
        rows = self.actions[k : k + self.horizon]
        if len(rows) < self.horizon:
            rows = np.concatenate([rows, np.repeat(rows[-1:], self.horizon - len(rows), axis=0)])
        return rows


class ReplayController(LoopController):
    """A ``LoopController`` over :class:`ReplayPolicy` that stops the replay at the first chunk the
    gate changed (what it certified still runs) and after the last recorded action.

    Step ``k`` of the loop runs recorded action ``k`` (synchronous chunks, no inference time), so
    ``cursor`` counts the recorded actions executed. Called from the node's timer thread.
    """

    def __init__(
        self, actions: np.ndarray, n_action_steps: int, period_s: float, gate: SafetyChunkGate
    ) -> None:
        runtime = RuntimeConfig(
            mode="sync", smoothing="none", n_obs_steps=1, n_action_steps=n_action_steps, threaded=False
        )
        super().__init__(ReplayPolicy(actions, n_action_steps), runtime, period_s, gate)
        self.n_steps = len(actions)
        self.gate = gate
        self.cursor = 0
        self.stop_reason = ""
        self.records: list[ChunkRecord] = []
        self.finished = threading.Event()
        self._lock = threading.Lock()

    def abort(self, reason: str) -> None:
        """Stop after what is queued (the robot holds its certified stop)."""
        with self._lock:
            if not self.stop_reason:
                self.stop_reason = reason
                self.loop.stop(None, reason)

    def step(self, obs: Observation) -> Command:
        with self._lock:
            cmd = super().step(obs)
            step = self.loop.stats.steps[-1]
            chunks = self.loop.stats.chunks
            # A recorded action went out: a chunk's row within what the gate accepted (not a braking row).
            recorded = step.chunk_id >= 0 and step.index < chunks[step.chunk_id].accepted
            self.cursor += int(recorded)
            self._record()
            if (self.stop_reason and not recorded and self.cursor > 0) or cmd.status == "hold":
                self.finished.set()  # what the gate certified has run: the robot holds its stop
            elif not self.stop_reason and self.cursor >= self.n_steps:
                self.loop.stop(None, "replay finished")
                self.finished.set()
            return cmd

    def _record(self) -> None:
        for rec in self.loop.stats.chunks[len(self.records) :]:
            if rec.outcome in ("pending", "dropped"):
                break
            status = {"installed": "pass", "gate_truncated": "truncated", "gate_hold": "hold"}.get(
                rec.outcome, rec.outcome.removeprefix("gate_")
            )
            self.records.append(
                ChunkRecord(
                    rec.request_step,
                    self.loop.config.n_action_steps,
                    rec.accepted,
                    status,
                    rec.gate_reason,
                    {},
                )
            )
            if status != "pass" and not self.stop_reason:
                self.stop_reason = (
                    f"gate {status} at recorded step {rec.request_step + rec.accepted}: {rec.gate_reason}"
                )
                self.loop.stop(None, self.stop_reason)
                if status == "hold":
                    self.finished.set()

    @property
    def done(self) -> bool:
        return self.cursor >= self.n_steps


def _wait_joint_state(runtime: Any, topic: str, names: tuple[str, ...], timeout_s: float) -> np.ndarray:
    """The robot's current (7,) positions from the first JointState on ``topic``."""
    from rclpy.node import Node
    from sensor_msgs.msg import JointState

    from ros_bridge.conversions import joint_state_to_numpy
    from ros_bridge.run import wait_until

    got: list[np.ndarray] = []
    # The probe stays subscribed (destroying an entity while the executor thread waits on it races
    # in rclpy 9); it only keeps the newest position.
    node = Node(f"vla_replay_probe_{next(_PROBE_IDS)}", context=runtime.context)

    def on_joint_state(msg: JointState) -> None:
        got[:] = [joint_state_to_numpy(msg, names).position]

    node.create_subscription(JointState, topic, on_joint_state, 10)
    runtime.add(node)
    wait_until(lambda: bool(got), timeout_s, what=f"a JointState on {topic} (is the robot running?)")
    return got[-1]


def replay_on_robot(
    ep: RecordedEpisode,
    cfg: RosReplayConfig,
    safety: SafetyConfig,
    *,
    runtime: Any | None = None,
    ask: Callable[[str], str] | None = None,
    interactive: bool | None = None,
    out: Callable[[str], None] = print,
) -> RosReplayResult:
    """Replay ``ep.action`` on the robot behind ``cfg``'s topics; see the module docstring.

    runtime: a running ``ros_bridge.run.RosRuntime`` (tests share one with the robot); None -> own one.
    ask / interactive: the confirmation's input (see :func:`confirm_motion`).
    Raises ReplayRefused (nothing published) when motion is not confirmed, TimeoutError when no robot
    answers on ``joint_state_topic``.
    """
    from rclpy.lifecycle import TransitionCallbackReturn

    from ros_bridge.config import PolicyNodeConfig
    from ros_bridge.interfaces import Collaborators
    from ros_bridge.policy_node import PolicyNode
    from ros_bridge.run import RosRuntime

    check_confirmable(cfg.confirm, ask, interactive)  # before touching the graph
    rate = ep.fps * cfg.speed
    own = runtime is None
    if own:
        runtime = RosRuntime().__enter__()
    try:
        q_now = _wait_joint_state(runtime, cfg.joint_state_topic, cfg.joint_names, cfg.wait_for_robot_s)
        gap = np.abs(q_now - ep.action[0])
        summary = (
            f"[vla-replay] episode {ep.index} of {ep.path}: {ep.n_steps} steps, '{ep.instruction}'\n"
            f"  speed {cfg.speed:g}x -> {rate:g} Hz, {ep.n_steps / rate:.1f} s; chunks of {cfg.n_action_steps} "
            f"steps through the world-model gate ({safety.name})\n"
            f"  robot on {cfg.joint_state_topic}: max |q - first target| = {gap[:6].max():.3f} rad "
            f"(joint {cfg.joint_names[int(gap[:6].argmax())]}); commands to {cfg.trajectory_topic}"
        )
        confirm_motion(summary, required=cfg.confirm, ask=ask, interactive=interactive, out=out)

        # A replay sends the recorded actions exactly or stops: the gate's target rate limiter
        # (which reshapes a policy's chunk starts) is off, so an unsafe recording is cut and held.
        exact = dataclasses.replace(safety, gate=dataclasses.replace(safety.gate, max_target_step=None))
        gate_cfg = gate_config_for(safety_config_at_rate(exact, rate), "trajectory", cfg.command_rate_hz)
        wm_gate = SafetyChunkGate(SafetyGate(gate_cfg))
        # Warm the gate up (first-call allocations) so the first chunk leaves on time; uncounted.
        wm_gate.gate.check(q_now, np.zeros(6), ep.action[: cfg.n_action_steps])
        controller = ReplayController(ep.action, cfg.n_action_steps, 1.0 / rate, wm_gate)
        node_cfg = PolicyNodeConfig(
            joint_names=tuple(cfg.joint_names),
            camera_names=(),  # replay needs no images
            joint_state_topic=cfg.joint_state_topic,
            trajectory_topic=cfg.trajectory_topic,
            status_topic=cfg.status_topic,
            estop_topic=cfg.estop_topic,
            estop_output_topic="",
            control_rate_hz=rate,
            n_action_steps=cfg.n_action_steps,
            mode="sync",
            smoothing="none",
            instruction=ep.instruction or f"replay episode {ep.index}",
        )
        collab = Collaborators(controller)  # the gate is closed below, not by the node
        node = runtime.add(
            PolicyNode(lambda _c: collab, node_cfg, node_name="vla_replay", context=runtime.context)
        )
        try:
            timeout = cfg.timeout_s if cfg.timeout_s is not None else 2.0 * ep.n_steps / rate + 10.0
            t0 = time.monotonic()
            if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError("vla-replay: the policy node failed to configure (see its log)")
            if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                raise RuntimeError("vla-replay: the policy node failed to activate (see its log)")
            timed_out = not controller.finished.wait(timeout)
            if timed_out:
                # Stuck (stale inputs, e-stop): ask for nothing more; the robot holds its certified stop.
                controller.abort(f"timeout after {timeout:.1f} s")
            wall = time.monotonic() - t0
            # The node is left active (every further tick serves the stopped loop: the held stop) until
            # the runtime shuts down: deactivating it from this thread destroys its timer and
            # subscriptions while the executor thread may be waiting on them, which rclpy 9.1.2 reports
            # as InvalidHandle.
        finally:
            wm_gate.close()
        runtime.check()
        completed = controller.done and not controller.stop_reason
        reason = controller.stop_reason or "completed"
        return RosReplayResult(
            completed, controller.cursor, ep.n_steps, reason, cfg.speed, rate, wall, controller.records
        )
    finally:
        if own:
            runtime.__exit__(None, None, None)
