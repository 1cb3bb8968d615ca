"""Training windows over a `ReplayBuffer` (Diffusion Policy's sequence sampling).

Sample ``i`` is a pair (episode e, frame t) for every frame t of every selected episode. With To =
`n_obs_steps` and T = `horizon`, the window covers episode frames ``t-To+1 ... t-To+T``; observations
are its first To frames (ending at t), actions all T frames. Frames outside the episode are clamped to
its first/last frame (padding by repetition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vla.data.errors import MissingStatsError
from vla.data.format import is_image_key
from vla.data.normalize import Normalizer
from vla.data.replay_buffer import ReplayBuffer


def split_episodes(n_episodes: int, val_fraction: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Deterministic train/val split of episode indices (sorted lists).

    At least one validation episode when ``val_fraction > 0`` and there are >= 2 episodes.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    perm = np.random.default_rng(seed).permutation(n_episodes)
    n_val = round(n_episodes * val_fraction)
    if val_fraction > 0 and n_episodes >= 2:
        n_val = min(max(n_val, 1), n_episodes - 1)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def window_frames(t: Any, length: Any, n_obs_steps: int, horizon: int) -> np.ndarray:
    """Episode-local frame indices of the windows whose current frame is t: (..., horizon) int64.

    Frames t-To+1 ... t-To+T, clamped to [0, length): the one padding rule (repeat the first/last
    frame at episode edges) for training windows; `pad_history` is the same rule at inference.
    t and length are ints or arrays of the same shape (vectorised over a batch).
    """
    t = np.asarray(t, dtype=np.int64)
    length = np.asarray(length, dtype=np.int64)
    offsets = np.arange(horizon, dtype=np.int64) - n_obs_steps + 1
    return np.clip(t[..., None] + offsets, 0, (length - 1)[..., None])


def window_indices(length: int, t: int, n_obs_steps: int, horizon: int) -> np.ndarray:
    """Episode-local frame indices (horizon,) of the window for current frame t, clamped to [0, length)."""
    return window_frames(t, length, n_obs_steps, horizon)


def pad_history(frames: Sequence[Any], n_obs_steps: int) -> list[Any]:
    """The last `n_obs_steps` of `frames` (oldest first), the oldest repeated at the front when there
    are fewer: what `window_frames` gives at an episode start, so step 0 looks like training."""
    frames = list(frames)
    if not frames:
        raise ValueError("pad_history: no frames")
    frames = frames[-n_obs_steps:]
    return [frames[0]] * (n_obs_steps - len(frames)) + frames


class SequenceDataset:
    """Map-style dataset of training windows (torch DataLoader friendly; numpy outputs).

    ``ds[i]`` -> {obs_key: (To, ...) for each of `obs_keys`, "action": (T, Da), "episode": int, "t": int}.
    Images stay uint8 (To, H, W, 3); low-dim keys are float32 and normalized when a `normalizer` is
    given (it must then cover `action_key` and every non-image observation key: MissingStatsError
    otherwise). Low-dimensional keys of the selected episodes are cached in memory on first use in each
    process (they are small); images are read lazily, To chunks per camera per sample, decoded in the
    calling thread when the store has this package's layout (`direct_image_reads`, see
    `vla.data.frame_reader`) or through zarr otherwise.
    """

    def __init__(
        self,
        rb: ReplayBuffer,
        obs_keys: Sequence[str],
        action_key: str = "action",
        n_obs_steps: int = 2,
        horizon: int = 16,
        normalizer: Normalizer | None = None,
        episodes: Sequence[int] | None = None,
        cache_lowdim: bool = True,
        direct_image_reads: bool = True,
    ) -> None:
        if n_obs_steps < 1 or horizon < n_obs_steps:
            raise ValueError(
                f"need 1 <= n_obs_steps <= horizon, got n_obs_steps={n_obs_steps}, horizon={horizon}"
            )
        for k in [*obs_keys, action_key]:
            rb.shape(k)  # KeyError naming the store's keys
        self.rb = rb
        self.obs_keys = list(obs_keys)
        self.action_key = action_key
        self.n_obs_steps = int(n_obs_steps)
        self.horizon = int(horizon)
        self.normalizer = normalizer
        self.cache_lowdim = cache_lowdim
        self.direct_image_reads = direct_image_reads
        if normalizer is not None:
            for k in [action_key, *self.obs_keys]:
                if not is_image_key(k) and k not in normalizer:
                    raise MissingStatsError(
                        f"SequenceDataset: normalizer has no statistics/mode for {k!r}; "
                        f"it covers {sorted(normalizer.modes)}"
                    )
        eps = list(range(rb.n_episodes)) if episodes is None else [int(e) for e in episodes]
        for e in eps:
            if not 0 <= e < rb.n_episodes:
                raise IndexError(f"{rb.path}: episode {e} out of range ({rb.n_episodes} episodes)")
        self.episodes = eps
        ends = rb.episode_ends
        starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
        self._ep_start = starts
        self._ep_len = (ends - starts).astype(np.int64)
        # Flat index -> (episode, t); int64 arrays pickle cheaply to workers.
        self._index_ep = np.concatenate(
            [np.full(self._ep_len[e], e, np.int64) for e in eps] or [np.zeros(0, np.int64)]
        )
        self._index_t = np.concatenate(
            [np.arange(self._ep_len[e], dtype=np.int64) for e in eps] or [np.zeros(0, np.int64)]
        )
        self._cache: dict[str, dict[int, np.ndarray]] | None = None

    def __len__(self) -> int:
        return int(self._index_ep.shape[0])

    def sample_index(self, i: int) -> tuple[int, int]:
        """(episode, t) of sample i."""
        return int(self._index_ep[i]), int(self._index_t[i])

    def sample_indices(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised `sample_index`: int64 arrays (episode, t) of the samples `indices` (B,)."""
        idx = np.asarray(indices, dtype=np.int64)
        return self._index_ep[idx], self._index_t[idx]

    def episode_bounds(self, episodes: Any) -> tuple[np.ndarray, np.ndarray]:
        """int64 arrays (first global frame, length) of `episodes` (B,)."""
        ep = np.asarray(episodes, dtype=np.int64)
        return self._ep_start[ep], self._ep_len[ep]

    def _lowdim(self, key: str, e: int) -> np.ndarray:
        if self._cache is None:
            self._cache = {}
        per_key = self._cache.setdefault(key, {})
        x = per_key.get(e)
        if x is None:
            s = int(self._ep_start[e])
            x = self.rb.read(key, s, s + int(self._ep_len[e]))
            per_key[e] = x
        return x

    def _frames(self, key: str, e: int, idx: np.ndarray) -> np.ndarray:
        """Frames `idx` (episode-local, clamped) of `key` in episode e."""
        if self.cache_lowdim and not is_image_key(key):
            return self._lowdim(key, e)[idx]
        return self.rb.read_frames(key, idx + int(self._ep_start[e]), direct=self.direct_image_reads)

    def _prepare(self, key: str, x: np.ndarray) -> np.ndarray:
        if is_image_key(key):
            return x
        x = x.astype(np.float32, copy=False)
        if self.normalizer is not None:
            x = self.normalizer.normalize(key, x)
        return x

    def __getitem__(self, i: int) -> dict[str, Any]:
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"SequenceDataset: index {i} out of range ({n} samples)")
        e, t = int(self._index_ep[i]), int(self._index_t[i])
        length = int(self._ep_len[e])
        idx = window_frames(t, length, self.n_obs_steps, self.horizon)
        out: dict[str, Any] = {}
        for k in self.obs_keys:
            out[k] = self._prepare(k, self._frames(k, e, idx[: self.n_obs_steps]))
        out["action"] = self._prepare(self.action_key, self._frames(self.action_key, e, idx))
        out["episode"] = e
        out["t"] = t
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = None  # each worker builds its own cache lazily
        return state

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample shapes of the outputs (without the batch axis)."""
        d = {k: (self.n_obs_steps, *self.rb.shape(k)) for k in self.obs_keys}
        d["action"] = (self.horizon, *self.rb.shape(self.action_key))
        return d
