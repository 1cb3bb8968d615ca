"""Latency measurement: warm-up calls, then `reps` timed calls, synchronised on CUDA."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vla.fastpath import synchronize


@dataclass
class Timing:
    """Milliseconds over `n` calls."""

    p50_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    n: int

    @classmethod
    def from_seconds(cls, seconds: list[float] | np.ndarray) -> Timing:
        s = np.asarray(seconds, dtype=np.float64) * 1e3
        if len(s) == 0:
            raise ValueError("Timing.from_seconds: no measurements")
        return cls(
            float(np.quantile(s, 0.5)), float(np.quantile(s, 0.99)), float(s.mean()), float(s.min()), len(s)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure(fn: Callable[[], Any], reps: int, warmup: int = 1, device: str = "cpu") -> Timing:
    """Call `fn` `warmup` times untimed, then `reps` times, each timed to completion on `device`."""
    if reps < 1:
        raise ValueError(f"measure: reps must be >= 1, got {reps}")
    for _ in range(warmup):
        fn()
    synchronize(device)
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t0)
    return Timing.from_seconds(out)
