"""Each kind of bad store raises (or is reported) with a message naming the file, the field and the episode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from vla.cli.dataset import main as dataset_cli
from vla.data import DatasetError, ReplayBuffer, SequenceDataset, validate_store

# small_store: episodes of 5, 9, 4 frames -> episode_ends [5, 14, 18].


def _edit_json(path: Path, fn) -> None:
    doc = json.loads(path.read_text())
    fn(doc)
    path.write_text(json.dumps(doc))


def test_not_a_zarr_store(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"missing\.zarr: not a zarr store \(path does not exist\)"):
        ReplayBuffer.open(tmp_path / "missing.zarr")
    (tmp_path / "file.zarr").write_text("hello")
    with pytest.raises(DatasetError, match=r"file\.zarr: not a zarr store \(a file"):
        ReplayBuffer.open(tmp_path / "file.zarr")
    (tmp_path / "empty.zarr").mkdir()
    with pytest.raises(DatasetError, match=r"empty\.zarr/zarr\.json: not a zarr store"):
        ReplayBuffer.open(tmp_path / "empty.zarr")
    zarr.open_group(str(tmp_path / "v2.zarr"), mode="w", zarr_format=2)
    with pytest.raises(DatasetError, match=r"v2\.zarr: zarr v2 store.*import-dp"):
        ReplayBuffer.open(tmp_path / "v2.zarr")
    zarr.open_group(str(tmp_path / "other.zarr"), mode="w")  # v3 but not our format
    with pytest.raises(DatasetError, match=r"other\.zarr/zarr\.json: attributes: .*'format' is None"):
        ReplayBuffer.open(tmp_path / "other.zarr")


def test_missing_episode_ends(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    shutil.rmtree(path / "meta/episode_ends")
    with pytest.raises(DatasetError, match=r"meta/episode_ends: episode_ends: missing array"):
        ReplayBuffer.open(path)


def test_episode_ends_not_increasing(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    zarr.open_array(str(path / "meta/episode_ends"), mode="r+")[1] = 3
    with pytest.raises(
        DatasetError, match=r"meta/episode_ends: episode_ends\[1\]: ends at 3, not after episode 0"
    ):
        ReplayBuffer.open(path)


def test_episode_ends_past_data_length(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    zarr.open_array(str(path / "meta/episode_ends"), mode="r+")[2] = 25
    _edit_json(path / "meta/zarr.json", lambda d: d["attributes"].update(n_frames=25))
    with pytest.raises(DatasetError) as ei:
        ReplayBuffer.open(path)
    msg = str(ei.value)
    for key in ("action", "image_front", "image_wrist", "qvel", "state"):
        assert f"data/{key}: shape[0]: has 18 frames but episode 2 ends at frame 25" in msg


def test_arrays_of_different_lengths(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    zarr.open_array(str(path / "data/qvel"), mode="r+").resize((10, 6))
    with pytest.raises(
        DatasetError, match=r"data/qvel: shape\[0\]: has 10 frames but episode 1 ends at frame 14"
    ):
        ReplayBuffer.open(path)


@pytest.mark.parametrize(
    ("array", "dtype", "match"),
    [
        ("data/image_front", "float32", r"data/image_front: dtype: dtype float32, expected uint8"),
        ("meta/episode_ends", "float64", r"meta/episode_ends: dtype: dtype float64, expected int64"),
    ],
)
def test_wrong_dtype(small_store: tuple[Path, list[dict]], array: str, dtype: str, match: str) -> None:
    path, _ = small_store
    old = zarr.open_array(str(path / array), mode="r")
    data = old[:].astype(dtype)
    zarr.create_array(str(path / array), data=data, overwrite=True)
    with pytest.raises(DatasetError, match=match):
        ReplayBuffer.open(path)


def test_bad_root_attributes(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    _edit_json(path / "zarr.json", lambda d: d["attributes"].update(fps="fast"))
    with pytest.raises(
        DatasetError, match=r"small\.zarr/zarr\.json: attributes: .*fps: expected a positive number"
    ):
        ReplayBuffer.open(path)


def test_commit_record_mismatch(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    _edit_json(path / "meta/zarr.json", lambda d: d["attributes"]["episodes"].pop())
    with pytest.raises(DatasetError, match=r"meta/zarr\.json: episodes: expected a list of 3 entries, got 2"):
        ReplayBuffer.open(path)


def test_truncated_chunk_is_named_with_its_episode(small_store: tuple[Path, list[dict]], capsys) -> None:
    path, _ = small_store
    chunk = path / "data/image_wrist/c/7/0/0/0"  # frame 7 belongs to episode 1 (frames 5..13)
    chunk.write_bytes(chunk.read_bytes()[:20])
    rb = ReplayBuffer.open(path)  # opening is lazy: structure is fine
    assert np.array_equal(rb.episode(0)["image_wrist"].shape, (5, 8, 8, 3))
    with pytest.raises(
        DatasetError, match=r"data/image_wrist/c/7/0/0/0: chunk: corrupt or truncated.*\[episode 1\]"
    ):
        rb.episode(1)
    ds = SequenceDataset(rb, ["image_wrist"], n_obs_steps=2, horizon=4)
    for direct in (True, False):  # the sampler's fast path and zarr's both name the file and episode
        ds.direct_image_reads = direct
        with pytest.raises(DatasetError, match=r"data/image_wrist/c/7/0/0/0: chunk: .*\[episode 1\]"):
            ds[7]  # episode 1, t = 2 -> frames 6, 7
    lay = validate_store(path)
    assert len(lay.problems) == 1, lay.problems
    assert str(lay.problems[0]).startswith(
        f"{path}/data/image_wrist/c/7/0/0/0: chunk: corrupt or truncated chunk"
    )
    assert lay.problems[0].episode == 1
    assert dataset_cli(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "data/image_wrist/c/7/0/0/0" in out and "[episode 1]" in out and "INVALID: 1 problem(s)" in out


def test_bit_flip_and_missing_chunk(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    chunk = path / "data/state/c/0/0"  # the one low-dim chunk holds every episode
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    (path / "data/image_front/c/16/0/0/0").unlink()  # episode 2
    lay = validate_store(path)
    msgs = [str(p) for p in lay.problems]
    assert any("data/state/c/0/0: chunk: corrupt or truncated" in m for m in msgs), msgs
    assert any(
        "data/image_front/c/16/0/0/0: chunk: missing chunk file" in m and "[episode 2]" in m for m in msgs
    )


def test_validate_cli_ok_and_quick(small_store: tuple[Path, list[dict]], capsys) -> None:
    path, _ = small_store
    assert dataset_cli(["validate", str(path)]) == 0
    assert "OK:" in capsys.readouterr().out
    (path / "data/image_front/c/16/0/0/0").unlink()
    assert dataset_cli(["validate", "--quick", str(path)]) == 0  # structure only
    assert dataset_cli(["validate", str(path)]) == 1
    assert dataset_cli(["validate", str(path / "nope")]) == 2
    assert "not a zarr store" in capsys.readouterr().err


def test_non_finite_values_are_named_with_frame_and_episode(
    small_store: tuple[Path, list[dict]], capsys
) -> None:
    path, _ = small_store
    zarr.open_array(str(path / "data/action"), mode="r+")[7, 2] = np.nan  # episode 1 (frames 5..13), step 2
    state = zarr.open_array(str(path / "data/state"), mode="r+")
    state[15, 0] = np.inf  # episode 2 (frames 14..17), step 1
    state[16, 1] = -np.inf
    lay = validate_store(path)
    msgs = sorted(str(p) for p in lay.problems)
    assert msgs == [
        f"{path}/data/action: values: non-finite value (nan) at frame 7 (step 2 of episode 1); 1 frame(s) "
        "affected; floats must be finite (docs/dataset_format.md) [episode 1]",
        f"{path}/data/state: values: non-finite value (inf) at frame 15 (step 1 of episode 2); 2 frame(s) "
        "affected; floats must be finite (docs/dataset_format.md) [episode 2]",
    ]
    assert dataset_cli(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "data/action: values: non-finite value (nan) at frame 7" in out and "INVALID: 2 problem(s)" in out
    # Readers refuse the values too (training windows, statistics), naming array, frame and episode.
    rb = ReplayBuffer.open(path)
    np.testing.assert_array_equal(rb.episode(0)["action"].shape, (5, 7))  # other episodes still read
    with pytest.raises(
        DatasetError, match=r"data/action: non-finite value \(nan\) at frame 7 \(step 2 of episode 1\)"
    ):
        rb.episode(1)
    ds = SequenceDataset(rb, ["state"], n_obs_steps=1, horizon=2)
    with pytest.raises(DatasetError, match=r"data/state: non-finite value \(inf\) at frame 15"):
        ds[15]
    assert np.isnan(rb.read("action", 7, 8, check_finite=False)[0, 2])  # explicit opt-out


@pytest.mark.parametrize("node", ["data/state", "data", "meta", "meta/episode_ends"])
def test_invalid_zarr_json_is_a_problem_naming_the_file(
    small_store: tuple[Path, list[dict]], node: str, capsys
) -> None:
    path, _ = small_store
    (path / node / "zarr.json").write_text('{"zarr_format": 3, "node_type": ')  # truncated JSON
    lay = validate_store(path)
    assert [str(p) for p in lay.problems] == [
        f"{path}/{node}/zarr.json: metadata: unreadable zarr metadata (JSONDecodeError: "
        "Expecting value: line 1 column 33 (char 32))"
    ]
    with pytest.raises(DatasetError, match=rf"{node}/zarr\.json: metadata: unreadable zarr metadata"):
        ReplayBuffer.open(path)
    assert dataset_cli(["validate", str(path)]) == 1
    assert f"problem: {path}/{node}/zarr.json: metadata: unreadable" in capsys.readouterr().out


def _embeddings(path: Path, name: str = "siglip-enc-0123456789abcdef") -> Path:
    """An embeddings group as vla-embed writes it (3 arrays, chunks of 4 rows), without an encoder."""
    g = zarr.open_group(str(path), mode="r+").require_group("embeddings").create_group(name)
    g.attrs.update({"fingerprint": name, "complete": True})
    rng = np.random.default_rng(0)
    g.create_array("image_front", shape=(18, 2, 4), chunks=(4, 2, 4), dtype="float16")[:] = rng.normal(
        size=(18, 2, 4)
    )
    g.create_array("text", shape=(3, 5, 4), chunks=(3, 5, 4), dtype="float16")[:] = 1.0
    g.create_array("text_mask", shape=(3, 5), chunks=(3, 5), dtype="bool")[:] = False  # no chunk file
    return path / "embeddings" / name


def test_full_validation_reads_every_embeddings_chunk(small_store: tuple[Path, list[dict]]) -> None:
    path, _ = small_store
    gdir = _embeddings(path)
    assert validate_store(path).ok  # chunks skipped for their fill value are not "missing"
    (gdir / "image_front/c/2/0/0").write_bytes(b"garbage bytes")  # rows 8..11
    lay = validate_store(path)
    assert len(lay.problems) == 1, lay.problems
    assert str(lay.problems[0]).startswith(
        f"{gdir}/image_front/c/2/0/0: chunk: corrupt or truncated chunk, rows 8-11 ("
    )
    assert validate_store(path, deep=False).ok  # --quick: metadata only
    ReplayBuffer.open(path).episode(1)  # the episodes themselves are intact

    zarr.open_array(str(gdir / "text"), mode="r+")[1, 2, 3] = np.nan
    assert f"{gdir}/text: values: non-finite value (nan) at row 1; 1 row(s) affected" in [
        str(p) for p in validate_store(path).problems
    ]

    (gdir / "text" / "zarr.json").write_text("{oops")
    (gdir / "zarr.json").write_text("")
    lay = validate_store(path, deep=False)
    assert [p.file for p in lay.problems] == [f"{gdir}/zarr.json"], lay.problems
    ReplayBuffer.open(path).episode(2)  # an unreadable optional group does not block the episodes
    (gdir / "zarr.json").unlink()
    (gdir.parent / "zarr.json").write_text("[")
    assert [p.file for p in validate_store(path).problems] == [f"{path}/embeddings/zarr.json"]
