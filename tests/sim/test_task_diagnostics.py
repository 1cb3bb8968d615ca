"""Task diagnostics: the hook an executor calls with each gripper command, read at the episode's end.

The cube tasks report where the gripper was first commanded closed (`grasp`) and count it over
episodes (`grasp_summary`); vla-eval and vla-deploy both store exactly these.
"""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest

import sim
from sim.tasks.base import CubeTask, Task


def _put_under_pinch(env, name: str, offset_xy=(0.0, 0.0)) -> np.ndarray:
    """Place cube `name` on the table right below the pinch point (+ offset); returns its position."""
    task = env.unwrapped.task
    xy = task.pinch_pos()[:2] + np.asarray(offset_xy)
    task.place_cube(name, xy, 0.0)
    mujoco.mj_forward(env.unwrapped.model, env.unwrapped.data)
    return task.cube_pos(name)


@pytest.fixture()
def env():
    e = sim.make("pick_cube", render_images=False)
    yield e
    e.close()


def test_pick_cube_reports_the_first_close_over_the_target(env) -> None:
    env.reset(seed=0)
    task = env.unwrapped.task
    assert isinstance(task, CubeTask) and task.diagnostics()["grasp"] == {}
    hold = np.append(env.unwrapped.robot_state()[:6], 0.0)
    for step in (1, 2, 3):  # open commands: nothing to report
        task.on_gripper_command(step, False)
        env.step(hold)
    assert task.diagnostics()["grasp"] == {}

    # The named cube right below the pinch point, the distractors 6 and 12 cm to the side.
    cube = _put_under_pinch(env, task.target)
    _put_under_pinch(env, task.cube_names[1], (0.0, 0.06))
    _put_under_pinch(env, task.cube_names[2], (0.0, -0.12))
    pinch = task.pinch_pos()
    task.on_gripper_command(4, True)
    g = task.diagnostics()["grasp"]
    assert g["close_step"] == 4
    assert g["close_xy_to_target_m"] == pytest.approx(np.linalg.norm(pinch[:2] - cube[:2]), abs=1e-9)
    assert g["close_xy_to_target_m"] < 1e-6
    assert g["close_height_above_target_m"] == pytest.approx(pinch[2] - cube[2], abs=1e-9)
    assert g["close_height_above_target_m"] > 0.05  # the arm is still high above it
    assert g["close_nearest_is_target"] is True
    assert json.loads(json.dumps(task.diagnostics()))["grasp"] == g  # JSON-ready as it is

    env.step(np.append(hold[:6], 1.0))
    task.on_gripper_command(9, True)  # only the first close counts
    assert task.diagnostics()["grasp"] == g

    env.reset(seed=1)  # a new episode starts with nothing reported
    assert task.diagnostics()["grasp"] == {}


def test_pick_cube_reports_a_close_over_the_wrong_cube(env) -> None:
    env.reset(seed=2)
    task = env.unwrapped.task
    _put_under_pinch(env, task.cube_names[1])  # a distractor below the fingers
    _put_under_pinch(env, task.target, (0.09, 0.0))
    _put_under_pinch(env, task.cube_names[2], (-0.1, 0.1))
    task.on_gripper_command(17, True)
    g = task.diagnostics()["grasp"]
    assert g["close_step"] == 17 and g["close_nearest_is_target"] is False
    assert g["close_xy_to_target_m"] == pytest.approx(0.09, abs=1e-6)


def test_grasp_summary_counts_over_episodes() -> None:
    eps = [
        {"grasp": {}},
        {"grasp": {"close_step": 5, "close_xy_to_target_m": 0.01, "close_nearest_is_target": True}},
        {"grasp": {"close_step": 7, "close_xy_to_target_m": 0.09, "close_nearest_is_target": False}},
        {"grasp": {"close_step": 9}},  # closed, but the task had no target to measure against
    ]
    s = sim.task_class("pick_cube").summarize_diagnostics(eps)
    assert set(s) == {"grasp_summary", "failure_summary"}
    g = s["grasp_summary"]
    assert (g["never_closed"], g["closed"], g["closed_nearest_target"]) == (1, 3, 1)
    assert np.isclose(g["median_close_xy_to_target_m"], 0.05)
    assert np.isnan(
        CubeTask.summarize_diagnostics([{"grasp": {}}])["grasp_summary"]["median_close_xy_to_target_m"]
    )


def test_every_registered_task_summarizes_with_its_own_class() -> None:
    for name in sim.task_names():
        cls = sim.task_class(name)
        assert issubclass(cls, Task) and cls.name == name
        assert "grasp_summary" in cls.summarize_diagnostics([])
    assert Task.summarize_diagnostics([{"grasp": {"close_step": 1}}]) == {}  # the base task: none


def test_place_cube_reports_where_the_cube_ended_against_the_named_pad() -> None:
    """`goal`: the target's xy distance from the pad the instruction names (found here by its colour
    word and read from MuJoCo's body frame) and whether it is held; failure_summary over episodes."""
    env = sim.make("place_cube", render_images=False)
    try:
        env.reset(seed=3)
        task = env.unwrapped.task
        words = env.unwrapped.task.instruction.split()
        pad = next(n for n, c in task.colours.items() if n.startswith("pad") and c in words)
        m, d = env.unwrapped.model, env.unwrapped.data
        pad_xy = d.xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"pad/{pad}")][:2].copy()
        task.place_cube(task.target, pad_xy + np.array([0.05, 0.0]), 0.0)
        mujoco.mj_forward(m, d)
        goal = task.diagnostics()["goal"]
        assert goal["target_xy_to_goal_m"] == pytest.approx(0.05, abs=1e-6)
        assert goal["target_held"] is False and goal["nearer_a_decoy_goal"] is False
        assert "target_moved_since_close_m" not in goal  # never closed
        task.on_gripper_command(7, True)  # the grasp begins here ...
        other = next(n for n in task.colours if n.startswith("pad") and n != pad)
        other_xy = d.xpos[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, f"pad/{other}")][:2].copy()
        task.place_cube(task.target, other_xy, 0.0)  # ... and the cube ends on the other pad
        mujoco.mj_forward(m, d)
        goal = task.diagnostics()["goal"]
        assert goal["nearer_a_decoy_goal"] is True
        moved = np.linalg.norm(other_xy - (pad_xy + np.array([0.05, 0.0])))
        assert goal["target_moved_since_close_m"] == pytest.approx(moved, abs=1e-6)
    finally:
        env.close()
    eps = [
        {"success": True, "goal": {"target_xy_to_goal_m": 0.0, "target_held": False}},
        {
            "success": False,
            "goal": {"target_xy_to_goal_m": 0.04, "target_held": False, "target_moved_since_close_m": 0.15},
        },
        {
            "success": False,
            "goal": {"target_xy_to_goal_m": 0.20, "target_held": False, "target_moved_since_close_m": 0.01},
        },
        {
            "success": False,
            "goal": {"target_xy_to_goal_m": 0.10, "target_held": True, "nearer_a_decoy_goal": True},
        },
        {
            "success": False,
            "goal": {
                "target_xy_to_goal_m": 0.2,
                "target_held": True,
                "target_moved_since_close_m": 0.2,
                "nearer_a_decoy_goal": True,
            },
        },
    ]
    f = sim.task_class("place_cube").summarize_diagnostics(eps)["failure_summary"]
    assert (f["failed"], f["held_at_end"], f["released"]) == (4, 2, 2)
    assert f["median_released_xy_to_goal_m"] == pytest.approx(0.12)
    # Released: carried 15 cm (4 cm off) / nudged 1 cm; near a decoy: one not carried, one carried.
    assert (f["released_not_carried"], f["carried_to_a_decoy_goal"]) == (1, 1)
