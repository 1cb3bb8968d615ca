"""Replay an episode on a robot: its actions through the ROS policy node, every chunk gated.

The episode stands in for the policy: :class:`EpisodeChunker` is the node's ``ChunkSource`` (the next
``n_action_steps`` recorded actions) and wraps its ``ChunkGate`` (the world-model gate). The node
(``ros_bridge.PolicyNode``) runs at ``fps * speed``, so each chunk goes out as a ``JointTrajectory``
whose points are ``1 / (fps * speed)`` s apart: the recorded timing, scaled. The gate simulates the
chunk at that same rate. When the gate cuts a chunk, its safe prefix is executed and the replay
stops; when it lets nothing through the node holds the current position and the replay stops. The
reason is reported. Nothing moves before :func:`vla.replay.confirm.confirm_motion` says yes.

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
from ros_bridge.interfaces import GateDecision as RosGateDecision
from ros_bridge.interfaces import Observation
from sim.safety import SafetyConfig, SafetyGate
from vla.deploy.gate import SafetyChunkGate
from vla.replay.confirm import check_confirmable, confirm_motion
from vla.replay.episode import RecordedEpisode
from vla.replay.timing import safety_config_at_rate

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


class EpisodeChunker:
    """The recorded actions as the policy node's chunk source, behind the world-model gate.

    ``source(obs)`` returns the next ``n_action_steps`` actions from the cursor; ``gate`` judges them
    and moves the cursor over what will execute. After a cut, a hold, or the last action, the gate lets
    nothing more through (the node holds) and ``finished`` is set. Called from the node's timer thread.
    """

    def __init__(self, actions: np.ndarray, n_action_steps: int, gate: SafetyChunkGate) -> None:
        self.actions = np.asarray(actions, np.float64)
        self.ta = n_action_steps
        self._gate = gate
        self._lock = threading.Lock()
        self.cursor = 0
        self.records: list[ChunkRecord] = []
        self.stop_reason = ""
        self.finished = threading.Event()

    @property
    def done(self) -> bool:
        return self.cursor >= len(self.actions)

    def abort(self, reason: str) -> None:
        """Let nothing more through (the node holds at its next query)."""
        with self._lock:
            self.stop_reason = self.stop_reason or reason

    def release_gate(self) -> None:
        """Close the gate (its rollout threads) once the replay is over; later queries hold without it."""
        with self._lock:
            self.stop_reason = self.stop_reason or ("" if self.done else "replay ended")
            self._gate.close()

    def source(self, obs: Observation) -> np.ndarray:
        with self._lock:
            if self.done or self.stop_reason:
                return self.actions[-1:]  # never executed: the gate answers "hold" below
            return self.actions[self.cursor : self.cursor + self.ta]

    def gate(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> RosGateDecision:
        with self._lock:
            if self.done or self.stop_reason:
                # The node asks again only once the previous chunk has been executed: the replay is over.
                self.finished.set()
                why = self.stop_reason or "replay finished"
                return RosGateDecision(np.zeros((0, 7)), reason=why, verdict={"replay": why})
            d = self._gate(q, qd, chunk)
            status = str(d.verdict.get("status", "pass"))
            executed = min(len(d.safe_prefix), self.ta)
            self.records.append(ChunkRecord(self.cursor, len(chunk), executed, status, d.reason, d.verdict))
            self.cursor += executed
            if status != "pass":
                self.stop_reason = f"gate {status} at recorded step {self.cursor}: {d.reason}"
                if executed == 0:
                    self.finished.set()  # the node holds now
            return d


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
        wm_gate = SafetyChunkGate(SafetyGate(safety_config_at_rate(exact, rate)))
        # Warm the gate up (first-call allocations) so the first chunk leaves on time; uncounted.
        wm_gate.gate.check(q_now, np.zeros(6), ep.action[: cfg.n_action_steps])
        chunker = EpisodeChunker(ep.action, cfg.n_action_steps, wm_gate)
        node_cfg = PolicyNodeConfig(
            joint_names=tuple(cfg.joint_names),
            camera_names=(),  # replay needs no images
            joint_state_topic=cfg.joint_state_topic,
            trajectory_topic=cfg.trajectory_topic,
            status_topic=cfg.status_topic,
            estop_topic=cfg.estop_topic,
            control_rate_hz=rate,
            n_action_steps=cfg.n_action_steps,
            instruction=ep.instruction or f"replay episode {ep.index}",
        )
        collab = Collaborators(chunker.source, chunker.gate)  # the gate is closed below, not by the node
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
            timed_out = not chunker.finished.wait(timeout)
            if timed_out:
                # Stuck (stale inputs, e-stop): let nothing more through; the node holds at its next query.
                chunker.abort(f"timeout after {timeout:.1f} s")
                chunker.finished.wait(cfg.n_action_steps / rate + 1.0)
            wall = time.monotonic() - t0
            # The node is left active and holding (every further query answers "hold") until the runtime
            # shuts down: deactivating it from this thread destroys its timer and subscriptions while the
            # executor thread may be waiting on them, which rclpy 9.1.2 reports as InvalidHandle.
        finally:
            chunker.release_gate()
        runtime.check()
        completed = chunker.done and not chunker.stop_reason
        reason = chunker.stop_reason or "completed"
        return RosReplayResult(
            completed, chunker.cursor, ep.n_steps, reason, cfg.speed, rate, wall, chunker.records
        )
    finally:
        if own:
            runtime.__exit__(None, None, None)
