"""Joining the results of a sharded `vla-eval` (`EvalConfig.shard` / `num_shards`) into one report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vla.evaluation.records import EpisodeRecord
from vla.evaluation.simulator import SHARD_RECORDS, EvalConfig, write_json, write_report
from vla.shards import shard_dir, shard_range


def merge_shards(out_dir: str | Path, num_shards: int) -> dict[str, Any]:
    """Join the results of `evaluate` shards 0..num_shards-1 (written to `vla.shards.shard_dir(
    out_dir, i, num_shards)`) into `out_dir/eval.json` + `eval.png`: the report the unsharded
    evaluation writes (same episodes, success, Wilson CI, per-instruction table), with the shards'
    summed run time. Refuses missing shards and shards of different settings (naming the file)."""
    out = Path(out_dir)
    parts = []
    for i in range(num_shards):
        path = shard_dir(out, i, num_shards) / SHARD_RECORDS
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard {i} of {num_shards} has not finished (no results)")
        parts.append((path, json.loads(path.read_text())))
    first_path, first = parts[0]
    common = {k: v for k, v in first["config"].items() if k not in ("shard", "out_dir")}
    episodes: list[EpisodeRecord] = []
    compute: list[float] = []
    videos: list[str] = []
    for i, (path, part) in enumerate(parts):
        pc = part["config"]
        diff = sorted(k for k in common if pc.get(k) != common[k])
        if part["checkpoint"] != first["checkpoint"]:
            diff.append("checkpoint")
        if diff or pc.get("shard") != i:
            raise ValueError(
                f"{path}: shard {pc.get('shard')} differs from {first_path} in {diff or ['shard index']}; "
                "merge the shards of one evaluation"
            )
        want = list(shard_range(common["n_episodes"], i, num_shards))
        got = [int(e["episode"]) for e in part["episodes"]]
        if got != want:
            raise ValueError(f"{path}: episodes {got[:3]}... are not shard {i}'s {want[:3]}...")
        episodes += [EpisodeRecord(**e) for e in part["episodes"]]
        compute += [float(c) for c in part["compute_s"]]
        videos += part["videos"]
    cfg = EvalConfig(**{**common, "out_dir": str(out)})
    about = {
        "used_ema": first["used_ema"],
        "checkpoint": first["checkpoint"],
        "num_inference_steps": first.get("num_inference_steps"),
    }
    seconds = sum(float(p["seconds"]) for _, p in parts)
    out.mkdir(parents=True, exist_ok=True)
    results = write_report(episodes, compute, cfg, seconds, int(first["n_action_steps"]), videos, about, out)
    results["merged_shards"] = [str(p.parent) for p, _ in parts]
    write_json(out / "eval.json", results)
    return results
