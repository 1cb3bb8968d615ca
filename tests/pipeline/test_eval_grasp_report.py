"""vla-eval's per-episode grasp report: where the gripper was first commanded closed."""

from __future__ import annotations

import numpy as np

import sim
from vla.pipeline.evaluate import _grasp_summary, _Recorder


def test_expert_closes_on_the_named_cube() -> None:
    env = sim.make("pick_cube", image_size=32, cameras=["front"])
    try:
        rec = _Recorder(env)
        expert = sim.make_expert(env)
        for seed in (0, 1):
            obs, _ = rec.reset(seed=seed)
            expert.reset()
            assert rec.grasp == {}
            done = False
            while not done:
                obs, _, term, trunc, _ = rec.step(expert.act(obs))
                done = term or trunc
            g = rec.grasp
            assert g["close_nearest_is_target"] is True
            assert g["close_xy_to_target_m"] < 0.01, g  # the expert grasps the cube centre
            assert abs(g["close_height_above_target_m"]) < 0.02, g
            assert 10 < g["close_step"] < 100
    finally:
        env.close()


def test_grasp_summary_counts() -> None:
    eps = [
        {"grasp": {}},
        {"grasp": {"close_step": 5, "close_xy_to_target_m": 0.01, "close_nearest_is_target": True}},
        {"grasp": {"close_step": 7, "close_xy_to_target_m": 0.09, "close_nearest_is_target": False}},
    ]
    s = _grasp_summary(eps)
    assert (s["never_closed"], s["closed"], s["closed_nearest_target"]) == (1, 2, 1)
    assert np.isclose(s["median_close_xy_to_target_m"], 0.05)
