"""Episode management over ROS 2: reset the simulated world, instruct the policy, judge the outcome.

`EpisodeRunner` is a plain node in the `vla-deploy` process (it never touches a simulator):

1. publish an empty instruction: the policy node holds ("empty instruction") and drops any plan;
2. ask the robot process for a reset with the episode's seed (re-sent until carried out);
3. once the new episode runs, publish its instruction (the one the simulator sampled);
4. wait until the simulated robot reports `done` (success judged from simulator state, or the
   task's `max_steps` reached) or a wall-clock timeout; record success, length, gate activity and
   chunk latency from the policy node's status topic.

`summarize` reports like `vla-eval`: success rate with a Wilson 95% interval, per-instruction
breakdown, mean episode length, latency p50/p99.
"""

from __future__ import annotations

import contextlib
import json
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile
from std_msgs.msg import String

from ros_bridge.run import wait_until
from vla.deploy.world_topics import DEFAULT_TOPICS, WorldTopics, json_msg, parse_json_msg

_QOS = QoSProfile(depth=50)


@dataclass
class EpisodeResult:
    """One episode as `vla-deploy` saw it (steps in control periods of simulated time)."""

    index: int
    seed: int
    instruction: str
    success: bool
    steps: int
    progress: float
    sim_time_s: float
    wall_time_s: float
    timed_out: bool
    chunks: int
    gate_truncated: int
    gate_holds: int
    hold_reasons: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["latency_ms"] = _percentiles(self.latency_ms)
        return d


class EpisodeRunner(Node):
    """Drives episodes of a simulated robot + policy node pair (see module docstring)."""

    def __init__(
        self,
        *,
        instruction_topic: str = "/vla/instruction",
        status_topic: str = "/vla/status",
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
        self, index: int, seed: int, timeout_s: float, setup_timeout_s: float = 30.0
    ) -> EpisodeResult:
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
        instruction = ep["instruction"]
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
        timed_out = False
        try:
            wait_until(
                lambda: (e := self.episode()) is not None and e["episode"] == ep["episode"] and e["done"],
                timeout_s,
                interval_s=0.02,
            )
        except TimeoutError:
            timed_out = True
        wall = time.monotonic() - t0
        final = self.episode() or ep
        with self._lock:
            statuses = list(self._statuses)
        gate = [s.get("gate") or {} for s in statuses if "gate" in s]
        return EpisodeResult(
            index=index,
            seed=seed,
            instruction=instruction,
            success=bool(final["success"]),
            steps=int(final["steps"]),
            progress=float(final["progress"]),
            sim_time_s=float(final["sim_time"]),
            wall_time_s=wall,
            timed_out=timed_out,
            chunks=len(gate),
            gate_truncated=sum(1 for g in gate if g.get("status") == "truncated"),
            gate_holds=sum(1 for g in gate if g.get("status") == "hold"),
            hold_reasons=sorted(
                {s["reason"] for s in statuses if s.get("reason") and s["reason"] != "empty instruction"}
            ),
            latency_ms=[float(s["latency_ms"]) for s in statuses if "latency_ms" in s],
        )


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a success rate (well-behaved at 0 and n)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    arr = np.asarray(values)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": len(values)}


def summarize(results: list[EpisodeResult]) -> dict[str, Any]:
    """Success rate (+ Wilson 95% CI), per-instruction breakdown, mean length, gate and latency figures."""
    n = len(results)
    wins = sum(r.success for r in results)
    per: dict[str, dict[str, Any]] = {}
    for r in results:
        entry = per.setdefault(r.instruction, {"n": 0, "successes": 0})
        entry["n"] += 1
        entry["successes"] += int(r.success)
    for entry in per.values():
        entry["success_rate"] = entry["successes"] / entry["n"]
    lo, hi = wilson_interval(wins, n)
    return {
        "n_episodes": n,
        "successes": wins,
        "success_rate": wins / n if n else 0.0,
        "success_rate_ci95": [lo, hi],
        "per_instruction": per,
        "mean_episode_steps": float(np.mean([r.steps for r in results])) if n else 0.0,
        "mean_episode_wall_s": float(np.mean([r.wall_time_s for r in results])) if n else 0.0,
        "gate": {
            "chunks": sum(r.chunks for r in results),
            "truncated": sum(r.gate_truncated for r in results),
            "holds": sum(r.gate_holds for r in results),
        },
        "chunk_latency_ms": _percentiles([x for r in results for x in r.latency_ms]),
        "episodes": [r.as_dict() for r in results],
    }


def format_summary(summary: dict[str, Any]) -> str:
    lo, hi = summary["success_rate_ci95"]
    lat = summary["chunk_latency_ms"]
    lat_s = "n/a" if lat["p50"] is None else f"{lat['p50']:.1f}/{lat['p99']:.1f} ms"
    lines = [
        f"success {summary['successes']}/{summary['n_episodes']} = {100 * summary['success_rate']:.0f}% "
        f"(95% CI {100 * lo:.0f}-{100 * hi:.0f}%), mean length {summary['mean_episode_steps']:.1f} steps, "
        f"{summary['mean_episode_wall_s']:.1f} s wall/episode, chunk latency p50/p99 {lat_s}, "
        f"gate: {summary['gate']['truncated']} truncated, {summary['gate']['holds']} held "
        f"of {summary['gate']['chunks']} chunks"
    ]
    for text, e in sorted(summary["per_instruction"].items()):
        lines.append(f"  {e['successes']}/{e['n']}  {text}")
    return "\n".join(lines)


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2, allow_nan=True)
