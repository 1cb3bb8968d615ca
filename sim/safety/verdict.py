"""What a check found: :class:`Violation` (one check, where and by how much) and :class:`Verdict`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Check names, in the order the gate runs them (the first four need no simulation).
CHECKS: tuple[str, ...] = (
    "action_invalid",
    "unstable",
    "joint_position",
    "jump",
    "joint_velocity",
    "joint_acceleration",
    "workspace",
    "collision",
    "contact_force",
    "stop",
)


@dataclass(frozen=True)
class Violation:
    """The first occurrence of one violated check in a chunk.

    Attributes:
        check: one of :data:`CHECKS`.
        step: control step that is unsafe: a row of the chunk (``0..H-1``), or ``>= H`` during the
            stop after it (the last row held).
        substep: physics step after the chunk start at which it was seen (``1..H*n_substeps``),
            ``None`` for checks on the targets themselves.
        value: the measured quantity (rad, rad/s, rad/s^2, m, N; for collisions the distance [m]).
        limit: the effective limit it was compared with (margin applied).
        names: joints, geoms or bodies involved.
        detail: one human-readable line.
    """

    check: str
    step: int
    substep: int | None
    value: float
    limit: float
    names: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (``NaN``/``inf`` values become strings)."""
        return {
            "check": self.check,
            "step": self.step,
            "substep": self.substep,
            "value": _json_float(self.value),
            "limit": _json_float(self.limit),
            "names": list(self.names),
            "detail": self.detail,
        }


def _json_float(x: float) -> float | str:
    x = float(x)
    return x if x == x and abs(x) != float("inf") else str(x)


@dataclass(frozen=True)
class Verdict:
    """Result of checking one chunk of ``horizon`` actions.

    ``violations`` holds the first occurrence of each violated check, earliest first; the chunk's
    safe prefix is ``chunk[:first_unsafe_step]``.
    """

    horizon: int
    violations: tuple[Violation, ...] = ()

    @property
    def safe(self) -> bool:
        return not self.violations

    @property
    def first(self) -> Violation | None:
        return self.violations[0] if self.violations else None

    @property
    def first_unsafe_step(self) -> int | None:
        """Row of the first unsafe action, ``None`` when the whole chunk is safe."""
        return self.violations[0].step if self.violations else None

    @property
    def safe_steps(self) -> int:
        """Rows before the first unsafe control step (``horizon`` when safe or unsafe only in the stop).

        A prefix of this length runs the same motion as the chunk, but its own stop still has to be
        checked: :meth:`sim.safety.SafetyGate.filter` does that.
        """
        return self.horizon if self.safe else min(self.violations[0].step, self.horizon)

    @property
    def in_stop(self) -> bool:
        """The first violation happens during the stop after the rows, not while they run."""
        return not self.safe and self.violations[0].step >= self.horizon

    @property
    def check(self) -> str | None:
        return self.violations[0].check if self.violations else None

    def reason(self) -> str:
        if self.safe:
            return "safe"
        v = self.violations[0]
        if v.step >= self.horizon:
            return f"{v.check} during the stop after step {self.horizon - 1}: {v.detail}"
        return f"{v.check} at step {v.step}: {v.detail}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: safe, first unsafe step, violated check, names, value vs limit, all violations."""
        first = self.first
        return {
            "safe": self.safe,
            "horizon": self.horizon,
            "first_unsafe_step": self.first_unsafe_step,
            "check": first.check if first else None,
            "names": list(first.names) if first else [],
            "value": _json_float(first.value) if first else None,
            "limit": _json_float(first.limit) if first else None,
            "reason": self.reason(),
            "violations": [v.to_dict() for v in self.violations],
        }


def make_verdict(horizon: int, violations: list[Violation | None]) -> Verdict:
    """Keep the earliest violation of each check, sorted by (step, substep, check order)."""
    best: dict[str, Violation] = {}
    for v in violations:
        if v is None:
            continue
        old = best.get(v.check)
        if old is None or (v.step, v.substep or 0) < (old.step, old.substep or 0):
            best[v.check] = v
    order = {c: i for i, c in enumerate(CHECKS)}
    ranked = sorted(best.values(), key=lambda v: (v.step, v.substep or 0, order.get(v.check, 99)))
    return Verdict(horizon=horizon, violations=tuple(ranked))
