"""Native store -> rosbag2 mcap bags (`vla.convert.export_mcap`) -> back through the project's own rosbag
importer with the real configs/convert/ur5e_rosbag.yaml mapping: state, action and qvel exact, episodes
and instructions equal, images lossless (raw and png); the bags read independently with rosbags' Reader;
the CLI end to end.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vla.convert import ConvertError, convert
from vla.convert.export_mcap import McapExportOptions, export_mcap, wire_joint_names
from vla.data import DatasetMeta, KeySpec, ReplayBuffer
from vla.paths import CONFIG_DIR

ARM = ["shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint"]
ARM = [*ARM, "wrist_3_joint"]
JOINTS = [*ARM, "gripper"]  # the store's (dataset) names
WIRE = [*ARM, "robotiq_85_left_knuckle_joint"]
WIRE_MAP = dict(zip(JOINTS, WIRE))  # what vla-dataset export builds from configs/robot/ur5e_2f85.yaml
CAMS = ("front", "wrist")
HW = (8, 12)
LENGTHS = (6, 9)
INSTRUCTIONS = ["pick up the cube", "stack the cubes"]


def _store(path: Path) -> list[dict[str, np.ndarray]]:
    meta = DatasetMeta(
        fps=20.0,
        robot="ur5e_2f85",
        joint_names=list(JOINTS),
        camera_names=list(CAMS),
        keys={"state": KeySpec(units="rad"), "action": KeySpec(units="rad"), "qvel": KeySpec(units="rad/s")},
    )
    rb = ReplayBuffer.create(path, meta)
    eps = []
    for i, T in enumerate(LENGTHS):
        rng = np.random.default_rng(i)
        ep = {
            "state": rng.standard_normal((T, 7)).astype(np.float32),
            "action": rng.standard_normal((T, 7)).astype(np.float32),
            "qvel": rng.standard_normal((T, 6)).astype(np.float32),
        }
        for cam in CAMS:
            ep[f"image_{cam}"] = rng.integers(0, 256, (T, *HW, 3), dtype=np.uint8)  # noise: lossless only
        rb.add_episode(ep, instruction=INSTRUCTIONS[i])
        eps.append(ep)
    return eps


def _ur5e_mapping() -> dict[str, Any]:
    """configs/convert/ur5e_rosbag.yaml resolved against configs/robot/ur5e_2f85.yaml."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(
        {
            "robot": OmegaConf.load(CONFIG_DIR / "robot" / "ur5e_2f85.yaml"),
            "mapping": OmegaConf.load(CONFIG_DIR / "convert" / "ur5e_rosbag.yaml"),
        }
    )
    return OmegaConf.to_container(cfg, resolve=True)["mapping"]  # type: ignore[index,return-value]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, np.ndarray]]]:
    d = tmp_path_factory.mktemp("export_mcap")
    return d / "src.zarr", _store(d / "src.zarr")


def test_wire_joint_names_from_robot_config(tmp_path: Path) -> None:
    from vla.cli.dataset import _wire_names

    _store(tmp_path / "s.zarr")
    assert _wire_names(str(tmp_path / "s.zarr")) == WIRE_MAP  # read from the robot config by the CLI
    assert wire_joint_names(JOINTS, WIRE_MAP) == WIRE
    assert wire_joint_names(["a", "b"], None) == ["a", "b"]


@pytest.mark.parametrize("images", ["raw", "png"])
def test_mcap_round_trip_through_ur5e_importer(store: tuple[Path, list], tmp_path: Path, images: str) -> None:
    src, eps = store
    summary = export_mcap(
        src, tmp_path / "bags", McapExportOptions(images=images, wire_names=WIRE_MAP), progress=False
    )
    assert summary.n_episodes == 2 and summary.n_frames == sum(LENGTHS)
    assert "Foxglove" in str(summary)
    report = convert("rosbag", tmp_path / "bags", tmp_path / "back.zarr", _ur5e_mapping(), progress=False)
    rb = ReplayBuffer.open(tmp_path / "back.zarr")
    assert rb.n_episodes == 2 and list(rb.episode_lengths) == list(LENGTHS)
    assert rb.instructions == INSTRUCTIONS and rb.meta.fps == 20.0
    assert rb.meta.joint_names == WIRE
    for i, ep in enumerate(eps):
        got = rb.episode(i)
        for k in ("state", "action", "qvel"):
            assert got[k].dtype == np.float32
            np.testing.assert_array_equal(got[k], ep[k], err_msg=f"episode {i} {k}")
        for cam in CAMS:
            np.testing.assert_array_equal(got[f"image_{cam}"], ep[f"image_{cam}"], err_msg=f"{i} {cam}")
    assert max(s.err_max_ms for e in report.episodes for s in e.streams) == 0.0


def test_mcap_read_independently(store: tuple[Path, list], tmp_path: Path) -> None:
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    src, _ = store
    export_mcap(src, tmp_path / "bags", McapExportOptions(wire_names=WIRE_MAP), progress=False)
    bags = sorted(p for p in (tmp_path / "bags").iterdir())
    assert [b.name for b in bags] == ["episode_000000", "episode_000001"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging cleaned up
    ts = get_typestore(Stores.ROS2_HUMBLE)
    ends = []
    for bag, T in zip(bags, LENGTHS):
        assert [p.suffix for p in bag.iterdir() if p.suffix == ".mcap"] == [".mcap"]
        with Reader(bag) as r:
            counts = {t: int(i.msgcount) for t, i in r.topics.items()}
            assert counts == {
                "/joint_states": T,
                "/arm/command": T,
                "/camera/front/image_raw": T,
                "/camera/wrist/image_raw": T,
                "/instruction": 1,
            }
            assert r.topics["/joint_states"].msgtype == "sensor_msgs/msg/JointState"
            assert r.topics["/camera/front/image_raw"].msgtype == "sensor_msgs/msg/Image"
            stamps = []
            for conn, t, raw in r.messages(
                connections=[c for c in r.connections if c.topic == "/joint_states"]
            ):
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                assert list(msg.name) == WIRE and len(msg.velocity) == 7 and msg.velocity[6] == 0.0
                assert msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec == t
                stamps.append(t)
            assert np.all(np.diff(stamps) == 50_000_000)
            ends.append((stamps[0], stamps[-1]))
    assert ends[1][0] - ends[0][1] >= 1_000_000_000  # episodes separated by a gap


def test_single_episode_overwrite_and_refusals(store: tuple[Path, list], tmp_path: Path) -> None:
    src, eps = store
    out = tmp_path / "one"
    export_mcap(src, out, McapExportOptions(episode=1, wire_names=WIRE_MAP), progress=False)
    assert [p.name for p in out.iterdir()] == ["episode_000001"]
    with pytest.raises(FileExistsError):
        export_mcap(src, out, progress=False)
    with pytest.raises(ConvertError, match="out of range"):
        export_mcap(src, tmp_path / "x", McapExportOptions(episode=2, wire_names=WIRE_MAP), progress=False)
    export_mcap(src, out, McapExportOptions(episode=0, wire_names=WIRE_MAP), overwrite=True, progress=False)
    convert("rosbag", out, tmp_path / "back.zarr", _ur5e_mapping(), progress=False)
    rb = ReplayBuffer.open(tmp_path / "back.zarr")
    assert rb.n_episodes == 1 and rb.instructions == INSTRUCTIONS[:1]
    np.testing.assert_array_equal(rb.episode(0)["action"], eps[0]["action"])


def test_cli_export_mcap(store: tuple[Path, list], tmp_path: Path) -> None:
    src, _ = store
    cmd = [sys.executable, "-m", "vla.cli.dataset", "export", "--format", "mcap", str(src)]
    r = subprocess.run([*cmd, str(tmp_path / "bags"), "--episode", "0"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "1 episodes" in r.stdout and "Foxglove" in r.stdout
    assert (tmp_path / "bags" / "episode_000000" / "metadata.yaml").is_file()
    r = subprocess.run([*cmd, str(tmp_path / "bags")], capture_output=True, text=True)
    assert r.returncode != 0 and "exists" in r.stderr
    h = subprocess.run(
        [sys.executable, "-m", "vla.cli.dataset", "export", "-h"], capture_output=True, text=True
    )
    assert "mcap" in h.stdout and "Foxglove" in h.stdout
