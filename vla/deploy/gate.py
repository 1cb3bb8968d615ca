"""`sim.safety.SafetyGate` behind `ros_bridge.interfaces.ChunkGate`.

The node hands `q (7,)`, `qd (7,)` (the gripper's rate last) and `chunk (H, 7)`; the world-model
gate takes the 6 arm velocities. Its hold (first step unsafe) becomes an empty safe prefix, which
the policy node turns into a hold at the measured position with the gate's reason. With a
`full_state` provider (simulation: the replica's ground truth, objects included) the gate
simulates the objects too; without one (hardware) it syncs from the joints alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ros_bridge.interfaces import GateDecision
from sim.safety import SafetyGate


class SafetyChunkGate:
    """Adapter: `(q, qd, chunk) -> ros_bridge GateDecision` through `gate.filter`.

    full_state: optional `() -> (nstate,) | None`, called per chunk (see module docstring).
    """

    def __init__(self, gate: SafetyGate, full_state: Callable[[], np.ndarray | None] | None = None) -> None:
        self.gate = gate
        self._full_state = full_state

    def __call__(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> GateDecision:
        qd = np.asarray(qd, dtype=np.float64).reshape(-1)
        full = self._full_state() if self._full_state is not None else None
        d = self.gate.filter(np.asarray(q, np.float64), qd[:6], chunk, full_state=full)
        verdict = d.verdict.to_dict()
        verdict.update(status=d.status, hold=d.hold, full_state=full is not None)
        prefix = np.zeros((0, np.shape(chunk)[-1])) if d.hold else np.asarray(d.actions, np.float64)
        return GateDecision(safe_prefix=prefix, reason="" if d.verdict.safe else d.reason, verdict=verdict)

    def close(self) -> None:
        self.gate.close()
