"""Deadline monitoring and runtime statistics: every control period is recorded, nothing is hidden."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Status of one control period.
OK = "ok"  # an action was ready by the deadline
MISS = "miss"  # no action was ready (inference not done / queue dry): the robot held
LATE = "late"  # wall clock only: the action was produced after the period's deadline
HOLD = "hold"  # the gate refused or cut the chunk (async): the robot held on purpose at its stop
STATUSES = (OK, MISS, LATE, HOLD)


@dataclass
class StepRecord:
    """One control period. `chunk_id` / `index` are -1 when the robot held."""

    step: int
    status: str
    action: np.ndarray
    chunk_id: int = -1
    index: int = -1
    reason: str = ""


@dataclass
class ChunkRecord:
    """One inference request."""

    chunk_id: int
    request_step: int
    prefix_len: int = 0
    compute_s: float = float("nan")  # measured wall time of the policy call
    gate_s: float = float("nan")  # the gate's time on the worker (async: part of the latency)
    regates: int = 0  # times the worker gated it again from a later state before it went in
    latency_s: float = float("nan")  # latency charged by the clock (injected or measured)
    usable_step: int = -1
    installed_step: int = -1  # -1: never installed (gate rejection, stale, episode ended)
    accepted: int = 0  # actions the gate let through
    # installed (as computed) | gate_limited (whole, rate-limited) | gate_truncated (a prefix, maybe
    # with a braking row) | cut_short (truncated in its own actions, shorter than the queued plan,
    # which runs on instead) | gate_hold | stale | dropped
    outcome: str = "pending"
    prefix_error: float = 0.0  # max |chunk[:P] - prefix|: how well the policy kept the prefix
    gate_reason: str = ""  # the gate's reason for its decision on this chunk ("safe", a cut, a hold)


class LatencyTracker:
    """Delay estimate from measured latencies: max(EMA, quantile over a window)."""

    def __init__(self, window: int = 20, quantile: float = 0.9, ema_alpha: float = 0.3) -> None:
        self.window: deque[float] = deque(maxlen=window)
        self.quantile = quantile
        self.alpha = ema_alpha
        self.ema: float | None = None

    def reset(self) -> None:
        self.window.clear()
        self.ema = None

    def add(self, latency_s: float) -> None:
        self.window.append(latency_s)
        self.ema = latency_s if self.ema is None else self.alpha * latency_s + (1 - self.alpha) * self.ema

    def estimate(self) -> float:
        """Seconds; 0 before any measurement."""
        if not self.window:
            return 0.0
        return max(float(self.ema or 0.0), float(np.quantile(np.asarray(self.window), self.quantile)))


@dataclass
class RuntimeStats:
    """Everything the loop recorded in one episode; `summary()` condenses it for tables and JSON."""

    period_s: float
    jerk_dims: int = 6
    steps: list[StepRecord] = field(default_factory=list)
    chunks: list[ChunkRecord] = field(default_factory=list)
    startup_latency_s: float = float("nan")
    unsafe_stops: int = 0  # gate decisions with no safe stop (the e-stop was requested)

    def record(self, rec: StepRecord) -> None:
        if rec.status not in STATUSES:
            raise ValueError(f"unknown step status {rec.status!r}; expected one of {STATUSES}")
        self.steps.append(rec)

    # ------------------------------------------------------------------ derived
    @property
    def deadline_misses(self) -> int:
        return sum(r.status in (MISS, LATE) for r in self.steps)

    @property
    def holds(self) -> Counter[str]:
        """Held periods by reason (deadline misses and gate holds)."""
        return Counter(r.reason for r in self.steps if r.chunk_id < 0)

    def actions(self) -> np.ndarray:
        """(n_steps, Da) commanded actions."""
        if not self.steps:
            return np.zeros((0, 0), np.float32)
        return np.stack([r.action for r in self.steps])

    def boundary_steps(self) -> list[int]:
        """Steps whose action came from a different source (chunk or hold) than the previous one."""
        src = [r.chunk_id for r in self.steps]
        return [k for k in range(1, len(src)) if src[k] != src[k - 1] and (src[k] >= 0 or src[k - 1] >= 0)]

    def jerk(self) -> tuple[np.ndarray, np.ndarray]:
        """Jerk norms [units/s^3] of the joint commands at chunk boundaries and at all other steps.

        The third difference a[k+1] - 3a[k] + 3a[k-1] - a[k-2] spans the switch between k-1 and k.
        """
        a = self.actions()
        if len(a) < 4:
            return np.zeros(0), np.zeros(0)
        a = a[:, : self.jerk_dims].astype(np.float64)
        d3 = (a[3:] - 3 * a[2:-1] + 3 * a[1:-2] - a[:-3]) / self.period_s**3  # row j <-> k = j + 2
        norms = np.linalg.norm(d3, axis=1)
        ks = np.arange(2, len(a) - 1)
        boundary = set(self.boundary_steps())
        is_b = np.array([k in boundary for k in ks])
        return norms[is_b], norms[~is_b]

    def summary(self) -> dict[str, Any]:
        lat = np.array([c.latency_s for c in self.chunks if np.isfinite(c.latency_s)])
        comp = np.array([c.compute_s for c in self.chunks if np.isfinite(c.compute_s)])
        outcomes = Counter(c.outcome for c in self.chunks)
        jb, ji = self.jerk()

        def q(x: np.ndarray, p: float) -> float:
            return float(np.quantile(x, p)) if len(x) else float("nan")

        def mean(x: np.ndarray) -> float:
            return float(x.mean()) if len(x) else float("nan")

        return {
            "steps": len(self.steps),
            "deadline_misses": self.deadline_misses,
            "late": sum(r.status == LATE for r in self.steps),
            "gate_holds": sum(r.status == HOLD for r in self.steps),
            "holds": dict(self.holds),
            "chunks_requested": len(self.chunks),
            "chunks_installed": outcomes["installed"] + outcomes["gate_truncated"] + outcomes["gate_limited"],
            "gate_limited": outcomes["gate_limited"],
            "gate_truncations": outcomes["gate_truncated"] + outcomes["cut_short"],
            "gate_cut_short": outcomes["cut_short"],
            "gate_rejections": outcomes["gate_hold"],
            "gate_unsafe_stops": self.unsafe_stops,
            "stale_chunks": outcomes["stale"],
            "startup_latency_s": self.startup_latency_s,
            "latency_p50_s": q(lat, 0.5),
            "latency_p99_s": q(lat, 0.99),
            "compute_p50_s": q(comp, 0.5),
            "compute_p99_s": q(comp, 0.99),
            "rtc_prefix_max_error": max((c.prefix_error for c in self.chunks), default=0.0),
            "boundary_jerk_mean": mean(jb),
            "boundary_jerk_max": float(jb.max()) if len(jb) else float("nan"),
            "interior_jerk_mean": mean(ji),
        }
