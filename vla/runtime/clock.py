"""Clocks: when a control period's deadline falls and when a computed chunk becomes usable.

Timing model (both clocks): control period k starts at tick k (t0 + k * period); the observation
of step k is read at the tick and the action of step k must be ready `deadline_fraction * period`
after it. A chunk computed from the observation of step s with latency L is therefore usable from
step s + delay_steps(L), with delay_steps(L) = max(0, ceil(L / period - deadline_fraction)):
deadline_fraction = 1 means "ready before the period ends"; 0 means "ready at the tick"
(so any latency > 0 costs at least one period).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

_EPS = 1e-9


def delay_steps(latency_s: float, period_s: float, deadline_fraction: float) -> int:
    """Control steps after the observation step at which a result with this latency is usable."""
    return max(0, math.ceil(latency_s / period_s - deadline_fraction - _EPS))


@runtime_checkable
class Clock(Protocol):
    """What the control loop needs from a clock (see module docstring for the timing model)."""

    period_s: float
    deadline_fraction: float
    # True: readiness is decided by step arithmetic from (accounted) latencies, never by wall time.
    deterministic: bool
    # True: the latency charged to a request is known when it is made (not measured).
    injects_latency: bool

    def start(self) -> None:
        """Episode time zero: called by the loop once the first chunk is ready."""

    def sleep_until_tick(self, step: int) -> None:
        """Block until tick `step` (the episode runner calls it before reading observation `step`)."""

    def accounted_latency(self, measured_s: float, request_index: int) -> float:
        """The latency charged to request `request_index` (0-based within the episode)."""

    def now(self) -> float:
        """Monotonic seconds."""


class SimulatedClock:
    """Simulated time: no sleeping; a chunk's latency is injected (or measured) and accounted in steps.

    latency_s: None charges the measured compute time; a float charges that constant; a sequence
    charges item i to request i (the last item repeats); a callable maps the request index to a
    latency. Tests and sim evaluation inject latencies so the control timeline is deterministic
    and independent of machine load.
    """

    deterministic = True

    def __init__(
        self,
        period_s: float = 0.05,
        latency_s: float | Sequence[float] | Callable[[int], float] | None = None,
        deadline_fraction: float = 1.0,
    ) -> None:
        if period_s <= 0:
            raise ValueError(f"SimulatedClock.period_s must be > 0, got {period_s}")
        if not 0.0 <= deadline_fraction <= 1.0:
            raise ValueError(f"SimulatedClock.deadline_fraction must be in [0, 1], got {deadline_fraction}")
        if isinstance(latency_s, Sequence) and not latency_s:
            raise ValueError("SimulatedClock.latency_s: an empty sequence")
        self.period_s = float(period_s)
        self.deadline_fraction = float(deadline_fraction)
        self.latency_s = latency_s

    @property
    def injects_latency(self) -> bool:
        return self.latency_s is not None

    def start(self) -> None:
        pass

    def sleep_until_tick(self, step: int) -> None:
        pass

    def accounted_latency(self, measured_s: float, request_index: int) -> float:
        lat = self.latency_s
        if lat is None:
            value = measured_s
        elif callable(lat):
            value = lat(request_index)
        elif isinstance(lat, Sequence):
            value = lat[min(request_index, len(lat) - 1)]
        else:
            value = lat
        value = float(value)
        if not value >= 0.0:
            raise ValueError(f"SimulatedClock: latency for request {request_index} must be >= 0, got {value}")
        return value

    def now(self) -> float:
        return time.perf_counter()


class WallClock:
    """Real time: periods follow the monotonic clock; the episode runner sleeps to each tick.

    The ROS node drives `ControlLoop.step` from its own timer and never calls `sleep_until_tick`.
    """

    deterministic = False
    injects_latency = False

    def __init__(self, period_s: float = 0.05, deadline_fraction: float = 1.0) -> None:
        if period_s <= 0:
            raise ValueError(f"WallClock.period_s must be > 0, got {period_s}")
        if not 0.0 <= deadline_fraction <= 1.0:
            raise ValueError(f"WallClock.deadline_fraction must be in [0, 1], got {deadline_fraction}")
        self.period_s = float(period_s)
        self.deadline_fraction = float(deadline_fraction)
        self.t0: float | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()

    def now(self) -> float:
        return time.perf_counter()

    def tick(self, step: int) -> float:
        if self.t0 is None:
            raise RuntimeError("WallClock: start() was not called (the loop calls it at its first step)")
        return self.t0 + step * self.period_s

    def deadline(self, step: int) -> float:
        """Wall time by which the action of `step` must be ready."""
        return self.tick(step) + self.deadline_fraction * self.period_s

    def sleep_until_tick(self, step: int) -> None:
        if self.t0 is None:
            return  # before the first step: the loop starts the clock once the first chunk is ready
        wait = self.tick(step) - time.perf_counter()
        if wait > 0:
            time.sleep(wait)

    def align(self, step: int, now: float | None = None) -> int:
        """Re-anchor so that `step` starts no earlier than `now` when the caller fell behind.

        A timer-driven caller (the ROS node) that skipped periods (a busy machine, a blocking
        synchronous inference) would otherwise see every later step as late. Returns the number of
        whole periods that were skipped (the caller counts them as missed periods).
        """
        if self.t0 is None:
            return 0
        now = time.perf_counter() if now is None else now
        behind = now - self.tick(step)
        if behind < self.period_s:
            return 0
        skipped = math.floor(behind / self.period_s)
        self.t0 += skipped * self.period_s
        return skipped

    def usable_step(self, done_at: float, request_step: int) -> int:
        """First step whose deadline is not before `done_at` (never before the request step)."""
        assert self.t0 is not None
        k = math.ceil((done_at - self.t0) / self.period_s - self.deadline_fraction - _EPS)
        return max(request_step, k)

    def accounted_latency(self, measured_s: float, request_index: int) -> float:
        return measured_s
