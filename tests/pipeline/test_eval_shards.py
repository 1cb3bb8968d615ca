"""vla-eval num_shards=2 shard=0/1 + merge=true writes the report the unsharded vla-eval writes
(same episodes, success, CI, per-instruction table), and merge refuses what does not fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hydra_helpers import compose

# Measured per run (wall clock, compute latency) or naming where the files went.
_TIMING = {"wall_time_s", "latency_ms", "mean_episode_wall_s", "eval_seconds", "chunk_latency_p50_s"}
_TIMING |= {"chunk_latency_p99_s", "plot", "videos", "merged_shards"}


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if k not in _TIMING and k != "out_dir"}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _eval(run: Path, *args: str) -> dict[str, Any]:
    from vla.cli import eval as eval_cli

    return eval_cli.run(compose("eval", [f"checkpoint={run}", "n_episodes=3", "progress=false", *args]))


def test_sharded_eval_equals_unsharded(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    run = debug_runs["diffusion"]  # samples with noise: each episode must be seeded by itself
    _eval(run, "n_videos=1", f"out_dir={tmp_path / 'whole'}")
    for i in (1, 0):  # any order
        _eval(run, "n_videos=1", "num_shards=2", f"shard={i}", f"out_dir={tmp_path / 'parts'}")
    assert not (tmp_path / "parts" / "eval.json").exists()
    _eval(run, "n_videos=1", "num_shards=2", "merge=true", f"out_dir={tmp_path / 'parts'}")
    whole = json.loads((tmp_path / "whole" / "eval.json").read_text())
    merged = json.loads((tmp_path / "parts" / "eval.json").read_text())
    assert [e["episode"] for e in merged["episodes"]] == [0, 1, 2]
    assert [e["seed"] for e in merged["episodes"]] == [100000, 100001, 100002]
    merged["config"]["shard"] = merged["config"]["num_shards"] = None
    whole["config"]["shard"] = whole["config"]["num_shards"] = None
    assert _strip(merged) == _strip(whole)
    # The actions differed between episodes (the comparison is not between constant outputs).
    assert len({e["final_progress"] for e in whole["episodes"]}) > 1
    assert len(merged["videos"]) == 1 and (tmp_path / "parts" / "eval.png").is_file()


def test_merge_refuses_missing_and_mixed_shards(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    run = debug_runs["transformer"]
    _eval(run, "n_videos=0", "num_shards=2", "shard=0", f"out_dir={tmp_path}")
    with pytest.raises(FileNotFoundError, match=r"shard_1_of_2.*shard 1 of 2 has not finished"):
        _eval(run, "num_shards=2", "merge=true", f"out_dir={tmp_path}")
    _eval(run, "n_videos=0", "num_shards=2", "shard=1", "seed=7", f"out_dir={tmp_path}")
    with pytest.raises(ValueError, match=r"shard_1_of_2/shard_records.json: shard 1 differs .* \['seed'\]"):
        _eval(run, "num_shards=2", "merge=true", f"out_dir={tmp_path}")
    with pytest.raises(ValueError, match="need out_dir"):
        _eval(run, "num_shards=2", "shard=0")
