"""rosbag2 recordings (mcap or sqlite3 storage) -> native episodes, read with `rosbags` (no ROS install).

Pipeline per bag: read every mapped topic once (images decoded to RGB, joint values selected by name,
each message stamped by its header or, failing that, its bag receive time) -> cut episodes (the whole
bag, or between start/stop markers) -> align every stream onto one control-rate clock spanning the
time all streams cover -> append the episode. The report lists, per topic, the messages in the
episode, their rate, how many were dropped or repeated by resampling and the alignment error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.align import AlignmentStats, align, frame_clock
from vla.convert.errors import ConvertError, fmt_stamp
from vla.convert.report import ConvertReport, EpisodeReport
from vla.convert.ros_msgs import (
    IMAGE_TYPES,
    INSTRUCTION_TYPES,
    LOWDIM_TYPES,
    MARKER_TYPES,
    LowdimReader,
    header_stamp_ns,
    image_to_rgb,
    marker_value,
)
from vla.convert.rosbag_mapping import RosbagMapping
from vla.convert.sink import EpisodeSink, destination
from vla.data import DatasetMeta, KeySpec
from vla.progress import progress_bar

BAG_FILE_SUFFIXES = (".mcap", ".db3")


@dataclass
class _Stream:
    """Messages of one mapped topic in one bag, in bag order."""

    topic: str
    msgtype: str
    role: str  # "camera <cam>", "lowdim <key>", "instruction", "marker"
    stamps: list[int] = field(default_factory=list)  # header stamps (or receive times)
    recv: list[int] = field(default_factory=list)  # bag receive times
    values: list[Any] = field(default_factory=list)
    has_header: bool = False
    time_source: str = "receive"

    def stamp_array(self) -> np.ndarray:
        return np.asarray(self.stamps if self.time_source == "header" else self.recv, dtype=np.int64)


def find_bags(src: str | Path) -> list[Path]:
    """A bag directory (has metadata.yaml), a bare .mcap/.db3 file, or a directory of bag directories."""
    src = Path(src)
    if not src.exists():
        raise ConvertError(f"{src}: no such bag or directory")
    if src.is_file():
        if src.suffix not in BAG_FILE_SUFFIXES:
            raise ConvertError(
                f"{src}: not a rosbag2 storage file (expected {BAG_FILE_SUFFIXES} or a bag directory)"
            )
        return [src]
    if (src / "metadata.yaml").is_file():
        return [src]
    bags = sorted(p for p in src.iterdir() if p.is_dir() and (p / "metadata.yaml").is_file())
    if not bags:
        raise ConvertError(
            f"{src}: neither a rosbag2 bag (no metadata.yaml) nor a directory of bags (no subdirectory has one)"
        )
    return bags


def _bag_label(bag: Path) -> str:
    files = sorted(p.name for p in bag.iterdir() if p.suffix in BAG_FILE_SUFFIXES) if bag.is_dir() else []
    return f"{bag} ({', '.join(files)})" if files else str(bag)


def _typestore(name: str) -> Any:
    from rosbags.typesys import Stores, get_typestore

    try:
        return get_typestore(Stores(name))
    except ValueError:
        names = [s.value for s in Stores]
        raise ConvertError(f"mapping.typestore: unknown type store {name!r}; one of {names}") from None


def _wanted_topics(m: RosbagMapping) -> dict[str, list[str]]:
    """topic -> roles that read it (a JointState topic may feed state and qvel)."""
    out: dict[str, list[str]] = {}
    for cam, topic in m.cameras.items():
        out.setdefault(topic, []).append(f"camera {cam}")
    for key, spec in m.lowdim.items():
        out.setdefault(spec.topic, []).append(f"lowdim {key}")
    if m.instruction.topic:
        out.setdefault(m.instruction.topic, []).append("instruction")
    if m.episodes.split == "marker" and m.episodes.marker_topic:
        out.setdefault(m.episodes.marker_topic, []).append("marker")
    return out


_ROLE_TYPES = {
    "camera": IMAGE_TYPES,
    "lowdim": LOWDIM_TYPES,
    "instruction": INSTRUCTION_TYPES,
    "marker": MARKER_TYPES,
}


@dataclass
class BagData:
    """What one bag holds for the mapping: streams keyed by role, plus topic counts it did not map."""

    bag: Path
    label: str
    start_ns: int
    streams: dict[str, _Stream]  # role -> stream
    ignored: dict[str, int]
    notes: list[str] = field(default_factory=list)


def read_bag(bag: Path, m: RosbagMapping, progress: bool = True) -> BagData:
    """Read and decode every mapped topic of `bag`. Raises ConvertError naming bag, topic and stamp."""
    from rosbags.highlevel import AnyReader

    label = _bag_label(bag)
    wanted = _wanted_topics(m)
    last_ns: int | None = None
    try:
        reader = AnyReader([bag], default_typestore=_typestore(m.typestore))
        with reader:
            topics = {t: info for t, info in reader.topics.items()}
            missing = [(t, r) for t, r in wanted.items() if t not in topics]
            if missing:
                t, roles = missing[0]
                raise ConvertError(
                    f"{label}: topic {t} ({', '.join(roles)} in the mapping) is not in the bag; "
                    f"recorded topics: {sorted(topics)}"
                )
            streams: dict[str, _Stream] = {}
            for topic, roles in wanted.items():
                msgtype = topics[topic].msgtype or ""
                for role in roles:
                    kind = role.split()[0]
                    if msgtype not in _ROLE_TYPES[kind]:
                        raise ConvertError(
                            f"{label}: topic {topic}: message type {msgtype!r} cannot be used as {role}; "
                            f"expected one of {list(_ROLE_TYPES[kind])}"
                        )
                    streams[role] = _Stream(topic, msgtype, role)
            readers = {
                role: LowdimReader(
                    s.msgtype,
                    m.lowdim[role.split()[1]].names,
                    m.lowdim[role.split()[1]].field,
                    f"{label}: topic {s.topic} (mapping.lowdim.{role.split()[1]})",
                )
                for role, s in streams.items()
                if role.startswith("lowdim")
            }
            by_topic: dict[str, list[_Stream]] = {}
            for s in streams.values():
                by_topic.setdefault(s.topic, []).append(s)
            conns = [c for c in reader.connections if c.topic in wanted]
            ignored = {t: int(info.msgcount) for t, info in topics.items() if t not in wanted}
            total = sum(int(c.msgcount) for c in conns)
            counts: dict[str, int] = dict.fromkeys(wanted, 0)
            image_shape: dict[str, tuple[tuple[int, ...], int]] = {}
            bar = progress_bar(total=total, desc=bag.name, unit="msg", disable=not progress, leave=False)
            for conn, recv_ns, raw in reader.messages(connections=conns):
                i = counts[conn.topic]
                counts[conn.topic] = i + 1
                msg = reader.deserialize(raw, conn.msgtype)
                hs = header_stamp_ns(msg)
                stamp = hs if hs is not None else recv_ns
                where = f"{label}: topic {conn.topic}: message {i} (stamp {fmt_stamp(stamp)})"
                for s in by_topic[conn.topic]:
                    kind = s.role.split()[0]
                    if kind == "camera":
                        value: Any = image_to_rgb(msg, s.msgtype, where)
                        first = image_shape.setdefault(s.topic, (value.shape, stamp))
                        if value.shape != first[0]:
                            raise ConvertError(
                                f"{where}: image size changed mid-episode from {first[0][1]}x{first[0][0]} "
                                f"(first image at {fmt_stamp(first[1])}) to {value.shape[1]}x{value.shape[0]}"
                            )
                    elif kind == "lowdim":
                        value = readers[s.role].read(msg, where)
                    elif kind == "instruction":
                        value = str(msg.data)
                    else:
                        value = marker_value(
                            msg, s.msgtype, m.episodes.start_value, m.episodes.stop_value, where
                        )
                    s.values.append(value)
                    s.stamps.append(stamp)
                    s.recv.append(int(recv_ns))
                    s.has_header = hs is not None
                last_ns = int(recv_ns)
                bar.update(1)
            bar.close()
            start_ns = int(reader.start_time)
    except ConvertError:
        raise
    except Exception as e:
        after = f" after the message received at {fmt_stamp(last_ns)}" if last_ns is not None else ""
        raise ConvertError(
            f"{label}: cannot read the bag{after} ({type(e).__name__}: {e}); a truncated file or a bag "
            "still being recorded cannot be converted"
        ) from None

    notes: list[str] = []
    for s in streams.values():
        _choose_time_source(s, m.time_source, notes)
        _check_monotonic(s, label)
    return BagData(bag, label, start_ns, streams, ignored, notes)


def _choose_time_source(s: _Stream, wanted: str, notes: list[str]) -> None:
    """Header stamps when asked for and present; receive time for header-less types or zero stamps."""
    if wanted == "header" and s.has_header:
        if s.stamps and min(s.stamps) == 0:
            s.time_source = "receive"
            notes.append(f"topic {s.topic}: header stamps are zero; aligned by bag receive time instead")
        else:
            s.time_source = "header"
    else:
        s.time_source = "receive"


def _check_monotonic(s: _Stream, label: str) -> None:
    t = s.stamp_array()
    if t.size < 2:
        return
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        k = int(back[0]) + 1
        raise ConvertError(
            f"{label}: topic {s.topic}: {s.time_source} stamp {fmt_stamp(t[k])} (message {k}) is earlier than "
            f"the previous message's {fmt_stamp(t[k - 1])}: stamps must not go backwards (set "
            "time_source: receive to align by bag time instead)"
        )


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
    parts: dict[str, tuple[_Stream, np.ndarray, np.ndarray]] = {}  # key -> (stream, stamps, message indices)
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
