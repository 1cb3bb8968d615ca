"""Stops the gate can certify: braking targets from a (predicted) arm state, and the least-bad stop.

Every decision of :class:`sim.safety.SafetyGate` ends in a stop that the world model simulated:
the executor runs the returned rows, then holds the last one. When holding the chunk's own last row
is unsafe (the arm would coast into something) the gate appends one *braking row*; when no row of
the chunk can run, the whole decision is a braking row from the current state (a hold).

A position servo tracking a moving target trails it by ``lag * qd`` (``lag = kv / kp``, 0.2 s on the
UR5e), so ``q + lag * qd`` is where the servo is heading: holding that target stops the arm without
a jump in the servo force (the planned hold of ISO 10218's "stop category 2"). Smaller gains ``g`` in
``q + g * lag * qd`` stop sooner and brake harder; ``g = 0`` (the measured ``q``) is the hardest. The
gate tries them in the configured order and the world model judges each one: velocity, acceleration
and every other check apply to the braking motion like to any other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.safety.verdict import Verdict

# Checks whose violation means harm (a hit, a crush, leaving the cell, a joint at its end stop); the
# others (velocity, acceleration, not settled) strain the robot. Used to rank stops when none is safe.
HARM_CHECKS = frozenset(
    {"collision", "contact_force", "workspace", "joint_position", "action_invalid", "unstable"}
)


def brake_targets(
    q: np.ndarray,
    qd: np.ndarray,
    lag_s: np.ndarray,
    gains: Sequence[float],
    gripper: float,
    extra: Sequence[np.ndarray] = (),
    tol: float = 1e-6,
) -> np.ndarray:
    """Braking rows ``(S, 7)`` from an arm at ``q (>=6,)`` moving at ``qd (6,)``, in preference order.

    Args:
        q / qd: arm joint positions [rad] and velocities [rad/s] (only the first 6 of ``q`` are used).
        lag_s: ``(6,)`` servo lag per joint [s] (``WorldModel.servo_lag_s``).
        gains: ``g`` of each target ``q + g * lag * qd``, gentlest first.
        gripper: the gripper command of every row (keep the grip: a braking arm must not drop what
            it holds).
        extra: further rows tried first (e.g. the command in force now), ``(7,)`` or ``(6,)`` each.
        tol: rows closer than this [rad] to an earlier one are dropped (a resting arm needs one).
    Returns:
        ``(S, 7)`` float64 rows, ``S >= 1``, each a target to hold.
    """
    q6 = np.asarray(q, np.float64).reshape(-1)[:6]
    v = np.asarray(qd, np.float64).reshape(-1)[:6]
    lag = np.asarray(lag_s, np.float64).reshape(6)
    arms = [np.asarray(e, np.float64).reshape(-1)[:6] for e in extra]
    arms += [q6 + float(g) * lag * v for g in gains]
    rows: list[np.ndarray] = []
    for arm in arms:
        if not np.all(np.isfinite(arm)):
            continue
        if any(np.max(np.abs(arm - r[:6])) <= tol for r in rows):
            continue
        rows.append(np.append(arm, gripper))
    if not rows:
        rows.append(np.append(q6, gripper))
    return np.asarray(rows, np.float64)


def badness(verdict: Verdict) -> tuple[int, int]:
    """Sort key of a stop's verdict: lower is better (``(0, 0)`` = safe).

    ``(class, -when)``: class 0 safe, 1 only strain (velocity, acceleration, not settled), 2 harm
    (:data:`HARM_CHECKS`); among equals a later first violation of that class is better (more time
    for the hardware's own protective stop).
    """
    if verdict.safe:
        return (0, 0)
    harm = [v for v in verdict.violations if v.check in HARM_CHECKS]
    first = harm[0] if harm else verdict.violations[0]
    return (2 if harm else 1, -(first.step * 100_000 + (first.substep or 0)))
