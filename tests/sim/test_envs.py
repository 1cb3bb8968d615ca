"""Every registered task: reset, step (expert and hold), render, declared shapes/dtypes, no NaN."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest

import sim
from sim.scene import ARM_JOINTS, CAMERA_NAMES, PAD_GEOMS, TABLE_GEOM, build_scene, robot_geom_ids

TASKS = sim.task_names()
SMALL = {"image_size": 32, "render_size": 48}


def _check_obs(env, obs) -> None:
    space = env.observation_space
    assert set(obs) == set(space.spaces)
    for key, sub in space.spaces.items():
        if key == "instruction":
            assert isinstance(obs[key], str) and obs[key]
            continue
        assert obs[key].shape == sub.shape, key
        assert obs[key].dtype == sub.dtype, key
        assert np.all(np.isfinite(obs[key])), key
    assert space.contains(obs)
    assert obs["state"].shape == (7,) and obs["qvel"].shape == (6,)
    assert 0.0 <= obs["state"][6] <= 1.0


def test_at_least_three_tasks() -> None:
    assert len(TASKS) >= 3 and "pick_cube" in TASKS


@pytest.mark.parametrize("task", TASKS)
def test_task_reset_step_render(task: str) -> None:
    env = sim.make(task, **SMALL)
    try:
        obs, info = env.reset(seed=0)
        _check_obs(env, obs)
        assert set(obs) >= {"image_front", "image_wrist"}
        assert obs["image_front"].std() > 1.0  # a real picture, not a blank frame
        assert isinstance(info["is_success"], bool) and not info["is_success"]
        # Hold: commanding the current state keeps the robot (nearly) still.
        hold = obs["state"].copy()
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(hold)
            _check_obs(env, obs)
            assert isinstance(info["is_success"], bool) and isinstance(reward, float)
            assert not terminated and not truncated
        assert np.abs(obs["state"][:6] - hold[:6]).max() < 0.02
        expert = sim.make_expert(env)
        expert.reset()
        for _ in range(5):
            action = expert.act(obs)
            assert action.shape == (7,) and action.dtype == np.float32 and env.action_space.contains(action)
            obs, reward, _, _, info = env.step(action)
            _check_obs(env, obs)
        frame = env.render()
        assert frame.shape == (48, 48, 3) and frame.dtype == np.uint8
        assert 0.0 <= env.task.progress() <= 1.0
        assert env.unwrapped.model is env.model and env.unwrapped.data is env.data
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_gymnasium_make(task: str) -> None:
    gym_id = sim.registry._lookup(task)[0].gym_id
    env = gymnasium.make(gym_id, **SMALL)  # passive env checker runs on reset/step
    try:
        obs, _ = env.reset(seed=1)
        obs, *_ = env.step(obs["state"])
        assert env.unwrapped.task.name == task
    finally:
        env.close()


@pytest.mark.parametrize("task", TASKS)
def test_expert_succeeds_on_seeded_sample(task: str) -> None:
    env = sim.make(task, render_images=False)
    expert = sim.make_expert(env)
    results = []
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        assert set(obs) == {"state", "qvel", "instruction"}
        expert.reset()
        while True:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            if terminated or truncated:
                break
        results.append(info["is_success"])
    assert all(results), f"{task}: expert failed on seeds {[s for s, ok in enumerate(results) if not ok]}"


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_same_observations(task: str) -> None:
    def rollout() -> list[dict]:
        env = sim.make(task, **SMALL)
        expert = sim.make_expert(env)
        obs, _ = env.reset(seed=7)
        expert.reset()
        out = [obs]
        for _ in range(4):
            obs, *_ = env.step(expert.act(obs))
            out.append(obs)
        env.close()
        return out

    a, b = rollout(), rollout()
    for oa, ob in zip(a, b):
        assert oa["instruction"] == ob["instruction"]
        for k in ("state", "qvel", "image_front", "image_wrist"):
            np.testing.assert_array_equal(oa[k], ob[k])


def test_instructions_and_layouts_vary_with_seed() -> None:
    env = sim.make("pick_cube", render_images=False)
    seen, xs = set(), set()
    for seed in range(8):
        obs, _ = env.reset(seed=seed)
        seen.add(obs["instruction"])
        xs.add(round(float(env.task.cube_pos(env.task.target)[0]), 4))
    assert len(seen) >= 4 and len(xs) == 8


def test_randomization_switches() -> None:
    on = dict(randomize_table=True, randomize_lighting=True, randomize_camera=True, render_images=False)
    env = sim.make("pick_cube", **on)
    m = env.model
    cam0 = m.cam_pos[m.camera("front").id].copy()
    light0 = m.light_diffuse.copy()
    cams, lights = [], []
    for seed in range(4):
        env.reset(seed=seed)
        cams.append(m.cam_pos[m.camera("front").id].copy())
        lights.append(m.light_diffuse.copy())
    assert all(np.abs(c - cam0).max() > 0 for c in cams)
    assert all(np.abs(li - light0).max() > 0 for li in lights)
    off = sim.make("pick_cube", render_images=False)
    off.reset(seed=3)
    np.testing.assert_array_equal(off.model.cam_pos[off.model.camera("front").id], cam0)


def test_bad_overrides_raise_clearly() -> None:
    with pytest.raises(TypeError, match="imag_size"):
        sim.make("pick_cube", imag_size=64)
    with pytest.raises(ValueError, match="image_size"):
        sim.make("pick_cube", image_size=4)
    with pytest.raises(KeyError, match="registered tasks"):
        sim.make("no_such_task")
    env = sim.make("pick_cube", render_images=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="7 finite"):
        env.step(np.zeros(6))


def test_scene_builder_static_world_names() -> None:
    model = build_scene().compile()
    names = {model.geom(i).name for i in range(model.ngeom)}
    assert TABLE_GEOM in names and set(PAD_GEOMS) <= names
    assert not any(n.startswith("obj/") for n in names)
    assert {model.camera(i).name for i in range(model.ncam)} == set(CAMERA_NAMES)
    robot = robot_geom_ids(model)
    assert model.geom(TABLE_GEOM).id not in robot and len(robot) > 20
    assert all(model.joint(j).id >= 0 for j in ARM_JOINTS)
    # Policy-camera speed settings.
    assert model.vis.quality.shadowsize == 0 and model.vis.quality.offsamples == 0
