"""Diffusion Policy's zarr v2 ReplayBuffer -> the native format: the one DP importer, behind both
`vla-convert convert=dp_pusht` and `vla-dataset import-dp`.

Source layout (e.g. PushT ``pusht_cchi_v7_replay.zarr``; a directory or a ``.zip``)::

    data/img          float32 (N, H, W, 3) in [0, 255]   -> data/image_<camera>  uint8
    data/<key>        (N, ...) numeric                    -> data/<key>  (float64 -> float32)
    meta/episode_ends int (E,) exclusive ends             -> meta/episode_ends int64

Other 4-D arrays with 3 channels (``agentview_image`` ...) are images too (camera = name without
``_image``); channel-first images (N, 3, H, W) are transposed to HWC. `import_dp` stages the
conversion (dry run, atomic overwrite, report); `import_diffusion_policy` writes one store.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from vla.convert.errors import ConvertError
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.sink import destination
from vla.data import FORMAT_NAME, DatasetError, ReplayBuffer
from vla.data.format import IMAGE_PREFIX, DatasetMeta, KeySpec, check_name
from vla.progress import progress_bar


@dataclass
class KeyConversion:
    src: str
    dst: str
    src_dtype: str
    src_shape: tuple[int, ...]
    dst_dtype: str = ""
    dst_shape: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    src: str
    dst: str
    n_episodes: int
    n_frames: int
    conversions: list[KeyConversion]
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"imported {self.n_episodes} episodes, {self.n_frames} frames: {self.src} -> {self.dst}"]
        for c in self.conversions:
            lines.append(
                f"  data/{c.src:<16} {c.src_dtype:>8} {c.src_shape!s:<18} -> data/{c.dst:<18} "
                f"{c.dst_dtype:>8} {c.dst_shape!s}" + (f"  ({'; '.join(c.notes)})" if c.notes else "")
            )
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _open_source(src: Path) -> Any:
    import zarr

    if not src.exists():
        raise DatasetError(f"{src}: not a zarr store (path does not exist)")
    try:
        if src.is_file():
            from zarr.storage import ZipStore

            return zarr.open_group(store=ZipStore(str(src), mode="r"), mode="r")
        if not any((src / f).is_file() for f in (".zgroup", "zarr.json")):
            raise DatasetError(f"{src}: not a zarr store (no .zgroup or zarr.json)")
        return zarr.open_group(store=str(src), mode="r")
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"{src}: not a readable zarr store ({type(e).__name__}: {e})") from None


def _image_layout(shape: tuple[int, ...]) -> str | None:
    """'hwc' / 'chw' for (N, H, W, 3) / (N, 3, H, W) arrays, else None."""
    if len(shape) != 4:
        return None
    if shape[-1] == 3:
        return "hwc"
    if shape[1] == 3:
        return "chw"
    return None


def import_diffusion_policy(
    src: str | Path,
    dst: str | Path,
    camera: str = "front",
    fps: float = 10.0,
    robot: str = "diffusion_policy",
    instruction: str = "",
    image_max: float = 255.0,
    rename: dict[str, str] | None = None,
    overwrite: bool = False,
    max_episodes: int | None = None,
) -> ImportReport:
    """Convert the Diffusion Policy store `src` into a native store at `dst`.

    camera: camera name for ``data/img`` (``image_<camera>``). image_max: value of full white in float
    images (255 for PushT; 1.0 for [0, 1] images). rename: extra {src_key: dst_key} renames.
    max_episodes: import only the first N episodes (None: all; the whole source is still checked).
    Raises DatasetError naming the file and field for malformed sources.
    """
    src, dst = Path(src), Path(dst)
    rename = dict(rename or {})
    root = _open_source(src)
    members = dict(root.members())
    data, meta = members.get("data"), members.get("meta")
    import zarr

    if not isinstance(data, zarr.Group):
        raise DatasetError(
            f"{src}/data: missing group 'data' (Diffusion Policy layout data/<key>, meta/episode_ends)"
        )
    if not isinstance(meta, zarr.Group) or not isinstance(
        dict(meta.members()).get("episode_ends"), zarr.Array
    ):
        raise DatasetError(f"{src}/meta/episode_ends: missing array 'episode_ends'")
    ends_arr = meta["episode_ends"]
    if ends_arr.ndim != 1 or ends_arr.dtype.kind not in "iu":
        raise DatasetError(
            f"{src}/meta/episode_ends: expected 1-D integers, got {ends_arr.dtype} {ends_arr.shape}"
        )
    ends = np.asarray(ends_arr[:], dtype=np.int64)
    if ends.size == 0:
        raise DatasetError(f"{src}/meta/episode_ends: no episodes")
    prev = 0
    for i, e in enumerate(ends.tolist()):
        if e <= prev:
            raise DatasetError(
                f"{src}/meta/episode_ends: episode_ends[{i}] = {e} not after {prev}: must increase"
            )
        prev = e
    stored = int(ends[-1])  # frames the source's episodes cover
    n_source = len(ends)
    if max_episodes is not None:
        if max_episodes < 1:
            raise DatasetError(f"max_episodes: must be >= 1, got {max_episodes}")
        ends = ends[:max_episodes]
    n_frames = int(ends[-1])

    arrays = {k: a for k, a in data.members() if isinstance(a, zarr.Array)}
    if not arrays:
        raise DatasetError(f"{src}/data: no arrays")
    conversions: list[KeyConversion] = []
    cams: list[str] = []
    notes: list[str] = []
    for key, a in sorted(arrays.items()):
        if a.shape[0] < stored:
            raise DatasetError(
                f"{src}/data/{key}: has {a.shape[0]} frames but meta/episode_ends ends at {stored} "
                "(arrays of different lengths)"
            )
        if a.shape[0] > stored:
            notes.append(f"data/{key}: {a.shape[0] - stored} frames after the last episode end were dropped")
        if a.dtype.kind not in "biuf":
            raise DatasetError(f"{src}/data/{key}: dtype {a.dtype} is not numeric")
        c = KeyConversion(key, key, str(a.dtype), tuple(a.shape))
        lay = _image_layout(tuple(a.shape))
        if key in rename:
            c.dst = rename[key]
        elif lay is not None:
            cam = camera if key in ("img", "image") else key.removesuffix("_image").removeprefix("image_")
            c.dst = IMAGE_PREFIX + cam
        check_name(c.dst, f"{src}/data/{key}: destination key")
        if c.dst.startswith(IMAGE_PREFIX):
            if lay is None:
                raise DatasetError(
                    f"{src}/data/{key}: shape {a.shape} is not an image (N, H, W, 3) / (N, 3, H, W)"
                )
            cams.append(c.dst[len(IMAGE_PREFIX) :])
            h, w = (a.shape[1], a.shape[2]) if lay == "hwc" else (a.shape[2], a.shape[3])
            c.dst_dtype, c.dst_shape = "uint8", (n_frames, h, w, 3)
            if lay == "chw":
                c.notes.append("CHW -> HWC")
            if a.dtype != np.uint8:
                c.notes.append(f"{a.dtype} [0, {image_max:g}] -> uint8 [0, 255] (rounded)")
        else:
            dt = np.float32 if a.dtype == np.float64 else a.dtype
            c.dst_dtype, c.dst_shape = str(np.dtype(dt)), (n_frames, *a.shape[1:])
            if a.dtype == np.float64:
                c.notes.append("float64 -> float32")
        conversions.append(c)
    dsts = [c.dst for c in conversions]
    if len(set(dsts)) != len(dsts):
        raise DatasetError(f"{src}/data: several keys map to the same destination: {dsts}")

    meta_out = DatasetMeta(
        fps=fps,
        robot=robot,
        joint_names=[],
        camera_names=cams,
        keys={
            c.dst: KeySpec(description=f"imported from Diffusion Policy data/{c.src}") for c in conversions
        },
        extra={"imported_from": {"path": str(src), "format": "diffusion_policy_replay_buffer_zarr_v2"}},
    )
    rb = ReplayBuffer.create(dst, meta_out, overwrite=overwrite)
    rounded = {c.src: 0 for c in conversions}
    starts = np.concatenate([[0], ends[:-1]])
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        ep: dict[str, np.ndarray] = {}
        for c in conversions:
            try:
                x = np.asarray(arrays[c.src][s:e])
            except Exception as err:
                raise DatasetError(
                    f"{src}/data/{c.src}: cannot read episode {i} frames {s}-{e - 1} ({type(err).__name__}: {err})"
                ) from None
            if c.dst.startswith(IMAGE_PREFIX):
                if _image_layout(x.shape) == "chw":
                    x = np.moveaxis(x, 1, -1)
                if x.dtype != np.uint8:
                    xf = x.astype(np.float64) * (255.0 / image_max)
                    if not np.isfinite(xf).all() or xf.min() < -0.5 or xf.max() > 255.5:
                        raise DatasetError(
                            f"{src}/data/{c.src}: episode {i}: values outside [0, {image_max:g}] "
                            f"(min {x.min()}, max {x.max()}); set image_max (--image-max)"
                        )
                    r = np.rint(xf)
                    rounded[c.src] += int(np.count_nonzero(np.abs(r - xf) > 1e-3))
                    x = np.clip(r, 0, 255).astype(np.uint8)
            ep[c.dst] = np.ascontiguousarray(x)
        rb.add_episode(ep, instruction=instruction, info={"source": str(src), "source_episode": i})
    for c in conversions:
        if rounded[c.src]:
            c.notes.append(f"{rounded[c.src]} non-integer values rounded")
    if len(ends) < n_source:
        notes.append(f"max_episodes={max_episodes}: imported the first {len(ends)} of {n_source} episodes")
    if not instruction:
        notes.append("no instruction given: episodes have an empty instruction (pass --instruction)")
    return ImportReport(str(src), str(dst), rb.n_episodes, rb.n_frames, conversions, notes)


@dataclass
class DiffusionPolicyOptions:
    """Arguments of `import_diffusion_policy` (see there): camera name of data/img, fps, robot,
    instruction for every episode, image_max (white of float images), rename {src_key: dst_key}."""

    camera: str = "front"
    fps: float = 10.0
    robot: str = "diffusion_policy"
    instruction: str = ""
    image_max: float = 255.0
    rename: dict[str, str] | None = None
    max_episodes: int | None = None  # import only the first N episodes (a quick look at a big store)


def _source_plan(src: Path) -> tuple[np.ndarray, dict[str, tuple[tuple[int, ...], str]]]:
    """(episode_ends, {key: (shape, dtype)}) of the source, read without converting anything."""
    import zarr

    try:
        if src.is_file():
            from zarr.storage import ZipStore

            root = zarr.open_group(store=ZipStore(str(src), mode="r"), mode="r")
        else:
            root = zarr.open_group(store=str(src), mode="r")
        if root.attrs.get("format") == FORMAT_NAME:
            raise ConvertError(
                f"{src}: already a native vla store (attribute format = {FORMAT_NAME!r}), not a DP one"
            )
        ends = np.asarray(root["meta/episode_ends"][:], dtype=np.int64)
        arrays = {
            k: (tuple(a.shape), str(a.dtype)) for k, a in root["data"].members() if isinstance(a, zarr.Array)
        }
    except ConvertError:
        raise
    except Exception as e:
        raise ConvertError(f"{src}: not a Diffusion Policy zarr store ({type(e).__name__}: {e})") from None
    return ends, arrays


def _watch(tmp: Path, bar: tqdm, stop: threading.Event) -> None:
    """Advance the bar as the writer commits episodes (it rewrites meta/zarr.json at each commit)."""
    meta = tmp / "meta" / "zarr.json"
    while not stop.wait(0.2):
        try:
            n = int(json.loads(meta.read_text())["attributes"].get("n_episodes", 0))
        except (OSError, ValueError, KeyError):
            continue
        bar.update(max(0, n - bar.n))


def import_dp(
    src: str | Path,
    out: str | Path,
    opts: DiffusionPolicyOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert a Diffusion Policy store (directory or .zip) into a native store at `out`."""
    opts = opts or DiffusionPolicyOptions()
    src = Path(src)
    if not src.exists():
        raise ConvertError(f"{src}: no such Diffusion Policy store")
    if opts.max_episodes is not None and opts.max_episodes < 1:
        raise ConvertError(f"{src}: max_episodes must be >= 1 (null: all episodes), got {opts.max_episodes}")
    ends, arrays = _source_plan(src)
    if opts.max_episodes is not None:
        ends = ends[: opts.max_episodes]  # the report and the progress bar cover what is imported
    report = ConvertReport("diffusion_policy", str(src), str(out), opts.fps, dry_run=dry_run)
    starts = np.concatenate([[0], ends[:-1]]) if ends.size else ends
    keys = {k: list(s[1:]) for k, (s, _) in arrays.items()}
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        report.episodes.append(
            EpisodeReport(
                source=f"episode {i}",
                n_frames=int(e - s),
                instruction=opts.instruction,
                duration_s=(e - s - 1) / opts.fps,  # frames are on the fixed fps clock
                keys=keys,
            )
        )
    with destination(out, overwrite, dry_run) as tmp:
        if tmp is None:
            report.notes.append(
                "dry run: source keys listed as stored; data/img becomes image_" + opts.camera + " (uint8)"
            )
            return report
        bar = progress_bar(total=len(ends), desc="episodes", unit="ep", disable=not progress)
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(tmp, bar, stop), daemon=True)
        watcher.start()
        try:
            res = import_diffusion_policy(
                src,
                tmp,
                camera=opts.camera,
                fps=opts.fps,
                robot=opts.robot,
                instruction=opts.instruction,
                image_max=opts.image_max,
                rename=opts.rename,
                overwrite=False,
                max_episodes=opts.max_episodes,
            )
        except DatasetError as e:
            raise ConvertError(str(e).replace(str(tmp), str(out))) from None
        finally:
            stop.set()
            watcher.join()
        bar.update(len(ends) - bar.n)
        bar.close()
        rb = ReplayBuffer.open(tmp)
        written = {k: list(rb.shape(k)) for k in rb.keys}
        for ep in report.episodes:
            ep.keys = written
        report.notes += str(res).replace(str(tmp), str(out)).splitlines()[1:]
    return report
