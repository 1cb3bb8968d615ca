"""Injected inference delay: a policy made as slow as a bigger model or a remote server would be.

    policy = DelayedPolicy(policy, InferenceDelay(delay_s=0.3, jitter_s=0.05, distribution="normal", seed=0))

Each call takes at least a delay drawn for it (the policy's own compute time included, so 0 adds
nothing): `delay_s` plus jitter from `distribution` ("none", "uniform" in [-jitter, +jitter],
"normal" with std `jitter_s`, "exponential" with mean `jitter_s`: a heavy tail of slow calls),
never below 0. Seeded, so two runs draw the same delays in the same order.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

DISTRIBUTIONS = ("none", "uniform", "normal", "exponential")


@dataclass(frozen=True)
class InferenceDelay:
    """How long each policy call takes at least [s] (see module docstring)."""

    delay_s: float = 0.0
    jitter_s: float = 0.0
    distribution: str = "none"
    seed: int = 0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ValueError(f"InferenceDelay.delay_s must be >= 0, got {self.delay_s}")
        if not (np.isfinite(self.jitter_s) and self.jitter_s >= 0):
            raise ValueError(f"InferenceDelay.jitter_s must be >= 0, got {self.jitter_s}")
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(
                f"InferenceDelay.distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}"
            )

    @property
    def active(self) -> bool:
        return self.delay_s > 0 or (self.jitter_s > 0 and self.distribution != "none")


class DelayedPolicy:
    """A `ChunkPolicy` whose calls last at least the injected delay (thread-safe draws)."""

    def __init__(self, policy: Any, delay: InferenceDelay) -> None:
        self.policy = policy
        self.delay = delay
        self._rng = np.random.default_rng(delay.seed)
        self._lock = threading.Lock()
        self.drawn: list[float] = []  # the delays drawn so far [s]

    def __getattr__(self, name: str) -> Any:
        # n_obs_steps, n_action_steps, close ... of the wrapped policy.
        return getattr(self.policy, name)

    def reset(self) -> None:
        if callable(getattr(self.policy, "reset", None)):
            self.policy.reset()

    def draw(self) -> float:
        d = self.delay
        with self._lock:
            if d.distribution == "uniform":
                extra = self._rng.uniform(-d.jitter_s, d.jitter_s)
            elif d.distribution == "normal":
                extra = self._rng.normal(0.0, d.jitter_s)
            elif d.distribution == "exponential":
                extra = self._rng.exponential(d.jitter_s) if d.jitter_s > 0 else 0.0
            else:
                extra = 0.0
            value = max(0.0, d.delay_s + float(extra))
            self.drawn.append(value)
        return value

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None) -> np.ndarray:
        t0 = time.perf_counter()
        target = self.draw()
        chunk = self.policy(obs, prefix)
        left = target - (time.perf_counter() - t0)
        if left > 0:
            time.sleep(left)
        return chunk
