"""Reading rosbag2 recordings (mcap or sqlite3 storage) with `rosbags`, no ROS install: the first
step of `vla.convert.rosbag`.

`read_bag` opens one bag (a directory with metadata.yaml or a bare .mcap/.db3 file), checks that every
mapped topic is there with a type its role can use, builds the message types of the mapped topics only
(`mapped_typestore`: channels the mapping does not read, e.g. service events whose ``srv``
definitions rosbags cannot parse, are never looked at) and decodes every mapped message: images to
RGB, joint values selected by name, each stamped by its header or, failing that, its receive time.
Every refusal is one line naming the bag, the topic and, where there is one, the message and stamp.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.errors import ConvertError, fmt_stamp
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
from vla.progress import progress_bar

BAG_FILE_SUFFIXES = (".mcap", ".db3")


@dataclass
class TopicStream:
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


@functools.lru_cache(maxsize=4)
def load_typestore(name: str) -> Any:
    """The rosbags type store `name` (read only here: its definitions fill undefined mapped types)."""
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
    streams: dict[str, TopicStream]  # role -> stream
    ignored: dict[str, int]
    notes: list[str] = field(default_factory=list)


def _one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message`` (cut at `limit` characters): a refusal is one line."""
    text = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "")
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def mapped_typestore(connections: list[Any], default_typestore: str, label: str) -> Any:
    """A rosbags type store holding the types of `connections` only (the mapped topics' channels).

    Each connection's embedded definition (MSG or IDL; mcap schemas, sqlite3 ``message_definitions``)
    is parsed; a connection without one takes its type from the `default_typestore` (Humble-era
    sqlite3 bags). Definitions of channels the mapping does not read (service events, whose ``srv``
    definitions rosbags cannot parse) are never looked at. Raises ConvertError in one line naming the
    topic when a mapped definition does not parse, is unknown, or does not match its recorded hash.
    """
    from rosbags.interfaces import MessageDefinitionFormat
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    typs: dict[str, Any] = {}
    digests: dict[str, tuple[str, str]] = {}  # msgtype -> (digest, topic)
    undefined: list[Any] = []
    for c in connections:
        fmt, text = c.msgdef.format, c.msgdef.data
        if fmt == MessageDefinitionFormat.NONE or not text.strip():
            undefined.append(c)
            continue
        try:
            if fmt == MessageDefinitionFormat.MSG:
                typs.update(get_types_from_msg(text, c.msgtype))
            else:
                sep = "=" * 80 + "\n"  # several IDL files: "IDL: <name>" header lines between separators
                idls = (
                    [part.split("\n", 1)[1] for part in text.split(sep)[1:]]
                    if text.startswith(f"{sep}IDL: ")
                    else [text]
                )
                for idl in idls:
                    typs.update(get_types_from_idl(idl))
        except Exception as e:
            raise ConvertError(
                f"{label}: topic {c.topic}: the bag's embedded definition of {c.msgtype} does not parse "
                f"({_one_line(e, 120)})"
            ) from None
        if c.digest:
            digests[c.msgtype] = (c.digest, c.topic)
    if undefined:
        default = load_typestore(default_typestore)
        for c in undefined:
            if c.msgtype not in typs and c.msgtype not in default.fielddefs:
                raise ConvertError(
                    f"{label}: topic {c.topic}: the bag carries no definition of {c.msgtype} and type store "
                    f"{default_typestore!r} does not know it (set mapping.typestore)"
                )
        for name, fielddef in default.fielddefs.items():
            typs.setdefault(name, fielddef)  # an embedded definition wins over the type store's
    store = get_typestore(Stores.EMPTY)
    try:
        store.register(typs)
    except Exception as e:
        raise ConvertError(
            f"{label}: the mapped topics' message definitions do not fit together ({_one_line(e)})"
        ) from None
    for msgtype, (digest, topic) in digests.items():
        if digest.startswith("RIHS01_") and (have := store.hash_rihs01(msgtype)) != digest:
            raise ConvertError(
                f"{label}: topic {topic}: the embedded definition of {msgtype} hashes to {have}, the bag "
                f"recorded {digest} (a corrupt or edited definition)"
            )
    return store


def read_bag(bag: Path, m: RosbagMapping, progress: bool = True) -> BagData:
    """Read and decode every mapped topic of `bag`. Raises ConvertError naming bag, topic and stamp.

    Only the mapped topics' message definitions are parsed (`mapped_typestore`): a bag that also
    recorded services or types rosbags cannot parse converts as long as the mapping does not read them.
    """
    from rosbags.rosbag2 import Reader

    label = _bag_label(bag)
    wanted = _wanted_topics(m)
    last_ns: int | None = None
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as e:
        raise ConvertError(
            f"{label}: cannot read the bag ({_one_line(e)}); a truncated file or a bag still being recorded "
            "cannot be converted"
        ) from None
    try:
        topics = dict(reader.topics.items())
        missing = [(t, r) for t, r in wanted.items() if t not in topics]
        if missing:
            t, roles = missing[0]
            raise ConvertError(
                f"{label}: topic {t} ({', '.join(roles)} in the mapping) is not in the bag; "
                f"recorded topics: {sorted(topics)}"
            )
        streams: dict[str, TopicStream] = {}
        for topic, roles in wanted.items():
            msgtype = topics[topic].msgtype or ""
            for role in roles:
                kind = role.split()[0]
                if msgtype not in _ROLE_TYPES[kind]:
                    got = repr(msgtype) if msgtype else "(several types on one topic)"
                    raise ConvertError(
                        f"{label}: topic {topic}: message type {got} cannot be used as {role}; "
                        f"expected one of {list(_ROLE_TYPES[kind])}"
                    )
                streams[role] = TopicStream(topic, msgtype, role)
        conns = [c for c in reader.connections if c.topic in wanted]
        typestore = mapped_typestore(conns, m.typestore, label)
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
        by_topic: dict[str, list[TopicStream]] = {}
        for s in streams.values():
            by_topic.setdefault(s.topic, []).append(s)
        ignored = {t: int(info.msgcount) for t, info in topics.items() if t not in wanted}
        total = sum(int(c.msgcount) for c in conns)
        counts: dict[str, int] = dict.fromkeys(wanted, 0)
        image_shape: dict[str, tuple[tuple[int, ...], int]] = {}
        bar = progress_bar(total=total, desc=bag.name, unit="msg", disable=not progress, leave=False)
        for conn, recv_ns, raw in reader.messages(connections=conns):
            i = counts[conn.topic]
            counts[conn.topic] = i + 1
            try:
                msg = typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception as e:
                raise ConvertError(
                    f"{label}: topic {conn.topic}: message {i} (received at {fmt_stamp(recv_ns)}) does not "
                    f"deserialize as {conn.msgtype} ({_one_line(e, 120)})"
                ) from None
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
                    value = marker_value(msg, s.msgtype, m.episodes.start_value, m.episodes.stop_value, where)
                s.values.append(value)
                s.stamps.append(stamp)
                s.recv.append(int(recv_ns))
                s.has_header = hs is not None
            last_ns = int(recv_ns)
            bar.update(1)
        bar.close()
        _check_counts(label, bag, {t: int(topics[t].msgcount) for t in wanted}, counts)
        start_ns = int(reader.start_time)
    except ConvertError:
        raise
    except Exception as e:
        after = f" after the message received at {fmt_stamp(last_ns)}" if last_ns is not None else ""
        raise ConvertError(
            f"{label}: cannot read the bag{after} ({_one_line(e)}); a truncated file or a bag still being "
            "recorded cannot be converted"
        ) from None
    finally:
        reader.close()

    notes: list[str] = []
    for s in streams.values():
        _choose_time_source(s, m.time_source, notes)
        _check_monotonic(s, label)
    _check_joint_counts(streams, readers, m, label)
    return BagData(bag, label, start_ns, streams, ignored, notes)


def _check_counts(label: str, bag: Path, listed: dict[str, int], read: dict[str, int]) -> None:
    """Fewer messages read than the bag lists is lost data, never silently: refuse with the reason.

    rosbags matches a bag directory's storage channels to metadata.yaml's topics by type *and* QoS
    profiles; when they differ (ros2/rosbag2's talker test bags: deadline 0 s in metadata.yaml,
    2147483647 s in the storage) it yields nothing for that topic. More messages than listed (a bag
    whose metadata.yaml was written before the recording ended) is fine.
    """
    short = [(t, n, read.get(t, 0)) for t, n in listed.items() if read.get(t, 0) < n]
    if not short:
        return
    topic, n, got = short[0]
    if bag.is_dir():
        why = (
            "rosbags matches the storage's channels to metadata.yaml's topics by type and QoS profile, "
            "and they differ; convert the storage file itself (src=<its .mcap/.db3 file>)"
        )
    else:
        why = "the file's index and its messages disagree: a damaged file?"
    raise ConvertError(f"{label}: topic {topic}: the bag lists {n} messages but {got} could be read ({why})")


def _check_joint_counts(
    streams: dict[str, TopicStream], readers: dict[str, LowdimReader], m: RosbagMapping, label: str
) -> None:
    """`state` and `action` must have one value per joint name of the dataset (the validator's rule).

    A stream read without `names` (its messages' own order) can carry fewer joints than the robot,
    e.g. a 6-joint arm JointTrajectory without the gripper: refused here, before anything is written,
    naming the topic, the joints it has and the joints the mapping wants.
    """
    want = m.joint_names
    if not want:
        return
    for key in ("state", "action"):
        s = streams.get(f"lowdim {key}")
        if s is None or not s.values:
            continue
        n = int(np.shape(s.values[0])[0])
        if n == len(want):
            continue
        have = readers[s.role].message_names
        has = f"its joints {have}" if have else f"{s.msgtype} has no joint names"
        missing = [j for j in want if j not in have] if have else []
        raise ConvertError(
            f"{label}: topic {s.topic} (mapping.lowdim.{key}): {n} values per message ({has}) but the "
            f"dataset's joint_names (mapping.lowdim.state.names) want {len(want)}: {want}"
            + (f"; missing {missing}" if missing else "")
            + f"; a store's state and action have one value per joint name: record all {len(want)} joints "
            f"on {s.topic}, or set mapping.lowdim.{key}.names and mapping.lowdim.state.names to the same joints"
        )


def _choose_time_source(s: TopicStream, wanted: str, notes: list[str]) -> None:
    """Header stamps when asked for and present; receive time for header-less types or zero stamps."""
    if wanted == "header" and s.has_header:
        if s.stamps and min(s.stamps) == 0:
            s.time_source = "receive"
            notes.append(f"topic {s.topic}: header stamps are zero; aligned by bag receive time instead")
        else:
            s.time_source = "header"
    else:
        s.time_source = "receive"


def _check_monotonic(s: TopicStream, label: str) -> None:
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
