"""The simulated robot's episode clock: it resynchronizes after a reset, then the arm holds the reset
pose and the episode's steps count from the policy's first command (as vla-eval counts from its
first chunk)."""

from __future__ import annotations

import numpy as np
import pytest

from vla.deploy.sim_backend import SimBackendConfig, SimRobotBackend


@pytest.fixture()
def backend():
    b = SimRobotBackend(SimBackendConfig(task="pick_cube", image_size=16, cameras=("front",), seed=3))
    yield b
    b.close()


def test_steps_count_from_the_first_command_away_from_the_reset_pose(backend) -> None:
    dt = 0.01
    q0, _ = backend.read_joints()
    for _ in range(20):  # no command yet: the arm holds the reset pose, no episode step counts
        backend.step(dt)
    s = backend.status()
    assert (s.started, s.steps) == (False, 0) and s.sim_time == pytest.approx(20 * dt)
    assert np.max(np.abs(backend.read_joints()[0][:6] - q0[:6])) < 1e-2

    target = q0.copy()
    target[6] = 0.0
    target[0] += 0.05
    backend.command(target)
    for _ in range(30):
        backend.step(dt)
    s = backend.status()
    assert s.started and s.steps == round(30 * dt / 0.05)
    assert backend.read_joints()[0][0] > q0[0] + 0.01  # the command acted


def test_after_a_reset_stale_commands_do_not_start_the_episode(backend) -> None:
    dt = 0.01
    q, _ = backend.read_joints()
    stale = q.copy()
    stale[1] -= 0.2
    backend.command(stale)
    backend.step(dt)
    assert backend.status().started
    assert backend.request_reset(seed=4, request=1)
    backend.step(dt)  # carries out the reset: paused until the command is the reset pose
    s = backend.status()
    assert (s.episode, s.paused, s.started) == (1, True, False)
    backend.command(stale)  # the previous episode's target, arriving late
    for _ in range(5):
        backend.step(dt)
    assert backend.status().paused and backend.status().sim_time == 0.0  # no physics while paused
    q_reset, _ = backend.read_joints()
    q_reset[6] = 0.0
    backend.command(q_reset)  # the reset pose (what the companion node publishes)
    backend.step(dt)
    for _ in range(5):
        backend.command(q_reset)  # holding it does not start the clock either
        backend.step(dt)
    s = backend.status()
    assert (s.paused, s.started, s.steps) == (False, False, 0)
