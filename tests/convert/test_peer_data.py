"""Every real file in `../shared/peer-data` (third-party recordings, see its SOURCES.md) either converts,
its values checked against an independent reader (pyarrow, zarr, PyAV, sqlite3, rosbags, the bag's
metadata.yaml, all read here directly), or is refused for the right reason in one line.

The folder sits beside the repository and is never copied into it; without it every test here skips.
One case per source and mapping (the table of issue 20); the rosbag2 test bags carry no joint state,
image or command topic, so with any mapping they are refused by message type, and their readable
topics are read through the importer's definition handling separately (`test_peer_bag_topics_read`).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from convert_fixtures import rosbag_mapping_dict

from vla.convert import ConvertError, ConvertReport, convert
from vla.data import ReplayBuffer, validate_store

REPO = Path(__file__).resolve().parents[2]
PEER = REPO / ".." / "shared" / "peer-data"

RB2 = "ros2_rosbag2"
PY_RES = f"{RB2}/rosbag2_py/test/resources"
TESTS_RES = f"{RB2}/rosbag2_tests/resources"
CPP_BAGS = f"{RB2}/rosbag2_cpp/test/rosbag2_cpp/bags"
LEGACY_TALKER = (
    "ros2_rosbag2_legacy/c7c7954d4d9944c160d7b3d716d1cb95d34e37e4/rosbag2_py/test/resources/sqlite3/talker"
)
LEGACY_CDR = (
    "ros2_rosbag2_legacy/5d56fb9dcbb9761dae9cb598e8d5a7ccf4ddead7/rosbag2_tests/resources/sqlite3/cdr_test"
)
PUSHT = "humanoid-collective_diffusion_policy_soup/data/pusht/pusht_cchi_v7_replay.zarr"
RECORD_TEST = "SamueleSandrini_record-test"
OPEN50 = "yipiandanxinxiangyangkai_open_50"
V21 = "rerun-io_rerun/crates/store/re_importer/tests/assets/lerobot/v21_apple_storage"


def peer(rel: str) -> Path:
    """The peer file `rel`, or skip (with the reason) when the folder or the file is absent."""
    if not PEER.is_dir():
        pytest.skip(
            f"{PEER.resolve()}: peer-data folder absent (real third-party datasets, see its SOURCES.md); "
            "nothing to check on this machine"
        )
    p = PEER / rel
    if not p.exists():
        pytest.skip(f"{p}: not in the peer-data folder")
    return p


# ------------------------------------------------------------------------------ independent readers
def bag_topics(src: Path) -> dict[str, str]:
    """topic -> type of a bag, read without the project's code (metadata.yaml, sqlite3, rosbags)."""
    import yaml

    if src.is_dir():
        meta = yaml.safe_load((src / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        return {
            t["topic_metadata"]["name"]: t["topic_metadata"]["type"]
            for t in meta["topics_with_message_count"]
        }
    if src.suffix == ".db3":
        con = sqlite3.connect(f"file:{src}?immutable=1", uri=True)
        try:
            return dict(con.execute("SELECT name, type FROM topics").fetchall())
        finally:
            con.close()
    from rosbags.rosbag2 import Reader

    with Reader(src) as r:
        return {c.topic: c.msgtype for c in r.connections}


def strip_mapping(topic: str) -> dict[str, Any]:
    """SOURCES.md's STRIP: the UR5e mapping without the streams these bags lack, one `state` stream."""
    return rosbag_mapping_dict(cameras={}, lowdim={"state": {"topic": topic}}, instruction={"topic": None})


def parquet_columns(files: list[Path], keys: tuple[str, ...]) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    tbl = pa.concat_tables([pq.read_table(f, columns=[*keys, "episode_index", "frame_index"]) for f in files])
    return {c: tbl.column(c).to_pylist() for c in tbl.column_names}


# ------------------------------------------------------------------------------------------- cases
@dataclass
class Case:
    """One row of the table: `refused` lists fragments the one-line refusal must contain (after
    "{src}"), else `check` verifies the converted store against an independent reader."""

    id: str
    fmt: str
    src: str
    options: dict[str, Any]
    refused: list[str] = field(default_factory=list)
    check: Callable[[Path, Path, ConvertReport, Path], None] | None = None
    independent: Callable[[Path], list[str]] | None = None  # fragments computed from the source
    slow: bool = False


def _type_refusal(topic: str, bag: str) -> Callable[[Path], list[str]]:
    """The refusal names the type the bag records for `topic` (read independently from `bag`, a path
    relative to the source: "" for the source itself, "talker" for the first bag of a directory)."""

    def frag(src: Path) -> list[str]:
        t = bag_topics(src / bag if bag else src)[topic]
        return [f"topic {topic}: message type {t!r} cannot be used as lowdim state"]

    return frag


def _rosbag_type_case(cid: str, src: str, topic: str, *extra: str, bag: str = "") -> Case:
    return Case(cid, "rosbag", src, strip_mapping(topic), list(extra), independent=_type_refusal(topic, bag))


def _check_record_test(src: Path, out: Path, report: ConvertReport, _: Path) -> None:
    rb = ReplayBuffer.open(out)
    info = json.loads((src / "meta" / "info.json").read_text())
    cols = parquet_columns(sorted((src / "data").rglob("*.parquet")), ("observation.state", "action"))
    ep = np.asarray(cols["episode_index"])
    assert rb.n_episodes == 4 and rb.n_frames == len(ep) == 1492
    assert rb.episode_lengths.tolist() == [373, 374, 372, 373]
    assert rb.meta.fps == 30 and rb.meta.robot == "so101_follower" and rb.meta.camera_names == []
    assert rb.meta.joint_names == info["features"]["observation.state"]["names"]
    for e in range(4):
        rows = np.flatnonzero(ep == e)
        rows = rows[np.argsort(np.asarray(cols["frame_index"])[rows])]
        got = rb.episode(e)
        np.testing.assert_array_equal(got["state"], np.asarray(cols["observation.state"], np.float32)[rows])
        np.testing.assert_array_equal(got["action"], np.asarray(cols["action"], np.float32)[rows])
    assert rb.instructions == ["Pick the orange cube and place it in the box"] * 4
    text = str(report)
    for feat in ("observation.images.front", "observation.images.top"):
        assert f"not mapped (dropped): {feat} (1492 frames)" in text, text
    assert "0 messages" not in text and "MP4" not in text, text  # issue 20's report details


def _check_open50(src: Path, out: Path, report: ConvertReport, _: Path) -> None:
    rb = ReplayBuffer.open(out)
    info = json.loads((src / "meta" / "info.json").read_text())
    files = sorted((src / "data").rglob("*.parquet"))
    assert len(files) == 50 and rb.n_episodes == 50 and rb.n_frames == info["total_frames"] == 20814
    assert rb.meta.joint_names == info["features"]["state"]["names"] and len(rb.meta.joint_names) == 34
    for e, f in enumerate(files):  # one episode per file
        cols = parquet_columns([f], ("state", "actions"))
        assert set(cols["episode_index"]) == {e} and cols["frame_index"] == list(range(len(cols["state"])))
        got = rb.episode(e)
        np.testing.assert_array_equal(got["state"], np.asarray(cols["state"], np.float32))
        np.testing.assert_array_equal(got["action"], np.asarray(cols["actions"], np.float32))
    assert set(rb.instructions) == {"lingzu teleoperation"}
    assert "not mapped (dropped): image (20814 frames)" in str(report)


def open50_with_videos(src: Path, tmp: Path, episodes: tuple[int, ...] = (4,)) -> Path:
    """SOURCES.md's derived copy, in a temporary folder (links, nothing copied into the repository):
    the repository stores the MP4s under video/, info.json says videos/; episodes limited to `episodes`."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    root = tmp / "open50_videos"
    (root / "meta" / "episodes" / "chunk-000").mkdir(parents=True)
    (root / "data" / "chunk-000").mkdir(parents=True)
    (root / "videos" / "image" / "chunk-000").mkdir(parents=True)
    for name in ("info.json", "tasks.parquet", "stats.json"):
        (root / "meta" / name).symlink_to(src / "meta" / name)
    rel = "episodes/chunk-000/file-000.parquet"
    tbl = pq.read_table(src / "meta" / rel)
    tbl = tbl.filter(pc.is_in(tbl.column("episode_index"), value_set=pa.array(episodes)))
    pq.write_table(tbl, root / "meta" / rel)
    for e in episodes:
        name = f"file-{e:03d}"
        (root / "data" / "chunk-000" / f"{name}.parquet").symlink_to(
            src / "data" / "chunk-000" / f"{name}.parquet"
        )
        (root / "videos" / "image" / "chunk-000" / f"{name}.mp4").symlink_to(
            src / "video" / "image" / "chunk-000" / f"{name}.mp4"
        )
    return root


def _check_open50_video(src: Path, out: Path, report: ConvertReport, root: Path) -> None:
    import av
    import pyarrow.parquet as pq

    rb = ReplayBuffer.open(out)
    eps = pq.read_table(root / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pylist()
    assert rb.n_episodes == len(eps) and rb.meta.camera_names == ["image"]
    for i, row in enumerate(eps):
        e = row["episode_index"]
        cols = parquet_columns(
            [root / "data" / "chunk-000" / f"file-{e:03d}.parquet"], ("state", "timestamp")
        )
        got = rb.episode(i)
        T = len(cols["state"])
        assert got["image_image"].shape == (T, 480, 640, 3)
        np.testing.assert_array_equal(got["state"], np.asarray(cols["state"], np.float32))
        with av.open(str(root / "videos" / "image" / "chunk-000" / f"file-{e:03d}.mp4")) as c:
            s = c.streams.video[0]
            decoded = [(float(f.pts * s.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
        pts = np.asarray([t for t, _ in decoded])
        want_t = row["videos/image/from_timestamp"] + np.asarray(cols["timestamp"], np.float64)
        for k in (0, 1, T // 2, T - 2, T - 1):
            j = int(np.argmin(np.abs(pts - want_t[k])))
            assert abs(pts[j] - want_t[k]) < 1e-4
            np.testing.assert_array_equal(got["image_image"][k], decoded[j][1])
    assert any("MP4 decodes to" in n for n in report.notes)


PUSHT_EPISODES = 25  # of 206: the first 25 (3153 frames) keep make test short


def _check_pusht(src: Path, out: Path, report: ConvertReport, _: Path) -> None:
    import zarr

    g = zarr.open_group(str(src), mode="r")
    all_ends = np.asarray(g["meta/episode_ends"][:])
    assert len(all_ends) == 206 and int(all_ends[-1]) == 25650  # the file as published
    ends = all_ends[:PUSHT_EPISODES]
    n = int(ends[-1])
    rb = ReplayBuffer.open(out)
    assert rb.n_episodes == len(ends) and rb.n_frames == n
    np.testing.assert_array_equal(np.cumsum(rb.episode_lengths), ends)
    assert rb.meta.fps == 10 and rb.meta.camera_names == ["front"]
    for key in ("action", "state", "keypoint", "n_contacts"):
        np.testing.assert_array_equal(rb.array(key)[:], np.asarray(g[f"data/{key}"][:n]))
    img = g["data/img"]
    for f in (0, 1, int(ends[0]) - 1, int(ends[0]), n // 2, n - 1):
        np.testing.assert_array_equal(rb.array("image_front")[f], np.rint(img[f]).astype(np.uint8))
    lengths = np.diff(np.concatenate([[0], ends]))
    assert [e.duration_s for e in report.episodes] == pytest.approx(((lengths - 1) / 10).tolist())
    assert "frames, 0.00 s," not in str(report)  # was: every episode listed as 0.00 s
    assert f"imported the first {PUSHT_EPISODES} of 206 episodes" in str(report)


CASES: list[Case] = [
    # --- Diffusion Policy ---------------------------------------------------------------------------
    Case("dp_pusht", "dp", PUSHT, {"max_episodes": PUSHT_EPISODES}, check=_check_pusht, slow=True),
    # --- LeRobot v3 ---------------------------------------------------------------------------------
    Case(
        "lerobot_record_test_default",
        "lerobot",
        RECORD_TEST,
        {},
        [
            "/videos/observation.images.front/chunk-000/file-000.mp4: missing video file for "
            "observation.images.front"
        ],
    ),
    Case("lerobot_record_test_no_cameras", "lerobot", RECORD_TEST, {"cameras": {}}, check=_check_record_test),
    Case(
        "lerobot_open50_default",
        "lerobot",
        OPEN50,
        {},
        [
            "/meta/info.json: features.observation.state: no such feature (features: ['actions', "
            "'episode_index', 'frame_index', 'image', 'index', 'state', 'task_index', 'timestamp'])"
        ],
    ),
    Case(
        "lerobot_open50_keys",
        "lerobot",
        OPEN50,
        {"state_key": "state", "action_key": "actions"},
        ["/videos/image/chunk-000/file-000.mp4: missing video file for image"],
    ),
    Case(
        "lerobot_open50_no_cameras",
        "lerobot",
        OPEN50,
        {"state_key": "state", "action_key": "actions", "cameras": {}},
        check=_check_open50,
    ),
    Case(
        "lerobot_open50_videos_episode4",
        "lerobot",
        OPEN50,
        {"state_key": "state", "action_key": "actions"},
        check=_check_open50_video,
        slow=True,
    ),
    Case(
        "lerobot_v21_metadata",
        "lerobot",
        V21,
        {},
        [
            "/meta/info.json: codebase_version: 'v2.1'; this importer reads LeRobotDataset v3.x (convert v2.1 "
            "datasets with lerobot's convert_dataset_v21_to_v30 first)"
        ],
    ),
    # --- rosbag2 ------------------------------------------------------------------------------------
    Case(
        "rosbag_talker_mcap_ur5e_mapping",
        "rosbag",
        f"{PY_RES}/mcap/talker",
        rosbag_mapping_dict(),
        [
            " (talker.mcap): topic /camera/front/image_raw (camera front in the mapping) is not in the bag; "
            "recorded topics: ['/parameter_events', '/rosout', '/topic']"
        ],
    ),
    _rosbag_type_case("rosbag_talker_mcap", f"{PY_RES}/mcap/talker", "/topic", " (talker.mcap): "),
    _rosbag_type_case("rosbag_talker_sqlite3", f"{PY_RES}/sqlite3/talker", "/topic", " (talker.db3): "),
    _rosbag_type_case("rosbag_talker_mcap_file", f"{PY_RES}/mcap/talker/talker.mcap", "/topic"),
    _rosbag_type_case("rosbag_talker_db3_file", f"{PY_RES}/sqlite3/talker/talker.db3", "/topic"),
    _rosbag_type_case(
        "rosbag_cdr_test_mcap", f"{TESTS_RES}/mcap/cdr_test", "/array_topic", "(cdr_test_0.mcap)"
    ),
    _rosbag_type_case(
        "rosbag_cdr_test_sqlite3", f"{TESTS_RES}/sqlite3/cdr_test", "/array_topic", "(cdr_test_0.db3)"
    ),
    _rosbag_type_case(
        "rosbag_wbag_split_mcap",
        f"{PY_RES}/mcap/wbag",
        "AAA",
        " (wbag_0.mcap, wbag_1.mcap, wbag_2.mcap, wbag_3.mcap, wbag_4.mcap): ",
    ),
    # Issue 20: were "cannot read the bag (... Could not parse ...srv...); a truncated file ..." (19 lines).
    _rosbag_type_case(
        "rosbag_services_mcap",
        f"{TESTS_RES}/mcap/bag_with_topics_and_service_events",
        "/test_topic1",
        "(bag_with_topics_and_service_events.mcap)",
    ),
    _rosbag_type_case(
        "rosbag_services_mcap_service_topic",
        f"{TESTS_RES}/mcap/bag_with_topics_and_service_events",
        "/test_service1/_service_event",
    ),
    _rosbag_type_case(
        "rosbag_services_sqlite3", f"{TESTS_RES}/sqlite3/bag_with_topics_and_service_events", "/test_topic1"
    ),
    _rosbag_type_case(
        "rosbag_topics_and_services_mcap_file", f"{CPP_BAGS}/topics_and_services.mcap", "/parameter_events"
    ),
    _rosbag_type_case(
        "rosbag_topics_and_services_db3_file", f"{CPP_BAGS}/topics_and_services.db3", "/parameter_events"
    ),
    Case(
        "rosbag_reindex_multiple_files_dir",
        "rosbag",
        f"{PY_RES}/mcap/reindex_test_bags/multiple_files",
        strip_mapping("/chatter"),
        [
            "multiple_files: neither a rosbag2 bag (no metadata.yaml) nor a directory of bags (no subdirectory has one)"
        ],
    ),
    *[
        _rosbag_type_case(
            f"rosbag_reindex_multiple_files_{i}",
            f"{PY_RES}/mcap/reindex_test_bags/multiple_files/multiple_files_{i}.mcap",
            "/chatter",
        )
        for i in range(3)
    ],
    # A directory of bags (talker, wbag): refused on the first one.
    _rosbag_type_case(
        "rosbag_directory_of_bags", f"{PY_RES}/mcap", "/topic", "/mcap/talker (talker.mcap): ", bag="talker"
    ),
    _rosbag_type_case("rosbag_legacy_talker_sqlite3", LEGACY_TALKER, "/topic", " (talker.db3): "),
    _rosbag_type_case("rosbag_legacy_talker_db3_file", f"{LEGACY_TALKER}/talker.db3", "/topic"),
    _rosbag_type_case("rosbag_legacy_cdr_test_sqlite3", LEGACY_CDR, "/array_topic", "(cdr_test_0.db3)"),
]


@pytest.mark.parametrize(
    "case", [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.slow else []) for c in CASES]
)
def test_peer_file(case: Case, tmp_path: Path) -> None:
    src = peer(case.src)
    options = dict(case.options)
    root = src
    if case.id == "lerobot_open50_videos_episode4":
        root = open50_with_videos(src, tmp_path)
    out = tmp_path / "out.zarr"
    if case.check is None:
        with pytest.raises(ConvertError) as ei:
            convert(case.fmt, root, out, options, progress=False)
        msg = str(ei.value)
        assert "\n" not in msg and len(msg) < 600, msg  # one line
        assert msg.startswith(str(src)), msg  # names the file first
        assert "truncated" not in msg and "still being recorded" not in msg, msg  # the real reason
        fragments = case.refused + (case.independent(src) if case.independent else [])
        for f in fragments:
            assert f in msg, (f, msg)
        assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []
        return
    report = convert(case.fmt, root, out, options, progress=False)
    lay = validate_store(out)  # what `vla-dataset validate` checks, every chunk
    assert lay.ok, lay.problems
    case.check(src, out, report, root)


def test_service_event_bag_refusal_is_one_line_through_the_cli(tmp_path: Path) -> None:
    """Issue 20: `vla-convert` on ros2/rosbag2's mcap bag with service events printed a 19-line dump
    claiming a truncated file; now one line with the real reason (the topic's type), exit status 2."""
    src = peer(f"{TESTS_RES}/mcap/bag_with_topics_and_service_events")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "vla.cli.convert",
            f"src={src}",
            f"out={tmp_path / 'out.zarr'}",
            "~mapping.cameras.front",
            "~mapping.cameras.wrist",
            "~mapping.lowdim.qvel",
            "~mapping.lowdim.action",
            "mapping.lowdim.state.names=null",
            "mapping.instruction.topic=null",
            "mapping.lowdim.state.topic=/test_topic1",
            "--no-progress",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert (
        "topic /test_topic1: message type 'test_msgs/msg/Strings' cannot be used as lowdim state" in lines[0]
    )
    assert not (tmp_path / "out.zarr").exists()


# ----------------------------------------------- the importer's definition handling on every real bag
BAGS = [
    f"{PY_RES}/mcap/talker/talker.mcap",
    f"{PY_RES}/sqlite3/talker/talker.db3",
    f"{TESTS_RES}/mcap/cdr_test/cdr_test_0.mcap",
    f"{TESTS_RES}/sqlite3/cdr_test/cdr_test_0.db3",
    *[f"{PY_RES}/mcap/wbag/wbag_{i}.mcap" for i in range(5)],
    f"{TESTS_RES}/mcap/bag_with_topics_and_service_events/bag_with_topics_and_service_events.mcap",
    f"{TESTS_RES}/sqlite3/bag_with_topics_and_service_events/bag_with_topics_and_service_events.db3",
    f"{CPP_BAGS}/topics_and_services.mcap",
    f"{CPP_BAGS}/topics_and_services.db3",
    *[f"{PY_RES}/mcap/reindex_test_bags/multiple_files/multiple_files_{i}.mcap" for i in range(3)],
    f"{LEGACY_TALKER}/talker.db3",
    f"{LEGACY_CDR}/cdr_test_0.db3",
]
# Counts of the mcap files without a metadata.yaml of their own, from the `mcap` reader (SOURCES.md).
MCAP_COUNTS = {
    ("multiple_files_0.mcap", "/chatter"): 1324,
    ("multiple_files_1.mcap", "/chatter"): 1324,
    ("multiple_files_2.mcap", "/chatter"): 529,
    ("topics_and_services.mcap", "/parameter_events"): 7,
}
# ros2/rosbag2's schema-4 talker.db3 stores stub definitions ("uint8 level" for rcl_interfaces/msg/Log):
# the real messages do not fit them (the importer would refuse "message 0 ... does not deserialize").
STUB_DEFINITIONS = {(f"{PY_RES}/sqlite3/talker/talker.db3", "/rosout")}


def _bag_id(rel: str) -> str:
    p = Path(rel)
    return ("legacy/" if "legacy" in rel else "") + f"{p.parent.parent.name}/{p.parent.name}/{p.name}"


def _sqlite_messages(path: Path) -> dict[str, list[bytes]]:
    con = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        rows = con.execute(
            "SELECT t.name, m.data FROM messages m JOIN topics t ON m.topic_id = t.id ORDER BY m.timestamp, m.id"
        ).fetchall()
    finally:
        con.close()
    out: dict[str, list[bytes]] = {}
    for name, data in rows:
        out.setdefault(name, []).append(bytes(data))
    return out


@pytest.mark.parametrize("rel", BAGS, ids=[_bag_id(b) for b in BAGS])
def test_peer_bag_topics_read(rel: str) -> None:
    """Each topic's embedded (or, for legacy sqlite3, the type store's) definition builds through
    `mapped_typestore` alone and deserializes every message; service-event channels are refused in one
    line for the real reason. Raw messages and counts match sqlite3 / metadata.yaml read directly."""
    import yaml
    from rosbags.rosbag2 import Reader

    from vla.convert.rosbag_reader import mapped_typestore

    path = peer(rel)
    independent: dict[str, list[bytes]] | None = _sqlite_messages(path) if path.suffix == ".db3" else None
    counts: dict[str, int] = {}
    if path.suffix == ".mcap" and (path.parent / "metadata.yaml").is_file() and "wbag" not in path.name:
        meta = yaml.safe_load((path.parent / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    with Reader(path) as reader:
        for topic in sorted({c.topic for c in reader.connections}):
            conns = [c for c in reader.connections if c.topic == topic]
            if "/srv/" in conns[0].msgtype:
                with pytest.raises(ConvertError) as ei:
                    mapped_typestore(conns, "ros2_humble", str(path))
                msg = str(ei.value)
                assert "\n" not in msg and f"topic {topic}: " in msg, msg
                assert ("does not parse" in msg) or ("carries no definition" in msg), msg
                continue
            if "test_msgs" in conns[0].msgtype and "legacy" in rel:
                # Foxy-era sqlite3 stores no definitions and no type store knows test_msgs.
                with pytest.raises(
                    ConvertError, match=r"carries no definition of test_msgs/msg/\w+ and type store"
                ):
                    mapped_typestore(conns, "ros2_humble", str(path))
                continue
            store = mapped_typestore(conns, "ros2_humble", str(path))
            raws = [raw for _, _, raw in reader.messages(connections=conns)]
            if (rel, topic) in STUB_DEFINITIONS:
                with pytest.raises(Exception, match="size mismatch"):
                    store.deserialize_cdr(raws[0], conns[0].msgtype)
            else:
                for raw in raws:
                    store.deserialize_cdr(raw, conns[0].msgtype)
            if independent is not None:
                assert [bytes(r) for r in raws] == independent.get(topic, []), topic
            elif topic in counts:
                assert len(raws) == counts[topic], topic
            if (path.name, topic) in MCAP_COUNTS:
                assert len(raws) == MCAP_COUNTS[path.name, topic]
