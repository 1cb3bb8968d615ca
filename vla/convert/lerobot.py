"""LeRobotDataset v3.0 (Parquet + MP4 shards) -> native episodes.

Layout read (lerobot ``CODEBASE_VERSION = "v3.0"``)::

    meta/info.json                      fps, features (dtype "video" = MP4 key), data_path, video_path
    meta/tasks.parquet                  task text (pandas index) -> task_index
    meta/episodes/chunk-*/file-*.parquet  one row per episode: length, data/{chunk,file}_index,
                                        videos/<key>/{chunk_index,file_index,from_timestamp,to_timestamp}
    data/chunk-XXX/file-XXX.parquet     observation.state, action, timestamp, frame_index, episode_index,
                                        task_index (several episodes per file)
    videos/<key>/chunk-XXX/file-XXX.mp4 several episodes per file, one after the other

Frame k of an episode is the video frame shown at ``from_timestamp + timestamp[k]`` (as lerobot
decodes it): the nearest decoded frame, which must lie within `tolerance_s`. MP4 is lossy, so the
imported images equal what the video decodes to, not the camera's original pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.align import AlignmentStats
from vla.convert.errors import ConvertError
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.sink import EpisodeSink, destination
from vla.data import DatasetMeta, KeySpec
from vla.progress import progress_bar

_BOOKKEEPING = {"timestamp", "frame_index", "episode_index", "index", "task_index"}


@dataclass
class LeRobotOptions:
    """state_key / action_key / qvel_key: feature names read as state / action / qvel (qvel optional).
    cameras: {feature: native camera} for video/image features; None = every one, named by the part
    after ``observation.images.``. tolerance_s: largest allowed |video frame time - wanted time|.
    robot: None = info.json ``robot_type``."""

    state_key: str = "observation.state"
    action_key: str = "action"
    qvel_key: str | None = None
    cameras: dict[str, str] | None = None
    tolerance_s: float = 1e-4
    robot: str | None = None


def _camera_name(feature: str) -> str:
    name = feature.removeprefix("observation.images.").removeprefix("observation.image.")
    return name.replace(".", "_").replace("-", "_")


def _read_parquet(path: Path, what: str) -> Any:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ConvertError(f"{path}: missing {what}")
    try:
        return pq.read_table(path)
    except Exception as e:
        raise ConvertError(f"{path}: cannot read {what} ({type(e).__name__}: {e}); truncated file?") from None


def load_info(root: Path) -> dict[str, Any]:
    p = root / "meta" / "info.json"
    if not p.is_file():
        raise ConvertError(f"{p}: missing: not a LeRobotDataset (meta/info.json)")
    try:
        info = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConvertError(f"{p}: not valid JSON ({e})") from None
    version = str(info.get("codebase_version", ""))
    if not version.startswith("v3"):
        raise ConvertError(
            f"{p}: codebase_version: {version!r}; this importer reads LeRobotDataset v3.x (convert v2.1 "
            "datasets with lerobot's convert_dataset_v21_to_v30 first)"
        )
    for k in ("fps", "features", "data_path"):
        if k not in info:
            raise ConvertError(f"{p}: {k}: missing field")
    return info


def load_tasks(root: Path) -> dict[int, str]:
    """task_index -> text. tasks.parquet is a pandas DataFrame indexed by the task text."""
    path = root / "meta" / "tasks.parquet"
    tbl = _read_parquet(path, "task table")
    cols = tbl.column_names
    text_col = None
    meta = tbl.schema.metadata or {}
    if b"pandas" in meta:
        idx = json.loads(meta[b"pandas"]).get("index_columns", [])
        if idx and isinstance(idx[0], str) and idx[0] in cols:
            text_col = idx[0]
    if text_col is None:
        text_col = next((c for c in ("task", "__index_level_0__") if c in cols), None)
    if text_col is None or "task_index" not in cols:
        raise ConvertError(f"{path}: expected columns task_index and the task text (index), got {cols}")
    return {
        int(i): str(t) for i, t in zip(tbl.column("task_index").to_pylist(), tbl.column(text_col).to_pylist())
    }


def load_episodes(root: Path) -> list[dict[str, Any]]:
    files = sorted((root / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    if not files:
        raise ConvertError(f"{root / 'meta' / 'episodes'}: no chunk-*/file-*.parquet episode metadata")
    rows: list[dict[str, Any]] = []
    for f in files:
        tbl = _read_parquet(f, "episode metadata")
        keep = [c for c in tbl.column_names if not c.startswith("stats/")]
        for r in tbl.select(keep).to_pylist():
            r["_file"] = str(f)
            rows.append(r)
    for r in rows:
        for k in ("episode_index", "length", "data/chunk_index", "data/file_index"):
            if k not in r:
                raise ConvertError(f"{r['_file']}: {k}: missing column in the episode metadata")
    return sorted(rows, key=lambda r: int(r["episode_index"]))


def _column(tbl: Any, key: str, path: Path, T: int) -> np.ndarray:
    """A numeric feature column -> (T, D) float32 (fixed-size or variable lists, or scalars)."""
    import pyarrow as pa

    if key not in tbl.column_names:
        raise ConvertError(f"{path}: {key}: missing column (columns: {tbl.column_names})")
    col = tbl.column(key).combine_chunks()
    if pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type):
        flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.float64)
        if flat.size % max(T, 1):
            raise ConvertError(f"{path}: {key}: rows have different lengths")
        x = flat.reshape(T, -1)
    else:
        x = np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).reshape(T, 1)
    if not np.isfinite(x).all():
        raise ConvertError(
            f"{path}: {key}: non-finite value at frame {int(np.argwhere(~np.isfinite(x))[0, 0])}"
        )
    return x.astype(np.float32)


class _VideoCache:
    """Decoded frames of the most recently used MP4 per video key (episodes of a file are consecutive)."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[Path, np.ndarray, np.ndarray]] = {}

    def frames(self, key: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
        """-> (times_s float64 (N,), frames uint8 (N, H, W, 3))"""
        hit = self._cache.get(key)
        if hit is not None and hit[0] == path:
            return hit[1], hit[2]
        import av

        if not path.is_file():
            raise ConvertError(f"{path}: missing video file for {key}")
        times, frames = [], []
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for fr in container.decode(stream):
                    if fr.pts is None:
                        raise ConvertError(f"{path}: {key}: a decoded frame has no timestamp (pts)")
                    times.append(float(fr.pts * stream.time_base))
                    frames.append(fr.to_ndarray(format="rgb24"))
        except ConvertError:
            raise
        except Exception as e:
            t = f" after the frame at {times[-1]:.3f} s" if times else ""
            raise ConvertError(
                f"{path}: {key}: cannot decode the video{t} ({type(e).__name__}: {e}); truncated?"
            ) from None
        if not frames:
            raise ConvertError(f"{path}: {key}: the video has no frames")
        shapes = {f.shape for f in frames}
        if len(shapes) > 1:
            k = next(i for i, f in enumerate(frames) if f.shape != frames[0].shape)
            raise ConvertError(
                f"{path}: {key}: frame size changes from {frames[0].shape[1]}x{frames[0].shape[0]} to "
                f"{frames[k].shape[1]}x{frames[k].shape[0]} at {times[k]:.3f} s"
            )
        t_arr = np.asarray(times)
        order = np.argsort(t_arr, kind="stable")  # decode order is presentation order for our purposes
        entry = (path, t_arr[order], np.stack(frames)[order])
        self._cache[key] = entry
        return entry[1], entry[2]


def import_lerobot(
    src: str | Path,
    out: str | Path,
    opts: LeRobotOptions | None = None,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert the LeRobotDataset v3 directory `src` into a native store at `out`."""
    opts = opts or LeRobotOptions()
    root = Path(src)
    info = load_info(root)
    info_path = root / "meta" / "info.json"
    fps = float(info["fps"])
    features: dict[str, Any] = info["features"]
    for k in (opts.state_key, opts.action_key, *([opts.qvel_key] if opts.qvel_key else [])):
        if k not in features:
            raise ConvertError(f"{info_path}: features.{k}: no such feature (features: {sorted(features)})")
    visual = [k for k, f in features.items() if f.get("dtype") in ("video", "image")]
    cam_map = opts.cameras if opts.cameras is not None else {k: _camera_name(k) for k in visual}
    for k in cam_map:
        if k not in visual:
            raise ConvertError(f"{info_path}: features.{k}: not a video/image feature (those are {visual})")
    if any(features[k]["dtype"] == "video" for k in cam_map) and "video_path" not in info:
        raise ConvertError(f"{info_path}: video_path: missing field (needed for video features)")
    tasks = load_tasks(root)
    episodes = load_episodes(root)
    lowdim = {"state": opts.state_key, "action": opts.action_key} | (
        {"qvel": opts.qvel_key} if opts.qvel_key else {}
    )

    def names_of(feat: str) -> list[str] | None:
        n = features[feat].get("names")
        if isinstance(n, dict):  # older datasets: {"motors": [...]}
            n = next(iter(n.values()), None)
        return [str(x) for x in n] if isinstance(n, list) and all(isinstance(x, str) for x in n) else None

    keys = {k: KeySpec(description=f"from LeRobot feature {f}", names=names_of(f)) for k, f in lowdim.items()}
    # The store's joint_names name the state and the action dims alike (what validate checks); when
    # the two features differ in width there is no such list: keep each key's own names only.
    joint_names = names_of(opts.state_key) or []
    action_shape = features[opts.action_key].get("shape")
    notes: list[str] = []
    if joint_names and isinstance(action_shape, list) and list(action_shape) != [len(joint_names)]:
        notes.append(
            f"{opts.action_key} has shape {action_shape}, {opts.state_key} names {len(joint_names)} joints: "
            "joint_names left empty (each key keeps its own names)"
        )
        joint_names = []
    keys |= {
        f"image_{c}": KeySpec(units="rgb", description=f"decoded from LeRobot {f}")
        for f, c in cam_map.items()
    }
    meta = DatasetMeta(
        fps=fps,
        robot=opts.robot or str(info.get("robot_type") or "unknown"),
        joint_names=joint_names,
        camera_names=list(cam_map.values()),
        keys=keys,
        extra={
            "imported_from": {"format": "lerobot_v3", "path": str(root), "features": {**lowdim, **cam_map}}
        },
    )
    unused = sorted(set(features) - set(lowdim.values()) - set(cam_map) - _BOOKKEEPING)
    report = ConvertReport("lerobot_v3", str(root), str(out), fps, dry_run=dry_run, notes=notes)
    videos = _VideoCache()
    data_cache: dict[Path, Any] = {}
    with destination(out, overwrite, dry_run) as tmp:
        sink = EpisodeSink(tmp, meta)
        for row in progress_bar(episodes, desc="episodes", unit="ep", disable=not progress):
            ep, rep, ep_info = _episode(
                root, info, row, opts, lowdim, cam_map, tasks, videos, data_cache, fps
            )
            sink.add(ep, rep.instruction, ep_info, f"{row['_file']}: episode_index {row['episode_index']}")
            report.episodes.append(rep)
    # Every LeRobot feature has one value per frame: a dropped feature drops that many.
    report.ignored_topics = dict.fromkeys(unused, report.n_frames)
    report.ignored_unit = "frames"
    if unused:
        report.notes.append(f"features not imported (dropped): {unused}")
    if any(features[f].get("dtype") == "video" for f in cam_map):
        report.notes.append(
            "images are what the MP4 decodes to (lossy codec): not bit-identical to the camera frames"
        )
    return report


def _episode(
    root: Path,
    info: dict[str, Any],
    row: dict[str, Any],
    opts: LeRobotOptions,
    lowdim: dict[str, str],
    cam_map: dict[str, str],
    tasks: dict[int, str],
    videos: _VideoCache,
    data_cache: dict[Path, Any],
    fps: float,
) -> tuple[dict[str, np.ndarray], EpisodeReport, dict[str, Any]]:
    import pyarrow.compute as pc

    e = int(row["episode_index"])
    path = root / info["data_path"].format(
        chunk_index=int(row["data/chunk_index"]), file_index=int(row["data/file_index"])
    )
    if path not in data_cache:
        data_cache.clear()  # one data file at a time: episodes are sorted, so files come in order
        data_cache[path] = _read_parquet(path, "data file")
    tbl = data_cache[path]
    for c in ("episode_index", "frame_index", "timestamp"):
        if c not in tbl.column_names:
            raise ConvertError(f"{path}: {c}: missing column")
    tbl = tbl.filter(pc.equal(tbl.column("episode_index"), e))
    T = tbl.num_rows
    where = f"{path}: episode_index {e}"
    if T == 0:
        raise ConvertError(f"{where}: no rows (episode metadata {row['_file']} points here)")
    if int(row["length"]) != T:
        raise ConvertError(
            f"{where}: {T} rows but the episode metadata says length {row['length']} (truncated?)"
        )
    frame_index = np.asarray(tbl.column("frame_index").to_numpy(), dtype=np.int64)
    order = np.argsort(frame_index, kind="stable")
    tbl = tbl.take(order)
    frame_index = frame_index[order]
    if not np.array_equal(frame_index, np.arange(T)):
        k = int(np.flatnonzero(frame_index != np.arange(T))[0])
        raise ConvertError(
            f"{where}: frame_index: frames are not 0..{T - 1} (row {k} is frame {frame_index[k]})"
        )
    ts = np.asarray(tbl.column("timestamp").to_numpy(), dtype=np.float64)
    back = np.flatnonzero(np.diff(ts) <= 0)
    if back.size:
        k = int(back[0]) + 1
        raise ConvertError(
            f"{where}: timestamp: frame {k} at {ts[k]:.4f} s is not after frame {k - 1} at {ts[k - 1]:.4f} s "
            "(timestamps must increase)"
        )
    data = {k: _column(tbl, feat, path, T) for k, feat in lowdim.items()}
    streams = [AlignmentStats.identity(k, feat, "parquet", T, fps) for k, feat in lowdim.items()]
    for feat, cam in cam_map.items():
        ftype = info["features"][feat]["dtype"]
        if ftype == "image":
            data[f"image_{cam}"] = _images_from_parquet(tbl, feat, path)
            streams.append(AlignmentStats.identity(f"image_{cam}", feat, "png in parquet", T, fps))
            continue
        vkey = f"videos/{feat}"
        for c in ("chunk_index", "file_index", "from_timestamp"):
            if f"{vkey}/{c}" not in row:
                raise ConvertError(f"{row['_file']}: {vkey}/{c}: missing column for episode {e}")
        vpath = root / info["video_path"].format(
            video_key=feat,
            chunk_index=int(row[f"{vkey}/chunk_index"]),
            file_index=int(row[f"{vkey}/file_index"]),
        )
        times, frames = videos.frames(feat, vpath)
        want = float(row[f"{vkey}/from_timestamp"]) + ts
        right = np.clip(np.searchsorted(times, want), 0, len(times) - 1)
        left = np.clip(right - 1, 0, len(times) - 1)
        idx = np.where(np.abs(times[left] - want) <= np.abs(times[right] - want), left, right)
        err = want - times[idx]
        bad = np.flatnonzero(np.abs(err) > opts.tolerance_s)
        if bad.size:
            k = int(bad[0])
            raise ConvertError(
                f"{vpath}: {feat}: episode {e} frame {k} wants the frame at {want[k]:.4f} s, the nearest is at "
                f"{times[idx[k]]:.4f} s ({abs(err[k]) * 1e3:.2f} ms > tolerance {opts.tolerance_s * 1e3:g} ms; "
                "video shorter than the data, or wrong from_timestamp?)"
            )
        expect = info["features"][feat].get("shape")
        if (
            expect
            and len(expect) == 3
            and tuple(frames.shape[1:]) != tuple(expect)
            and tuple(frames.shape[1:])
            != (
                expect[1],
                expect[2],
                expect[0],
            )
        ):
            raise ConvertError(
                f"{vpath}: {feat}: decoded frames are {frames.shape[1:]}, info.json says shape {expect}"
            )
        data[f"image_{cam}"] = frames[idx]
        in_range = np.flatnonzero(
            (times >= want[0] - opts.tolerance_s) & (times <= want[-1] + opts.tolerance_s)
        )
        stats = AlignmentStats.from_alignment(
            f"image_{cam}",
            vpath.name,
            "mp4",
            (times[in_range] * 1e9).astype(np.int64),
            idx - in_range[0],
            (err * 1e9).astype(np.int64),
            "pts (nearest)",
        )
        streams.append(stats)
    task_idx = (
        np.asarray(tbl.column("task_index").to_numpy(), dtype=np.int64)
        if "task_index" in tbl.column_names
        else None
    )
    notes: list[str] = []
    if task_idx is not None:
        if int(task_idx[0]) not in tasks:
            raise ConvertError(f"{where}: task_index {int(task_idx[0])} is not in meta/tasks.parquet")
        instruction = tasks[int(task_idx[0])]
        if len(set(task_idx.tolist())) > 1:
            notes.append(f"several tasks in the episode; kept the first: {instruction!r}")
    else:
        ep_tasks = row.get("tasks") or []
        instruction = str(ep_tasks[0]) if ep_tasks else ""
    rep = EpisodeReport(
        source=f"episode {e}",
        n_frames=T,
        instruction=instruction,
        t_start_s=float(ts[0]),
        duration_s=float(ts[-1] - ts[0]),
        keys={k: list(v.shape[1:]) for k, v in data.items()},
        streams=streams,
        notes=notes,
    )
    return data, rep, {"source": str(root), "source_format": "lerobot_v3", "episode_index": e}


def _images_from_parquet(tbl: Any, feat: str, path: Path) -> np.ndarray:
    """``image`` features: PNG/JPEG bytes in a struct {bytes, path} column -> uint8 (T, H, W, 3)."""
    import io

    from PIL import Image as PILImage

    out = []
    for k, cell in enumerate(tbl.column(feat).to_pylist()):
        blob = cell.get("bytes") if isinstance(cell, dict) else None
        if not blob:
            raise ConvertError(f"{path}: {feat}: frame {k} has no embedded image bytes")
        with PILImage.open(io.BytesIO(blob)) as im:
            out.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        if out[-1].shape != out[0].shape:
            raise ConvertError(
                f"{path}: {feat}: image size changes at frame {k} ({out[0].shape} -> {out[-1].shape})"
            )
    return np.stack(out)
