"""Episode management over ROS 2: reset the simulated world, instruct the policy, judge the outcome.

`EpisodeRunner` is a plain node in the `vla-deploy` process (it never touches a simulator):

1. publish an empty instruction: the policy node holds ("empty instruction") and drops any plan;
2. ask the robot process for a reset with the episode's seed (re-sent until carried out), then
   release the e-stop input (acknowledges an e-stop the gate requested in the last episode);
3. once the new episode runs, publish its instruction (the one the simulator sampled);
4. wait until the simulated robot reports `done` (success judged from simulator state, or the
   task's `max_steps` reached), the policy node requests an e-stop, or a wall-clock timeout; record
   success, length, missed periods, gate activity and chunk latency from the policy node's status
   topic.

Each episode becomes a `vla.evaluation.EpisodeRecord` (`episode_record`), with the task's
diagnostics from the simulated robot's status, summarized exactly like `vla-eval`'s.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import Bool, String

from ros_bridge.run import wait_until
from vla.deploy.world_topics import DEFAULT_TOPICS, WorldTopics, json_msg, parse_json_msg
from vla.evaluation import EpisodeRecord

_QOS = QoSProfile(depth=50)


class EpisodeRunner(Node):
    """Drives episodes of a simulated robot + policy node pair (see module docstring)."""

    def __init__(
        self,
        *,
        instruction_topic: str = "/vla/instruction",
        status_topic: str = "/vla/status",
        estop_topic: str = "/vla/estop",
        topics: WorldTopics = DEFAULT_TOPICS,
        **node_kwargs: Any,
    ) -> None:
        super().__init__("vla_deploy_episodes", **node_kwargs)
        self._lock = threading.Lock()
        self._episode: dict[str, Any] | None = None
        self._status: dict[str, Any] | None = None
        self._statuses: list[dict[str, Any]] = []
        self._request = 0
        self._reset_pub = self.create_publisher(String, topics.reset, _QOS)
        self._instruction_pub = self.create_publisher(String, instruction_topic, _QOS)
        self._estop_pub = self.create_publisher(Bool, estop_topic, _QOS)
        self.create_subscription(String, topics.episode, self._on_episode, _QOS)
        self.create_subscription(String, status_topic, self._on_status, _QOS)

    def _on_episode(self, msg: String) -> None:
        ep = parse_json_msg(msg, "episode status")
        with self._lock:
            self._episode = ep

    def _on_status(self, msg: String) -> None:
        st = parse_json_msg(msg, "policy status")
        with self._lock:
            self._status = st
            self._statuses.append(st)

    def episode(self) -> dict[str, Any] | None:
        with self._lock:
            return self._episode

    def policy_status(self) -> dict[str, Any] | None:
        with self._lock:
            return self._status

    def _instruct_until(self, text: str, predicate, timeout_s: float, what: str) -> None:
        """Publish `text` every 0.2 s until the policy status satisfies `predicate` (late discovery safe)."""
        deadline = time.monotonic() + timeout_s
        while True:
            self._instruction_pub.publish(String(data=text))
            try:
                wait_until(
                    lambda: predicate(self.policy_status()), min(0.2, max(0.01, deadline - time.monotonic()))
                )
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"timed out after {timeout_s:.1f} s waiting for {what}") from None

    def wait_ready(self, timeout_s: float) -> None:
        """Both processes are up: an episode status and a policy status have arrived."""
        wait_until(lambda: self.episode() is not None, timeout_s, what="the simulated robot's episode status")
        wait_until(lambda: self.policy_status() is not None, timeout_s, what="the policy node's status")

    def run_episode(
        self,
        index: int,
        seed: int,
        timeout_s: float,
        setup_timeout_s: float = 30.0,
        instruction: str | None = None,
    ) -> EpisodeRecord:
        """One episode; `instruction` replaces the one the simulator sampled (the task still judges
        its own goal), as `vla-eval instruction=...` does."""
        # 1. hold
        self._instruct_until(
            "",
            lambda st: st is not None and st.get("instruction") == "" and st.get("state") == "holding",
            setup_timeout_s,
            "the policy node to hold on an empty instruction",
        )
        # 2. reset (re-sent until the robot process reports the request carried out)
        prev = self.episode() or {"episode": -1}
        self._request += 1
        request = self._request
        deadline = time.monotonic() + setup_timeout_s

        def reset_done() -> bool:
            ep = self.episode()
            return (
                ep is not None
                and ep["request"] == request
                and ep["episode"] > prev["episode"]
                and not ep["paused"]
            )

        while not reset_done():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"episode {index}: the simulated robot did not reset within {setup_timeout_s} s"
                )
            self._reset_pub.publish(json_msg({"seed": seed, "request": request}))
            with contextlib.suppress(TimeoutError):
                wait_until(reset_done, 0.3)
        ep = self.episode()
        assert ep is not None
        instruction = instruction or ep["instruction"]
        # An e-stop the gate requested in the last episode is acknowledged now that the scene is
        # reset, as an operator would (the e-stop input released): before the reset the arm may
        # still be where no stop was certifiable, and the node's next hold would request it again.
        self._estop_pub.publish(Bool(data=False))
        with self._lock:
            self._statuses = []
        t0 = time.monotonic()
        # 3. go
        self._instruct_until(
            instruction,
            lambda st: st is not None and st.get("instruction") == instruction,
            setup_timeout_s,
            f"the policy node to take the instruction {instruction!r}",
        )
        # 4. judge (done = success or max_steps, from the simulator's state)
        # An e-stop the gate requested ends the episode too: the robot holds until an operator
        # releases it, which the next episode's setup does.
        timed_out = False

        def over() -> bool:
            e, st = self.episode(), self.policy_status()
            if st is not None and st.get("estop_requested") and st.get("instruction") == instruction:
                return True
            return e is not None and e["episode"] == ep["episode"] and e["done"]

        try:
            wait_until(over, timeout_s, interval_s=0.02)
        except TimeoutError:
            timed_out = True
        wall = time.monotonic() - t0
        final = self.episode() or ep
        with self._lock:
            statuses = list(self._statuses)
        return episode_record(index, seed, instruction, final, statuses, wall, timed_out)


def episode_record(
    index: int,
    seed: int,
    instruction: str,
    final: dict[str, Any],
    statuses: list[dict[str, Any]],
    wall_time_s: float,
    timed_out: bool,
) -> EpisodeRecord:
    """The `EpisodeRecord` of an episode from the simulated robot's last episode status (`final`,
    `vla.deploy.sim_backend.EpisodeStatus.as_dict()`) and the policy node's statuses during it.

    The task's diagnostics in the status (`diagnostics`) go into `extra` as vla-eval puts them.
    """
    # The controller's totals for this episode: its last status (it resets per instruction).
    ctrl = next((st["controller"] for st in reversed(statuses) if st.get("controller")), {})
    return EpisodeRecord(
        episode=index,
        seed=seed,
        instruction=instruction,
        success=bool(final["success"]),
        steps=int(final["steps"]),
        final_progress=float(final["progress"]),
        success_step=int(final["steps"]) if final["success"] else -1,
        wall_time_s=wall_time_s,
        chunks=int(ctrl.get("chunks", 0)),
        misses=int(ctrl.get("misses", 0)),
        gate_limited=int(ctrl.get("gate_limited", 0)),
        gate_truncated=int(ctrl.get("gate_truncated", 0)),
        gate_rejected=int(ctrl.get("gate_held", 0)),
        gate_hold_steps=int(ctrl.get("hold_steps", 0)),
        gate_unsafe_stops=int(ctrl.get("gate_unsafe_stops", 0)),
        latency_ms=[float(x) for x in ctrl.get("latencies_ms", [])],
        extra={
            **dict(final.get("diagnostics") or {}),  # the task's, as vla-eval records them
            "missed": {k: int(ctrl.get(k, 0)) for k in ("missed_dry", "missed_late", "skipped")},
            "miss_steps": [int(k) for k in ctrl.get("miss_steps", [])],
            "chunk_timing": list(ctrl.get("chunk_timing", [])),
            # as the node's status topic reported it (None: the encoder gives no grounding score)
            "instruction_grounding": ctrl.get("instruction_grounding"),
            "estop_requested": any(bool(st.get("estop_requested")) for st in statuses),
            "timed_out": timed_out,
            "sim_time_s": float(final["sim_time"]),
            "hold_reasons": sorted(
                {st["reason"] for st in statuses if st.get("reason") and "instruction" not in st["reason"]}
            ),
        },
    )
