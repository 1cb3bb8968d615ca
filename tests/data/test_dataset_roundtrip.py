"""ReplayBuffer: bit-exact round trip, metadata, storage layout, append and writer input checks."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import zarr
from dataset_helpers import JOINTS, make_episode, make_meta

from vla.data import DatasetError, ReplayBuffer, validate_store


def test_round_trip_bit_exact(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = ReplayBuffer.open(path)
    assert rb.n_episodes == 3 and rb.n_frames == 18
    assert rb.episode_ends.dtype == np.int64
    np.testing.assert_array_equal(rb.episode_ends, [5, 14, 18])
    assert rb.keys == sorted(eps[0])
    for i, ep in enumerate(eps):
        got = rb.episode(i)
        assert set(got) == set(ep)
        for k, v in ep.items():
            assert got[k].dtype == v.dtype and got[k].shape == v.shape
            assert np.array_equal(got[k], v), (i, k)
    # Time-major arrays are the concatenation of the episodes.
    for k in eps[0]:
        assert np.array_equal(rb.array(k)[: rb.n_frames], np.concatenate([ep[k] for ep in eps]))
    assert rb.episode_slice(1) == slice(5, 14)
    assert rb.instructions == ["pick up cube 0", "pick up cube 1", "pick up cube 2"]
    assert rb.episode_info(1) == {"task": "pick_cube", "seed": 1, "success": False}
    m = rb.meta
    assert (m.fps, m.robot, m.joint_names, m.camera_names) == (20.0, "ur5e_2f85", JOINTS, ["front", "wrist"])
    assert m.keys["state"].units == "rad|[0,1]" and m.extra == {"simulator": "mujoco"}


def test_storage_layout_is_zarr_v3_with_documented_chunks(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    root_doc = json.loads((path / "zarr.json").read_text())
    assert root_doc["zarr_format"] == 3 and root_doc["node_type"] == "group"
    assert root_doc["attributes"]["format"] == "vla-replay-buffer"
    assert root_doc["attributes"]["format_version"] == 1
    img = json.loads((path / "data/image_front/zarr.json").read_text())
    assert img["zarr_format"] == 3 and img["data_type"] == "uint8"
    assert img["chunk_grid"]["configuration"]["chunk_shape"] == [1, 8, 8, 3]  # one frame per chunk
    codecs = [c["name"] for c in img["codecs"]]
    assert "blosc" in codecs and "crc32c" in codecs
    blosc = next(c for c in img["codecs"] if c["name"] == "blosc")
    assert blosc["configuration"]["cname"] == "zstd"
    state = json.loads((path / "data/state/zarr.json").read_text())
    assert state["chunk_grid"]["configuration"]["chunk_shape"] == [4096, 7]  # long time chunks
    meta = json.loads((path / "meta/zarr.json").read_text())["attributes"]
    assert meta["n_episodes"] == 3 and meta["n_frames"] == 18
    assert [e["instruction"] for e in meta["episodes"]] == [
        "pick up cube 0",
        "pick up cube 1",
        "pick up cube 2",
    ]


def test_plain_zarr_reader_follows_the_spec(small_store: tuple[Path, list[dict]]) -> None:
    """What docs/dataset_format.md tells a reader without our code to do, done with zarr alone."""
    path, eps = small_store
    root = zarr.open_group(str(path), mode="r")
    n = root["meta"].attrs["n_episodes"]
    ends = root["meta/episode_ends"][:n]
    start = int(ends[0])
    assert np.array_equal(root["data/image_wrist"][start : int(ends[1])], eps[1]["image_wrist"])


def test_append_mode_and_reopen(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = ReplayBuffer.open(path, mode="a")
    new = make_episode(7, 6)
    new["state"] = new["state"].astype(np.float64)  # cast to the stored float32
    assert rb.add_episode(new, instruction="stack", info={"seed": np.int64(7)}) == 3
    rb = ReplayBuffer.open(path)
    assert rb.n_episodes == 4 and rb.episode_info(3) == {"seed": 7}
    assert np.array_equal(rb.episode(3)["state"], new["state"].astype(np.float32))
    assert np.array_equal(rb.episode(0)["image_front"], eps[0]["image_front"])


def test_create_refuses_existing_unless_overwrite(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    with pytest.raises(FileExistsError, match="already exists"):
        ReplayBuffer.create(path, make_meta())
    rb = ReplayBuffer.create(path, make_meta(), overwrite=True)
    assert rb.n_episodes == 0 and rb.keys == []


def test_read_only_refuses_writes(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path)
    with pytest.raises(DatasetError, match="read-only"):
        rb.add_episode(make_episode(0, 3), instruction="x")


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda ep: ep.update(state=ep["state"][:-1]), "different lengths"),
        (
            lambda ep: ep.update(image_front=ep["image_front"].astype(np.float32)),
            "'image_front' dtype float32",
        ),
        (lambda ep: ep.update(image_front=ep["image_front"][..., :1]), r"'image_front' shape"),
        (lambda ep: ep.pop("image_wrist"), "missing key"),
        (lambda ep: ep.update(image_side=ep["image_front"]), "not in meta.camera_names"),
        (lambda ep: ep["action"].__setitem__((2, 3), np.nan), "non-finite value at frame 2"),
        (lambda ep: ep.update(torque=np.zeros((len(ep["state"]), 6), np.float32)), "unexpected key 'torque'"),
        (lambda ep: ep.update(qvel=np.zeros((len(ep["state"]), 5), np.float32)), "per-frame shape"),
        (lambda ep: ep.update(state=ep["state"].astype(np.complex64)), "dtype complex64"),
    ],
)
def test_add_episode_rejects_bad_input(small_store: tuple[Path, list[dict]], mutate, match: str) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path, mode="a")
    ep = make_episode(9, 4)
    mutate(ep)
    with pytest.raises(DatasetError, match=match):
        rb.add_episode(ep, instruction="x")
    assert ReplayBuffer.open(path).n_episodes == 3  # nothing was written


def test_add_episode_rejects_non_json_info(tmp_path: Path) -> None:
    rb = ReplayBuffer.create(tmp_path / "s.zarr", make_meta())
    with pytest.raises(DatasetError, match="info: must be JSON-serialisable"):
        rb.add_episode(make_episode(0, 3), instruction="x", info={"obj": object()})


def test_extra_top_level_groups_are_tolerated(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    rb = ReplayBuffer.open(path, mode="a")
    emb = rb.root.create_group("embeddings")
    emb.create_array("siglip", shape=(18, 4), dtype="float32")
    rb.add_episode(make_episode(5, 2), instruction="more")
    lay = validate_store(path)
    assert lay.ok, lay.problems
    assert ReplayBuffer.open(path).n_episodes == 4


def test_pickled_reader_reopens_lazily(small_store: tuple[Path, list[dict]]) -> None:
    path, eps = small_store
    rb = pickle.loads(pickle.dumps(ReplayBuffer.open(path, mode="a")))
    assert rb.mode == "r"
    assert np.array_equal(rb.episode(2)["qvel"], eps[2]["qvel"])


def test_all_zero_frames_are_stored(tmp_path: Path) -> None:
    """A black frame still gets a chunk file, so a missing file always means damage."""
    rb = ReplayBuffer.create(tmp_path / "z.zarr", make_meta())
    ep = make_episode(0, 3)
    ep["image_front"][:] = 0
    rb.add_episode(ep, instruction="dark")
    assert (tmp_path / "z.zarr/data/image_front/c/1/0/0/0").is_file()
    assert validate_store(tmp_path / "z.zarr").ok
