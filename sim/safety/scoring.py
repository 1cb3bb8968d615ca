"""Best-of-K scores: ``score(final_states (K, nstate), candidates (K, H, 7)) -> (K,)``, higher is better."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

from sim.safety.world_model import STATE_SPEC


def task_progress_score(env: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Score predicted end states by the simulation task's own ``task.progress()``.

    Each state is loaded into the env's data, judged and the env's exact state (including the
    solver warm start) restored afterwards, so the episode continues untouched. Requires a gate built
    with ``SafetyGate.for_env(env, ...)`` (same state layout).
    """
    base = env.unwrapped
    m, d, task = base.model, base.data, base.task
    size = mujoco.mj_stateSize(m, STATE_SPEC)

    def score(final_states: np.ndarray, candidates: np.ndarray) -> np.ndarray:
        saved = np.empty(size)
        mujoco.mj_getState(m, d, saved, STATE_SPEC)
        warm = d.qacc_warmstart.copy()
        out = np.empty(len(final_states))
        try:
            for i, s in enumerate(final_states):
                mujoco.mj_setState(m, d, s, STATE_SPEC)
                mujoco.mj_forward(m, d)
                out[i] = float(task.progress())
        finally:
            mujoco.mj_setState(m, d, saved, STATE_SPEC)
            mujoco.mj_forward(m, d)
            d.qacc_warmstart[:] = warm
        return out

    return score
