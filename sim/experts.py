"""The task experts: what each task's scripted expert plans, from the simulator's current state.

Tracking, IK, phase checks and re-planning are :class:`sim.expert_base.WaypointExpert`'s; the
waypoint sequences are :mod:`sim.waypoints`'.
"""

from __future__ import annotations

import numpy as np

from sim.expert_base import WaypointExpert
from sim.tasks.base import CUBE_HALF
from sim.waypoints import (
    GRASP_Z,
    LIFT_Z,
    Vec,
    Waypoint,
    grasp_yaw,
    pick_waypoints,
    place_waypoints,
)


class PickExpert(WaypointExpert):
    """pick_cube: pick the named cube and lift it (re-open and re-grasp when it is not in the hand)."""

    def pick(self) -> list[Waypoint]:
        """From any state to the cube lifted in the hand: lift it when it is already held, else
        (re-open,) approach, descend, close and lift at where it lies now."""
        t = self.task
        if self.holding():
            return self.lift_in_hand()
        wps = pick_waypoints(t.cube_pos(t.target))
        return self.approach(wps[0].target(), grip=0.0) + wps

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        return self.pick(), grasp_yaw(t.cube_yaw(t.target))


class _PlaceOnto(PickExpert):
    """Pick the target cube, then put it down at a place (a pad, another cube) and retreat."""

    def place_xy(self) -> Vec:
        raise NotImplementedError

    def release_z(self) -> float:
        raise NotImplementedError

    def placed(self) -> bool:
        """The cube is where it belongs and the fingers let go (the task's success)."""
        return bool(self.task.is_success())

    def plan(self) -> tuple[list[Waypoint], float]:
        if self.placed():
            pinch = self.task.pinch_pos()
            up = np.array([pinch[0], pinch[1], pinch[2] + 0.08])
            return [Waypoint(up, grip=0.0, speed=0.2, tol=0.02, name="retreat")], self._current_yaw()
        return self.pick() + place_waypoints(self.place_xy(), self.release_z()), self.grasp_yaw()

    def grasp_yaw(self) -> float:
        t = self.task
        return grasp_yaw(t.cube_yaw(t.target))


class PlaceExpert(_PlaceOnto):
    """place_cube: pick the named cube, put it on the centre of the named pad."""

    def place_xy(self) -> Vec:
        t = self.task
        return t.pad_pos(t.target_pad)[:2].copy()

    def release_z(self) -> float:
        t = self.task
        return float(t.pad_pos(t.target_pad)[2] + 0.003 + CUBE_HALF + 0.002)  # pad top + cube half + air


class StackExpert(_PlaceOnto):
    """stack_cubes: pick the named cube, put it on the other named cube (tracked live)."""

    def place_xy(self) -> Vec:
        t = self.task
        return lambda: t.cube_pos(t.base)[:2]

    def release_z(self) -> float:
        t = self.task
        return float(t.cube_pos(t.base)[2] + 2 * CUBE_HALF + 0.003)

    def grasp_yaw(self) -> float:
        # Both cubes are 90-degree symmetric: grasp yaw close to the base's yaw so the stack lines up.
        t = self.task
        return grasp_yaw(t.cube_yaw(t.target), reference=grasp_yaw(t.cube_yaw(t.base)))


class PushExpert(WaypointExpert):
    """push_cube: closed gripper down behind the cube, sweep it sideways, lift.

    Re-planned from the cube's current position; the sweep always ends where the cube must get to
    (``push_distance`` past where it started, plus the fingers' reach), so a cube knocked along or
    against the push direction is pushed the remaining distance."""

    HOLDING_PHASES = ()
    APPROACH_PHASES = ("above", "descend")
    BEHIND = 0.075  # [m] the pinch starts this far behind the cube centre (fingers clear of it)

    def in_lane(self) -> bool:
        """The closed fingers are down behind the cube, ready to push it (or pushing it)."""
        t = self.task
        cube, pinch, s = t.cube_pos(t.target), t.pinch_pos(), t.direction
        ahead = (cube[1] - pinch[1]) * s
        return abs(cube[0] - pinch[0]) < 0.02 and 0.0 < ahead < self.BEHIND + 0.02 and pinch[2] < 0.05

    def check(self) -> str | None:
        if self.phase == "push" and not self.in_lane():
            return "cube no longer in front of the fingers"
        return super().check()

    def plan(self) -> tuple[list[Waypoint], float]:
        t = self.task
        cube, s = t.cube_pos(t.target), t.direction
        z = CUBE_HALF + 0.004
        behind = np.array([cube[0], cube[1] - s * self.BEHIND, z])
        end_y = t.start[1] + s * (t.cfg.push_distance + 0.035)
        beyond = np.array([cube[0], end_y, z])
        lift = Waypoint(beyond + np.array([0, 0, 0.1]), grip=1.0, speed=0.2, tol=0.02, name="lift")
        if t.is_success():
            pinch = t.pinch_pos()
            return [
                Waypoint(pinch + np.array([0, 0, 0.1]), grip=1.0, speed=0.2, tol=0.02, name="lift")
            ], np.pi / 2
        push = Waypoint(beyond, grip=1.0, speed=0.12, tol=0.01, name="push")
        if self.in_lane():
            return [push, lift], np.pi / 2
        above = Waypoint(
            behind + np.array([0, 0, 0.1]), grip=1.0, speed=0.35, tol=0.02, name="above", blend=True
        )
        wps = [above, Waypoint(behind, grip=1.0, speed=0.15, tol=0.006, name="descend"), push, lift]
        return self.approach(
            above.target(), grip=1.0
        ) + wps, np.pi / 2  # fingers close along x: their flat outer faces push along y


__all__ = [
    "GRASP_Z",
    "LIFT_Z",
    "PickExpert",
    "PlaceExpert",
    "PushExpert",
    "StackExpert",
    "Waypoint",
    "WaypointExpert",
    "grasp_yaw",
]
