"""`vla-eval checkpoint=<run dir> n_episodes=<N>`: closed-loop simulator evaluation (configs/eval.yaml).

Rebuilds the policy from the checkpoint directory alone (`VLAPolicy.from_checkpoint`), runs the
episodes through `vla.runtime` with the safety gate on (`safety_gate=false` turns it off) and writes
eval.json, eval.png and videos to `out_dir` (default `<run dir>/eval/<timestamp>`). Works from any
directory: relative paths are relative to where it is run, the safety config defaults to the packaged one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry
from vla.paths import config_dir

# Task-config fields that fix the policy's observations: kept from the checkpoint on another task.
_OBS_FIELDS = ("image_size", "cameras")


@hydra.main(config_path=config_dir(), config_name="eval", version_base="1.3")
def _sweep(cfg: DictConfig) -> None:
    """`vla-eval -m ...`: Hydra's multirun, one job per combination (hydra/launcher=local|slurm)."""
    _body(cfg, list(HydraConfig.get().overrides.task))


COMMAND = Command(
    prog="vla-eval",
    config="eval",
    summary="evaluate a trained policy closed loop in the MuJoCo simulator (success rate, CI, videos)",
    examples=(
        "vla-eval checkpoint=outputs/train/<run> n_episodes=50",
        "vla-eval checkpoint=outputs/train/<run> mode=async smoothing=rtc margin_steps=2 latency_s=0.18",
        "vla-eval checkpoint=outputs/train/<run> task=push_cube instruction='push the red cube left'",
        "vla-eval checkpoint=outputs/train/<run> num_shards=4 shard=0 out_dir=outputs/eval/x   # one of 4 shards",
        "vla-eval checkpoint=outputs/train/<run> num_shards=4 merge=true out_dir=outputs/eval/x   # join them",
        "vla-eval checkpoint=outputs/train/<run> task=all phrasing=heldout   # every task, unseen wording",
        "vla-eval checkpoint=outputs/train/<run> task=all phrasing=heldout_words   # same, palette colour names",
        "vla-eval checkpoint=outputs/train/<run> task=all num_shards=2 shard=1 out_dir=outputs/eval/x   # its share of every task",
    ),
    multirun=_sweep,
)


def eval_task(recorded: dict[str, Any] | None, chosen: dict[str, Any] | None, ckpt: Path) -> tuple[str, dict]:
    """(task name, env fields): the checkpoint's task unless `task=` chose one; on another task the
    checkpoint's observation fields (image size, cameras) are kept, since the policy needs them."""
    recorded = recorded or {}
    rec_env = dict(recorded.get("env") or {})
    if not chosen:
        if not recorded.get("name"):
            raise ValueError(f"{ckpt / 'shape_meta.json'}: no task recorded; pass task=<name>")
        return str(recorded["name"]), rec_env
    env = dict(chosen.get("env") or {})
    if chosen.get("name") == recorded.get("name"):
        env.update(rec_env)
    else:
        env.update({k: rec_env[k] for k in _OBS_FIELDS if k in rec_env})
    return str(chosen["name"]), env


def run(cfg: DictConfig) -> dict[str, Any]:
    import torch

    from vla.evaluation.shards import merge_shards
    from vla.evaluation.simulator import evaluate
    from vla.policy import VLAPolicy
    from vla.shards import check_shard, shard_dir
    from vla.training.checkpoint import resolve_checkpoint

    r: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if r.get("phrasing"):
        named = sorted(f.stem for f in (Path(config_dir()) / "phrasings").glob("*.json"))
        if r["phrasing"] not in named:
            raise ValueError(
                f"phrasing={r['phrasing']!r}: the named sets are {named} (configs/phrasings/), "
                "or give instructions_file="
            )
        if r.get("instructions_file"):
            raise ValueError(f"phrasing={r['phrasing']} and instructions_file= both set; pick one")
        r["instructions_file"] = str(Path(config_dir()) / "phrasings" / f"{r['phrasing']}.json")
    shard, num_shards = int(r.get("shard") or 0), int(r.get("num_shards") or 1)
    check_shard(shard, num_shards)
    if (num_shards > 1 or r.get("merge")) and not r.get("out_dir"):
        raise ValueError(
            "num_shards > 1 / merge=true need out_dir=<dir>, the same for every shard and the merge"
        )
    if r.get("merge"):
        tasks = _task_list(r.get("task"), None) or _sharded_tasks(r["out_dir"], num_shards)
        if tasks:
            return _merge_tasks(r["out_dir"], tasks, num_shards)
        res = merge_shards(r["out_dir"], num_shards)
        lo, hi = res["success_ci95"]
        print(
            f"[vla-eval] merged {num_shards} shards: success {res['successes']}/{res['n_episodes']} = "
            f"{res['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%}) | results {r['out_dir']}/eval.json",
            flush=True,
        )
        return res
    if r.get("threads"):
        torch.set_num_threads(int(r["threads"]))
    ckpt = resolve_checkpoint(r["checkpoint"])
    policy = VLAPolicy.from_checkpoint(
        ckpt,
        encoder_model=r.get("encoder_model"),
        use_ema=bool(r["use_ema"]),
        num_inference_steps=r.get("num_inference_steps"),
    )
    tasks = _task_list(r.get("task"), policy.meta.task)
    if tasks:
        return _run_tasks(r, policy, ckpt, tasks)
    task_name, env = eval_task(policy.meta.task, r.get("task"), ckpt)
    env.update(r.get("env_overrides") or {})
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    out_dir = r.get("out_dir") or str(
        run_dir / "eval" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_step{ckpt.name}"
    )
    if num_shards > 1:
        out_dir = str(shard_dir(out_dir, shard, num_shards))
    ecfg = _eval_config(r, str(task_name), env, out_dir, shard, num_shards)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "eval_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    res = evaluate(policy, ecfg)
    _report_line(res, ckpt, f" (shard {shard} of {num_shards})" if num_shards > 1 else "", out_dir)
    return res


def _task_list(chosen: dict[str, Any] | None, recorded: dict[str, Any] | None) -> list[str] | None:
    """The tasks of `task=all` (or of a checkpoint trained on all, with no task= given); None: one task."""
    from vla.evaluation.multitask import ALL_TASKS

    if chosen and chosen.get("name") == "all":
        return list(chosen.get("tasks") or ALL_TASKS)
    if not chosen and (recorded or {}).get("name") == "all":
        return list((recorded or {}).get("tasks") or ALL_TASKS)
    return None


def _run_tasks(r: dict[str, Any], policy: Any, ckpt: Path, tasks: list[str]) -> dict[str, Any]:
    """Each task with its own configs/task/<name>.yaml env (+ the checkpoint's observation fields
    and env_overrides), into <out_dir>/<task>/; then the per-task + overall summary."""
    from vla.cli.tasks import task_config
    from vla.evaluation.multitask import evaluate_tasks
    from vla.shards import shard_dir

    shard, num_shards = int(r.get("shard") or 0), int(r.get("num_shards") or 1)
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    out_dir = Path(
        r.get("out_dir") or run_dir / "eval" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}_step{ckpt.name}_all"
    )
    configs = {}
    for t in tasks:
        chosen = task_config(t, "task=all")
        all_env = dict((r.get("task") or {}).get("env") or {})
        chosen["env"] = {**chosen.get("env", {}), **all_env}  # type: ignore[index]
        name, env = eval_task(policy.meta.task, chosen, ckpt)  # type: ignore[arg-type]
        env.update(r.get("env_overrides") or {})
        if num_shards > 1:  # this shard of every task; merge=true task=all joins them
            configs[t] = _eval_config(
                r, name, env, str(shard_dir(out_dir / t, shard, num_shards)), shard, num_shards
            )
        else:
            configs[t] = _eval_config(r, name, env, str(out_dir / t), 0, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    if num_shards > 1:
        from vla.evaluation.simulator import evaluate

        parts = {t: evaluate(policy, c) for t, c in configs.items()}
        for t, part in parts.items():
            _report_line(part, ckpt, f" {t} (shard {shard} of {num_shards})", configs[t].out_dir)
        return {"tasks": parts, "shard": shard, "num_shards": num_shards}
    res = evaluate_tasks(policy, configs, out_dir)
    _task_lines(res)
    _overall_line(res, str(ckpt), out_dir)
    return res


def _sharded_tasks(out_dir: str, num_shards: int) -> list[str] | None:
    """The tasks whose shards lie under `out_dir/<task>/` (a `task=all` run's shards, merged without
    task=all given); None when `out_dir` holds one task's shards itself."""
    from vla.evaluation.multitask import ALL_TASKS
    from vla.shards import shard_dir

    if shard_dir(out_dir, 0, num_shards).is_dir():
        return None
    found = [t for t in ALL_TASKS if shard_dir(Path(out_dir) / t, 0, num_shards).is_dir()]
    return found or None


def _merge_tasks(out_dir: str, tasks: list[str], num_shards: int) -> dict[str, Any]:
    """merge=true task=all: each task's shards, then the per-task + overall summary."""
    from vla.evaluation.multitask import merge_task_shards

    res = merge_task_shards(out_dir, tasks, num_shards)
    _task_lines(res)
    _overall_line(res, f"merged {num_shards} shards", Path(out_dir))
    return res


def _task_lines(res: dict[str, Any]) -> None:
    for t, row in res["tasks"].items():
        lo, hi = row["success_ci95"]
        print(
            f"[vla-eval] {t}: success {row['successes']}/{row['n_episodes']} = {row['success_rate']:.0%} "
            f"(95% CI {lo:.0%}-{hi:.0%}) | mean length {row['mean_episode_length']:.1f}",
            flush=True,
        )


def _overall_line(res: dict[str, Any], what: str, out_dir: Path) -> None:
    o = res["overall"]
    print(
        f"[vla-eval] {what}: all {len(res['tasks'])} tasks: success {o['successes']}/{o['n_episodes']} = "
        f"{o['success_rate']:.0%} (95% CI {o['success_ci95'][0]:.0%}-{o['success_ci95'][1]:.0%}), lowest task "
        f"{res['min_task_success_rate']:.0%} | results {out_dir}/eval.json, plot {res['plot']}",
        flush=True,
    )


def _eval_config(r: dict[str, Any], task: str, env: dict, out_dir: str, shard: int, num_shards: int) -> Any:
    from vla.evaluation.simulator import EvalConfig

    return EvalConfig(
        task=task,
        env_overrides=env,
        n_episodes=int(r["n_episodes"]),
        seed=int(r["seed"]),
        max_steps=r.get("max_steps"),
        n_action_steps=r.get("n_action_steps"),
        mode=str(r["mode"]),
        margin_steps=int(r.get("margin_steps") or 0),
        smoothing=str(r["smoothing"]),
        ensemble_decay=float(r["ensemble_decay"]),
        latency_s=r.get("latency_s"),
        safety=bool(r["safety_gate"]),
        safety_config=r.get("safety_config"),
        instruction=r.get("instruction") or None,
        n_videos=int(r["n_videos"]),
        out_dir=out_dir,
        progress=bool(r["progress"]),
        shard=shard,
        num_shards=num_shards,
        instructions_file=r.get("instructions_file") or None,
    )


def _report_line(res: dict[str, Any], ckpt: Path, part: str, out_dir: str) -> None:
    lo, hi = res["success_ci95"]
    g = res.get("grasp_summary")  # the cube tasks' diagnostics summary (sim.tasks.base.CubeTask)
    toward = g.get("median_close_offset_toward_goal_m") if g else None  # place, stack, push
    grip = (
        f"gripper closed in {g['closed']} (nearest the target in {g['closed_nearest_target']}, median "
        f"{g['median_close_xy_to_target_m'] * 100:.1f} cm off"
        f"{'' if toward is None else f', {toward * 100:+.1f} cm toward the goal'}), never in {g['never_closed']} | "
        if g
        else ""
    )
    print(
        f"[vla-eval] {ckpt}{part}: success {res['successes']}/{res['n_episodes']} = {res['success_rate']:.0%} "
        f"(95% CI {lo:.0%}-{hi:.0%}) | mean length {res['mean_episode_length']:.1f} | final progress {res['mean_final_progress']:.2f} | "
        f"missed periods {res['misses']} | chunk latency "
        f"p50 {res['chunk_latency_p50_s'] * 1e3:.0f} ms p99 {res['chunk_latency_p99_s'] * 1e3:.0f} ms | "
        f"gate limited {res['gate_limited_total']} truncated {res['gate_truncated_total']} "
        f"held {res['gate_rejected_total']} (no safe stop {res['gate_unsafe_stops_total']}) | "
        f"{grip}results {out_dir}/eval.json, plot {res['plot']}, videos {Path(out_dir) / 'videos'}",
        flush=True,
    )


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    run(cfg)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
