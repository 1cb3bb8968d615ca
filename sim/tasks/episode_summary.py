"""Summaries over episodes of the cube tasks' diagnostics (`CubeTask.diagnostics`): why they failed.

Pure functions of the episode dicts vla-eval and vla-deploy record (`EpisodeRecord.as_dict()`: the
task's diagnostics merged with `success`), so both runners summarize identically; and
`offset_toward_goal`, one number of the grasp report, kept here beside the summary that reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# A failed grasp still nudges the cube while the fingers close on its edge (measured 0-7.5 cm on
# place_cube's failures); a carry to a pad or another cube moves it 10-30 cm.
CARRIED_M = 0.08


def carried(goal: dict[str, Any]) -> bool:
    """Whether an episode's `goal` report shows the target carried (moved >= CARRIED_M since the
    first close)."""
    return float(goal.get("target_moved_since_close_m", 0.0)) >= CARRIED_M


def _median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def failure_summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Failed episodes still holding the target at the end / having released it, the released
    ones' median xy distance from the goal, how many of those had not carried it (a failed grasp)
    and how many were carried but ended nearer a decoy goal (the goal misread)."""
    # Where the failures ended: still holding the cube (ran out of time), or let go of it, and
    # how far from its goal (a few cm: an imprecise place; tens: dropped or the wrong goal).
    ends = [e["goal"] for e in episodes if not e.get("success") and e.get("goal")]
    released = [f for f in ends if not f["target_held"]]
    return {
        "failed": sum(not e.get("success") for e in episodes),
        "held_at_end": len(ends) - len(released),
        "released": len(released),
        "median_released_xy_to_goal_m": _median([f["target_xy_to_goal_m"] for f in released]),
        "released_not_carried": sum(not carried(f) for f in released),
        "carried_to_a_decoy_goal": sum(carried(f) and bool(f.get("nearer_a_decoy_goal")) for f in ends),
    }


def offset_toward_goal(hand_xy: np.ndarray, cube_xy: np.ndarray, goal_xy: np.ndarray) -> dict[str, float]:
    """{"close_offset_toward_goal_m": the hand's offset from the cube along cube -> goal} [m]: > 0
    when the hand closed on the goal's side (drifting toward where it will carry the cube); empty
    when the goal is within 2 cm of the cube (a pick's goal is the cube's own place)."""
    cube = np.asarray(cube_xy, np.float64)
    to_goal = np.asarray(goal_xy, np.float64)[:2] - cube
    d = float(np.linalg.norm(to_goal))
    if d <= 0.02:
        return {}
    return {"close_offset_toward_goal_m": float((np.asarray(hand_xy, np.float64) - cube) @ to_goal / d)}


def grasp_summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Episodes that never closed / closed the gripper, closed nearest the target, the median xy
    distance to the target at the first close, and (tasks with a goal away from the cube) the
    median of that offset's component toward the goal."""
    closed = [e["grasp"] for e in episodes if e.get("grasp")]
    located = [g for g in closed if "close_xy_to_target_m" in g]
    out = {
        "never_closed": len(episodes) - len(closed),
        "closed": len(closed),
        "closed_nearest_target": sum(bool(g["close_nearest_is_target"]) for g in located),
        "median_close_xy_to_target_m": _median([g["close_xy_to_target_m"] for g in located]),
    }
    toward = [g["close_offset_toward_goal_m"] for g in located if "close_offset_toward_goal_m" in g]
    if toward:  # tasks that carry the cube elsewhere (place, stack, push)
        out["median_close_offset_toward_goal_m"] = _median(toward)
    return out
