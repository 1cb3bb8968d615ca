"""Training batches for policy heads: dataset windows + frozen-encoder tokens of the current frame.

    spec = DataSpec(dataset="outputs/demos/pick_cube.zarr", n_obs_steps=2, horizon=16)
    data = build_train_data(spec, encoder)            # reads embeddings/<encoder.fingerprint>/ if present
    batch = next(iter(ResumableLoader(data.dataset, batch_size=64).iter_from(0)))
    batch["tokens"]      # (B, N, D) float32: cameras' image tokens, then the instruction's text tokens
    batch["token_mask"]  # (B, N) bool
    batch["text_mask"]   # (B, N) bool: True = a valid instruction text token (for text-conditioned pooling)
    batch["state"]       # (B, To, Ds) normalized (data.processor: the transform path saved with the checkpoint)
    batch["action"]      # (B, T, Da) normalized

Tokens come from the frame at the window's current step t (the last observation). When the dataset
holds precomputed embeddings for the encoder's fingerprint they are loaded into memory once (float16);
otherwise each frame is encoded on the fly (slow; fine for tiny datasets and tests).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.data import Normalizer, ReplayBuffer, SequenceDataset, compute_stats, split_episodes
from vla.encoders import FrozenEncoder
from vla.encoders.cache import EmbeddingStore, StaleEmbeddingsError
from vla.processor import Processor, encode_observation
from vla.training.token_arrays import (
    TOKEN_MODES,
    available_memory_bytes,
    choose_mode,
    image_tokens_nbytes,
    local_processes,
    memmap_image_tokens,
    read_image_tokens,
    stored_dtype,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataSpec:
    """What a training sample holds.

    dataset: path of a ReplayBuffer zarr store.
    cameras: cameras whose image tokens are used, in this order (None: the store's camera_names).
    use_text: append the instruction's text tokens after the image tokens.
    n_obs_steps / horizon: To and T of the windows (`vla.data.SequenceDataset`).
    state_key / action_key: low-dimensional keys of the store.
    val_fraction / split_seed: episodes held out from training (and from the statistics).
    future_offsets: also return `future_state (B, K, Ds)`, the normalized state at t + offset for
        each offset (clamped to the episode's last frame), for the heads' auxiliary future-state loss.
    embeddings: "auto" (precomputed when present, else on the fly), "precomputed" (raise when
        missing or stale) or "on_the_fly".
    repeat_sources: {episode info "source": n}: the training windows of those episodes appear n times
        per epoch (e.g. {"dagger": 4}: a few hundred DAgger episodes beside thousands of demos still
        make a share of every batch). Statistics count each episode once.
    repeat_tasks: {episode info "task": n}: the same by task, the sampling weights of a multi-task
        dataset (`vla-collect task=all`), e.g. {"stack_cubes": 2}; multiplies with repeat_sources.
    tokens: where precomputed image tokens live while training: "ram" (read into memory), "mmap"
        (memory-mapped `.npy` files under `token_cache_dir`, `vla.training.token_arrays`) or
        "auto" (mmap when they would take more than half the available memory).
    token_cache_dir: the directory of the mmap files (None: mmap is refused).
    """

    dataset: str
    cameras: tuple[str, ...] | None = None
    use_text: bool = True
    n_obs_steps: int = 2
    horizon: int = 16
    state_key: str = "state"
    action_key: str = "action"
    val_fraction: float = 0.0
    split_seed: int = 0
    embeddings: str = "auto"
    future_offsets: tuple[int, ...] = ()
    repeat_sources: dict[str, int] = field(default_factory=dict)
    repeat_tasks: dict[str, int] = field(default_factory=dict)
    tokens: str = "auto"
    token_cache_dir: str | None = None

    def __post_init__(self) -> None:
        for name in ("repeat_sources", "repeat_tasks"):
            bad = {k: v for k, v in getattr(self, name).items() if int(v) < 1}
            if bad:
                raise ValueError(f"DataSpec.{name}: repeats must be integers >= 1, got {bad}")
        if any(int(o) < 1 for o in self.future_offsets):
            raise ValueError(f"DataSpec.future_offsets must all be >= 1, got {self.future_offsets}")
        if self.tokens not in TOKEN_MODES:
            raise ValueError(f"DataSpec.tokens must be one of {TOKEN_MODES}, got {self.tokens!r}")
        if self.embeddings not in ("auto", "precomputed", "on_the_fly"):
            raise ValueError(
                f"DataSpec.embeddings must be auto | precomputed | on_the_fly, got {self.embeddings!r}"
            )
        if self.n_obs_steps < 1 or self.horizon < self.n_obs_steps:
            raise ValueError(
                f"DataSpec: need 1 <= n_obs_steps <= horizon, got {self.n_obs_steps}, {self.horizon}"
            )


class TokenSource:
    """Encoder tokens (N, D) and mask (N,) of one dataset frame (cameras in order, then text)."""

    def tokens(self, frame: int, episode: int) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    n_tokens: int
    n_text_tokens: int  # the last n_text_tokens of the N are text (0 without text)
    dim: int
    kind: str


class PrecomputedTokens(TokenSource):
    """Tokens read once from `embeddings/<fingerprint>/` into memory (float16) for fast batching, or
    memory-mapped from uncompressed cache files when they do not fit (`mode`, see DataSpec.tokens)."""

    kind = "precomputed"

    def __init__(
        self,
        store: EmbeddingStore,
        cameras: Sequence[str],
        use_text: bool,
        mode: str = "ram",
        cache_dir: str | None = None,
    ) -> None:
        dt = stored_dtype(store)
        nbytes = image_tokens_nbytes(store, list(cameras))
        self.mode = choose_mode(mode, nbytes, available_memory_bytes(), local_processes())
        if self.mode == "mmap" and cache_dir is None:
            if mode == "mmap":
                raise ValueError("data.tokens=mmap needs data.token_cache_dir")
            log.warning(
                "image tokens take %.1f GB but data.token_cache_dir is null: reading them into RAM",
                nbytes / 1e9,
            )
            self.mode = "ram"
        if self.mode == "mmap":
            log.info("image tokens: %.1f GB, memory-mapped from %s", nbytes / 1e9, cache_dir)
            self.images = [memmap_image_tokens(store, c, Path(cache_dir)) for c in cameras]  # type: ignore[arg-type]
        else:
            # The stored precision (float16 halves it; ~200 MB for 100 demos x 2 cameras).
            self.images = [read_image_tokens(store, c, dt) for c in cameras]
        self.use_text = use_text
        self.separable = store.separable
        if use_text:
            # read_array: a bad chunk or a NaN/Inf token is a DatasetError naming the array.
            self.text = torch.from_numpy(store.read_array("text")).to(dt)
            self.text_mask = torch.from_numpy(store.read_array("text_mask").astype(bool))
        self.dim = store.dim
        self.n_text_tokens = store.max_text_len if use_text else 0
        self.n_tokens = len(cameras) * store.tokens_per_image + self.n_text_tokens

    def tokens(self, frame: int, episode: int) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [img[frame] for img in self.images]
        n_img = sum(p.shape[0] for p in parts)
        masks = [torch.ones(n_img, dtype=torch.bool)]
        if self.use_text:
            row = episode if self.separable else frame
            parts.append(self.text[row])
            masks.append(self.text_mask[row])
        return torch.cat(parts).float(), torch.cat(masks)


class OnTheFlyTokens(TokenSource):
    """Tokens computed by the encoder for each requested frame (no precomputed embeddings)."""

    kind = "on_the_fly"

    def __init__(self, rb: ReplayBuffer, enc: FrozenEncoder, cameras: Sequence[str], use_text: bool) -> None:
        self.rb, self.enc, self.cameras, self.use_text = rb, enc, list(cameras), use_text
        self.instructions = rb.instructions
        self.dim = enc.dim
        self.n_text_tokens = enc.cfg.max_text_len if use_text else 0
        self.n_tokens = len(cameras) * enc.tokens_per_image + self.n_text_tokens

    def tokens(self, frame: int, episode: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray([frame])
        images = {c: self.rb.read_frames(f"image_{c}", idx) for c in self.cameras}
        out = encode_observation(self.enc, images, self.instructions[episode], self.use_text)
        return out[0][0], out[1][0]


class TokenWindowDataset(torch.utils.data.Dataset):
    """Map-style dataset of policy batch items: tokens (N, D), token_mask (N,), state (To, Ds), action (T, Da).

    `__getitems__` (used by torch's DataLoader for a whole batch) gathers a batch with array
    indexing from in-memory normalized state/action arrays: the same windows as `__getitem__`
    (`Processor.window`), ~50x faster than per-item Python on this CPU.
    """

    def __init__(
        self,
        windows: SequenceDataset,
        source: TokenSource,
        processor: Processor,
        future_offsets: tuple[int, ...] = (),
    ) -> None:
        if windows.normalizer is not None:
            raise ValueError("TokenWindowDataset: give raw windows; the processor normalizes them")
        self.windows, self.source, self.processor = windows, source, processor
        self.state_key = processor.state_key
        self.future_offsets = np.asarray(future_offsets, dtype=np.int64)
        self._flat: dict[str, torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.windows)

    def _arrays(self) -> dict[str, torch.Tensor]:
        if self._flat is None:
            rb, p = self.windows.rb, self.processor
            state = p.normalize_state(rb.read(p.state_key, 0, rb.n_frames).astype(np.float32))
            action = p.normalize_action(rb.read(p.action_key, 0, rb.n_frames).astype(np.float32))
            self._flat = {
                "state": torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32)),
                "action": torch.from_numpy(np.ascontiguousarray(action, dtype=np.float32)),
            }
        return self._flat

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        """A collated batch: tokens (B, N, D), token_mask (B, N), text_mask (B, N), state (B, To, Ds),
        action (B, T, Da) and, with future offsets, future_state (B, K, Ds)."""
        if not isinstance(self.source, PrecomputedTokens):
            return collate([self[i] for i in indices])
        p = self.processor
        ep, t = self.windows.sample_indices(indices)
        start, length = self.windows.episode_bounds(ep)
        frames = torch.from_numpy(start[:, None] + p.window(t, length))
        arr = self._arrays()
        cur = torch.from_numpy(start + t)
        parts = [img[cur] for img in self.source.images]
        n_img = sum(p.shape[1] for p in parts)
        masks = [torch.ones(len(ep), n_img, dtype=torch.bool)]
        if self.source.use_text:
            rows = torch.from_numpy(ep) if self.source.separable else cur
            parts.append(self.source.text[rows])
            masks.append(self.source.text_mask[rows])
        token_mask = torch.cat(masks, dim=1)
        batch = {
            "tokens": torch.cat(parts, dim=1).float(),
            "token_mask": token_mask,
            "text_mask": p.text_mask(token_mask),
            "state": arr["state"][frames[:, : p.n_obs_steps]],
            "action": arr["action"][frames],
        }
        if len(self.future_offsets):
            batch["future_state"] = self._future(start, t, length)
        return batch

    def _future(self, start: np.ndarray, t: np.ndarray, length: np.ndarray) -> torch.Tensor:
        """(B, K, Ds) normalized state at t + each future offset, clamped to the episode end."""
        local = np.minimum(t[:, None] + self.future_offsets[None], (length - 1)[:, None])
        return self._arrays()["state"][torch.from_numpy(start[:, None] + local)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.processor
        item = self.windows[i]  # raw windows: the processor normalizes, as at inference
        e, t = int(item["episode"]), int(item["t"])
        start, length = self.windows.episode_bounds([e])
        tokens, mask = self.source.tokens(int(start[0]) + t, e)
        state = p.normalize_state(np.asarray(item[p.state_key], dtype=np.float32))
        action = p.normalize_action(np.asarray(item["action"], dtype=np.float32))
        out = {
            "tokens": tokens,
            "token_mask": mask,
            "text_mask": p.text_mask(mask),
            "state": torch.from_numpy(np.ascontiguousarray(state, dtype=np.float32)),
            "action": torch.from_numpy(np.ascontiguousarray(action, dtype=np.float32)),
        }
        if len(self.future_offsets):
            out["future_state"] = self._future(start, np.asarray([t]), length)[0]
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack items (or pass through a batch already collated by `__getitems__`)."""
    if isinstance(items, dict):
        return items
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


@dataclass
class TrainData:
    """A training dataset plus everything a checkpoint must record about it."""

    dataset: TokenWindowDataset
    processor: Processor
    cameras: list[str]
    train_episodes: list[int]
    val_episodes: list[int]
    token_source: str  # "precomputed" | "on_the_fly"
    n_tokens: int
    token_dim: int
    state_dim: int
    action_dim: int
    val_dataset: TokenWindowDataset | None = None
    info: dict[str, Any] = field(default_factory=dict)


def repeat_episodes(
    rb: ReplayBuffer, episodes: list[int], repeats: dict[str, int], task_repeats: dict[str, int] | None = None
) -> list[int]:
    """`episodes`, each repeated `repeats[info["source"]] * task_repeats[info["task"]]` times (1 for
    sources and tasks not named)."""
    if not repeats and not task_repeats:
        return list(episodes)
    out: list[int] = []
    for e in episodes:
        info = rb.episode_info(e)
        n = int(repeats.get(str(info.get("source", "")), 1)) * int(
            (task_repeats or {}).get(str(info.get("task", "")), 1)
        )
        out += [e] * n
    return out


def build_train_data(spec: DataSpec, enc: FrozenEncoder) -> TrainData:
    """Open `spec.dataset`, split episodes, compute normalization statistics on the training split,
    and pick the token source (precomputed embeddings for `enc.fingerprint`, or on-the-fly encoding).

    Raises:
        StaleEmbeddingsError: `spec.embeddings == "precomputed"` and no valid embeddings exist.
        KeyError: a camera or key the store does not have.
    """
    rb = ReplayBuffer.open(spec.dataset, mode="r")
    if rb.n_episodes == 0:
        raise ValueError(f"{spec.dataset}: the dataset has no episodes")
    cameras = list(spec.cameras) if spec.cameras is not None else list(rb.meta.camera_names)
    for c in cameras:
        if f"image_{c}" not in rb.keys:
            raise KeyError(f"{spec.dataset}: DataSpec.cameras has {c!r} but the store has no data/image_{c}")
    train_eps, val_eps = split_episodes(rb.n_episodes, spec.val_fraction, spec.split_seed)
    stats = compute_stats(rb, [spec.state_key, spec.action_key], episodes=train_eps)
    sampled = repeat_episodes(rb, train_eps, spec.repeat_sources, spec.repeat_tasks)
    if spec.repeat_tasks:
        known = {str(rb.episode_info(e).get("task", "")) for e in train_eps}
        unknown = sorted(set(spec.repeat_tasks) - known)
        if unknown:
            raise ValueError(
                f"{spec.dataset}: data.repeat_tasks names task(s) {unknown} with no episode here (tasks: {sorted(known)})"
            )

    source: TokenSource
    if spec.embeddings == "on_the_fly":
        source = OnTheFlyTokens(rb, enc, cameras, spec.use_text)
    else:
        try:
            store = EmbeddingStore(rb, enc.fingerprint)
            source = PrecomputedTokens(store, cameras, spec.use_text, spec.tokens, spec.token_cache_dir)
        except StaleEmbeddingsError as e:
            if spec.embeddings == "precomputed":
                raise
            log.warning("encoding frames on the fly (slow): %s", e)
            source = OnTheFlyTokens(rb, enc, cameras, spec.use_text)

    def windows(eps: list[int]) -> SequenceDataset:
        return SequenceDataset(
            rb,
            obs_keys=[spec.state_key],
            action_key=spec.action_key,
            n_obs_steps=spec.n_obs_steps,
            horizon=spec.horizon,
            episodes=eps,
        )

    processor = Processor(
        normalizer=Normalizer(stats),
        cameras=tuple(cameras),
        use_text=spec.use_text,
        n_obs_steps=spec.n_obs_steps,
        horizon=spec.horizon,
        n_text_tokens=source.n_text_tokens,
        state_key=spec.state_key,
        action_key=spec.action_key,
    )
    fut = tuple(spec.future_offsets)
    ds = TokenWindowDataset(windows(sampled), source, processor, fut)
    val = TokenWindowDataset(windows(val_eps), source, processor, fut) if val_eps else None
    return TrainData(
        dataset=ds,
        processor=processor,
        cameras=cameras,
        train_episodes=train_eps,
        val_episodes=val_eps,
        token_source=source.kind,
        n_tokens=source.n_tokens,
        token_dim=source.dim,
        state_dim=int(rb.shape(spec.state_key)[0]),
        action_dim=int(rb.shape(spec.action_key)[0]),
        val_dataset=val,
        info={"n_frames": rb.n_frames, "n_episodes": rb.n_episodes, "fingerprint": enc.fingerprint},
    )
