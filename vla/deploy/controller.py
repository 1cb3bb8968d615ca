"""`vla.runtime.ControlLoop` as the ROS policy node's `Controller`: deployment runs the loop vla-eval runs.

The node calls `step(obs)` once per control period with its freshest observation; this feeds the
loop's observation buffer (so the policy's history is one control period apart, as in training),
lets the loop schedule inference (a worker thread in async mode; inline in sync mode), blend
chunks (real-time chunking / temporal ensembling), gate every chunk with the world model and
answer with the period's action plus the certified plan after it. Periods the node's timer skipped
(a blocking synchronous inference, a busy CPU) count as missed periods.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ros_bridge.interfaces import Command, Observation
from vla.runtime import ChunkPolicy, ControlLoop, RuntimeConfig, WallClock
from vla.runtime.protocol import ChunkGate
from vla.runtime.stats import HOLD, LATE, MISS

log = logging.getLogger("vla.deploy")


def observation_to_raw(obs: Observation) -> dict[str, Any]:
    """A node `Observation` -> the env's observation dict (`image_<cam>`, state (7,), qvel (6,), instruction)."""
    raw: dict[str, Any] = {f"image_{cam}": img for cam, img in obs.images.items()}
    raw["state"] = np.asarray(obs.joint_positions, np.float32)
    raw["qvel"] = np.asarray(obs.joint_velocities[:6], np.float32)
    raw["instruction"] = obs.instruction
    return raw


class LoopController:
    """A `ros_bridge.interfaces.Controller` over one `ControlLoop` on the wall clock.

    Args:
        policy: the chunk policy (a checkpoint's `VLAPolicy`, the scripted expert, a replay).
        runtime: scheduling and blending (`RuntimeConfig`; `threaded=True` for async).
        period_s: the control period (the node's timer).
        gate: the world-model gate for the loop (`vla.deploy.gate.SafetyChunkGate`), None for none.
        grounding: optional `(frame (H, W, 3), instruction) -> vla.encoders.grounding.Grounding` with a
            `camera` attribute (`InstructionGrounding`): scored once per episode, on its first
            observation (before the episode clock starts, beside the first chunk); the result is in
            `summary()["instruction_grounding"]`, so the node's status topic reports an instruction
            the encoder cannot ground.
    """

    def __init__(
        self,
        policy: ChunkPolicy,
        runtime: RuntimeConfig,
        period_s: float,
        gate: ChunkGate | None = None,
        grounding: Callable[[np.ndarray, str], Any] | None = None,
    ) -> None:
        self.clock = WallClock(period_s)
        self.loop = ControlLoop(policy, runtime, clock=self.clock, gate=gate)
        self.grounding = grounding
        self._grounded: dict[str, Any] | None = None
        self._skipped = 0
        self._episodes = 0

    def reset(self) -> None:
        self.loop.reset()
        self.clock.t0 = None  # restarted by the loop at the episode's first step
        self._skipped = 0
        self._episodes += 1
        self._grounded = None

    def step(self, obs: Observation) -> Command:
        if self.loop.step_index == 0 and self.grounding is not None:
            self._ground(obs)  # the episode clock starts at the first step's end: no period is lost
        skipped = self.clock.align(self.loop.step_index)
        self._skipped += skipped
        t0 = time.perf_counter()
        r = self.loop.step(observation_to_raw(obs))
        info: dict[str, Any] = {"step": self.loop.step_index - 1, "skipped": skipped}
        chunks = self.loop.stats.chunks
        if chunks:
            last = chunks[-1]
            info["chunk"] = {
                "id": last.chunk_id,
                "outcome": last.outcome,
                "accepted": last.accepted,
                "request_step": last.request_step,
                "installed_step": last.installed_step,
                "prefix": last.prefix_len,
                "regates": last.regates,
                "latency_ms": 1e3 * last.latency_s if np.isfinite(last.latency_s) else None,
            }
        info["loop_ms"] = 1e3 * (time.perf_counter() - t0)
        info["loop_parts_ms"] = self.loop.last_step_ms
        plan = r.plan if r.plan is not None else r.action[None]
        return Command(r.action.copy(), plan.copy(), r.status, r.reason, r.estop, info)

    def _ground(self, obs: Observation) -> None:
        cam = getattr(self.grounding, "camera", "front")
        frame = obs.images.get(cam)
        if frame is None:
            self._grounded = {"instruction": obs.instruction, "camera": cam, "grounded": None,
                              "reason": f"no {cam!r} image to ground the instruction in"}  # fmt: skip
            return
        g = self.grounding(frame, obs.instruction)  # type: ignore[misc]
        self._grounded = g.as_dict()
        if not g.grounded:
            log.warning(
                "instruction %r is not grounded in the %s camera's view (score %.3f < %.3f): it may name "
                "something that is not there",
                obs.instruction, cam, g.score, g.threshold,
            )  # fmt: skip

    def stop(self, obs: Observation | None, reason: str) -> Command | None:
        r = self.loop.stop(None if obs is None else observation_to_raw(obs), reason)
        if r is None:
            return None
        plan = r.plan if r.plan is not None else r.action[None]
        return Command(r.action.copy(), plan.copy(), HOLD, r.reason, r.estop, {})

    def summary(self) -> dict[str, Any]:
        """This episode so far: periods, misses (no fresh action, incl. skipped), holds, latency, gate."""
        stats = self.loop.stats
        s = stats.summary()
        ms = lambda v: None if not np.isfinite(v) else 1e3 * v  # noqa: E731
        return {
            "episode": self._episodes,
            # None without a grounding scorer (an encoder family other than `lit`)
            "instruction_grounding": self._grounded,
            "steps": s["steps"] + self._skipped,
            "misses": sum(r.status in (MISS, LATE) for r in stats.steps) + self._skipped,
            "missed_dry": sum(r.status == MISS for r in stats.steps),  # no action queued
            "missed_late": sum(r.status == LATE for r in stats.steps),  # ready after the deadline
            "skipped": self._skipped,  # periods the node's timer did not run at all
            "hold_steps": s["gate_holds"],
            "chunks": s["chunks_requested"],
            "gate_limited": s["gate_limited"],
            "gate_truncated": s["gate_truncations"],
            "gate_held": s["gate_rejections"],
            "gate_unsafe_stops": s["gate_unsafe_stops"],
            "latency_p50_ms": ms(s["latency_p50_s"]),
            "latency_p99_ms": ms(s["latency_p99_s"]),
            "latencies_ms": [1e3 * c.latency_s for c in stats.chunks if np.isfinite(c.latency_s)],
            # Where the misses fell and what each chunk cost: what a person reads to find the cause
            # (a slow first chunk, a compute spike, the gate's time, a re-gate).
            "miss_steps": [r.step for r in stats.steps if r.status in (MISS, LATE)],
            "chunk_timing": [
                {
                    "request_step": c.request_step,
                    "installed_step": c.installed_step,
                    "prefix": c.prefix_len,
                    "compute_ms": ms(c.compute_s),
                    "gate_ms": ms(c.gate_s),
                    "latency_ms": ms(c.latency_s),
                    "regates": c.regates,
                    "outcome": c.outcome,
                    "accepted": c.accepted,
                    "gate_reason": c.gate_reason,
                }
                for c in stats.chunks
            ],
        }

    def close(self) -> None:
        self.loop.close()
