"""The last `n_obs_steps` observations, stacked for the policy."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from vla.data.sampler import pad_history


class ObservationBuffer:
    """Keeps the last `n_obs_steps` raw observations; pads the start by repeating the first one
    (`vla.data.pad_history`, the training windows' rule), so step 0 looks like an episode start in
    training."""

    def __init__(self, n_obs_steps: int) -> None:
        if n_obs_steps < 1:
            raise ValueError(f"ObservationBuffer: n_obs_steps must be >= 1, got {n_obs_steps}")
        self.n_obs_steps = n_obs_steps
        self._obs: deque[dict[str, Any]] = deque(maxlen=n_obs_steps)

    def reset(self) -> None:
        self._obs.clear()

    def __len__(self) -> int:
        return len(self._obs)

    def push(self, obs: dict[str, Any]) -> None:
        if "state" not in obs:
            raise ValueError(f"observation is missing key 'state'; got keys {sorted(obs)}")
        if self._obs and set(obs) != set(self._obs[-1]):
            raise ValueError(
                f"observation keys changed within an episode: {sorted(self._obs[-1])} -> {sorted(obs)}"
            )
        # Copy arrays: a ROS callback or a renderer may reuse its buffers.
        self._obs.append({k: np.array(v, copy=True) if _is_array(v) else v for k, v in obs.items()})

    @property
    def latest(self) -> dict[str, Any]:
        if not self._obs:
            raise RuntimeError("ObservationBuffer is empty: push an observation first")
        return self._obs[-1]

    def snapshot(self, step: int, prev_action: np.ndarray | None) -> dict[str, Any]:
        """The policy input (see `ChunkPolicy`): arrays stacked (To, ...), strings from the latest."""
        hist = pad_history(self._obs, self.n_obs_steps)
        out: dict[str, Any] = {}
        for key, value in hist[-1].items():
            out[key] = np.stack([np.asarray(o[key]) for o in hist]) if _is_array(value) else value
        out["step"] = int(step)
        out["prev_action"] = None if prev_action is None else np.array(prev_action, copy=True)
        return out


def _is_array(v: Any) -> bool:
    return isinstance(v, np.ndarray | np.generic | list | tuple) and not isinstance(v, str)
