"""Run one simulator episode through a `ControlLoop` (used by vla-eval and vla-bench).

The environment is duck-typed (gymnasium API): `reset(seed=) -> (obs, info)`,
`step(action) -> (obs, reward, terminated, truncated, info)`, `info["is_success"]`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla.runtime.control_loop import ControlLoop
from vla.runtime.stats import RuntimeStats


@dataclass
class EpisodeResult:
    """Outcome of one episode. `actions` (steps, Da) are the commands actually sent."""

    success: bool
    steps: int
    wall_time_s: float
    sim_time_s: float  # steps * control period: the episode's duration on the robot's clock
    stats: RuntimeStats
    actions: np.ndarray
    success_step: int = -1  # first step (1-based count) at which the task reported success

    def summary(self) -> dict[str, Any]:
        return {
            "success": self.success,
            "steps": self.steps,
            "success_step": self.success_step,
            "wall_time_s": self.wall_time_s,
            "sim_time_s": self.sim_time_s,
            **self.stats.summary(),
        }


def run_episode(
    env: Any,
    loop: ControlLoop,
    max_steps: int,
    seed: int | None = None,
    stop_on_success: bool = True,
) -> EpisodeResult:
    """Reset `env` and `loop`, then run until success (if `stop_on_success`), the env ends the
    episode, or `max_steps` control periods. With a `WallClock` each period waits for its tick."""
    if max_steps < 1:
        raise ValueError(f"run_episode: max_steps must be >= 1, got {max_steps}")
    obs, info = env.reset(seed=seed)
    loop.reset()
    success = bool(info.get("is_success", False))
    success_step = 0 if success else -1
    steps = 0
    t0 = time.perf_counter()
    try:
        for k in range(max_steps):
            loop.clock.sleep_until_tick(k)
            out = loop.step(obs)
            obs, _reward, terminated, truncated, info = env.step(out.action)
            steps = k + 1
            if info.get("is_success", False) and success_step < 0:
                success, success_step = True, steps
            if terminated or truncated or (success and stop_on_success):
                break
    finally:
        loop.finish()
    wall = time.perf_counter() - t0
    return EpisodeResult(
        success=success,
        steps=steps,
        wall_time_s=wall,
        sim_time_s=steps * loop.clock.period_s,
        stats=loop.stats,
        actions=loop.stats.actions(),
        success_step=success_step,
    )
