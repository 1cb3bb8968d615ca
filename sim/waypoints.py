"""Waypoints of the scripted experts: a target for the pinch site, and the pick / place sequences
the cube experts (:mod:`sim.experts`) are made of."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sim.tasks.base import CUBE_HALF

# Heights of the pinch point above the table [m]: the grasp height (cube centre + a little) and the
# height a picked cube is lifted to before it is carried.
GRASP_Z = CUBE_HALF + 0.002
LIFT_Z = GRASP_Z + 0.12

Vec = np.ndarray | Callable[[], np.ndarray]


@dataclass
class Waypoint:
    """A target for the pinch site.

    Attributes:
        pos: (3,) world position [m], or a callable returning it (evaluated every step).
        grip: gripper command in [0 open, 1 closed] while moving to / holding this waypoint.
        speed: top Cartesian speed [m/s].
        tol: the waypoint counts as reached when the actual pinch position is within ``tol`` [m].
        hold: control steps to stay once reached (e.g. to let the gripper close).
        name: for debugging.
        blend: pass through: move on as soon as the *command* arrives, without waiting for the arm
            to come within ``tol``. For approach waypoints above a slow final move: waiting there
            leaves idle stretches in the demos (the command frozen while the arm catches up, up to
            ``max_wait`` steps when the arm is perturbed), and a cloned policy that has seen the arm
            resting at such a point with a frozen command learns to stay there.
        settle_grip: end the hold as soon as the gripper has stopped moving (closure changed by less
            than ``GRIP_STALL`` in the last step), ``hold`` being the most it waits. A fixed hold after
            the fingers stop leaves frames where nothing moves and the command is frozen; a cloned
            policy cannot tell how long it has been there, keeps predicting "lift later" and never
            lifts (what the pick_cube diffusion policy did in most of its failures).
    """

    pos: Vec
    grip: float
    speed: float = 0.3
    tol: float = 0.01
    hold: int = 0
    name: str = ""
    blend: bool = False
    settle_grip: bool = False

    def target(self) -> np.ndarray:
        return np.asarray(self.pos() if callable(self.pos) else self.pos, np.float64)


def grasp_yaw(cube_yaw: float, reference: float = 0.0) -> float:
    """Gripper yaw aligned with a cube face (cubes are 90-degree symmetric), closest to ``reference``."""
    k = np.round((reference - cube_yaw) / (np.pi / 2))
    return float(cube_yaw + k * np.pi / 2)


def pick_waypoints(cube: np.ndarray) -> list[Waypoint]:
    """Above the cube, descend, close, lift (pinch point at the cube centre while grasping)."""
    grasp_z = cube[2] + 0.002
    return [
        Waypoint(
            np.array([cube[0], cube[1], grasp_z + 0.1]),
            grip=0.0,
            speed=0.35,
            tol=0.02,
            name="pregrasp",
            blend=True,
        ),
        Waypoint(np.array([cube[0], cube[1], grasp_z]), grip=0.0, speed=0.15, tol=0.006, name="descend"),
        Waypoint(
            np.array([cube[0], cube[1], grasp_z]), grip=1.0, hold=8, tol=0.01, name="close", settle_grip=True
        ),
        Waypoint(np.array([cube[0], cube[1], grasp_z + 0.12]), grip=1.0, speed=0.2, tol=0.02, name="lift"),
    ]


def place_waypoints(target_xy: Vec, release_z: float) -> list[Waypoint]:
    """Carry the grasped cube above ``target_xy``, lower it to ``release_z`` (cube centre), open, retreat."""

    def at(z: float) -> Callable[[], np.ndarray]:
        def f() -> np.ndarray:
            xy = target_xy() if callable(target_xy) else target_xy
            return np.array([xy[0], xy[1], z])

        return f

    return [
        Waypoint(at(release_z + 0.08), grip=1.0, speed=0.3, tol=0.015, name="carry", blend=True),
        Waypoint(at(release_z + 0.003), grip=1.0, speed=0.12, tol=0.006, name="lower"),
        Waypoint(at(release_z + 0.003), grip=0.0, hold=6, tol=0.01, name="release", settle_grip=True),
        Waypoint(at(release_z + 0.1), grip=0.0, speed=0.2, tol=0.02, name="retreat"),
    ]


__all__ = ["GRASP_Z", "LIFT_Z", "Vec", "Waypoint", "grasp_yaw", "pick_waypoints", "place_waypoints"]
