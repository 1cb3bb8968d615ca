"""rosbag2 recordings (mcap or sqlite3 storage) -> native episodes, read with `rosbags` (no ROS install).

Pipeline per bag: read every mapped topic once (`vla.convert.rosbag_reader`: only the mapped topics'
definitions, images decoded to RGB, joint values selected by name, each message stamped by its header
or, failing that, its bag receive time) -> cut episodes (the whole
bag, or between start/stop markers) -> align every stream onto one control-rate clock spanning the
time all streams cover -> append the episode. The report lists, per topic, the messages in the
episode, their rate, how many were dropped or repeated by resampling and the alignment error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.align import AlignmentStats, align, frame_clock
from vla.convert.errors import ConvertError, fmt_stamp
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.rosbag_mapping import RosbagMapping
from vla.convert.rosbag_reader import BagData, TopicStream, find_bags, load_typestore, read_bag
from vla.convert.sink import EpisodeSink, destination
from vla.data import DatasetMeta, KeySpec
from vla.progress import progress_bar


def _episode_windows(data: BagData, m: RosbagMapping) -> list[tuple[int, int]]:
    """[start, end) in ns of each episode of the bag."""
    big = np.iinfo(np.int64).max
    if m.episodes.split == "bag":
        return [(-big, big)]
    s = data.streams["marker"]
    windows: list[tuple[int, int]] = []
    open_at: int | None = None
    for t, on in zip(s.recv, s.values):
        if on and open_at is not None:
            raise ConvertError(
                f"{data.label}: topic {s.topic}: start marker at {fmt_stamp(t)} while the episode started at "
                f"{fmt_stamp(open_at)} is still open (missing stop marker)"
            )
        if on:
            open_at = t
        elif open_at is not None:
            windows.append((open_at, t))
            open_at = None
        # A stop without a start (e.g. a repeated stop) closes nothing: no data is lost by ignoring it.
    if open_at is not None:
        windows.append((open_at, big))
        data.notes.append(
            f"topic {s.topic}: the last episode has no stop marker; it runs to the end of the bag"
        )
    if not windows:
        raise ConvertError(f"{data.label}: topic {s.topic}: no start marker, so no episode to convert")
    return windows


def _instruction(data: BagData, m: RosbagMapping, start: int, end: int, notes: list[str]) -> str:
    s = data.streams.get("instruction")
    if s is not None and s.values:
        recv = np.asarray(s.recv, dtype=np.int64)
        before = np.flatnonzero(recv <= start)
        during = np.flatnonzero((recv > start) & (recv < end))
        if before.size:
            text = s.values[int(before[-1])]
        elif during.size:
            text = s.values[int(during[0])]
        else:
            text = None
        if text is not None:
            later = {s.values[int(i)] for i in during} - {text}
            if later:
                notes.append(
                    f"topic {s.topic}: other instructions during the episode ignored: {sorted(later)}"
                )
            return text
    if m.instruction.text:
        if s is not None:
            notes.append(
                f"topic {s.topic}: no instruction before or during the episode; used the mapping's text"
            )
        return m.instruction.text
    if s is not None:
        raise ConvertError(
            f"{data.label}: topic {s.topic}: no instruction message before or during the episode "
            f"({fmt_stamp(start) if start > 0 else 'bag start'} to {fmt_stamp(end) if end < 2**62 else 'bag end'}); "
            "set instruction.text as a fallback"
        )
    notes.append("no instruction topic or text in the mapping: the instruction is empty")
    return ""


def convert_episode(
    data: BagData, m: RosbagMapping, start: int, end: int, label: str
) -> tuple[dict[str, np.ndarray], EpisodeReport, dict[str, Any]]:
    """Align one episode's streams onto the control clock -> (data, report, info)."""
    notes: list[str] = []
    parts: dict[
        str, tuple[TopicStream, np.ndarray, np.ndarray]
    ] = {}  # key -> (stream, stamps, message indices)
    for role, s in data.streams.items():
        kind, _, name = role.partition(" ")
        if kind not in ("camera", "lowdim"):
            continue
        key = f"image_{name}" if kind == "camera" else name
        t = s.stamp_array()
        sel = np.flatnonzero((t >= start) & (t < end))
        if sel.size == 0:
            raise ConvertError(
                f"{data.label}: topic {s.topic} ({role}): no message in episode {label} "
                f"({fmt_stamp(start) if start > 0 else 'bag start'} to {fmt_stamp(end) if end < 2**62 else 'bag end'})"
            )
        parts[key] = (s, t[sel], sel)
    t0 = max(int(p[1][0]) for p in parts.values())
    t1 = min(int(p[1][-1]) for p in parts.values())
    if t1 < t0:
        first = max(parts.items(), key=lambda kv: int(kv[1][1][0]))
        last = min(parts.items(), key=lambda kv: int(kv[1][1][-1]))
        raise ConvertError(
            f"{data.label}: episode {label}: streams do not overlap in time: topic {last[1][0].topic} ends at "
            f"{fmt_stamp(t1)} before topic {first[1][0].topic} starts at {fmt_stamp(t0)}"
        )
    grid = frame_clock(t0, t1, m.fps)
    out: dict[str, np.ndarray] = {}
    rows: list[AlignmentStats] = []
    for key, (s, t, sel) in parts.items():
        method = m.align_of(key)
        idx, err = align(t, grid, method)  # type: ignore[arg-type]
        if m.max_error_ms is not None:
            bad = np.flatnonzero(np.abs(err) > m.max_error_ms * 1e6)
            if bad.size:
                f = int(bad[0])
                raise ConvertError(
                    f"{data.label}: topic {s.topic} ({key}): frame {f} at {fmt_stamp(grid[f])} is "
                    f"{abs(err[f]) / 1e6:.1f} ms from its nearest usable message at {fmt_stamp(t[idx[f]])} "
                    f"(max_error_ms {m.max_error_ms:g}; a gap in the stream?)"
                )
        chosen = sel[idx]
        if key.startswith("image_"):
            out[key] = np.stack([s.values[int(i)] for i in chosen])
        else:
            out[key] = np.stack([s.values[int(i)] for i in chosen]).astype(np.float32)
        rows.append(
            AlignmentStats.from_alignment(key, s.topic, s.msgtype, t, idx, err, f"{s.time_source} ({method})")
        )
    instruction = _instruction(data, m, t0, end, notes)
    rep = EpisodeReport(
        source=label,
        n_frames=len(grid),
        instruction=instruction,
        t_start_s=(t0 - data.start_ns) / 1e9,
        duration_s=(int(grid[-1]) - t0) / 1e9,
        keys={k: list(v.shape[1:]) for k, v in out.items()},
        streams=rows,
        notes=notes,
    )
    info = {
        "source": str(data.bag),
        "source_format": "rosbag2",
        "episode_label": label,
        "t_start_ns": int(t0),
        "t_end_ns": int(grid[-1]),
        "alignment": {
            r.name: {
                "topic": r.source,
                "method": r.time_source,
                "err_mean_ms": round(r.err_mean_ms, 4),
                "err_max_ms": round(r.err_max_ms, 4),
                "dropped": r.n_dropped,
                "repeated": r.n_repeated,
            }
            for r in rows
        },
    }
    return out, rep, info


def _meta(m: RosbagMapping, src: Path) -> DatasetMeta:
    keys: dict[str, KeySpec] = {}
    for cam, topic in m.cameras.items():
        keys[f"image_{cam}"] = KeySpec(
            units="rgb", description=f"from {topic}, aligned {m.align} at {m.fps:g} Hz"
        )
    for key, spec in m.lowdim.items():
        desc = spec.description or f"from {spec.topic}" + (f" ({spec.field})" if spec.field else "")
        keys[key] = KeySpec(
            units=spec.units,
            description=f"{desc}, aligned {m.align_of(key)} at {m.fps:g} Hz",
            names=spec.names,
        )
    return DatasetMeta(
        fps=m.fps,
        robot=m.robot,
        joint_names=m.joint_names,
        camera_names=list(m.cameras),
        keys=keys,
        extra={
            "imported_from": {
                "format": "rosbag2",
                "path": str(src),
                "align": m.align,
                "time_source": m.time_source,
                "topics": {k: s.topic for k, s in m.lowdim.items()}
                | {f"image_{c}": t for c, t in m.cameras.items()},
            }
        },
    )


def import_rosbag(
    src: str | Path,
    out: str | Path,
    mapping: RosbagMapping,
    overwrite: bool = False,
    dry_run: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert the bag(s) at `src` into a native store at `out` (nothing written when `dry_run`).

    src: a bag directory, a bare .mcap/.db3 file, or a directory of bag directories (sorted by name;
        with ``episodes.split: bag`` each bag is one episode).
    Raises ConvertError (bad input: names file, topic, stamp) or FileExistsError (`out` exists).
    """
    src = Path(src)
    bags = find_bags(src)
    load_typestore(mapping.typestore)  # an unknown name is refused before any bag is read
    report = ConvertReport("rosbag2", str(src), str(out), mapping.fps, dry_run=dry_run)
    with destination(out, overwrite, dry_run) as tmp:
        sink = EpisodeSink(tmp, _meta(mapping, src))
        for bag in progress_bar(bags, desc="bags", unit="bag", disable=not progress or len(bags) == 1):
            data = read_bag(bag, mapping, progress=progress)
            windows = _episode_windows(data, mapping)
            for k, (start, end) in enumerate(windows):
                label = (
                    bag.name if len(windows) == 1 and mapping.episodes.split == "bag" else f"{bag.name}[{k}]"
                )
                ep, rep, info = convert_episode(data, mapping, start, end, label)
                sink.add(ep, rep.instruction, info, f"{data.label}: episode {label}")
                report.episodes.append(rep)
            for t, n in data.ignored.items():
                report.ignored_topics[t] = report.ignored_topics.get(t, 0) + n
            report.notes += [f"{bag.name}: {n}" for n in data.notes]
    report.notes.append("low-dim values are stored as float32 (ROS messages carry float64)")
    return report
