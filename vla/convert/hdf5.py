"""ALOHA / ACT HDF5 episodes -> native episodes (one ``episode_<i>.hdf5`` file per episode).

Source layout (ACT ``record_sim_episodes.py``, ALOHA ``record_episodes.py``)::

    /observations/qpos            (T, D) float   -> state
    /observations/qvel            (T, D) float   -> qvel     (optional)
    /observations/images/<cam>    (T, H, W, 3) uint8 -> image_<camera>
    /action                       (T, D) float   -> action
    attrs: sim (bool)                            -> episode info

The frames are already on one clock (the recorder's control rate, 50 Hz on ALOHA), so nothing is
resampled; datasets the mapping does not use are listed in the report as dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.align import AlignmentStats
from vla.convert.errors import ConvertError
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.sink import EpisodeSink, destination
from vla.data import DatasetMeta, KeySpec
from vla.progress import progress_bar

_EPISODE_RE = re.compile(r"^episode_(\d+)\.hdf5$")
_MAPPED = {"/observations/qpos": "state", "/observations/qvel": "qvel", "/action": "action"}


@dataclass
class AlohaOptions:
    """fps: recording rate (ALOHA: 50). cameras: {hdf5 camera: native camera name}; None = every camera
    under /observations/images with its own name. bgr: images were stored BGR (cv2 capture) -> flip.
    joint_names: names of the qpos/action dimensions (stored in the metadata; may be empty)."""

    fps: float = 50.0
    robot: str = "aloha"
    instruction: str = ""
    cameras: dict[str, str] | None = None
    joint_names: list[str] = field(default_factory=list)
    bgr: bool = False


def find_episodes(src: str | Path) -> list[Path]:
    """episode_<i>.hdf5 files of a directory, by i; or the single file `src`."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise ConvertError(f"{src}: no such HDF5 file or directory")
    found = [(int(m.group(1)), p) for p in src.iterdir() if (m := _EPISODE_RE.match(p.name))]
    if not found:
        raise ConvertError(f"{src}: no episode_<i>.hdf5 files")
    return [p for _, p in sorted(found)]


def _walk(group: Any, prefix: str = "") -> dict[str, Any]:
    import h5py

    out = {}
    for name, item in group.items():
        path = f"{prefix}/{name}"
        if isinstance(item, h5py.Group):
            out.update(_walk(item, path))
        else:
            out[path] = item
    return out


def read_episode(path: Path, opts: AlohaOptions) -> tuple[dict[str, np.ndarray], dict[str, Any], list[str]]:
    """-> (data {key: (T, ...)}, info, unmapped dataset paths). Raises ConvertError naming file and field."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise ConvertError(
            f"{path}: not a readable HDF5 file ({e}); truncated or still being written?"
        ) from None
    with f:
        try:
            datasets = _walk(f)
        except (OSError, RuntimeError, KeyError) as e:
            raise ConvertError(f"{path}: cannot list the file's datasets ({e}); truncated?") from None
        if f.attrs.get("compress", False):
            raise ConvertError(
                f"{path}: attrs.compress is true: JPEG-compressed ALOHA images are not supported; "
                "decompress them first (ALOHA's postprocess script)"
            )
        for req in ("/observations/qpos", "/action"):
            if req not in datasets:
                raise ConvertError(
                    f"{path}: {req}: missing dataset (ALOHA layout: /observations/qpos, /action)"
                )
        data: dict[str, np.ndarray] = {}
        unmapped: list[str] = []
        cams = opts.cameras
        for dpath, ds in sorted(datasets.items()):
            if dpath in _MAPPED:
                key = _MAPPED[dpath]
            elif dpath.startswith("/observations/images/"):
                cam = dpath.rsplit("/", 1)[1]
                if cams is not None and cam not in cams:
                    unmapped.append(dpath)
                    continue
                key = f"image_{cams[cam] if cams is not None else cam}"
            else:
                unmapped.append(dpath)
                continue
            try:
                x = np.asarray(ds[()])
            except (OSError, RuntimeError) as e:
                raise ConvertError(f"{path}: {dpath}: cannot read ({e}); truncated file?") from None
            if key.startswith("image_"):
                if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                    raise ConvertError(
                        f"{path}: {dpath}: expected uint8 (T, H, W, 3) images, got {x.dtype} {x.shape}"
                    )
                if opts.bgr:
                    x = np.ascontiguousarray(x[..., ::-1])
            else:
                if x.ndim != 2 or x.dtype.kind not in "iuf":
                    raise ConvertError(f"{path}: {dpath}: expected numeric (T, D), got {x.dtype} {x.shape}")
                if not np.isfinite(x).all():
                    t = int(np.argwhere(~np.isfinite(x))[0, 0])
                    raise ConvertError(f"{path}: {dpath}: non-finite value at frame {t}")
                x = x.astype(np.float32)
            data[key] = x
        if cams is not None:
            missing = [c for c in cams if f"/observations/images/{c}" not in datasets]
            if missing:
                raise ConvertError(f"{path}: /observations/images/{missing[0]}: missing camera dataset")
        lengths = {k: v.shape[0] for k, v in data.items()}
        if len(set(lengths.values())) != 1:
            raise ConvertError(f"{path}: datasets have different lengths {lengths} (truncated recording?)")
        if next(iter(lengths.values())) == 0:
            raise ConvertError(f"{path}: /action: empty episode (0 frames)")
        info = {"source": str(path), "source_format": "aloha_hdf5"}
        if "sim" in f.attrs:
            info["sim"] = bool(f.attrs["sim"])
    return data, info, unmapped


def import_aloha(
    src: str | Path,
    out: str | Path,
    opts: AlohaOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert ALOHA/ACT HDF5 episodes at `src` (directory of episode_<i>.hdf5, or one file) to `out`."""
    opts = opts or AlohaOptions()
    files = find_episodes(src)
    report = ConvertReport("aloha_hdf5", str(src), str(out), opts.fps, dry_run=dry_run)
    first_read = read_episode(files[0], opts)
    first = first_read[0]
    cams = sorted(k[len("image_") :] for k in first if k.startswith("image_"))
    names = list(opts.joint_names)
    if names and len(names) != first["state"].shape[1]:
        raise ConvertError(
            f"{files[0]}: /observations/qpos has {first['state'].shape[1]} dims, joint_names lists {len(names)}"
        )
    keys = {
        k: KeySpec(description=f"from ALOHA HDF5 {p}", names=names or None)
        for p, k in _MAPPED.items()
        if k in first
    }
    keys |= {
        f"image_{c}": KeySpec(units="rgb", description="from ALOHA HDF5 /observations/images") for c in cams
    }
    if "qvel" in keys:
        keys["qvel"].names = names if names and first["qvel"].shape[1] == len(names) else None
    if names and first["action"].shape[1] != len(names):
        # The store's joint_names name both the state and the action dims (what validate checks).
        raise ConvertError(
            f"{files[0]}: /action has {first['action'].shape[1]} dims, joint_names lists {len(names)}: "
            f"{names}; a store's state and action have one value per joint name"
        )
    meta = DatasetMeta(
        fps=opts.fps,
        robot=opts.robot,
        joint_names=names,
        camera_names=cams,
        keys=keys,
        extra={"imported_from": {"format": "aloha_hdf5", "path": str(src)}},
    )
    report.ignored_unit = "episodes"
    with destination(out, overwrite, dry_run) as tmp:
        sink = EpisodeSink(tmp, meta)
        for i, path in enumerate(progress_bar(files, desc="episodes", unit="ep", disable=not progress)):
            data, info, unmapped = first_read if i == 0 else read_episode(path, opts)
            T = len(data["action"])
            sink.add(data, opts.instruction, info, str(path))
            report.episodes.append(
                EpisodeReport(
                    source=path.name,
                    n_frames=T,
                    instruction=opts.instruction,
                    duration_s=(T - 1) / opts.fps,
                    keys={k: list(v.shape[1:]) for k, v in data.items()},
                    streams=[
                        AlignmentStats.identity(k, path.name, str(v.dtype), T, opts.fps)
                        for k, v in data.items()
                    ],
                )
            )
            for u in unmapped:
                report.ignored_topics[u] = report.ignored_topics.get(u, 0) + 1
    report.notes.append(
        "frames are already at the recording rate: nothing resampled; floats stored as float32"
    )
    if not opts.instruction:
        report.notes.append("no instruction given: episodes have an empty instruction")
    return report
