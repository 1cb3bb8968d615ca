"""Image-token arrays for training: read into RAM, or memory-mapped `.npy` files when they do not fit.

`PrecomputedTokens` keeps every frame's image tokens in memory for fast batch gathers; at 1000+
demos per task that no longer fits (2000 demos of two 64 x 384 float16 cameras: 13.8 GB). In
`mmap` mode each camera's tokens are decoded once from the zarr store into an uncompressed `.npy`
file under `data.token_cache_dir` and opened memory-mapped: a batch reads its 64 rows through the
page cache, the kernel keeps what fits and drops the rest, and later runs on the same embeddings
(reruns, resumes) skip the decode (140-300 s of training setup at 2000 demos on this CPU).

A cache file is named for the dataset and camera plus a hash of what identifies its content: the
embeddings group (name, fingerprint, episodes digest, frame count, dtype) and the modification
times of its metadata files, which every (re)embedding rewrites. On open, a few rows are also
compared with the store, so a stale file is rebuilt rather than trained on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from vla.encoders.cache import EMBEDDINGS_GROUP, EmbeddingStore

log = logging.getLogger(__name__)

TOKEN_MODES = ("ram", "mmap", "auto")
# auto: memory-map when the tokens would take more than this share of the available memory (the
# model, optimizer, grounding scenes and page cache for the frames need the rest).
AUTO_RAM_FRACTION = 0.5
_READ_BLOCK_FRAMES = 4096
_SPOT_CHECK_ROWS = 8
_NP = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32)}


def stored_dtype(store: EmbeddingStore) -> torch.dtype:
    """The precision the tokens are stored in (vla-embed's dtype), kept in memory and in the files."""
    return torch.float16 if store.attrs.get("dtype") == "float16" else torch.float32


def _blocks(
    store: EmbeddingStore, camera: str, dtype: torch.dtype
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(start, stop, tokens) of `camera`, _READ_BLOCK_FRAMES frames at a time: whole-array reads
    converted afterwards peaked far above the result (2000 demos x 384-dim: killed at 22.8 GB RSS)."""
    n = int(store.rb.n_frames)
    if n == 0:
        raise ValueError(f"embeddings/{store.name}: the dataset has no frames")
    for start in range(0, n, _READ_BLOCK_FRAMES):
        stop = min(n, start + _READ_BLOCK_FRAMES)
        yield start, stop, store.image_tokens(camera, np.arange(start, stop), dtype=dtype)


def read_image_tokens(store: EmbeddingStore, camera: str, dtype: torch.dtype) -> torch.Tensor:
    """(n_frames, tokens_per_image, D) `dtype` tokens of `camera` in RAM, read block by block into one
    preallocated tensor."""
    out = torch.empty((int(store.rb.n_frames), store.tokens_per_image, store.dim), dtype=dtype)
    for start, stop, part in _blocks(store, camera, dtype):
        out[start:stop] = part
    return out


def image_tokens_nbytes(store: EmbeddingStore, cameras: list[str]) -> int:
    """Bytes the image tokens of `cameras` take in memory at the stored precision."""
    itemsize = _NP[stored_dtype(store)].itemsize
    return len(cameras) * int(store.rb.n_frames) * store.tokens_per_image * store.dim * itemsize


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (Linux); None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def choose_mode(mode: str, nbytes: int, available: int | None, processes: int = 1) -> str:
    """`ram` or `mmap` for `mode` (`auto`: mmap when `processes` copies of `nbytes`, one per training
    process on this machine, exceed AUTO_RAM_FRACTION of `available`; mapped files are shared)."""
    if mode not in TOKEN_MODES:
        raise ValueError(f"data.tokens must be one of {TOKEN_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    if available is None:
        return "ram"
    return "mmap" if nbytes * max(1, processes) > AUTO_RAM_FRACTION * available else "ram"


def local_processes() -> int:
    """Training processes on this machine (torchrun's LOCAL_WORLD_SIZE; 1 without torchrun)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return 0


def cache_path(store: EmbeddingStore, camera: str, cache_dir: Path) -> Path:
    """`<cache_dir>/<dataset hash>-<camera>-<content hash>.npy` for `camera`'s tokens in `store`."""
    ds = Path(str(getattr(store.rb, "path", "") or "")).resolve()
    group = ds / EMBEDDINGS_GROUP / store.name
    ident = {
        "dataset": str(ds),
        "group": store.name,
        "fingerprint": str(store.attrs.get("fingerprint")),
        "episodes_digest": str(store.attrs.get("episodes_digest")),
        "n_frames": int(store.rb.n_frames),
        "dtype": str(store.attrs.get("dtype")),
        "shape": [store.tokens_per_image, store.dim],
        "mtimes": [_mtime_ns(group / "zarr.json"), _mtime_ns(group / f"image_{camera}" / "zarr.json")],
    }
    content = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]
    prefix = hashlib.sha256(str(ds).encode()).hexdigest()[:12]
    return Path(cache_dir) / f"{prefix}-{camera}-{content}.npy"


def _spot_check(arr: np.ndarray, store: EmbeddingStore, camera: str, dtype: torch.dtype) -> bool:
    """True when a few rows of `arr` (first, last, spread between) equal the store's."""
    rows = np.unique(np.linspace(0, arr.shape[0] - 1, _SPOT_CHECK_ROWS).astype(np.int64))
    return bool(np.array_equal(np.asarray(arr[rows]), store.image_tokens(camera, rows, dtype=dtype).numpy()))


def _write(store: EmbeddingStore, camera: str, path: Path, dtype: torch.dtype) -> None:
    """Decode `camera`'s tokens block by block into `path` (written to a temporary name, then
    renamed, so an interrupted run leaves no half file under the real name)."""
    shape = (int(store.rb.n_frames), store.tokens_per_image, store.dim)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=_NP[dtype], shape=shape)
    try:
        for start, stop, part in _blocks(store, camera, dtype):
            out[start:stop] = part.numpy()
        out.flush()
        del out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def memmap_image_tokens(store: EmbeddingStore, camera: str, cache_dir: Path) -> torch.Tensor:
    """(n_frames, tokens_per_image, D) tokens of `camera` backed by a memory-mapped cache file
    (built on first use; older cache files of the same dataset and camera are removed then)."""
    if getattr(store.rb, "path", None) is None:
        raise ValueError("data.tokens=mmap needs a dataset on disk (the store has no path)")
    dtype = stored_dtype(store)
    path = cache_path(store, camera, cache_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    want = (int(store.rb.n_frames), store.tokens_per_image, store.dim)
    if path.exists():
        try:
            arr = np.load(path, mmap_mode="c")
            if arr.shape == want and arr.dtype == _NP[dtype] and _spot_check(arr, store, camera, dtype):
                log.info("tokens of %s: memory-mapped %s", camera, path)
                return torch.from_numpy(arr)
            log.warning("%s: does not match the store's tokens; rebuilding it", path)
        except (OSError, ValueError) as e:
            log.warning("%s: unreadable (%s); rebuilding it", path, e)
    for old in path.parent.glob(f"{path.name.rsplit('-', 1)[0]}-*.npy"):
        if old != path:  # another torchrun process may be writing or reading this very name
            old.unlink(missing_ok=True)  # an mmap already open on it stays valid (POSIX)
    gb = np.prod(want) * _NP[dtype].itemsize / 1e9
    log.info("tokens of %s: writing %.1f GB to %s (once per embeddings)", camera, gb, path)
    _write(store, camera, path, dtype)
    return torch.from_numpy(np.load(path, mmap_mode="c"))
