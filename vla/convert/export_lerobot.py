"""Native zarr store -> LeRobotDataset v3.0 directory (`vla-dataset export --format lerobot_v3`).

Layout written (what `vla.convert.lerobot` reads back, lerobot ``CODEBASE_VERSION = "v3.0"``)::

    meta/info.json                                   codebase_version, fps, totals, paths, features
    meta/tasks.parquet                               task text (pandas index "task") -> task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode: length, tasks, data/{chunk,file}_index,
                                                     dataset_{from,to}_index, videos/<key>/{chunk_index,
                                                     file_index,from_timestamp,to_timestamp}
    data/chunk-000/file-000.parquet                  observation.state, action, other low-dim keys
                                                     (observation.<key>) as fixed-size lists, timestamp,
                                                     frame_index, episode_index, index, task_index
    videos/observation.images.<cam>/chunk-000/file-000.mp4   H.264, every episode one after the other

Store keys: ``state`` -> observation.state, ``action`` -> action, ``image_<cam>`` ->
observation.images.<cam> (video), any other key ``k`` -> observation.<k>. Low-dim values keep their
dtype and are bit-exact; the MP4 is lossy (`ExportOptions.crf`, `pix_fmt`). Frame k of an episode is
at ``k / fps`` (the native clock); its video frame at ``from_timestamp + k / fps``. One data file and
one video file per camera (LeRobot's size-based file splitting is not needed to read them back).
The directory is written to a hidden sibling and renamed into place (`vla.data.staging`).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.errors import ConvertError
from vla.data import ReplayBuffer
from vla.data.format import camera_of, is_image_key
from vla.data.staging import staged_output
from vla.progress import progress_bar

DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"


@dataclass
class ExportOptions:
    """fps_from_store: write the store's fps as is even when it is not a whole number (LeRobot's
    ``fps`` is an int; without this flag such a store is refused). crf / pix_fmt / gop: the H.264
    encoding. yuv444p keeps colour at full resolution (16x16 frames, crf 18: mean abs error ~3 of 255;
    yuv420p ~14); yuv420p is what hardware decoders take (used only when both frame sides are even).
    robot: None = the store's."""

    fps_from_store: bool = False
    crf: int = 18
    pix_fmt: str = "yuv444p"
    gop: int = 2
    robot: str | None = None


@dataclass
class ExportSummary:
    out: Path
    n_episodes: int
    n_frames: int
    fps: float
    features: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return (
            f"exported {self.n_episodes} episodes, {self.n_frames} frames at {self.fps:g} fps to {self.out} "
            f"(LeRobotDataset v3.0; features: {', '.join(self.features)})"
        )


def feature_name(key: str) -> str:
    """Native key -> LeRobot feature name."""
    if is_image_key(key):
        return f"observation.images.{camera_of(key)}"
    return {"state": "observation.state", "action": "action"}.get(key, f"observation.{key}")


def _fps(rb: ReplayBuffer, opts: ExportOptions) -> int | float:
    fps = float(rb.meta.fps)
    if fps.is_integer():
        return int(fps)
    if not opts.fps_from_store:
        raise ConvertError(
            f"{rb.path}: fps {fps:g} is not a whole number; LeRobotDataset's fps is an int "
            "(pass --fps-from-store to write it unrounded; lerobot itself may then refuse the dataset)"
        )
    return fps


def _names(rb: ReplayBuffer, key: str, width: int) -> list[str] | None:
    spec = rb.meta.keys.get(key)
    if spec is not None and spec.names and len(spec.names) == width:
        return list(spec.names)
    if key in ("state", "action") and len(rb.meta.joint_names) == width:
        return list(rb.meta.joint_names)
    return None


def _lowdim_features(rb: ReplayBuffer, lowdim: list[str]) -> dict[str, Any]:
    feats = {}
    for k in lowdim:
        shape = list(rb.shape(k)) or [1]
        width = int(np.prod(shape))
        feats[feature_name(k)] = {
            "dtype": str(rb.dtype(k)),
            "shape": shape,
            "names": _names(rb, k, width) if len(shape) == 1 else None,
        }
    return feats


def _video_feature(h: int, w: int, fps: float, pix_fmt: str) -> dict[str, Any]:
    return {
        "dtype": "video",
        "shape": [h, w, 3],
        "names": ["height", "width", "channels"],
        "info": {
            "video.height": h,
            "video.width": w,
            "video.codec": "h264",
            "video.pix_fmt": pix_fmt,
            "video.is_depth_map": False,
            "video.fps": fps,
            "video.channels": 3,
            "has_audio": False,
        },
    }


def _tasks_table(tasks: list[str]) -> Any:
    """tasks.parquet as pandas' DataFrame.to_parquet writes a frame indexed by the task text."""
    import pyarrow as pa

    col = {"pandas_type": "int64", "numpy_type": "int64", "metadata": None}
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [],
        "columns": [
            {"name": "task_index", "field_name": "task_index", **col},
            {"name": "task", "field_name": "task", **col, "pandas_type": "unicode", "numpy_type": "object"},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    tbl = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())}
    )
    return tbl.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


class _VideoWriter:
    """One H.264 MP4 per camera; episodes appended one after the other, frame i at pts i / fps."""

    def __init__(self, path: Path, h: int, w: int, fps: float, opts: ExportOptions) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.pix_fmt = opts.pix_fmt if h % 2 == 0 and w % 2 == 0 else "yuv444p"
        self.container = av.open(str(path), "w")
        self.rate = Fraction(fps).limit_denominator(1_000_000)
        self.stream = self.container.add_stream("libx264", rate=self.rate)
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = self.pix_fmt
        self.stream.options = {"crf": str(opts.crf), "g": str(opts.gop)}
        self.n = 0

    def write(self, frames: np.ndarray) -> None:
        import av

        for f in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            frame.pts = self.n
            frame.time_base = 1 / self.rate
            for packet in self.stream.encode(frame):
                self.container.mux(packet)
            self.n += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()


def export_lerobot(
    src: str | Path,
    out: str | Path,
    opts: ExportOptions | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> ExportSummary:
    """Write the native store `src` as a LeRobotDataset v3.0 directory at `out` (staged, then renamed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    opts = opts or ExportOptions()
    rb = ReplayBuffer.open(src)
    if Path(out).resolve() == rb.path.resolve():
        raise ConvertError(f"{out}: the destination is the source store")
    if rb.n_episodes == 0:
        raise ConvertError(f"{rb.path}: the store has no episodes; nothing to export")
    for k in ("state", "action"):
        if k not in rb.keys:
            raise ConvertError(f"{rb.path}: no {k!r} key (keys: {rb.keys}); LeRobot needs state and action")
    fps = _fps(rb, opts)
    images = [k for k in rb.keys if is_image_key(k)]
    lowdim = [
        "state",
        "action",
        *(k for k in rb.keys if k not in ("state", "action") and not is_image_key(k)),
    ]
    tasks = list(dict.fromkeys(rb.instructions))
    task_of = {t: i for i, t in enumerate(tasks)}
    lengths = rb.episode_lengths.astype(np.int64)
    ends = np.cumsum(lengths)
    starts = ends - lengths
    N = int(ends[-1])

    features = _lowdim_features(rb, lowdim)
    with staged_output(out, overwrite, validate=False) as tmp:
        writers: dict[str, _VideoWriter] = {}
        try:
            for k in images:
                h, w, _ = rb.shape(k)
                writers[k] = _VideoWriter(
                    tmp / VIDEO_PATH.format(video_key=feature_name(k), chunk_index=0, file_index=0),
                    h,
                    w,
                    fps,
                    opts,
                )
            for e in progress_bar(range(rb.n_episodes), desc="episodes", unit="ep", disable=not progress):
                for k, wr in writers.items():
                    wr.write(rb.read(k, int(starts[e]), int(ends[e])))
        except BaseException:
            for wr in writers.values():  # the staged directory is deleted; keep the first error
                with contextlib.suppress(Exception):
                    wr.container.close()
            raise
        for wr in writers.values():
            wr.close()
        for k, wr in writers.items():
            h, w = rb.shape(k)[:2]
            features[feature_name(k)] = _video_feature(h, w, fps, wr.pix_fmt)
        features["timestamp"] = {"dtype": "float32", "shape": [1], "names": None}
        for name in ("frame_index", "episode_index", "index", "task_index"):
            features[name] = {"dtype": "int64", "shape": [1], "names": None}

        frame_index = np.arange(N, dtype=np.int64) - np.repeat(starts, lengths)
        episode_index = np.repeat(np.arange(rb.n_episodes, dtype=np.int64), lengths)
        task_index = np.repeat(np.array([task_of[t] for t in rb.instructions], np.int64), lengths)
        cols: dict[str, Any] = {}
        for k in lowdim:
            x = rb.read(k, 0, N)
            typ = pa.from_numpy_dtype(x.dtype)
            if x.ndim == 1:
                cols[feature_name(k)] = pa.array(x, typ)
            else:
                flat = x.reshape(N, -1)
                cols[feature_name(k)] = pa.FixedSizeListArray.from_arrays(
                    pa.array(flat.reshape(-1), typ), type=pa.list_(typ, flat.shape[1])
                )
        cols["timestamp"] = pa.array((frame_index / float(fps)).astype(np.float32))
        cols["frame_index"] = pa.array(frame_index)
        cols["episode_index"] = pa.array(episode_index)
        cols["index"] = pa.array(np.arange(N, dtype=np.int64))
        cols["task_index"] = pa.array(task_index)
        data_file = tmp / DATA_PATH.format(chunk_index=0, file_index=0)
        data_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), data_file)

        (tmp / "meta").mkdir(parents=True, exist_ok=True)
        pq.write_table(_tasks_table(tasks), tmp / "meta" / "tasks.parquet")
        rows = []
        for e in range(rb.n_episodes):
            row: dict[str, Any] = {
                "episode_index": e,
                "tasks": [rb.instructions[e]],
                "length": int(lengths[e]),
                "data/chunk_index": 0,
                "data/file_index": 0,
                "dataset_from_index": int(starts[e]),
                "dataset_to_index": int(ends[e]),
            }
            for k in images:
                v = f"videos/{feature_name(k)}"
                row |= {f"{v}/chunk_index": 0, f"{v}/file_index": 0}
                row[f"{v}/from_timestamp"] = float(starts[e]) / float(fps)
                row[f"{v}/to_timestamp"] = float(ends[e]) / float(fps)
            row |= {"meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0}
            rows.append(row)
        ep_file = tmp / EPISODES_PATH
        ep_file.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), ep_file)

        info = {
            "codebase_version": "v3.0",
            "robot_type": opts.robot or rb.meta.robot,
            "total_episodes": rb.n_episodes,
            "total_frames": N,
            "total_tasks": len(tasks),
            "chunks_size": 1000,
            "data_files_size_in_mb": 100,
            "video_files_size_in_mb": 500,
            "fps": fps,
            "splits": {"train": f"0:{rb.n_episodes}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if images else None,
            "features": features,
        }
        (tmp / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    return ExportSummary(Path(out), rb.n_episodes, N, float(fps), list(features))
