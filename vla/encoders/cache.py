"""Precomputed frame embeddings inside a dataset's zarr store, keyed by encoder fingerprint.

Layout (group `embeddings/<fingerprint>/` at the store root; the dataset writer owns everything else):

    image_<cam>   float16|float32 (N_frames, n_img, D)   chunked per `batch_size` frames
    text          float  (n_episodes, L, D)   separable encoders: one row per episode's instruction
                         (N_frames,  L, D)    generative encoders: image+text prefix is joint -> per frame
    text_mask     bool   same leading shape, L
    attrs         fingerprint, encoder config, dim, tokens_per_image, cameras, separable,
                  n_frames, n_episodes, episodes_digest, complete

A reader (`EmbeddingStore`) opened with an encoder's fingerprint raises `StaleEmbeddingsError` when
the group is missing (never computed with that encoder: another model, weights, layer, preprocessing
...), incomplete (interrupted run) or out of date (the dataset gained or changed episodes since).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np
import torch

from vla.encoders.base import FrozenEncoder
from vla.encoders.output import EncoderOutput

EMBEDDINGS_GROUP = "embeddings"
FORMAT_VERSION = 1
log = logging.getLogger(__name__)
T = TypeVar("T")


class StaleEmbeddingsError(RuntimeError):
    """Stored embeddings do not match the encoder or the dataset they are read for."""


class DatasetLike(Protocol):
    """The part of `vla.data.ReplayBuffer` this module uses."""

    root: Any  # zarr.Group opened for writing (precompute) or reading

    @property
    def n_frames(self) -> int: ...
    @property
    def n_episodes(self) -> int: ...
    @property
    def episode_ends(self) -> np.ndarray: ...
    @property
    def instructions(self) -> Sequence[str]: ...
    @property
    def meta(self) -> Any: ...  # .camera_names
    def array(self, key: str) -> Any: ...
    def read_frames(self, key: str, frames: np.ndarray, direct: bool = True) -> np.ndarray: ...


def _where(rb: DatasetLike) -> str:
    return str(getattr(rb, "path", None) or getattr(rb.root, "store", "dataset store"))


def episodes_digest(rb: DatasetLike) -> str:
    """Hash of episode boundaries + instructions: changes when episodes are added or rewritten."""
    h = hashlib.sha256()
    h.update(np.asarray(rb.episode_ends[: rb.n_episodes], dtype=np.int64).tobytes())
    for s in rb.instructions[: rb.n_episodes]:
        h.update(s.encode() + b"\0")
    return h.hexdigest()[:16]


def frame_episodes(rb: DatasetLike, frames: np.ndarray) -> np.ndarray:
    """Episode index of each frame index."""
    ends = np.asarray(rb.episode_ends[: rb.n_episodes], dtype=np.int64)
    return np.searchsorted(ends, frames, side="right")


def precompute_embeddings(
    rb: DatasetLike,
    enc: FrozenEncoder,
    batch_size: int = 32,
    dtype: str = "float16",
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    direct_reads: bool = True,
    prefetch: bool = True,
) -> str:
    """Encode every frame of `rb` once and store the tokens under `embeddings/<enc.fingerprint>/`.

    Cameras are `rb.meta.camera_names`; each batch of frames of all cameras is one forward pass.
    Returns the fingerprint. An existing complete, up-to-date group is reused unless `overwrite`.

    direct_reads: read image chunk files through `rb.read_frames` (the sampler's direct chunk reader,
        ~3x faster than zarr's API for one-frame chunks); False reads slices through zarr.
    prefetch: overlap reading the next batch and writing the previous one with the forward pass, in
        one I/O thread. Neither option changes the stored values (`benchmarks/bench_embed.py`).
    progress: called with (frames written, total frames) after each batch's write.
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"embedding dtype={dtype!r}: expected float16 or float32")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    fp = enc.fingerprint
    cams = list(rb.meta.camera_names)
    if not cams:
        raise StaleEmbeddingsError(f"{_where(rb)}: meta.camera_names is empty; nothing to embed")
    emb = rb.root.require_group(EMBEDDINGS_GROUP)
    if fp in emb and not overwrite:
        try:
            EmbeddingStore(rb, fp)
            log.info("embeddings %s already complete in %s", fp, _where(rb))
            return fp
        except StaleEmbeddingsError as e:
            log.info("recomputing embeddings: %s", e)
    n, n_img, d, L = rb.n_frames, enc.tokens_per_image, enc.dim, enc.cfg.max_text_len
    g = emb.create_group(fp, overwrite=True)
    attrs = {
        "format_version": FORMAT_VERSION,
        "fingerprint": fp,
        "encoder": enc.cfg.to_dict(),
        "dim": d,
        "tokens_per_image": n_img,
        "max_text_len": L,
        "cameras": cams,
        "separable": enc.separable,
        "n_frames": n,
        "n_episodes": rb.n_episodes,
        "episodes_digest": episodes_digest(rb),
        "dtype": dtype,
        "complete": False,
    }
    g.attrs.update(attrs)
    chunk = max(1, min(batch_size, n))
    arrays = {
        c: g.create_array(f"image_{c}", shape=(n, n_img, d), chunks=(chunk, n_img, d), dtype=dtype)
        for c in cams
    }
    n_text = rb.n_episodes if enc.separable else n
    text = g.create_array(
        "text", shape=(n_text, L, d), chunks=(max(1, min(chunk, n_text)), L, d), dtype=dtype
    )
    text_mask = g.create_array(
        "text_mask", shape=(n_text, L), chunks=(max(1, min(chunk, n_text)), L), dtype="bool"
    )
    instructions = list(rb.instructions[: rb.n_episodes])
    if enc.separable:
        for s in range(0, rb.n_episodes, batch_size):
            out = enc.encode_text(instructions[s : s + batch_size])
            text[s : s + out.batch_size] = out.tokens.cpu().numpy().astype(dtype)
            text_mask[s : s + out.batch_size] = out.mask.cpu().numpy()

    def read(s: int, e: int) -> dict[str, np.ndarray]:
        if direct_reads:
            return {c: rb.read_frames(f"image_{c}", np.arange(s, e)) for c in cams}
        return {c: np.asarray(rb.array(f"image_{c}")[s:e]) for c in cams}

    targets = {"text": text, "text_mask": text_mask, **{f"image_{c}": arrays[c] for c in cams}}

    def write(s: int, e: int, rows: dict[str, np.ndarray]) -> None:
        for name, v in rows.items():
            targets[name][s:e] = v

    # One I/O thread reads batch k+1 and writes batch k-1 while the encoder runs batch k in this
    # thread. Writes complete in order; one write is in flight at a time (bounded memory), and its
    # error surfaces on the next wait. `complete` is set only after the last write returned.
    spans = [(s, min(n, s + batch_size)) for s in range(0, n, batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-embed-io") as io:
        submit = io.submit if prefetch else _run_now
        next_read = submit(read, *spans[0]) if spans else None
        pending: tuple[Future[None], int] | None = None
        try:
            for k, (s, e) in enumerate(spans):
                assert next_read is not None
                images = next_read.result()
                if k + 1 < len(spans):
                    next_read = submit(read, *spans[k + 1])
                rows: dict[str, np.ndarray] = {}
                if enc.separable:
                    out = enc.encode_images(images)
                else:
                    eps = frame_episodes(rb, np.arange(s, e))
                    out = enc.encode(images, [instructions[i] for i in eps])
                    rows["text"] = out.segment("text").tokens.cpu().numpy().astype(dtype)
                    rows["text_mask"] = out.segment("text").mask.cpu().numpy()
                for c in cams:
                    rows[f"image_{c}"] = out.segment(c).tokens.cpu().numpy().astype(dtype)
                if pending is not None:
                    _finish(pending, n, progress)
                pending = (submit(write, s, e, rows), e)
            if pending is not None:
                _finish(pending, n, progress)
        except BaseException:
            io.shutdown(wait=True, cancel_futures=True)
            raise
    g.attrs["complete"] = True
    return fp


def _run_now(fn: Callable[..., T], *args: Any) -> Future[T]:
    """`fn(*args)` in the calling thread, as a done Future (no prefetch)."""
    f: Future[T] = Future()
    try:
        f.set_result(fn(*args))
    except BaseException as e:
        f.set_exception(e)
    return f


def _finish(pending: tuple[Future[None], int], n: int, progress: Callable[[int, int], None] | None) -> None:
    """Wait for a batch's write (re-raising its error), then report the frames written so far."""
    fut, done = pending
    fut.result()
    if progress is not None:
        progress(done, n)


class EmbeddingStore:
    """Reads precomputed tokens for training; validates them against `fingerprint` and the dataset.

    Raises:
        StaleEmbeddingsError: no complete group for this fingerprint, or the dataset changed since.
    """

    def __init__(self, rb: DatasetLike, fingerprint: str, in_memory: bool = False) -> None:
        where = _where(rb)
        hint = f"run `vla-embed dataset={where} encoder=<the encoder config>` to (re)compute them"
        emb = rb.root.get(EMBEDDINGS_GROUP) if hasattr(rb.root, "get") else None
        stored = sorted(emb.group_keys()) if emb is not None else []
        if fingerprint not in stored:
            raise StaleEmbeddingsError(
                f"{where}: no embeddings for encoder fingerprint {fingerprint!r} (stored: {stored or 'none'}); "
                f"the encoder's model, weights, layer, token settings or preprocessing differ from every "
                f"stored set; {hint}"
            )
        g = emb[fingerprint]
        a = dict(g.attrs)
        if a.get("fingerprint") != fingerprint:
            raise StaleEmbeddingsError(
                f"{where}: embeddings/{fingerprint} records fingerprint {a.get('fingerprint')!r}; {hint}"
            )
        if not a.get("complete"):
            raise StaleEmbeddingsError(
                f"{where}: embeddings/{fingerprint} is incomplete (interrupted run); {hint}"
            )
        if a.get("n_frames") != rb.n_frames or a.get("episodes_digest") != episodes_digest(rb):
            raise StaleEmbeddingsError(
                f"{where}: embeddings/{fingerprint} cover {a.get('n_frames')} frames / {a.get('n_episodes')} "
                f"episodes but the dataset now has {rb.n_frames} / {rb.n_episodes} (or its episodes changed); {hint}"
            )
        self.rb, self.fingerprint, self.group, self.attrs = rb, fingerprint, g, a
        self.cameras: list[str] = list(a["cameras"])
        self.separable: bool = bool(a["separable"])
        self.dim: int = int(a["dim"])
        self.tokens_per_image: int = int(a["tokens_per_image"])
        self.max_text_len: int = int(a["max_text_len"])
        # in_memory: read every array once (tokens of a dataset are small next to its frames), so
        # training steps index RAM instead of decompressing zarr chunks.
        self._arrays: dict[str, Any] = {}
        if in_memory:
            names = [f"image_{c}" for c in self.cameras] + ["text", "text_mask"]
            self._arrays = {n: np.asarray(g[n][:]) for n in names}

    def _array(self, name: str) -> Any:
        return self._arrays.get(name, self.group[name]) if self._arrays else self.group[name]

    @classmethod
    def for_encoder(cls, rb: DatasetLike, enc: FrozenEncoder) -> EmbeddingStore:
        return cls(rb, enc.fingerprint)

    def _camera(self, key: str) -> str:
        cam = key.removeprefix("image_")
        if cam not in self.cameras:
            raise KeyError(f"embeddings/{self.fingerprint}: no camera {key!r}; have {self.cameras}")
        return cam

    def image_tokens(self, key: str, frame_indices: np.ndarray | Sequence[int]) -> torch.Tensor:
        """float32 (n, tokens_per_image, D) of camera `key` (`front` or `image_front`) at the frames."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        arr = self._array(f"image_{self._camera(key)}")
        return torch.from_numpy(_take(arr, idx).astype(np.float32))

    def text_tokens(self, episode: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Separable encoders: (L, D) float32 tokens and (L,) bool mask of one episode's instruction."""
        if not self.separable:
            raise StaleEmbeddingsError(
                f"embeddings/{self.fingerprint}: text tokens of a generative encoder are per frame; "
                "use encoder_output(frame_indices)"
            )
        if not 0 <= episode < self.rb.n_episodes:
            raise IndexError(f"episode {episode} out of range 0..{self.rb.n_episodes - 1}")
        return (
            torch.from_numpy(np.asarray(self._array("text")[episode]).astype(np.float32)),
            torch.from_numpy(np.asarray(self._array("text_mask")[episode])),
        )

    def encoder_output(self, frame_indices: np.ndarray | Sequence[int]) -> EncoderOutput:
        """What `enc.encode` returns for these frames (cameras in stored order, then text)."""
        idx = np.asarray(frame_indices, dtype=np.int64)
        parts = []
        for c in self.cameras:
            t = self.image_tokens(c, idx)
            parts.append(
                EncoderOutput(t, torch.ones(t.shape[:2], dtype=torch.bool), {c: slice(0, t.shape[1])})
            )
        rows = frame_episodes(self.rb, idx) if self.separable else idx
        text = torch.from_numpy(_take(self._array("text"), rows).astype(np.float32))
        mask = torch.from_numpy(_take(self._array("text_mask"), rows).astype(bool))
        parts.append(EncoderOutput(text, mask, {"text": slice(0, text.shape[1])}))
        return EncoderOutput.concat(parts)


def _take(arr: Any, idx: np.ndarray) -> np.ndarray:
    """Rows `idx` of a zarr array, reading each distinct row once (orthogonal selection)."""
    if idx.size == 0:
        return np.zeros((0, *arr.shape[1:]), dtype=arr.dtype)
    if idx.min() < 0 or idx.max() >= arr.shape[0]:
        raise IndexError(f"frame index out of range 0..{arr.shape[0] - 1}")
    if isinstance(arr, np.ndarray):
        return arr[idx]
    uniq, inv = np.unique(idx, return_inverse=True)
    return np.asarray(arr.oindex[uniq])[inv]
