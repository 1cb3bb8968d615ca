"""The control loop in simulation: no dry queue in async mode, sync == async when inference is
instant, the real-time-chunking prefix constraint, holds on a dry queue, and bad policy output."""

from __future__ import annotations

import numpy as np
import pytest
from runtime_policies import PERIOD, HeadChunkPolicy, expert_policy

import sim
from vla.runtime import ControlLoop, RuntimeConfig, SimulatedClock, delay_steps, run_episode
from vla.runtime.stats import MISS, OK


def _run(env, policy, latency, seed=0, max_steps=120, **cfg):
    cfg.setdefault("threaded", False)
    with ControlLoop(policy, RuntimeConfig(**cfg), clock=SimulatedClock(PERIOD, latency_s=latency)) as loop:
        return run_episode(env, loop, max_steps=max_steps, seed=seed)


@pytest.mark.parametrize("smoothing", ["none", "rtc"])
def test_async_queue_never_runs_dry_with_expert(make_env, smoothing) -> None:
    """20 Hz, 150 ms inference (3 periods) < chunk duration (8 steps = 400 ms): async never misses,
    and still solves the task; sync with the same latency pauses at every chunk."""
    env = make_env()
    res = _run(env, expert_policy(env), 0.15, mode="async", smoothing=smoothing)
    s = res.summary()
    assert res.success
    assert s["deadline_misses"] == 0, s["holds"]
    assert all(r.status == OK for r in res.stats.steps)
    assert s["chunks_requested"] >= res.steps // 8
    assert s["latency_p50_s"] == pytest.approx(0.15)

    sync = _run(env, expert_policy(env), 0.15, mode="sync")
    # Each chunk after the first costs delay_steps(0.15) = 2 held periods.
    assert sync.stats.deadline_misses == 2 * (sync.summary()["chunks_requested"] - 1)
    assert sync.success and sync.steps > res.steps


def test_async_queue_never_runs_dry_with_diffusion_head_worker(make_env) -> None:
    """A real diffusion head computed on the background worker thread while the simulation runs."""
    env = make_env()
    policy = HeadChunkPolicy()
    res = _run(env, policy, 0.2, mode="async", smoothing="rtc", threaded=True, max_steps=60)
    assert res.steps == 60
    assert res.stats.deadline_misses == 0
    assert policy.resets == 1  # the loop resets the policy (its cached embedding) per episode
    assert len(policy.calls) == res.summary()["chunks_requested"] >= 60 // 8


def test_early_trigger_from_latency_estimate(make_env) -> None:
    """n_action_steps near the horizon: the measured delay makes the loop request early enough."""
    env = make_env()
    res = _run(env, expert_policy(env), 0.25, mode="async", n_action_steps=16, max_steps=60)
    assert res.stats.deadline_misses == 0
    # Requests come every H - delay = 16 - 4 steps, not every 16.
    d = delay_steps(0.25, PERIOD, 1.0)
    assert d == 4
    steps = [c.request_step for c in res.stats.chunks]
    assert set(np.diff(steps)) == {16 - d}


@pytest.mark.parametrize("smoothing", ["none", "rtc", "ensemble"])
def test_async_equals_sync_when_inference_is_instant_expert(make_env, smoothing) -> None:
    env = make_env()
    sync = _run(
        env, expert_policy(env), 0.0, mode="sync", smoothing="none" if smoothing == "rtc" else smoothing
    )
    asyn = _run(env, expert_policy(env), 0.0, mode="async", smoothing=smoothing)
    assert sync.success and asyn.success
    assert sync.steps == asyn.steps
    np.testing.assert_array_equal(sync.actions, asyn.actions)


def test_async_worker_equals_sync_when_inference_is_instant_diffusion(make_env) -> None:
    env = make_env()
    sync = _run(env, HeadChunkPolicy(), 0.0, mode="sync", max_steps=40)
    asyn = _run(env, HeadChunkPolicy(), 0.0, mode="async", threaded=True, max_steps=40)
    assert sync.stats.deadline_misses == asyn.stats.deadline_misses == 0
    np.testing.assert_array_equal(sync.actions, asyn.actions)


def test_rtc_prefix_constraint_diffusion(make_env) -> None:
    """Committed actions are executed unchanged and the new chunk (inpainted by the diffusion head)
    starts with them; the loop switches to the new chunk right after the committed prefix."""
    env = make_env()
    policy = HeadChunkPolicy()
    res = _run(env, policy, 0.12, mode="async", smoothing="rtc", threaded=True, max_steps=50)
    steps = res.stats.steps
    chunks = {c.chunk_id: c for c in res.stats.chunks}
    with_prefix = [(cid, call) for cid, call in enumerate(policy.calls) if call[1] is not None]
    assert len(with_prefix) >= 4
    for cid, (step, prefix, chunk) in with_prefix:
        assert len(prefix) == 2  # delay_steps(0.12 s) at 20 Hz
        # The head kept the prefix (up to the float error of the policy's affine map).
        np.testing.assert_allclose(chunk[: len(prefix)], prefix, atol=1e-5)
        # The robot executed exactly the committed actions, from the previous chunk.
        for j in range(len(prefix)):
            if step + j < len(steps):
                assert steps[step + j].chunk_id == cid - 1
                np.testing.assert_array_equal(steps[step + j].action, prefix[j])
        # Then the new chunk takes over, at the index that matches its time.
        switch = step + len(prefix)
        if switch < len(steps):
            assert steps[switch].chunk_id == cid and steps[switch].index == len(prefix)
            np.testing.assert_array_equal(steps[switch].action, chunk[len(prefix)])
        assert chunks[cid].prefix_error < 1e-5
    assert res.stats.deadline_misses == 0


def test_rtc_smooths_chunk_boundaries_expert() -> None:
    """With a 150 ms delay, switching naively jumps between chunks; RTC continues the committed
    motion, so boundary jerk drops to the level inside chunks. place_cube: its expert waits on the
    measured arm before lowering and releasing, so a chunk planned from a stale state differs from the
    running one (the pick expert passes through its approach point, and its chunks barely jump)."""
    env = sim.make("place_cube", render_images=False)
    try:
        naive = _run(env, expert_policy(env), 0.15, mode="async", smoothing="none", max_steps=160)
        rtc = _run(env, expert_policy(env), 0.15, mode="async", smoothing="rtc", max_steps=160)
    finally:
        env.close()
    assert naive.success and rtc.success
    naive_s, rtc_s = naive.summary(), rtc.summary()
    assert naive_s["boundary_jerk_mean"] > 1.3 * naive_s["interior_jerk_mean"]
    assert rtc_s["boundary_jerk_mean"] < 0.5 * naive_s["boundary_jerk_mean"]
    assert rtc_s["rtc_prefix_max_error"] == 0.0


def test_dry_queue_holds_and_counts_misses(make_env) -> None:
    """Latency (0.5 s) longer than what the queue holds (4 actions = 0.2 s): the robot holds the
    last command at every dry period, and every such period is a deadline miss."""
    env = make_env()
    res = _run(env, expert_policy(env, horizon=4), 0.5, mode="async", n_action_steps=4, max_steps=40)
    misses = [r for r in res.stats.steps if r.status == MISS]
    assert res.stats.deadline_misses == len(misses) > 0
    assert res.summary()["holds"]["waiting for chunk (inference not finished)"] == len(misses)
    for r in misses:
        np.testing.assert_array_equal(r.action, res.stats.steps[r.step - 1].action)  # hold position
        assert r.chunk_id == -1
    # Chunks whose actions all expired during the delay are reported as stale, never used.
    assert all(c.outcome in ("installed", "stale", "dropped") for c in res.stats.chunks)


def test_hold_state_keeps_gripper_command(make_env) -> None:
    env = make_env()
    res = _run(
        env, expert_policy(env, horizon=4), 0.5, mode="async", n_action_steps=4, hold="state", max_steps=30
    )
    miss = next(r for r in res.stats.steps if r.status == MISS)
    prev = res.stats.steps[miss.step - 1].action
    assert miss.action[6] == prev[6]
    assert not np.array_equal(miss.action[:6], prev[:6])  # measured joints, not the last target


def test_bad_policy_output_raises_clearly(make_env) -> None:
    env = make_env()

    def nan_policy(obs, prefix):
        return np.full((8, 7), np.nan, np.float32)

    def flat_policy(obs, prefix):
        return np.zeros(7, np.float32)

    for policy, match in ((nan_policy, "non-finite"), (flat_policy, r"\(H, Da\)")):
        with pytest.raises(ValueError, match=match):
            _run(env, policy, 0.0, mode="sync", max_steps=3)


def test_worker_errors_propagate(make_env) -> None:
    env = make_env()
    calls = []

    def failing(obs, prefix):
        calls.append(obs["step"])
        if len(calls) > 1:
            raise RuntimeError("model exploded")
        return np.repeat(np.asarray(obs["state"][-1:], np.float32), 8, axis=0)

    with pytest.raises(RuntimeError, match="model exploded"):
        _run(env, failing, 0.1, mode="async", threaded=True, max_steps=30)
