"""Test chunks for the safety gate: Cartesian lines of the pinch site (via the sim's IK) and joint ramps."""

from __future__ import annotations

import numpy as np

from sim.ik import ArmIK, down_quat
from sim.safety import SafetyGate
from sim.scene import HOME_QPOS

HOME = np.asarray(HOME_QPOS)
Q0 = np.append(HOME, 0.0)  # (7,) home, gripper open
QD0 = np.zeros(6)


def home_pinch(gate: SafetyGate) -> np.ndarray:
    return ArmIK(gate.wm.model).site_pose(HOME)[0]


def pinch_line(
    gate: SafetyGate, goal, steps: int = 20, grip: float = 0.0, q_start=HOME, hold: int = 10
) -> np.ndarray:
    """(steps + hold, 7) joint targets moving the pinch site (fingers down) on a straight line to
    ``goal``, then holding it ``hold`` steps (the servos lag the targets)."""
    ik = ArmIK(gate.wm.model)
    start = ik.site_pose(np.asarray(q_start))[0]
    q = np.asarray(q_start, np.float64).copy()
    rows = []
    for t in np.linspace(0, 1, steps + 1)[1:]:
        q, _ = ik.solve(start + t * (np.asarray(goal) - start), down_quat(0.0), q)
        rows.append(np.append(q, grip))
    rows += [rows[-1]] * hold
    return np.asarray(rows, np.float32)


def joint_ramp(deltas, steps: int = 20, grip: float = 0.0, q_start=HOME) -> np.ndarray:
    """(steps, 7): arm targets ``q_start + deltas * t`` for t = 1/steps .. 1 (a constant-speed move)."""
    t = np.linspace(0, 1, steps + 1)[1:, None]
    arm = np.asarray(q_start)[None] + t * np.asarray(deltas)[None]
    return np.concatenate([arm, np.full((steps, 1), grip)], axis=1).astype(np.float32)
