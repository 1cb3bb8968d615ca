"""`sim.safety.SafetyGate` as the control loop's gate in deployment (`vla.runtime.protocol.ChunkGate`).

The loop hands `q (7,)`, `qd (6,)`, the plan that would run and the command in force; the gate
returns its `GateDecision` (what runs, then its last row is held: the certified stop). With a
`full_state` provider (simulation: the replica's ground truth, objects included) the gate simulates
the objects too; without one (hardware) it syncs from the joints alone. `stop` plans a certified
brake from the current state when the node stops asking the policy (e-stop, end of an episode).

The world model applies the targets the way the robot's controller does: build the gate with
:func:`gate_config_for` (a joint trajectory controller interpolates linearly at its update rate; a
forward position controller steps at each command).
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import numpy as np

from sim.safety import GateDecision, SafetyConfig, SafetyGate


def gate_config_for(cfg: SafetyConfig, interface: str, command_rate_hz: float = 100.0) -> SafetyConfig:
    """``cfg`` with ``gate.execution`` matching the robot's command interface.

    interface: ``"trajectory"`` (JointTrajectory to a trajectory controller: linear interpolation at
    ``command_rate_hz``) or ``"forward"`` (Float64MultiArray to a forward position controller: each
    target held for a period).
    """
    if interface not in ("trajectory", "forward"):
        raise ValueError(f"interface must be 'trajectory' or 'forward', got {interface!r}")
    execution = "linear" if interface == "trajectory" else "step"
    return dataclasses.replace(
        cfg, gate=dataclasses.replace(cfg.gate, execution=execution, command_rate_hz=float(command_rate_hz))
    )


class SafetyChunkGate:
    """Adapter: `(q, qd, plan, command) -> GateDecision` through `gate.filter`, and `stop`.

    full_state: optional `() -> (nstate,) | None`, called per decision (see module docstring).
    Thread-safe: the control loop gates on its inference worker and stops from the control thread
    (MuJoCo's rollout object and the world model are used by one thread at a time).
    """

    def __init__(self, gate: SafetyGate, full_state: Callable[[], np.ndarray | None] | None = None) -> None:
        self.gate = gate
        self._full_state = full_state
        self._lock = threading.Lock()

    def _full(self) -> np.ndarray | None:
        return self._full_state() if self._full_state is not None else None

    def snapshot(self) -> np.ndarray | None:
        """The world now: the loop takes it at each request and gates the chunk from it later."""
        with self._lock:
            return self._full()

    def __call__(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        chunk: np.ndarray,
        command: np.ndarray | None = None,
        snapshot: np.ndarray | None = None,
    ) -> GateDecision:
        qd = np.asarray(qd, dtype=np.float64).reshape(-1)[:6]
        with self._lock:
            full = snapshot if snapshot is not None else self._full()
            return self.gate.filter(np.asarray(q, np.float64), qd, chunk, full_state=full, command=command)

    def stop(
        self, q: np.ndarray, qd: np.ndarray, command: np.ndarray | None = None, reason: str = "stop requested"
    ) -> GateDecision:
        qd = np.asarray(qd, dtype=np.float64).reshape(-1)[:6]
        with self._lock:
            return self.gate.stop(
                np.asarray(q, np.float64), qd, full_state=self._full(), command=command, reason=reason
            )

    def close(self) -> None:
        self.gate.close()
