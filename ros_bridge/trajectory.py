"""Linear interpolation through a timed joint trajectory, as a joint trajectory controller does.

Pure numpy, used by the robot node and unit-tested alone.
"""

from __future__ import annotations

import numpy as np


class TrajectoryFollower:
    """Holds a position, or follows waypoints by linear interpolation, then holds the last one.

    Times are seconds on the caller's clock (the robot node uses simulated time).
    """

    def __init__(self, q_hold: np.ndarray) -> None:
        q_hold = np.asarray(q_hold, dtype=np.float64).reshape(-1)
        self._times = np.zeros(1)
        self._points = q_hold[None].copy()

    @property
    def end_time(self) -> float:
        """Time at which the last waypoint is reached (the hold starts)."""
        return float(self._times[-1])

    def hold(self, q: np.ndarray) -> None:
        """Stop and hold `q` (D,) from now on."""
        self._times = np.zeros(1)
        self._points = np.asarray(q, dtype=np.float64).reshape(1, -1).copy()

    def start(self, now: float, q_now: np.ndarray, times: np.ndarray, points: np.ndarray) -> None:
        """Follow `points` (K, D) reached at `now + times` (K,) [s], starting from `q_now` (D,).

        K = 0 means stop and hold `q_now`. A first point with time 0 is jumped to at once.
        """
        q_now = np.asarray(q_now, dtype=np.float64).reshape(-1)
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64)
        if points.shape != (times.shape[0], q_now.shape[0]):
            raise ValueError(
                f"trajectory points {points.shape} do not match times {times.shape} and D={q_now.shape[0]}"
            )
        if times.size and (times[0] < 0 or (np.diff(times) <= 0).any()):
            raise ValueError(f"trajectory times must be >= 0 and strictly increase, got {times.tolist()}")
        if times.size == 0:
            self._times, self._points = np.array([now]), q_now[None].copy()
        elif times[0] == 0:
            self._times, self._points = now + times, points.copy()
        else:
            self._times = np.concatenate([[now], now + times])
            self._points = np.concatenate([q_now[None], points])

    def sample(self, t: float) -> np.ndarray:
        """Target (D,) at time `t` (before the start: the start point; after the end: the last)."""
        if t <= self._times[0]:
            return self._points[0].copy()
        if t >= self._times[-1]:
            return self._points[-1].copy()
        i = int(np.searchsorted(self._times, t, side="right"))  # times[i-1] <= t < times[i]
        w = (t - self._times[i - 1]) / (self._times[i] - self._times[i - 1])
        return (1.0 - w) * self._points[i - 1] + w * self._points[i]
