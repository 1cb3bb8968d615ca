"""Round 0 of vla-dagger: the evaluation settings every round uses, and reading round 0 from an
evaluation already run (`DaggerConfig.round0_eval`) instead of running it again."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vla.dagger.rounds import DaggerConfig


def eval_config(cfg: DaggerConfig, out: Path, n: int, seed: int) -> Any:
    """The `EvalConfig` of a round's rollouts (n, seed: theirs) or evaluation."""
    from vla.evaluation.simulator import EvalConfig

    return EvalConfig(
        task=cfg.task,
        env_overrides=dict(cfg.env_overrides),
        n_episodes=n,
        seed=seed,
        max_steps=cfg.max_steps,
        safety=cfg.safety,
        mode=cfg.mode,
        smoothing=cfg.smoothing,
        margin_steps=cfg.margin_steps,
        latency_s=cfg.latency_s,
        n_videos=cfg.n_videos,
        out_dir=str(out),
        progress=False,
    )


# EvalConfig fields that do not decide what happens in an episode (where it is written, videos, shards).
_EVAL_IRRELEVANT = ("out_dir", "progress", "n_videos", "video_fps", "shard", "num_shards", "n_episodes")


def reused_round0(path: Path, start: Path, cfg: DaggerConfig) -> dict[str, Any]:
    """Round 0's results from `path`, a vla-eval eval.json of `start` (the starting checkpoint) on
    round 0's episodes: the same checkpoint (EMA weights, the head's own denoising steps), as many
    episodes, and every evaluation setting that decides them as `eval_config` sets it.
    ValueError naming `path` and what differs."""
    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"dagger.round0_eval={path}: cannot read it ({e})") from e
    rec = res.get("config")
    if not isinstance(rec, dict) or "checkpoint" not in res:
        raise ValueError(f"dagger.round0_eval={path}: not a vla-eval eval.json (no config or checkpoint)")
    want = asdict(eval_config(cfg, Path("."), cfg.eval_episodes, cfg.eval_seed))
    diff = [
        f"{k} {rec.get(k)!r} (round 0: {v!r})"
        for k, v in want.items()
        if k not in _EVAL_IRRELEVANT and rec.get(k) != v
    ]
    if res.get("n_episodes") != cfg.eval_episodes:
        diff.append(f"n_episodes {res.get('n_episodes')!r} (round 0: {cfg.eval_episodes})")
    if res["checkpoint"] is None or Path(res["checkpoint"]).resolve() != Path(start).resolve():
        diff.append(f"checkpoint {res['checkpoint']!r} (round 0: {str(start)!r})")
    if res.get("used_ema") is not True:
        diff.append(f"used_ema {res.get('used_ema')!r} (round 0: True)")
    if "num_inference_steps" not in res or res["num_inference_steps"] is not None:
        # Written before eval.json recorded it: the override it may have had is unknown.
        diff.append(f"num_inference_steps {res.get('num_inference_steps', 'not recorded')!r} (round 0: None)")
    if diff:
        raise ValueError(f"dagger.round0_eval={path}: not round 0's evaluation: {'; '.join(diff)}")
    return res
