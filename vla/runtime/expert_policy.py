"""The simulator's scripted expert as a `ChunkPolicy` (for runtime tests and sync/async benchmarks).

A `sim` waypoint expert produces one action per call and keeps a small internal state (commanded
pinch pose, speed, plan and waypoint progress: `expert.snapshot()` / `expert.restore()`). To
produce a chunk it is rolled forward H times from the state it had after the last action the robot
actually executed, so the chunk continues exactly
what was commanded, whatever the loop's mode skipped, held or committed. The expert reads the
live simulator, so run it with `RuntimeConfig(threaded=False)` (the `SimulatedClock` still
accounts the injected latency, so the control timeline is that of a background worker).
With temporal ensembling the executed action is a blend, so the expert resumes from the nearest
action it produced: its chunks then disagree more than a learned policy's would.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class ExpertChunkPolicy:
    """Chunks of `horizon` actions from a sim expert (`expert.reset()`, `expert.act(obs)`).

    Args:
        expert: e.g. `sim.make_expert(env)`; reset by `reset()` after the env was reset.
        horizon: actions per chunk (H).
        keep: how many past chunks to remember for finding the executed action.
    """

    def __init__(self, expert: Any, horizon: int = 16, keep: int = 4) -> None:
        if horizon < 1:
            raise ValueError(f"ExpertChunkPolicy: horizon must be >= 1, got {horizon}")
        self.expert = expert
        self.horizon = horizon
        self.keep = keep
        # Per computed chunk: (obs step of its first action, [(action, expert state after it)]).
        self._traces: list[tuple[int, list[tuple[np.ndarray, dict[str, Any]]]]] = []

    def reset(self) -> None:
        missing = [
            m for m in ("reset", "act", "snapshot", "restore") if not callable(getattr(self.expert, m, None))
        ]
        if missing:
            raise TypeError(f"ExpertChunkPolicy: expert {type(self.expert).__name__} lacks {missing}")
        self.expert.reset()
        self._traces = []

    def _snapshot(self) -> dict[str, Any]:
        return self.expert.snapshot()

    def _find(self, action: np.ndarray, last_index_step: int, exact: bool) -> dict[str, Any] | None:
        """Expert state after `action`, executed at a step <= last_index_step.

        Exact: only an identical action counts (committed prefixes are copies of produced actions).
        Otherwise the nearest produced action is taken (a temporal-ensembling blend, or a hold at
        the measured joints, is close to the action of the chunk it mostly came from). Among equal
        candidates (the expert repeats an action while it waits at a waypoint) the latest one that
        could have been executed by then wins.
        """
        best, best_d = None, np.inf
        for first_step, trace in self._traces:  # oldest first, so later candidates win ties
            bound = min(last_index_step - first_step, len(trace) - 1)
            for i in range(bound + 1):
                d = float(np.max(np.abs(trace[i][0] - action)))
                if d <= best_d:
                    best, best_d = trace[i][1], d
        if best is None or (exact and best_d > 0.0):
            return None
        return best

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.expert.restore(snapshot)

    def __call__(self, obs: dict[str, Any], prefix: np.ndarray | None) -> np.ndarray:
        step = int(obs["step"])
        trace: list[tuple[np.ndarray, dict[str, Any]]] = []
        if prefix is not None and len(prefix):
            # Continue after the committed prefix (it runs at steps step .. step+P-1).
            for j, a in enumerate(np.asarray(prefix, np.float32)):
                # Committed actions are copies of produced ones, except what the safety gate planned
                # itself (a braking row, a rate-limited target): continue from the nearest then.
                snap = self._find(a, step + j, exact=True) or self._find(a, step + j, exact=False)
                if snap is None:
                    raise ValueError(f"ExpertChunkPolicy: no chunk to continue committed action {j} from")
                trace.append((a.copy(), snap))
            self._restore(trace[-1][1])
        elif obs.get("prev_action") is not None:
            snap = self._find(np.asarray(obs["prev_action"], np.float32), step - 1, exact=False)
            if snap is not None:
                self._restore(snap)
        latest = {
            k: (v[-1] if isinstance(v, np.ndarray) and v.ndim > 0 else v)
            for k, v in obs.items()
            if k not in ("step", "prev_action")
        }
        while len(trace) < self.horizon:
            a = np.asarray(self.expert.act(latest), np.float32)
            trace.append((a, self._snapshot()))
        self._traces = (
            [*self._traces[-(self.keep - 1) :], (step, trace)] if self.keep > 1 else [(step, trace)]
        )
        actions = [a for a, _ in trace]
        return np.stack(actions)
