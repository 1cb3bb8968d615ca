"""Real time: the loop sleeps to 20 Hz ticks while a worker thread computes chunks."""

from __future__ import annotations

import time

import numpy as np
from runtime_policies import PERIOD

from vla.runtime import ControlLoop, RuntimeConfig, WallClock, run_episode
from vla.runtime.stats import MISS


class SlowPolicy:
    """Sleeps `latency` s (a model that leaves the CPU to the control loop), then moves joint 0."""

    def __init__(self, latency: float) -> None:
        self.latency = latency

    def __call__(self, obs, prefix):
        time.sleep(self.latency)
        start = np.asarray(obs["state"][-1], np.float32)
        chunk = np.repeat(start[None], 16, axis=0)
        chunk[:, 0] += 0.005 * np.arange(1, 17)
        if prefix is not None:
            chunk[: len(prefix)] = prefix
        return chunk


def test_wall_clock_async_never_runs_dry(make_env) -> None:
    env = make_env()
    loop = ControlLoop(SlowPolicy(0.06), RuntimeConfig(mode="async", smoothing="rtc"), WallClock(PERIOD))
    with loop:
        res = run_episode(env, loop, max_steps=30, seed=0, stop_on_success=False)
    s = res.summary()
    assert res.steps == 30
    assert not [r for r in res.stats.steps if r.status == MISS], s["holds"]
    assert s["latency_p50_s"] >= 0.06
    assert res.wall_time_s >= 29 * PERIOD  # it really ran at 20 Hz


def test_wall_clock_sync_pauses_are_counted(make_env) -> None:
    env = make_env()
    loop = ControlLoop(SlowPolicy(0.06), RuntimeConfig(mode="sync"), WallClock(PERIOD))
    with loop:
        res = run_episode(env, loop, max_steps=20, seed=0, stop_on_success=False)
    s = res.summary()
    # Every chunk after the first blocks for more than a period: at least one held period each.
    assert s["deadline_misses"] >= s["chunks_requested"] - 1 >= 2
