"""Look at a native store's episode with the rerun viewer (`vla-dataset view`).

One episode becomes one rerun recording: each camera as an image stream, every joint's measured
state and commanded action in one plot per joint, every other low-dimensional key (qvel, rewards,
...) as a multi-line plot, and the instruction as a text panel and a log line, all on two timelines
(`frame`, the episode-local index, and `time`, seconds at the store's fps). A blueprint lays the
panels out so the recording opens ready to read.

Headless (no display, CI, a remote machine) the recording is written to an `.rrd` file, atomically,
to be opened later with `rerun FILE.rrd` (the viewer ships with the `rerun-sdk` wheel). The SDK is
an optional extra: `pip install -e ".[viz]"` (`make setup` installs it).

    from vla.data.viewer import ViewOptions, view_episode
    view_episode("outputs/demos/pick_cube.zarr", ViewOptions(episode=3, out="ep3.rrd"))
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vla.data.errors import DatasetError
from vla.data.format import camera_of, is_image_key

APP_ID = "vla-dataset"
STATE_KEY, ACTION_KEY = "state", "action"


@dataclass
class ViewOptions:
    """What `view_episode` shows and where it goes.

    episode: index of the episode to show (negative counts from the end, like Python).
    out: write the recording to this .rrd file (atomic). None: `spawn` decides.
    spawn: open a viewer window (a `rerun` process) instead of writing a file; needs a display.
    max_frames: show only the first `max_frames` frames (None: all).
    """

    episode: int = 0
    out: str | None = None
    spawn: bool = False
    max_frames: int | None = None


def has_display() -> bool:
    """Whether a viewer window can open here (an X11 or Wayland display)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def default_rrd_path(store: str | Path, episode: int) -> Path:
    """`<store name>_episode<N>.rrd` in the current directory (a store is a directory)."""
    name = Path(store).resolve().name
    stem = name[: -len(".zarr")] if name.endswith(".zarr") else name
    return Path.cwd() / f"{stem}_episode{episode}.rrd"


def _import_rerun() -> Any:
    try:
        import rerun as rr
    except ImportError:
        raise DatasetError(
            "vla-dataset view needs the rerun SDK (optional extra): pip install -e '.[viz]' "
            "(or pip install rerun-sdk)"
        ) from None
    return rr


def _dim_names(key: str, width: int, joint_names: list[str]) -> list[str]:
    """Series names of a (T, width) key: the joint names when the key is per joint."""
    if key in (STATE_KEY, ACTION_KEY) and width == len(joint_names):
        return list(joint_names)
    return [f"{key}[{i}]" for i in range(width)]


def _entity(name: str) -> str:
    """A joint or key name as one entity-path part (rerun splits paths on '/')."""
    return name.replace("/", "_").replace(" ", "_") or "_"


def _blueprint(rr: Any, cameras: list[str], joints: list[str], others: list[str]) -> Any:
    import rerun.blueprint as rrb

    left = [rrb.Spatial2DView(origin=f"cameras/{c}", name=c) for c in cameras]
    left.append(rrb.TextDocumentView(origin="instruction", name="instruction"))
    plots = [rrb.TimeSeriesView(origin=f"joints/{_entity(j)}", name=j) for j in joints]
    tabs = [rrb.Grid(*plots, name="joints: state vs action")] if plots else []
    tabs += [rrb.TimeSeriesView(origin=f"data/{_entity(k)}", name=k) for k in others]
    right = rrb.Tabs(*tabs) if tabs else rrb.TextLogView(origin="log", name="log")
    return rrb.Blueprint(
        rrb.Horizontal(rrb.Vertical(*left), right, column_shares=[1, 2]),
        rrb.TimePanel(state="expanded"),
        collapse_panels=False,
    )


def log_episode(rec: Any, rr: Any, data: dict[str, np.ndarray], *, fps: float, instruction: str,
                joint_names: list[str], info: dict[str, Any] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Log one episode's arrays into the recording `rec`.

    Args:
        data: {key: (T, ...)}: image_<cam> uint8 (T, H, W, 3); low-dim keys (T,) or (T, D).
        fps: frames per second (the `time` timeline is frame / fps seconds).
        joint_names: names of the state/action dimensions (one plot per joint with both).
    Returns:
        {"cameras": [...], "joints": [...], "others": [...]}: what was logged (for the blueprint).
    """
    n = min((len(v) for v in data.values()), default=0)
    frames = np.arange(n, dtype=np.int64)
    index = [rr.TimeColumn("frame", sequence=frames), rr.TimeColumn("time", duration=frames / float(fps))]
    rec.log("instruction", rr.TextDocument(instruction or "(no instruction)"), static=True)
    rec.set_time("frame", sequence=0)
    rec.set_time("time", duration=0.0)
    rec.log("log", rr.TextLog(f"instruction: {instruction!r}; {n} frames at {fps:g} Hz; info: {info or {}}"))

    cameras, joints, others = [], [], []
    low = {k: v for k, v in data.items() if not is_image_key(k)}
    # State and action of a joint share one plot: the tracking error is what a person looks for.
    for key in (STATE_KEY, ACTION_KEY):
        arr = low.get(key)
        if arr is None or arr.ndim != 2 or arr.shape[1] != len(joint_names):
            continue
        low.pop(key)
        for j, name in enumerate(joint_names):
            path = f"joints/{_entity(name)}/{key}"
            rec.log(path, rr.SeriesLines(names=[key]), static=True)
            rec.send_columns(
                path, indexes=index, columns=rr.Scalars.columns(scalars=arr[:n, j].astype(np.float64))
            )
            if name not in joints:
                joints.append(name)
    for key, arr in sorted(low.items()):
        if not np.issubdtype(arr.dtype, np.number) and arr.dtype != bool:
            continue  # strings or records: nothing to plot
        flat = np.asarray(arr[:n], dtype=np.float64).reshape(n, -1)
        if flat.shape[1] == 0:
            continue
        path = f"data/{_entity(key)}"
        rec.log(path, rr.SeriesLines(names=_dim_names(key, flat.shape[1], joint_names)), static=True)
        cols = rr.Scalars.columns(scalars=flat.reshape(-1)).partition([flat.shape[1]] * n)
        rec.send_columns(path, indexes=index, columns=cols)
        others.append(key)
    for key in sorted(k for k in data if is_image_key(k)):
        cam = camera_of(key)
        cameras.append(cam)
        for i in range(n):
            rec.set_time("frame", sequence=i)
            rec.set_time("time", duration=i / float(fps))
            rec.log(f"cameras/{_entity(cam)}", rr.Image(data[key][i]))
    return {"cameras": cameras, "joints": joints, "others": others}


def view_episode(path: str | Path, opts: ViewOptions | None = None) -> str:
    """Show episode `opts.episode` of the native store `path` in rerun; returns a one-line report.

    Writes `opts.out` (or, without a display, `default_rrd_path`) atomically; with `opts.spawn` (or
    no `out` and a display) opens a viewer window instead.

    Raises:
        DatasetError: unreadable store, an episode out of range, or no rerun SDK installed.
    """
    from vla.data import ReplayBuffer

    opts = opts or ViewOptions()
    rb = ReplayBuffer.open(path)
    if rb.n_episodes == 0:
        raise DatasetError(f"{rb.path}: the store has no episodes to view")
    if not -rb.n_episodes <= opts.episode < rb.n_episodes:
        raise DatasetError(
            f"{rb.path}: episode={opts.episode} is out of range (the store has {rb.n_episodes} "
            f"episodes: 0..{rb.n_episodes - 1})"
        )
    ep = opts.episode % rb.n_episodes
    rr = _import_rerun()
    data = rb.episode(ep)
    if opts.max_frames is not None:
        data = {k: v[: opts.max_frames] for k, v in data.items()}
    instruction = rb.instructions[ep]
    spawn = opts.spawn or (opts.out is None and has_display())
    out = None if spawn else Path(opts.out) if opts.out is not None else default_rrd_path(rb.path, ep)

    rec = rr.RecordingStream(APP_ID, recording_id=f"{rb.path.name}#{ep}-{uuid.uuid4().hex[:8]}")
    tmp = None
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
        rec.save(tmp)
    else:
        rec.spawn()
    try:
        rec.send_recording_name(f"{rb.path.name} episode {ep}")
        logged = log_episode(rec, rr, data, fps=float(rb.meta.fps), instruction=instruction,
                             joint_names=list(rb.meta.joint_names), info=rb.episode_info(ep))  # fmt: skip
        rec.send_blueprint(_blueprint(rr, logged["cameras"], logged["joints"], logged["others"]))
        rec.flush(timeout_sec=60.0)
        rec.disconnect()
    except BaseException:
        rec.disconnect()
        if tmp is not None:
            tmp.unlink(missing_ok=True)  # nothing half-written is left beside the target
        raise
    n = min((len(v) for v in data.values()), default=0)
    what = (
        f"episode {ep} of {rb.path} ({n} frames, cameras {logged['cameras'] or 'none'}, "
        f"{len(logged['joints'])} joints, instruction {instruction!r})"
    )
    if tmp is None:
        return f"{what}: sent to a rerun viewer window"
    os.replace(tmp, out)
    return f"{what}: wrote {out} ({out.stat().st_size / 1e6:.1f} MB); open it with: rerun {out}"
