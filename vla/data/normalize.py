"""Normalization statistics and the `Normalizer` shared by training, evaluation and deployment.

A key without statistics raises `MissingStatsError`: data is never passed through unnormalized by
accident ("identity" must be asked for explicitly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from vla.data.errors import DatasetError, MissingStatsError
from vla.data.format import is_image_key

if TYPE_CHECKING:
    from vla.data.replay_buffer import ReplayBuffer

STAT_NAMES = ("min", "max", "mean", "std")
MODES = ("min_max", "mean_std", "identity")
# Dims whose range (or std) is below this are constant: min_max maps them to 0, mean_std to x - mean.
_EPS = 1e-6
_BLOCK_FRAMES = 65536


def compute_stats(
    rb: ReplayBuffer, keys: Sequence[str] | None = None, episodes: Sequence[int] | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """Per-dimension min/max/mean/std of committed frames.

    keys: default every non-image key. episodes: restrict to these episodes (e.g. the training split).
    Returns {key: {"min","max","mean","std": float32 array of the per-frame shape}}; streams through
    the store in blocks of frames (float64 accumulation), so it never loads a key whole.

    Raises DatasetError naming the array, frame and episode of a NaN/Inf (`ReplayBuffer.read`), or
    the key whose statistics overflow float32: never returns statistics a Normalizer or a
    checkpoint's JSON cannot hold.
    """
    keys = [k for k in rb.keys if not is_image_key(k)] if keys is None else list(keys)
    if episodes is None:
        ranges = [(0, rb.n_frames)] if rb.n_frames else []
    else:
        ranges = [(s.start, s.stop) for s in (rb.episode_slice(int(i)) for i in episodes)]
    if not ranges:
        raise DatasetError(f"{rb.path}: no frames to compute statistics from")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in keys:
        rb.shape(key)  # KeyError naming the store's keys
        if is_image_key(key):
            raise DatasetError(
                f"{rb.path}/data/{key}: images have no statistics (the encoder normalizes them)"
            )
        n = 0
        mean = m2 = lo = hi = None
        for start, stop in ranges:
            for s in range(start, stop, _BLOCK_FRAMES):
                x = rb.read(key, s, min(stop, s + _BLOCK_FRAMES)).astype(np.float64)
                bn = x.shape[0]
                bmean = x.mean(axis=0)
                bm2 = ((x - bmean) ** 2).sum(axis=0)
                if mean is None:
                    n, mean, m2, lo, hi = bn, bmean, bm2, x.min(axis=0), x.max(axis=0)
                    continue
                # Chan et al. parallel update: exact in float64 across blocks.
                delta = bmean - mean
                tot = n + bn
                mean = mean + delta * (bn / tot)
                m2 = m2 + bm2 + delta**2 * (n * bn / tot)
                n = tot
                lo, hi = np.minimum(lo, x.min(axis=0)), np.maximum(hi, x.max(axis=0))
        std = np.sqrt(m2 / n)
        out[key] = {
            "min": lo.astype(np.float32),
            "max": hi.astype(np.float32),
            "mean": mean.astype(np.float32),
            "std": std.astype(np.float32),
        }
        for name, v in out[key].items():
            if not np.isfinite(v).all():
                raise DatasetError(
                    f"{rb.path}/data/{key}: statistics: {name} of key {key!r} is not finite in float32 "
                    f"({v.tolist()}); the values are out of range for normalization"
                )
    return out


class Normalizer:
    """Per-key affine normalization ``y = x * scale + offset`` from statistics.

    modes: key -> "min_max" (to [-1, 1]), "mean_std" (zero mean, unit std) or "identity".
    When `modes` is None every key in `stats` uses "min_max". Works on numpy arrays and torch tensors
    of shape (..., *feature_shape) (e.g. (B, T, Da)); returns the same type, dtype and device.
    """

    def __init__(
        self, stats: Mapping[str, Mapping[str, Any]], modes: Mapping[str, str] | None = None
    ) -> None:
        self.stats: dict[str, dict[str, np.ndarray]] = {
            k: {n: np.asarray(v, dtype=np.float32) for n, v in s.items()} for k, s in stats.items()
        }
        self.modes: dict[str, str] = (
            dict(modes) if modes is not None else dict.fromkeys(self.stats, "min_max")
        )
        self._params: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._torch_cache: dict[tuple[str, Any, Any], tuple[Any, Any]] = {}
        for key, mode in self.modes.items():
            if mode not in MODES:
                raise ValueError(f"Normalizer: key {key!r}: unknown mode {mode!r} (one of {MODES})")
            if mode == "identity":
                continue
            need = ("min", "max") if mode == "min_max" else ("mean", "std")
            have = self.stats.get(key)
            if have is None or any(n not in have for n in need):
                raise MissingStatsError(
                    f"Normalizer: key {key!r} (mode {mode!r}) needs statistics {list(need)}; "
                    f"statistics exist for {sorted(self.stats)}"
                    + (f" ({key!r} has {sorted(have)})" if have is not None else "")
                )
            self._params[key] = self._affine(key, mode, have)

    @staticmethod
    def _affine(key: str, mode: str, s: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        if mode == "min_max":
            lo, hi = s["min"].astype(np.float64), s["max"].astype(np.float64)
            if lo.shape != hi.shape:
                raise DatasetError(f"Normalizer: key {key!r}: min shape {lo.shape} != max shape {hi.shape}")
            rng = hi - lo
            const = rng < _EPS
            # Constant dims map to 0 (centre of [-1, 1]) instead of dividing by ~0 (as Diffusion Policy).
            scale = np.where(const, 1.0, 2.0 / np.where(const, 1.0, rng))
            offset = np.where(const, -lo, -1.0 - lo * scale)
        else:
            mean, std = s["mean"].astype(np.float64), s["std"].astype(np.float64)
            scale = 1.0 / np.maximum(std, _EPS)
            offset = -mean * scale
        return scale.astype(np.float32), offset.astype(np.float32)

    def __contains__(self, key: str) -> bool:
        return key in self.modes

    def _get(self, key: str) -> tuple[np.ndarray, np.ndarray] | None:
        if key not in self.modes:
            raise MissingStatsError(
                f"Normalizer: no statistics/mode for key {key!r}; keys with a mode: {sorted(self.modes)}, "
                f"statistics exist for {sorted(self.stats)}"
            )
        return self._params.get(key)  # None for identity

    def _apply(self, key: str, x: Any, inverse: bool) -> Any:
        p = self._get(key)
        if p is None:
            return x
        scale, offset = p
        if isinstance(x, np.ndarray) or np.isscalar(x):
            x = np.asarray(x)
            dt = x.dtype if x.dtype.kind == "f" else np.dtype(np.float32)
            s, o = scale.astype(dt), offset.astype(dt)
            return ((x - o) / s if inverse else x * s + o).astype(dt, copy=False)
        import torch

        if not isinstance(x, torch.Tensor):
            raise TypeError(f"Normalizer: expected np.ndarray or torch.Tensor, got {type(x).__name__}")
        dt = x.dtype if x.is_floating_point() else torch.float32
        ck = (key, dt, x.device)
        if ck not in self._torch_cache:
            self._torch_cache[ck] = (
                torch.as_tensor(scale, dtype=dt, device=x.device),
                torch.as_tensor(offset, dtype=dt, device=x.device),
            )
        s, o = self._torch_cache[ck]
        x = x.to(dt)
        return (x - o) / s if inverse else x * s + o

    def normalize(self, key: str, x: Any) -> Any:
        """Raw -> normalized for `key`; x: (..., *feature_shape) np.ndarray or torch.Tensor."""
        return self._apply(key, x, inverse=False)

    def unnormalize(self, key: str, x: Any) -> Any:
        """Normalized -> raw for `key` (inverse of `normalize`)."""
        return self._apply(key, x, inverse=True)

    # ----------------------------------------------------------------------------- serialization
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: {"modes": {key: mode}, "stats": {key: {stat: nested list}}}."""
        return {
            "modes": dict(self.modes),
            "stats": {k: {n: v.tolist() for n, v in s.items()} for k, s in self.stats.items()},
        }

    @classmethod
    def from_state_dict(cls, d: Mapping[str, Any]) -> Normalizer:
        if not isinstance(d, Mapping) or "stats" not in d or "modes" not in d:
            raise DatasetError("Normalizer.from_state_dict: expected a dict with 'modes' and 'stats'")
        return cls(d["stats"], d["modes"])

    def to_tensors(self) -> tuple[dict[str, np.ndarray], dict[str, str]]:
        """(tensors, metadata) for `safetensors.numpy.save_file`: tensors ``"<key>.<stat>"``, metadata modes."""
        tensors = {f"{k}.{n}": np.ascontiguousarray(v) for k, s in self.stats.items() for n, v in s.items()}
        return tensors, {f"mode.{k}": m for k, m in self.modes.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, Any], metadata: Mapping[str, str]) -> Normalizer:
        stats: dict[str, dict[str, np.ndarray]] = {}
        for name, v in tensors.items():
            key, _, stat = name.rpartition(".")
            stats.setdefault(key, {})[stat] = np.asarray(v)
        modes = {k[len("mode.") :]: m for k, m in metadata.items() if k.startswith("mode.")}
        return cls(stats, modes)
