"""Structural and content checks of a native store; each problem names the file, the field and the episode.

`inspect_store` runs the cheap checks (metadata, `meta/episode_ends`, array lengths/dtypes) that
`ReplayBuffer.open` needs; `validate_store` adds the deep check that every committed chunk file exists
and decodes (a checksum codec makes any truncation or bit flip fail to decode) and that float arrays
are finite, for `data/` and for every array of the other groups (`embeddings/`, ...). A node whose
`zarr.json` cannot be parsed is reported as a problem naming that file, never as a JSON traceback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.data.errors import DatasetError
from vla.data.format import (
    DATA_GROUP,
    EPISODE_ENDS,
    IMAGE_PREFIX,
    META_GROUP,
    DatasetMeta,
    camera_of,
    is_image_key,
)


@dataclass
class Problem:
    """One defect. `file` is the store path joined with the array/group (e.g. ``x.zarr/meta/episode_ends``)."""

    file: str
    field: str
    message: str
    episode: int | None = None

    def __str__(self) -> str:
        ep = f" [episode {self.episode}]" if self.episode is not None else ""
        return f"{self.file}: {self.field}: {self.message}{ep}"


@dataclass
class Layout:
    """What the cheap checks read: enough for a reader to serve committed episodes."""

    path: str
    meta: DatasetMeta | None = None
    n_episodes: int = 0
    n_frames: int = 0
    episode_ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    episodes: list[dict[str, Any]] = field(default_factory=list)  # [{"instruction", "info"}]
    arrays: dict[str, Any] = field(default_factory=dict)  # key -> zarr.Array (data/<key>)
    extra_groups: list[str] = field(default_factory=list)  # top-level children other than data/meta
    uncommitted: dict[str, int] = field(default_factory=dict)  # key -> frames beyond n_frames
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_if_problems(self) -> None:
        if self.problems:
            lines = "\n  ".join(str(p) for p in self.problems)
            raise DatasetError(f"{self.path}: invalid dataset ({len(self.problems)} problem(s)):\n  {lines}")


def open_root(path: str | Path, mode: str = "r") -> Any:
    """Open the root group of a native store, with a clear error when `path` is no zarr v3 store."""
    import zarr

    p = Path(path)
    if not p.exists():
        raise DatasetError(f"{p}: not a zarr store (path does not exist)")
    if not p.is_dir():
        raise DatasetError(f"{p}: not a zarr store (a file, expected a directory holding zarr.json)")
    zj = p / "zarr.json"
    if not zj.is_file():
        if (p / ".zgroup").is_file() or (p / ".zarray").is_file():
            raise DatasetError(
                f"{p}: zarr v2 store (.zgroup), expected the native zarr v3 format; "
                "convert a Diffusion Policy store with `vla-dataset import-dp SRC DST`"
            )
        raise DatasetError(f"{p}/zarr.json: not a zarr store (no zarr.json at its root)")
    try:
        doc = json.loads(zj.read_text())
    except (OSError, ValueError) as e:
        raise DatasetError(f"{zj}: unreadable zarr metadata ({e})") from None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise DatasetError(
            f"{zj}: expected a zarr v3 group (zarr_format 3, node_type 'group'), got {doc!r:.200}"
        )
    try:
        return zarr.open_group(store=str(p), mode=mode)
    except Exception as e:
        raise DatasetError(f"{p}: cannot open zarr group ({type(e).__name__}: {e})") from None


def _episode_of_frame(ends: np.ndarray, frame: int) -> int:
    return int(np.searchsorted(ends, frame, side="right"))


def child_names(group: Any) -> list[str]:
    """Names of a group's children from the store listing, without parsing their metadata.

    zarr's own listing (`members`, `group_keys`, `in`) parses every child's `zarr.json` and fails as a
    whole on the first one that is not valid JSON; this lists directories that hold a `zarr.json`.
    """
    store, prefix = getattr(group, "store", None), getattr(group, "path", "")
    if not hasattr(store, "list_dir") or not hasattr(store, "exists"):
        return sorted(name for name, _ in group.members())

    async def listing() -> list[str]:
        names = [n async for n in store.list_dir(prefix)]
        sep = f"{prefix}/" if prefix else ""
        return sorted([n for n in names if n != "zarr.json" and await store.exists(f"{sep}{n}/zarr.json")])

    from zarr.core.sync import sync

    return sync(listing())


def safe_members(group: Any, gfile: str) -> tuple[dict[str, Any], dict[str, Problem]]:
    """({name: node}, {name: problem}) of a group's children; `gfile` is the group's path for messages.

    A child whose `zarr.json` cannot be read or parsed is a problem naming that file (the others are
    still returned), instead of zarr's JSON/metadata exception for the whole listing.
    """
    try:
        return dict(group.members()), {}
    except Exception:
        pass
    nodes: dict[str, Any] = {}
    bad: dict[str, Problem] = {}
    for name in child_names(group):
        try:
            nodes[name] = group[name]
        except Exception as e:
            bad[name] = Problem(
                f"{gfile}/{name}/zarr.json", "metadata", f"unreadable zarr metadata ({type(e).__name__}: {e})"
            )
    return nodes, bad


def _is_array(node: Any) -> bool:
    import zarr

    return isinstance(node, zarr.Array)


def inspect_store(root: Any, path: str | Path) -> Layout:
    """Cheap checks of metadata and structure (reads JSON documents and `meta/episode_ends` only)."""
    path = str(path)
    lay = Layout(path=path)
    P = lay.problems

    try:
        lay.meta = DatasetMeta.from_json(dict(root.attrs), f"{path}/zarr.json")
    except DatasetError as e:
        P.append(Problem(f"{path}/zarr.json", "attributes", str(e).split(": ", 1)[-1]))

    children, unreadable = safe_members(root, path)
    lay.extra_groups = sorted(n for n in {*children, *unreadable} if n not in (DATA_GROUP, META_GROUP))
    # Unreadable optional groups (embeddings/, stats/) are reported by `validate_store` and by their
    # readers; they do not stop the episodes from being read.
    for name in (META_GROUP, DATA_GROUP):
        if name in unreadable:
            P.append(unreadable[name])
    if META_GROUP in unreadable:
        return lay

    # --- meta group: commit record and episode_ends ---------------------------------------------
    meta_file = f"{path}/{META_GROUP}"
    meta = children.get(META_GROUP)
    if meta is None or _is_array(meta):
        P.append(
            Problem(meta_file, META_GROUP, "missing group 'meta' (holds episode_ends and the commit record)")
        )
        return lay
    rec = dict(meta.attrs)
    n_eps, n_frames, episodes = rec.get("n_episodes"), rec.get("n_frames"), rec.get("episodes")
    if not isinstance(n_eps, int) or isinstance(n_eps, bool) or n_eps < 0:
        P.append(Problem(f"{meta_file}/zarr.json", "n_episodes", f"expected an integer >= 0, got {n_eps!r}"))
        return lay
    if not isinstance(n_frames, int) or isinstance(n_frames, bool) or n_frames < 0:
        P.append(Problem(f"{meta_file}/zarr.json", "n_frames", f"expected an integer >= 0, got {n_frames!r}"))
        return lay
    if not isinstance(episodes, list) or len(episodes) != n_eps:
        got = len(episodes) if isinstance(episodes, list) else repr(episodes)
        P.append(
            Problem(f"{meta_file}/zarr.json", "episodes", f"expected a list of {n_eps} entries, got {got}")
        )
        return lay
    for i, ep in enumerate(episodes):
        if not isinstance(ep, dict) or not isinstance(ep.get("instruction"), str):
            P.append(
                Problem(f"{meta_file}/zarr.json", f"episodes[{i}].instruction", "missing or not a string", i)
            )
        elif not isinstance(ep.get("info", {}), dict):
            P.append(Problem(f"{meta_file}/zarr.json", f"episodes[{i}].info", "not an object", i))
    lay.n_episodes, lay.n_frames, lay.episodes = n_eps, n_frames, episodes

    ends_file = f"{meta_file}/{EPISODE_ENDS}"
    meta_members, meta_bad = safe_members(meta, meta_file)
    if EPISODE_ENDS in meta_bad:
        P.append(meta_bad[EPISODE_ENDS])
        return lay
    ends_arr = meta_members.get(EPISODE_ENDS)
    if ends_arr is None or not _is_array(ends_arr):
        P.append(
            Problem(ends_file, EPISODE_ENDS, "missing array meta/episode_ends (int64 end frame per episode)")
        )
        return lay
    if ends_arr.ndim != 1:
        P.append(Problem(ends_file, "shape", f"expected 1-D, got shape {ends_arr.shape}"))
        return lay
    if ends_arr.dtype != np.int64:
        P.append(Problem(ends_file, "dtype", f"dtype {ends_arr.dtype}, expected int64"))
        return lay
    if ends_arr.shape[0] < n_eps:
        P.append(
            Problem(
                ends_file,
                "shape",
                f"has {ends_arr.shape[0]} entries but the commit record has {n_eps} episodes",
            )
        )
        return lay
    if ends_arr.shape[0] > n_eps:
        lay.notes.append(
            f"{ends_file}: {ends_arr.shape[0] - n_eps} uncommitted entries ignored (interrupted append)"
        )
    try:
        ends = np.asarray(ends_arr[:n_eps], dtype=np.int64)
    except Exception as e:
        P.append(Problem(ends_file, "chunks", f"cannot decode ({type(e).__name__}: {e})"))
        return lay
    prev = 0
    for i, e in enumerate(ends.tolist()):
        if e <= prev:
            what = "first episode is empty" if i == 0 else f"not after episode {i - 1} (ends at {prev})"
            P.append(
                Problem(
                    ends_file, f"{EPISODE_ENDS}[{i}]", f"ends at {e}, {what}: must be strictly increasing", i
                )
            )
        prev = max(prev, e)
    if n_eps and int(ends[-1]) != n_frames:
        P.append(
            Problem(
                ends_file,
                f"{EPISODE_ENDS}[{n_eps - 1}]",
                f"last end {int(ends[-1])} != commit n_frames {n_frames}",
            )
        )
    if not n_eps and n_frames:
        P.append(Problem(f"{meta_file}/zarr.json", "n_frames", f"{n_frames} frames but no episodes"))
    lay.episode_ends = ends

    # --- data arrays ---------------------------------------------------------------------------------
    data_file = f"{path}/{DATA_GROUP}"
    data = children.get(DATA_GROUP)
    if data is None or _is_array(data):
        if n_eps and DATA_GROUP not in unreadable:
            P.append(Problem(data_file, DATA_GROUP, "missing group 'data' (time-major arrays)"))
        return lay
    data_members, data_bad = safe_members(data, data_file)
    P.extend(p for _, p in sorted(data_bad.items()))
    for key, arr in sorted(data_members.items()):
        afile = f"{data_file}/{key}"
        if n_eps == 0:
            # Nothing committed: whatever is here is residue of an interrupted first append (the
            # writer deletes and recreates these arrays), so only its length is recorded.
            if _is_array(arr) and arr.ndim >= 1 and arr.shape[0] > 0:
                lay.uncommitted[key] = int(arr.shape[0])
            continue
        if not _is_array(arr):
            P.append(Problem(afile, key, "expected an array, found a group"))
            continue
        lay.arrays[key] = arr
        if arr.ndim < 1:
            P.append(Problem(afile, "shape", "0-d array; data arrays are time-major (N_frames, ...)"))
            continue
        length = int(arr.shape[0])
        if length < n_frames:
            ep = _episode_of_frame(ends, length)
            P.append(
                Problem(
                    afile,
                    "shape[0]",
                    f"has {length} frames but episode {ep} ends at frame {int(ends[ep])} "
                    f"({ends_file}): arrays of different lengths / episode_ends past the data length",
                    ep,
                )
            )
        elif length > n_frames:
            lay.uncommitted[key] = length - n_frames
        if is_image_key(key):
            if arr.dtype != np.uint8:
                P.append(
                    Problem(afile, "dtype", f"dtype {arr.dtype}, expected uint8 (images are uint8 HxWx3)")
                )
            if arr.ndim != 4 or arr.shape[-1] != 3:
                P.append(Problem(afile, "shape", f"shape {arr.shape}, expected (N, H, W, 3)"))
        elif arr.dtype.kind not in "biuf":
            P.append(Problem(afile, "dtype", f"dtype {arr.dtype}, expected a numeric or bool dtype"))
    if lay.uncommitted:
        lay.notes.append(
            f"{data_file}: uncommitted trailing frames ignored (interrupted append; trimmed when opened "
            f"with mode='a'): {lay.uncommitted}"
        )
    if n_eps and not lay.arrays:
        P.append(Problem(data_file, DATA_GROUP, f"no arrays but {n_eps} committed episodes"))

    # --- metadata vs arrays -----------------------------------------------------------------------
    if lay.meta is not None and lay.arrays:
        attrs_file = f"{path}/zarr.json"
        images = {camera_of(k) for k in lay.arrays if is_image_key(k)}
        for cam in lay.meta.camera_names:
            if cam not in images:
                P.append(
                    Problem(
                        attrs_file, "camera_names", f"camera {cam!r} has no array data/{IMAGE_PREFIX}{cam}"
                    )
                )
        for cam in sorted(images - set(lay.meta.camera_names)):
            P.append(
                Problem(
                    f"{data_file}/{IMAGE_PREFIX}{cam}", "camera_names", f"camera {cam!r} not in camera_names"
                )
            )
        nj = len(lay.meta.joint_names)
        for key in ("state", "action"):
            arr = lay.arrays.get(key)
            if nj and arr is not None and (arr.ndim != 2 or arr.shape[1] != nj):
                P.append(
                    Problem(
                        f"{data_file}/{key}", "shape", f"shape {arr.shape} does not match {nj} joint_names"
                    )
                )
        for key, spec in lay.meta.keys.items():
            arr = lay.arrays.get(key)
            if (
                spec.names is not None
                and arr is not None
                and (arr.ndim < 2 or arr.shape[-1] != len(spec.names))
            ):
                P.append(
                    Problem(
                        f"{data_file}/{key}",
                        "shape",
                        f"last dim of {arr.shape} != {len(spec.names)} keys.names",
                    )
                )
    return lay


def chunk_file(arr: Any, coords: tuple[int, ...]) -> str:
    """Relative path of one chunk file inside the array's directory (e.g. ``c/12/0/0/0``)."""
    return arr.metadata.chunk_key_encoding.encode_chunk_key(coords)


def finite_problem(afile: str, first: int, count: int | None, value: Any, ends: np.ndarray | None) -> Problem:
    """The problem of a float array holding NaN/Inf: first bad frame (row), its episode, how many."""
    n = f"; {count} {'frame' if ends is not None else 'row'}(s) affected" if count is not None else ""
    if ends is None:
        return Problem(afile, "values", f"non-finite value ({value}) at row {first}{n}")
    ep = _episode_of_frame(ends, first)
    step = first - (int(ends[ep - 1]) if ep > 0 else 0)
    return Problem(
        afile,
        "values",
        f"non-finite value ({value}) at frame {first} (step {step} of episode {ep}){n}; floats must be "
        "finite (docs/dataset_format.md)",
        ep,
    )


def first_non_finite(x: np.ndarray) -> tuple[int, int, Any] | None:
    """(first bad row, number of bad rows, the bad value) of a time-major float array; None if finite."""
    if x.dtype.kind not in "fc" or x.size == 0:
        return None
    bad_rows = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if not bad_rows.any():
        return None
    first = int(np.argmax(bad_rows))
    row = x[first].reshape(-1)
    return first, int(bad_rows.sum()), row[~np.isfinite(row)][0]


def check_chunks(
    arr: Any,
    afile: str,
    n_frames: int,
    ends: np.ndarray | None,
    block: int = 256,
    start: int = 0,
    require_files: bool = True,
    check_finite: bool = False,
) -> list[Problem]:
    """Every chunk covering frames [start, n_frames) exists and decodes; problems name chunk file + episode.

    ends: episode ends, to name the episode of a frame (None: rows are not frames of episodes).
    require_files: a missing chunk file is a problem (stores written with ``write_empty_chunks``;
        zarr's default skips chunks equal to the fill value, as in `embeddings/`).
    check_finite: also report NaN/Inf in a float array (one problem: the first bad frame and count).
    """
    problems: list[Problem] = []
    if n_frames <= start:
        return problems

    def episode(frame: int) -> int | None:
        return _episode_of_frame(ends, frame) if ends is not None else None

    unit = "frames" if ends is not None else "rows"

    tchunk = int(arr.chunks[0])
    rest = [range(-(-int(s) // int(c))) for s, c in zip(arr.shape[1:], arr.chunks[1:])]
    n_tchunks = -(-n_frames // tchunk)
    first = start // tchunk
    base = Path(afile)
    for ci in range(first, n_tchunks) if require_files else ():
        for coords in np.ndindex(*[len(r) for r in rest]) if rest else [()]:
            rel = chunk_file(arr, (ci, *coords))
            if not (base / rel).is_file():
                problems.append(
                    Problem(
                        f"{afile}/{rel}",
                        "chunk",
                        f"missing chunk file ({unit} from {ci * tchunk})",
                        episode(ci * tchunk),
                    )
                )
    # Decode block by block (at most `block` frames and ~64 MiB); on failure decode chunk by chunk
    # to name the bad file.
    frame_bytes = max(1, int(np.prod(arr.shape[1:], dtype=np.int64)) * np.dtype(arr.dtype).itemsize)
    block = max(1, min(block, (64 << 20) // frame_bytes))
    step = max(tchunk, (block // tchunk) * tchunk)
    bad_first, bad_count, bad_value = -1, 0, None
    for s in range(first * tchunk, n_frames, step):
        e = min(n_frames, s + step)
        try:
            x = arr[s:e]
        except Exception:
            x = None
        if x is not None:
            found = first_non_finite(np.asarray(x)) if check_finite else None
            if found is not None:
                if bad_first < 0:
                    bad_first, bad_value = s + found[0], found[2]
                bad_count += found[1]
            continue
        for cs in range(s, e, tchunk):
            ce = min(e, cs + tchunk)
            try:
                arr[cs:ce]
            except Exception as err:
                rel = chunk_file(arr, (cs // tchunk,) + (0,) * (arr.ndim - 1))
                problems.append(
                    Problem(
                        f"{afile}/{rel}",
                        "chunk",
                        f"corrupt or truncated chunk, {unit} {cs}-{ce - 1} ({type(err).__name__}: {err})",
                        episode(cs),
                    )
                )
    # A missing file is also reported by the decode pass only if zarr raised; de-duplicate by file.
    seen: set[str] = set()
    unique = []
    for p in problems:
        if p.file not in seen:
            seen.add(p.file)
            unique.append(p)
    if bad_first >= 0:
        unique.append(finite_problem(afile, bad_first, bad_count, bad_value, ends))
    return unique


def check_group(group: Any, gfile: str, deep: bool = True) -> list[Problem]:
    """Metadata of every node under `group` parses; with `deep`, every chunk decodes and floats are finite.

    For the optional groups (`embeddings/<fingerprint>/`, `stats/`): their rows are not frames of the
    episodes, so problems name the file and the row.
    """
    nodes, bad = safe_members(group, gfile)
    problems = [p for _, p in sorted(bad.items())]
    for name, node in sorted(nodes.items()):
        problems += _check_node(node, f"{gfile}/{name}", deep)
    return problems


def _check_node(node: Any, nfile: str, deep: bool) -> list[Problem]:
    if not _is_array(node):
        return check_group(node, nfile, deep)
    if not deep:
        return []
    if node.ndim == 0:
        try:
            x = np.asarray(node[...])
        except Exception as e:
            return [Problem(nfile, "chunk", f"cannot decode ({type(e).__name__}: {e})")]
        found = first_non_finite(x.reshape(1))
        return [finite_problem(nfile, 0, 1, found[2], None)] if found else []
    return check_chunks(node, nfile, int(node.shape[0]), None, require_files=False, check_finite=True)


def validate_store(path: str | Path, deep: bool = True) -> Layout:
    """All checks; returns the layout with its `problems` (empty when valid) and `notes`.

    deep: decode every chunk of every array (`data/`, `meta/episode_ends` and the optional groups such
    as `embeddings/`) and check that float arrays are finite; False checks metadata only.
    Raises DatasetError only when `path` is not a zarr v3 store at all.
    """
    root = open_root(path, mode="r")
    lay = inspect_store(root, path)
    if deep and lay.meta is not None:
        ends_file = f"{path}/{META_GROUP}/{EPISODE_ENDS}"
        meta = safe_members(root, str(path))[0].get(META_GROUP)
        ends_arr = (
            safe_members(meta, f"{path}/{META_GROUP}")[0].get(EPISODE_ENDS)
            if meta is not None and not _is_array(meta)
            else None
        )
        if ends_arr is not None and _is_array(ends_arr) and ends_arr.ndim == 1:
            # For episode_ends the entry index is the episode.
            ep_index = np.arange(1, lay.n_episodes + 1, dtype=np.int64)
            lay.problems += check_chunks(ends_arr, ends_file, lay.n_episodes, ep_index)
        for key, arr in lay.arrays.items():
            n = min(lay.n_frames, int(arr.shape[0])) if arr.ndim else 0
            lay.problems += check_chunks(
                arr, f"{path}/{DATA_GROUP}/{key}", n, lay.episode_ends, check_finite=True
            )
    # Optional groups (embeddings/<fingerprint>/, stats/): metadata always, chunks when deep.
    children, unreadable = safe_members(root, str(path))
    for name in lay.extra_groups:
        if name in unreadable:
            lay.problems.append(unreadable[name])
        elif name in children:
            lay.problems += _check_node(children[name], f"{path}/{name}", deep)
    return lay
