"""What the control loop calls: a chunk policy and (optionally) a safety gate. Both duck-typed."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class ChunkPolicy(Protocol):
    """Observation history in, a chunk of absolute actions out (un-normalized, robot units).

    `obs` (built by `ObservationBuffer.snapshot`):
        every array-valued key of the raw observation stacked over time, oldest first:
            state (To, 7) float32, qvel (To, 6), image_<cam> (To, H, W, 3) uint8, ...
        instruction: str (the latest)
        step: int, control step of the latest observation (0 at the episode start)
        prev_action: (Da,) float32 action commanded in the previous period, or None at step 0
    `prefix`: None, or (P, Da) committed actions for steps step .. step+P-1 (real-time chunking);
        the returned chunk must start with them (inpainted/kept fixed during sampling).
    Returns (H, Da) actions for steps step .. step+H-1.

    An optional `reset()` is called at the start of every episode (e.g. to drop a cached
    instruction embedding).
    """

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None) -> np.ndarray: ...


class GateResult(Protocol):
    """What a gate returns (sim.safety's GateDecision has these fields, and optionally `status`,
    `braking` (rows it added to stop) and `stop_safe` (False: no safe stop exists, engage the e-stop))."""

    actions: np.ndarray  # (m, Da), m >= 1: run these, then hold the last one
    hold: bool
    reason: str


class ChunkGate(Protocol):
    """A world-model check: `gate(q (7,), qd (6,), plan (H, Da), command=(Da,) | None) -> GateResult`.

    `plan` is what would run from this step on; `command` the action in force now (None at the
    episode start). Pass `SafetyGate.filter` (its optional `full_state` bound in, e.g. a lambda).
    """

    def __call__(
        self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, command: np.ndarray | None = None
    ) -> GateResult: ...
