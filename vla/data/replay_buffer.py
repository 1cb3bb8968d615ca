"""`ReplayBuffer`: the native zarr v3 episode store (writer with atomic append, lazy reader).

Commit protocol of `add_episode` (why a crash never damages committed episodes):

1. grow every ``data/<key>`` array and write the new frames (frames beyond the committed ``n_frames``
   are invisible to readers);
2. grow ``meta/episode_ends`` and write the new end (entries beyond ``n_episodes`` are invisible);
3. rewrite the ``meta`` group's attributes with ``n_episodes + 1`` and the episode's instruction/info.
   This one file write is the commit point.

zarr's LocalStore writes every file to a temporary name and renames it over the target, so each file is
either old or new, never half written; a chunk shared with earlier episodes is rewritten with their
frames intact. Opening with ``mode="a"`` trims residue of an interrupted append before writing again.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla.data.errors import DatasetError, MissingStatsError
from vla.data.format import (
    DATA_GROUP,
    EPISODE_ENDS,
    EPISODE_ENDS_CHUNK,
    IMAGE_CHUNK_FRAMES,
    LOWDIM_CHUNK_FRAMES,
    META_GROUP,
    STATS_GROUP,
    DatasetMeta,
    camera_of,
    check_name,
    image_codecs,
    is_image_key,
    lowdim_codecs,
    to_json_value,
)
from vla.data.frame_reader import FrameReader
from vla.data.validate import (
    Layout,
    check_chunks,
    finite_problem,
    first_non_finite,
    inspect_store,
    open_root,
)


def _os_reason(e: OSError) -> str:
    """`read-only: <strerror>` for a write refused by the file system, else the OS error in one line."""
    import errno

    why = e.strerror or str(e)
    if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"read-only: {why}"
    return f"{type(e).__name__}: {why}"


# Target size of one low-dimensional chunk; keys with big frames get fewer frames per chunk.
_LOWDIM_CHUNK_BYTES = 4 << 20
_WRITE_CONFIG = {"write_empty_chunks": True}  # every chunk gets a file: a missing file means corruption


class ReplayBuffer:
    """Episodes of time-major arrays in a zarr v3 store. Create with `create`, read/append with `open`.

    Arrays are ``(N_frames, ...)``; episode ``i`` covers frames ``episode_slice(i)``. Reads are lazy:
    only the chunks of the requested frames are loaded. Picklable (reopens the store read-only in the
    receiving process), so a `SequenceDataset` over it works with DataLoader workers.
    """

    def __init__(self, path: Path, root: Any, layout: Layout, mode: str) -> None:
        # Use `create` / `open`; the constructor only wires an already-checked layout.
        self._path = path
        self._mode = mode
        self._meta: DatasetMeta = layout.meta  # type: ignore[assignment]
        self._ends = layout.episode_ends.astype(np.int64, copy=True)
        self._episodes: list[dict[str, Any]] = [dict(e) for e in layout.episodes]
        self._n_frames = int(layout.n_frames)
        self._keys = sorted(layout.arrays)
        self._shapes = {k: tuple(a.shape[1:]) for k, a in layout.arrays.items()}
        self._dtypes = {k: np.dtype(a.dtype) for k, a in layout.arrays.items()}
        self._root = root
        self._arrays: dict[str, Any] = {k: self._writable(a) for k, a in layout.arrays.items()}
        self._frame_readers: dict[str, FrameReader | None] = {}
        self._pid = os.getpid()

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, path: str | Path, meta: DatasetMeta, overwrite: bool = False) -> ReplayBuffer:
        """New empty store at `path` (append mode). FileExistsError if it exists, unless `overwrite`."""
        import zarr

        path = Path(path)
        if not isinstance(meta, DatasetMeta):
            raise TypeError(f"meta must be a DatasetMeta, got {type(meta).__name__}")
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
        root = zarr.open_group(store=str(path), mode="w-", attributes=meta.to_json())
        root.create_group(DATA_GROUP)
        meta_group = root.create_group(META_GROUP)
        meta_group.create_array(
            EPISODE_ENDS,
            shape=(0,),
            dtype="int64",
            chunks=(EPISODE_ENDS_CHUNK,),
            compressors=lowdim_codecs(),
            fill_value=0,
            config=_WRITE_CONFIG,
        )
        # The commit record is written last: a store is only openable once it exists.
        meta_group.update_attributes({"n_episodes": 0, "n_frames": 0, "episodes": []})
        return cls.open(path, mode="a")

    @classmethod
    def open(cls, path: str | Path, mode: str = "r") -> ReplayBuffer:
        """Open an existing store: ``"r"`` read-only, ``"a"`` to append (trims residue of a crash).

        Validates structure and metadata (not chunk contents; see `vla.data.validate_store`) and raises
        DatasetError naming every problem's file and field.
        """
        if mode not in ("r", "a"):
            raise ValueError(f"mode must be 'r' or 'a', got {mode!r}")
        path = Path(path)
        root = open_root(path, mode="r" if mode == "r" else "r+")
        layout = inspect_store(root, path)
        layout.raise_if_problems()
        rb = cls(path, root, layout, mode)
        if mode == "a":
            try:
                rb._trim_uncommitted(layout)
            except OSError as e:
                raise DatasetError(
                    f"{path}: cannot open for writing: trimming an interrupted append failed "
                    f"({_os_reason(e)}); open it with mode='r' or copy the store to writable storage"
                ) from None
        return rb

    def _trim_uncommitted(self, layout: Layout) -> None:
        """Drop frames/ends an interrupted append left beyond the commit record, and its temp files."""
        data = self._root[DATA_GROUP]
        for key in layout.uncommitted:
            if self.n_episodes == 0:
                del data[key]  # arrays of an uncommitted first episode: recreated by the next append
            else:
                arr = self._arrays[key]
                arr.resize((self._n_frames, *arr.shape[1:]))
        ends = self._root[META_GROUP][EPISODE_ENDS]
        if ends.shape[0] > self.n_episodes:
            ends.resize((self.n_episodes,))
        # zarr writes `<file>.<uuid>.partial` then renames; a kill can leave the temporary behind.
        for tmp in self._path.rglob("*.partial"):
            tmp.unlink(missing_ok=True)

    # ----------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_root"] = None
        state["_arrays"] = {}
        state["_frame_readers"] = {}
        state["_mode"] = "r"  # a copy in another process never writes
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._pid = -1

    def _ensure_open(self) -> None:
        # Reopen lazily in each process (DataLoader workers); zarr handles are not shared across forks.
        if self._root is None or self._pid != os.getpid():
            self._root = open_root(self._path, mode="r" if self._mode == "r" else "r+")
            data = self._root[DATA_GROUP]
            self._arrays = {k: self._writable(data[k]) for k in self._keys}
            self._frame_readers = {}
            self._pid = os.getpid()

    def _writable(self, arr: Any) -> Any:
        return arr.with_config(_WRITE_CONFIG) if self._mode == "a" else arr

    # ----------------------------------------------------------------------------- read API
    @property
    def path(self) -> Path:
        return self._path

    @property
    def mode(self) -> str:
        return self._mode

    @property
    def meta(self) -> DatasetMeta:
        return self._meta

    @property
    def root(self) -> Any:
        """The zarr root group (other modules may add groups, e.g. ``embeddings/``)."""
        self._ensure_open()
        return self._root

    @property
    def n_episodes(self) -> int:
        return len(self._episodes)

    @property
    def n_frames(self) -> int:
        return self._n_frames

    @property
    def episode_ends(self) -> np.ndarray:
        """int64 (n_episodes,): exclusive end frame of each episode (a copy)."""
        return self._ends.copy()

    @property
    def episode_lengths(self) -> np.ndarray:
        return np.diff(self._ends, prepend=0)

    @property
    def keys(self) -> list[str]:
        return list(self._keys)

    def shape(self, key: str) -> tuple[int, ...]:
        """Per-frame shape of `key` (without the time axis)."""
        self._check_key(key)
        return self._shapes[key]

    def dtype(self, key: str) -> np.dtype:
        self._check_key(key)
        return self._dtypes[key]

    @property
    def instructions(self) -> list[str]:
        return [e["instruction"] for e in self._episodes]

    def episode_info(self, i: int) -> dict[str, Any]:
        """The JSON `info` dict given to `add_episode` (a copy)."""
        i = self._check_episode(i)
        return dict(self._episodes[i].get("info", {}))

    def episode_slice(self, i: int) -> slice:
        i = self._check_episode(i)
        start = int(self._ends[i - 1]) if i > 0 else 0
        return slice(start, int(self._ends[i]))

    def array(self, key: str) -> Any:
        """Lazy time-major zarr.Array of `key`. Only frames ``[:n_frames]`` are committed."""
        self._check_key(key)
        self._ensure_open()
        return self._arrays[key]

    def read(self, key: str, start: int, stop: int, check_finite: bool = True) -> np.ndarray:
        """Frames ``[start, stop)`` of `key`; a corrupt chunk raises DatasetError naming its file.

        check_finite: a NaN/Inf in a float array (the format requires finite floats) raises
            DatasetError naming the array, the first bad frame and its episode, before it can reach
            statistics or a loss. One vectorised pass over what was read; no cost for integer arrays.
        """
        self._ensure_open()
        arr = self._arrays[key]
        afile = f"{self._path}/{DATA_GROUP}/{key}"
        try:
            x = arr[start:stop]
        except Exception as e:
            # Name the exact bad chunk (and its episode) instead of surfacing a codec error.
            problems = check_chunks(arr, afile, stop, self._ends, start=start)
            where = "; ".join(str(p) for p in problems) or f"{afile}: frames {start}-{stop - 1}"
            raise DatasetError(f"cannot read {where} ({type(e).__name__}: {e})") from e
        if check_finite:
            found = first_non_finite(x)
            if found is not None:
                p = finite_problem(afile, start + found[0], None, found[2], self._ends)
                raise DatasetError(
                    f"{p.file}: {p.message}; `vla-dataset validate {self._path}` lists every bad array"
                )
        return x

    def read_frames(self, key: str, frames: np.ndarray, direct: bool = True) -> np.ndarray:
        """Frames at global indices `frames` (any order, repeats allowed): (len(frames), ...).

        direct: for image arrays in this package's layout, decode chunk files in the calling thread
        (`vla.data.frame_reader`, several times faster for small windows than zarr's API);
        otherwise one zarr read of the covering range.
        """
        frames = np.asarray(frames, dtype=np.int64)
        lo, hi = int(frames.min()), int(frames.max()) + 1
        if lo < 0 or hi > self._n_frames:
            raise IndexError(
                f"{self._path}/{DATA_GROUP}/{key}: frames {lo}..{hi - 1} outside [0, {self._n_frames})"
            )
        if direct and is_image_key(key):
            self._ensure_open()
            if key not in self._frame_readers:
                adir = self._path / DATA_GROUP / key
                self._frame_readers[key] = FrameReader.for_array(adir, self._arrays[key])
            reader = self._frame_readers[key]
            if reader is not None:
                try:
                    return reader.frames(frames)
                except DatasetError as e:
                    ep = int(np.searchsorted(self._ends, lo, side="right"))
                    raise DatasetError(f"{e} [episode {ep}]") from None
        return self.read(key, lo, hi)[frames - lo]

    def episode(self, i: int, keys: list[str] | None = None) -> dict[str, np.ndarray]:
        """All frames of episode `i`: {key: (T_i, ...)}; loads only that episode's chunks."""
        sl = self.episode_slice(i)
        keys = self._keys if keys is None else keys
        for k in keys:
            self._check_key(k)
        return {k: self.read(k, sl.start, sl.stop) for k in keys}

    def _check_key(self, key: str) -> None:
        if key not in self._shapes:
            raise KeyError(f"{self._path}/{DATA_GROUP}: no key {key!r}; keys are {self._keys}")

    def _check_episode(self, i: int) -> int:
        n = self.n_episodes
        if not isinstance(i, int | np.integer) or not -n <= i < n:
            raise IndexError(f"{self._path}: episode {i!r} out of range ({n} episodes)")
        return int(i) % n

    def __repr__(self) -> str:
        return (
            f"ReplayBuffer({str(self._path)!r}, mode={self._mode!r}, episodes={self.n_episodes}, "
            f"frames={self.n_frames}, keys={self._keys})"
        )

    # ----------------------------------------------------------------------------- write API
    def _require_writable(self) -> None:
        if self._mode != "a":
            raise DatasetError(
                f"{self._path}: opened read-only; use ReplayBuffer.open(path, mode='a') to write"
            )

    def add_episode(
        self, data: Mapping[str, np.ndarray], instruction: str, info: Mapping[str, Any] | None = None
    ) -> int:
        """Append one episode atomically and return its index.

        data: {key: (T, ...)} with the same T >= 1 for every key; ``image_<cam>`` uint8 (T, H, W, 3) for
            each camera of `meta.camera_names`; floats must be finite. The first episode fixes the keys,
            per-frame shapes and dtypes (float64 is stored as float32); later episodes must match them
            (values are cast to the stored dtype when that is a same-kind cast).
        instruction: the episode's language instruction.
        info: JSON-able per-episode dict (task, seed, success, ...).
        """
        self._require_writable()
        self._ensure_open()
        arrays, T = self._check_episode_data(data)
        if not isinstance(instruction, str):
            raise DatasetError(
                f"{self._path}: instruction must be a string, got {type(instruction).__name__}"
            )
        record = {"instruction": instruction, "info": to_json_value(dict(info or {}), f"{self._path}: info")}

        if self.n_episodes == 0:
            self._create_arrays(arrays)
        n, e = self._n_frames, self.n_episodes
        # 1. data (invisible until committed)
        for key, x in arrays.items():
            arr = self._arrays[key]
            arr.resize((n + T, *arr.shape[1:]))
            arr[n : n + T] = x
        # 2. episode end (invisible until committed)
        ends = self._root[META_GROUP][EPISODE_ENDS].with_config(_WRITE_CONFIG)
        ends.resize((e + 1,))
        ends[e] = n + T
        # 3. commit point: one atomic rewrite of meta/zarr.json
        episodes = [*self._episodes, record]
        self._root[META_GROUP].update_attributes(
            {"n_episodes": e + 1, "n_frames": n + T, "episodes": episodes}
        )
        self._episodes = episodes
        self._ends = np.append(self._ends, np.int64(n + T))
        self._n_frames = n + T
        return e

    def _check_episode_data(self, data: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        where = f"{self._path}: add_episode"
        if not isinstance(data, Mapping) or not data:
            raise DatasetError(f"{where}: data must be a non-empty dict of arrays")
        out: dict[str, np.ndarray] = {}
        lengths = {}
        for key, value in data.items():
            check_name(key, f"{where}: key")
            x = np.asarray(value)
            if x.ndim < 1:
                raise DatasetError(f"{where}: {key!r} must be time-major (T, ...), got a scalar")
            lengths[key] = x.shape[0]
            if is_image_key(key):
                if x.dtype != np.uint8:
                    raise DatasetError(f"{where}: {key!r} dtype {x.dtype}, expected uint8 (T, H, W, 3)")
                if x.ndim != 4 or x.shape[-1] != 3:
                    raise DatasetError(f"{where}: {key!r} shape {x.shape}, expected (T, H, W, 3)")
                if camera_of(key) not in self._meta.camera_names:
                    raise DatasetError(
                        f"{where}: {key!r}: camera not in meta.camera_names {self._meta.camera_names}"
                    )
            elif x.dtype.kind not in "biuf":
                raise DatasetError(f"{where}: {key!r} dtype {x.dtype}, expected numeric or bool")
            if x.dtype.kind == "f" and not np.isfinite(x).all():
                bad = int(np.argwhere(~np.isfinite(x.reshape(x.shape[0], -1)))[0, 0])
                raise DatasetError(f"{where}: {key!r} has a non-finite value at frame {bad}")
            if self.n_episodes == 0:
                if x.dtype == np.float64:
                    x = x.astype(np.float32)  # the stack is float32 end to end
            else:
                if key not in self._shapes:
                    raise DatasetError(f"{where}: unexpected key {key!r}; the store has keys {self._keys}")
                if x.shape[1:] != self._shapes[key]:
                    raise DatasetError(
                        f"{where}: {key!r} per-frame shape {x.shape[1:]}, the store has {self._shapes[key]}"
                    )
                want = self._dtypes[key]
                if x.dtype != want:
                    if not np.can_cast(x.dtype, want, casting="same_kind"):
                        raise DatasetError(f"{where}: {key!r} dtype {x.dtype} cannot be stored as {want}")
                    x = x.astype(want)
            out[key] = np.ascontiguousarray(x)
        if len(set(lengths.values())) != 1:
            raise DatasetError(f"{where}: keys have different lengths {lengths}")
        T = next(iter(lengths.values()))
        if T < 1:
            raise DatasetError(f"{where}: empty episode (T = 0)")
        missing = [k for k in self._meta.image_keys if k not in out]
        if self.n_episodes and set(out) != set(self._keys):
            missing = sorted(set(self._keys) - set(out))
        if missing:
            raise DatasetError(f"{where}: missing key(s) {missing}")
        return out, T

    def _create_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        data = self._root[DATA_GROUP]
        # Residue of an interrupted first append: arrays exist but no episode was committed.
        for name, _ in list(data.members()):
            del data[name]
        self._arrays = {}
        self._frame_readers = {}
        for key, x in sorted(arrays.items()):
            feat = x.shape[1:]
            if is_image_key(key):
                chunks, codecs = (IMAGE_CHUNK_FRAMES, *feat), image_codecs()
            else:
                frame_bytes = max(1, int(np.prod(feat, dtype=np.int64)) * x.dtype.itemsize)
                t = max(1, min(LOWDIM_CHUNK_FRAMES, _LOWDIM_CHUNK_BYTES // frame_bytes))
                chunks, codecs = (t, *feat), lowdim_codecs()
            arr = data.create_array(
                key,
                shape=(0, *feat),
                dtype=x.dtype,
                chunks=chunks,
                compressors=codecs,
                fill_value=0,
                config=_WRITE_CONFIG,
            )
            self._arrays[key] = arr.with_config(_WRITE_CONFIG)
        self._keys = sorted(arrays)
        self._shapes = {k: tuple(x.shape[1:]) for k, x in arrays.items()}
        self._dtypes = {k: np.dtype(x.dtype) for k, x in arrays.items()}

    def set_meta(self, meta: DatasetMeta) -> None:
        """Replace the store-level metadata (e.g. add key docs or `extra`)."""
        self._require_writable()
        self._ensure_open()
        self._root.update_attributes(meta.to_json())
        self._meta = meta

    # ----------------------------------------------------------------------------- statistics
    def save_stats(self, stats: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Store normalization statistics ({key: {"min","max","mean","std"}}) in the ``stats`` group."""
        self._require_writable()
        self._ensure_open()
        doc: dict[str, Any] = {}
        for key, s in stats.items():
            if key not in self._shapes:
                raise DatasetError(f"{self._path}/{STATS_GROUP}: stats for unknown key {key!r}")
            doc[key] = {name: np.asarray(v, dtype=np.float64).tolist() for name, v in s.items()}
        attrs = {
            "n_episodes": self.n_episodes,
            "n_frames": self.n_frames,
            "keys": to_json_value(doc, f"{self._path}/{STATS_GROUP}"),
        }
        try:
            try:
                existing = self._root[STATS_GROUP]
            except (KeyError, ValueError):  # absent, or an unreadable stats/zarr.json: derived data,
                existing = None  # (re)created whole below
            if existing is not None:
                existing.update_attributes(attrs)
            else:
                self._root.create_group(STATS_GROUP, attributes=attrs, overwrite=True)
        except OSError as e:
            raise DatasetError(
                f"{self._path}: cannot write {STATS_GROUP}/ ({_os_reason(e)}); copy the store to writable "
                "storage and run `vla-dataset stats` on the copy (training computes its statistics "
                "without writing them)"
            ) from None

    def load_stats(self, allow_stale: bool = False) -> dict[str, dict[str, np.ndarray]]:
        """Statistics saved by `save_stats` as float32 arrays.

        Raises MissingStatsError when none are stored, DatasetError when they were computed over a
        different number of frames than the store now holds (unless `allow_stale`).
        """
        self._ensure_open()
        sfile = f"{self._path}/{STATS_GROUP}"
        try:
            group = self._root[STATS_GROUP]
        except KeyError:
            raise MissingStatsError(
                f"{sfile}: no normalization statistics stored; run `vla-dataset stats {self._path}` "
                "or rb.save_stats(compute_stats(rb))"
            ) from None
        except Exception as e:  # invalid JSON or zarr metadata in stats/zarr.json
            raise DatasetError(
                f"{sfile}/zarr.json: unreadable zarr metadata ({type(e).__name__}: {e}); recompute the "
                f"statistics (`vla-dataset stats {self._path}`)"
            ) from None
        attrs = dict(group.attrs)
        if not allow_stale and attrs.get("n_frames") != self.n_frames:
            raise DatasetError(
                f"{sfile}: n_frames: statistics cover {attrs.get('n_frames')} frames but the store has "
                f"{self.n_frames}; recompute them (`vla-dataset stats {self._path}`)"
            )
        keys = attrs.get("keys")
        if not isinstance(keys, dict):
            raise DatasetError(f"{sfile}/zarr.json: keys: expected an object, got {keys!r}")
        out: dict[str, dict[str, np.ndarray]] = {}
        for key, s in keys.items():
            try:
                out[key] = {name: np.asarray(v, dtype=np.float32) for name, v in s.items()}
            except (TypeError, ValueError, AttributeError) as e:
                raise DatasetError(f"{sfile}/zarr.json: keys.{key}: malformed statistics ({e})") from None
        return out
