"""`vla-dataset validate` passes on every store any command of the project writes.

One test per writer drives the real command (or, for `vla-record`, the sink its node writes through)
on tiny inputs, then runs the CLI's deep check (`vla-dataset validate PATH`, exit status 0 = clean) and
an independent look with plain `zarr` at the commit record (`meta/`: episode count, `episode_ends`,
data lengths), so a validator that accepted everything would still fail on a wrong episode count.

`test_every_writer_is_covered` scans the packages for call sites that write a store (creating it,
appending episodes, writing groups, arrays or attributes, opening it for writing) and fails when a
module with one is missing from `WRITERS`: a new writer must get a case here.
"""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import zarr
from hydra_helpers import compose
from module_loader import load_helper
from pipeline_helpers import IMAGE_SIZE

from vla.cli import convert as convert_cli
from vla.cli import embed as embed_cli
from vla.cli.dataset import main as dataset_cli

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent


# A private name, so tests/convert's own `import convert_fixtures` is not affected.
cf = load_helper("_writers_convert_fixtures", "convert/convert_fixtures.py")

# Module (repo-relative) that writes stores -> the tests below that drive it through a command.
WRITERS: dict[str, tuple[str, ...]] = {
    "vla/collect.py": ("test_collect", "test_collect_resume", "test_collect_overwrite"),
    "vla/cli/embed.py": ("test_embed",),
    "vla/encoders/cache.py": ("test_embed",),
    "vla/cli/dataset.py": ("test_dataset_stats", "test_dataset_import_dp"),
    "vla/convert/sink.py": ("test_convert_rosbag", "test_convert_aloha", "test_convert_lerobot"),
    "vla/convert/dp.py": ("test_dataset_import_dp", "test_convert_dp"),
    "vla/record.py": ("test_record_sink",),
    "vla/dagger/rounds.py": ("test_dagger_round",),
    "vla/dagger/aggregate.py": ("test_dagger_round",),
    "vla/collect_shards.py": ("test_collect_shards_merge",),
    "vla/collect_tasks.py": ("test_collect_tasks",),
    "vla/data/merge.py": ("test_collect_shards_merge", "test_dataset_merge"),
    "vla/encoders/cache_shards.py": ("test_embed_shards",),
}
# Packages whose modules commands import (pyproject's packages, less benchmarks/: timing scripts that
# write scratch stores, not commands).
SCANNED = ("vla", "sim", "policies", "ros_bridge")
# The store implementation itself (its own tests are tests/data/).
NOT_COMMANDS = {"vla/data/replay_buffer.py"}


def assert_valid(path: Path, n_episodes: int, capsys: pytest.CaptureFixture[str]) -> zarr.Group:
    """`vla-dataset validate PATH` (deep) exits 0, and plain zarr sees `n_episodes` committed episodes."""
    capsys.readouterr()
    code = dataset_cli(["validate", str(path)])
    out = capsys.readouterr()
    assert code == 0, f"vla-dataset validate {path} -> {code}:\n{out.out}{out.err}"

    # Independent of vla.data: the commit record in meta/zarr.json and the arrays it points into.
    root = zarr.open_group(str(path), mode="r")
    assert root.metadata.zarr_format == 3
    meta = root["meta"]
    assert meta.attrs["n_episodes"] == n_episodes
    assert len(meta.attrs["episodes"]) == n_episodes
    ends = np.asarray(meta["episode_ends"][:])
    assert ends.shape == (n_episodes,)
    assert np.all(np.diff(ends, prepend=0) > 0), f"empty or unordered episodes: {ends}"
    n_frames = int(ends[-1])
    assert meta.attrs["n_frames"] == n_frames
    data = dict(root["data"].arrays())
    assert data, "no data arrays"
    for key, arr in data.items():
        assert arr.shape[0] == n_frames, f"data/{key}: {arr.shape[0]} rows, {n_frames} frames"
    return root


def _copy(src: Path, tmp_path: Path) -> Path:
    # Writers that modify a store run on a copy: the session's tiny_dataset is shared with other tests.
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------------- vla-collect
def test_collect(tiny_dataset: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_valid(tiny_dataset, 3, capsys)


def _collect(out: Path, n_episodes: int, **kw: Any) -> None:
    from vla.collect import CollectConfig, collect

    # The settings tiny_dataset was collected with (resume refuses another task, seed or cameras).
    collect(
        CollectConfig(
            task="pick_cube",
            n_episodes=n_episodes,
            out=str(out),
            env_overrides={"image_size": IMAGE_SIZE},
            progress=False,
            **kw,
        )
    )


def test_collect_resume(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(tiny_dataset, tmp_path)
    _collect(path, 4, resume=True)  # appends one episode to the 3 stored
    assert_valid(path, 4, capsys)


def test_collect_overwrite(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(tiny_dataset, tmp_path)
    _collect(path, 1, overwrite=True)  # staged beside the old store, then swapped in
    assert_valid(path, 1, capsys)


def test_collect_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vla.collect import CollectConfig
    from vla.collect_tasks import collect_tasks

    out = tmp_path / "all.zarr"
    envs = {"pick_cube": {"image_size": IMAGE_SIZE}, "push_cube": {"image_size": IMAGE_SIZE, "max_steps": 60}}
    collect_tasks(CollectConfig(task="pick_cube", n_episodes=2, out=str(out), progress=False), envs)
    assert_valid(out, 2, capsys)


def test_collect_shards_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from vla.collect import CollectConfig, collect
    from vla.collect_shards import merge_shards, shard_store

    base = CollectConfig(
        task="pick_cube", n_episodes=2, out=str(tmp_path / "s.zarr"), env_overrides={"image_size": IMAGE_SIZE},
        progress=False, num_shards=2,
    )  # fmt: skip
    for k in range(2):
        collect(replace(base, shard=k, out=str(shard_store(base.out, k, 2))))
        assert_valid(shard_store(base.out, k, 2), 1, capsys)
    merge_shards(base)
    assert_valid(tmp_path / "s.zarr", 2, capsys)


def test_dataset_merge(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "twice.zarr"
    assert dataset_cli(["merge", str(tiny_dataset), str(tiny_dataset), str(out)]) == 0
    assert_valid(out, 6, capsys)


# ----------------------------------------------------------------------------------------- vla-embed
def test_embed_shards(
    tiny_dataset: Path, tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(tiny_dataset, tmp_path)
    base = [f"dataset={path}", f"encoder.model={tiny_encoder_dir}", "batch_size=16", "num_shards=2"]
    threads = torch.get_num_threads()
    try:
        for extra in ("shard=0", "shard=1", "merge=true"):
            fp = embed_cli.run(compose("embed", [*base, extra]))
    finally:
        torch.set_num_threads(threads)
    root = assert_valid(path, 3, capsys)
    g = root["embeddings"][fp]
    assert g.attrs["complete"] is True and g.attrs["n_frames"] == int(root["meta"].attrs["n_frames"])


def test_embed(
    tiny_dataset: Path, tiny_encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _copy(tiny_dataset, tmp_path)
    cfg = compose("embed", [f"dataset={path}", f"encoder.model={tiny_encoder_dir}", "batch_size=64"])
    threads = torch.get_num_threads()
    try:
        fp = embed_cli.run(cfg)
    finally:
        torch.set_num_threads(threads)  # run() sets configs/embed.yaml's threads=1 process-wide
    root = assert_valid(path, 3, capsys)
    g = root["embeddings"][fp]
    assert g.attrs["complete"] is True and g.attrs["n_episodes"] == 3
    assert g.attrs["n_frames"] == int(root["meta"].attrs["n_frames"])


# ---------------------------------------------------------------------------------------- vla-dagger
@pytest.mark.parametrize("labels", ["step", "branch"])
def test_dagger_round(
    labels: str,
    tiny_dataset: Path,
    debug_runs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """One DAgger round appends its labelled episodes (and extends the embeddings) validly: the
    rollouts with one-step labels, or the expert's forks from them."""
    from vla.cli import dagger as dagger_cli

    path = _copy(tiny_dataset, tmp_path)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as ex:
            dagger_cli.main(
                [
                    f"checkpoint={debug_runs['diffusion']}",
                    f"dataset={path}",
                    f"out_dir={tmp_path / 'dagger'}",
                    "dagger.rounds=1",
                    "dagger.episodes_per_round=2",
                    "dagger.finetune_steps=2",
                    "dagger.eval_episodes=1",
                    "dagger.n_videos=0",
                    "dagger.repeat=2",
                    f"dagger.labels={labels}",
                    "dagger.branch_max_steps=100",  # the debug env stops at 12; the expert needs ~50
                ]
            )
    finally:
        torch.set_num_threads(threads)
    assert ex.value.code == 0
    first, end = json.loads((tmp_path / "dagger" / "dagger.json").read_text())["rounds"][1][
        "appended_episodes"
    ]
    assert first == 3 and end == (5 if labels == "step" else end) and end > first
    root = assert_valid(path, end, capsys)
    groups = list(root["embeddings"].group_keys())
    assert len(groups) == 1
    g = root["embeddings"][groups[0]]
    assert g.attrs["complete"] is True and g.attrs["n_episodes"] == end


# ------------------------------------------------------------------------------------- vla-dataset
def test_dataset_stats(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _copy(tiny_dataset, tmp_path)
    assert dataset_cli(["stats", str(path)]) == 0
    root = assert_valid(path, 3, capsys)
    assert root["stats"].attrs["n_episodes"] == 3 and root["stats"].attrs["keys"]


def _dp_store(path: Path, ends: tuple[int, ...] = (5, 8, 12)) -> None:
    """A small Diffusion Policy store (PushT layout: img float32 in [0, 255]), zarr v2 format."""
    rng = np.random.default_rng(0)
    n = ends[-1]
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    g = root.create_group("data")
    g.create_array(
        "img", data=rng.integers(0, 256, size=(n, 12, 12, 3)).astype(np.float32), chunks=(4, 12, 12, 3)
    )
    g.create_array("state", data=rng.normal(size=(n, 5)).astype(np.float32))
    g.create_array("action", data=rng.normal(size=(n, 2)))  # float64: stored as float32
    root.create_group("meta").create_array("episode_ends", data=np.asarray(ends, np.int64))


def test_dataset_import_dp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dst = tmp_path / "pusht.zarr", tmp_path / "native.zarr"
    _dp_store(src)
    args = ["import-dp", str(src), str(dst), "--camera", "top", "--fps", "10", "--instruction", "push the T"]
    assert dataset_cli(args) == 0
    assert_valid(dst, 3, capsys)


# --------------------------------------------------------------------------------------- vla-convert
def _convert(mapping: str, src: Path, out: Path, *extra: str) -> None:
    """`vla-convert convert=<mapping> src=... out=...`, composed and run in process."""
    cfg = compose("convert", [f"convert={mapping}", f"src={src}", f"out={out}", "progress=false", *extra])
    assert convert_cli.run(cfg) == 0


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_convert_rosbag(tmp_path: Path, storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    # episodes.split=bag (configs/convert/ur5e_rosbag.yaml): a directory of two bags -> two episodes.
    for i in range(2):
        cf.write_bag(tmp_path / "bags" / f"ep{i}", storage, duration_s=0.6, seed=i)
    out = tmp_path / "teleop.zarr"
    _convert("ur5e_rosbag", tmp_path / "bags", out)
    assert_valid(out, 2, capsys)


def test_convert_aloha(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cf.write_aloha(tmp_path / "aloha", n_episodes=2, T=6)
    out = tmp_path / "aloha.zarr"
    _convert("aloha_hdf5", tmp_path / "aloha", out, "mapping.instruction=fold the towel")
    assert_valid(out, 2, capsys)


def test_convert_lerobot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cf.write_lerobot_v3(tmp_path / "lerobot", lengths=(4, 6, 3))
    out = tmp_path / "lerobot.zarr"
    _convert("lerobot_v3", tmp_path / "lerobot", out)
    assert_valid(out, 3, capsys)


def test_convert_dp(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _dp_store(tmp_path / "pusht.zarr")
    out = tmp_path / "pusht_native.zarr"
    _convert("dp_pusht", tmp_path / "pusht.zarr", out)
    assert_valid(out, 3, capsys)


# ---------------------------------------------------------------------------------------- vla-record
def test_record_sink(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The sink the ROS recorder node writes through (no ROS graph): create, then reopen and append."""
    from vla.record import ZarrEpisodeSink, record_meta

    path = tmp_path / "teleop.zarr"
    rng = np.random.default_rng(0)

    def record(instruction: str, n: int) -> None:
        # A fresh sink per episode: the second opens the existing store (the recorder restarted).
        sink = ZarrEpisodeSink.open_or_create(path, record_meta(20.0, ["front", "wrist"]))
        sink.begin(instruction)
        for _ in range(n):
            sink.add_frame(
                {
                    "state": rng.normal(size=7).astype(np.float32),
                    "qvel": rng.normal(size=6).astype(np.float32),
                    "action": rng.normal(size=7).astype(np.float32),
                    "image_front": rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
                    "image_wrist": rng.integers(0, 256, (8, 10, 3), dtype=np.uint8),
                }
            )
        sink.end(keep=True)

    record("pick up the red cube", 5)
    record("open the drawer", 3)
    assert_valid(path, 2, capsys)


# --------------------------------------------------------------------------------------------- guard
_WRITE_METHODS = {
    "add_episode",
    "save_stats",
    "set_meta",
    "create_group",
    "create_array",
    "require_group",
    "require_array",
    "update_attributes",
}
_WRITE_MODES = {"a", "w", "w-", "r+"}


def _write_sites(source: str, filename: str) -> list[str]:
    """Calls in `source` that write a zarr store: `ReplayBuffer.create`, the writing methods of
    ReplayBuffer and zarr groups, `<x>.attrs.update`, `zarr.*`/`ReplayBuffer.*` with a writing mode."""
    sites = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        attr, base = node.func.attr, node.func.value
        base_name = base.id if isinstance(base, ast.Name) else None
        writes_mode = any(
            k.arg == "mode" and isinstance(k.value, ast.Constant) and k.value.value in _WRITE_MODES
            for k in node.keywords
        )
        if (
            (attr == "create" and base_name == "ReplayBuffer")
            or attr in _WRITE_METHODS
            or (attr == "update" and isinstance(base, ast.Attribute) and base.attr == "attrs")
            or (base_name in ("zarr", "ReplayBuffer") and writes_mode)
        ):
            sites.append(f"{filename}:{node.lineno} {ast.unparse(node.func)}(...)")
    return sites


def test_every_writer_is_covered() -> None:
    found: dict[str, list[str]] = {}
    for pkg in SCANNED:
        for f in sorted((REPO / pkg).rglob("*.py")):
            rel = f.relative_to(REPO).as_posix()
            sites = _write_sites(f.read_text(), rel)
            if sites and rel not in NOT_COMMANDS:
                found[rel] = sites
    uncovered = {m: s for m, s in found.items() if m not in WRITERS}
    assert not uncovered, (
        "modules that write stores without a test here proving `vla-dataset validate` accepts what "
        f"they write (add a test and a WRITERS entry): {uncovered}"
    )
    # The table must not rot: every entry still writes, and names tests that exist in this file.
    stale = sorted(set(WRITERS) - set(found))
    assert not stale, f"WRITERS lists modules with no write call site (left over?): {stale}"
    missing = {t for tests in WRITERS.values() for t in tests if not callable(globals().get(t))}
    assert not missing, f"WRITERS names tests that do not exist: {sorted(missing)}"
