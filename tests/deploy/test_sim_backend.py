"""The simulated robot's episode clock: it resynchronizes after a reset, then the arm holds the reset
pose and the episode's steps count from the policy's first command (as vla-eval counts from its
first chunk); the task's diagnostics ride along in its status."""

from __future__ import annotations

import json

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


def test_status_carries_the_task_diagnostics_into_the_episode_record(backend) -> None:
    """The simulated robot hands each command to the task's diagnostics (numbered by control period,
    as vla-eval numbers its actions); the runner's record and summary hold them as vla-eval's do."""
    pytest.importorskip("rclpy")
    from vla.deploy.episodes import episode_record
    from vla.evaluation import summarize

    dt, task = 0.01, backend.env.task
    q0, _ = backend.read_joints()
    target = q0.copy()
    target[6] = 0.0
    target[0] += 0.02
    backend.command(target)
    for _ in range(10):  # two control periods of 0.05 s with the gripper open
        backend.step(dt)
    assert backend.status().diagnostics["grasp"] == {}
    pinch, cube = task.pinch_pos(), task.cube_pos(task.target)  # the state the close command meets
    target[6] = 1.0
    backend.command(target)
    for _ in range(3):
        backend.step(dt)  # the close runs from the third control period on
    status = json.loads(json.dumps(backend.status().as_dict()))  # as published on the episode topic
    g = status["diagnostics"]["grasp"]
    assert g["close_step"] == 3
    assert g["close_xy_to_target_m"] == pytest.approx(np.linalg.norm(pinch[:2] - cube[:2]), abs=1e-9)
    assert g["close_height_above_target_m"] == pytest.approx(pinch[2] - cube[2], abs=1e-9)
    assert isinstance(g["close_nearest_is_target"], bool)

    rec = episode_record(0, 3, status["instruction"], status, [], wall_time_s=1.0, timed_out=False)
    assert rec.extra["grasp"] == g and rec.extra["timed_out"] is False
    summary = summarize([rec], task="pick_cube")  # what launch._finish writes to results.json
    assert summary["episodes"][0]["grasp"] == g
    assert summary["grasp_summary"]["closed"] == 1 and summary["grasp_summary"]["never_closed"] == 0

    assert backend.request_reset(seed=4, request=1)
    backend.step(dt)
    assert backend.status().diagnostics["grasp"] == {}  # a new episode reports nothing yet


def test_deploy_and_eval_record_the_same_diagnostics() -> None:
    """The expert's actions of a vla-eval episode, replayed one per control period on the simulated
    robot with the same seed, give the same task diagnostics in both runners."""
    import sim
    from vla.evaluation.simulator import _Recorder

    env = sim.make("pick_cube", render_images=False)
    try:
        rec = _Recorder(env)
        expert = sim.make_expert(env)
        obs, _ = rec.reset(seed=5)
        expert.reset()
        actions, done = [], False
        while not done:
            actions.append(expert.act(obs))
            obs, _, term, trunc, _ = rec.step(actions[-1])
            done = term or trunc
        eval_diag = env.unwrapped.task.diagnostics()
    finally:
        env.close()
    assert eval_diag["grasp"].get("close_nearest_is_target") is True

    b = SimRobotBackend(SimBackendConfig(task="pick_cube", image_size=16, cameras=("front",), seed=5))
    try:
        period = 1.0 / b.env.cfg.control_rate_hz
        for a in actions:
            b.command(np.asarray(a, np.float64))
            b.step(period)
        assert b.status().diagnostics == eval_diag
    finally:
        b.close()
