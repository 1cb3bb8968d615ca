"""One policy evaluated on several tasks (`vla-eval task=all`): each task's own report, then a
summary per task and overall (success, Wilson 95% CI), the per-instruction/per-template tables of
every task, and one plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vla.evaluation.records import wilson_interval
from vla.evaluation.shards import merge_shards
from vla.evaluation.simulator import EvalConfig, evaluate, write_json
from vla.runtime import ChunkPolicy

# The tasks `task=all` runs (configs/task/all.yaml lists the same).
ALL_TASKS = ("pick_cube", "place_cube", "push_cube", "stack_cubes")


def evaluate_tasks(
    policy: ChunkPolicy, configs: dict[str, EvalConfig], out_dir: str | Path
) -> dict[str, Any]:
    """Run `evaluate(policy, configs[task])` for each task (each writes into its own `out_dir`,
    normally `<out_dir>/<task>`), then write `<out_dir>/eval.json` and `eval.png`: per task and
    overall success with 95% CIs, the lowest task, each task's per-instruction (and per-template)
    table and mean length. Returns that summary."""
    per = {task: task_row(evaluate(policy, cfg), cfg.out_dir) for task, cfg in configs.items()}
    return summarize_tasks(per, out_dir, str(getattr(policy, "checkpoint", None) or ""))


def merge_task_shards(out_dir: str | Path, tasks: list[str], num_shards: int) -> dict[str, Any]:
    """`vla-eval task=all num_shards=N merge=true`: join each task's shards (`<out_dir>/<task>/
    shard_i_of_N`, see `merge_shards`) into its own report, then write the summary
    `evaluate_tasks` writes."""
    out = Path(out_dir)
    per, checkpoint = {}, ""
    for task in tasks:
        res = merge_shards(out / task, num_shards)
        checkpoint = checkpoint or str(res.get("checkpoint") or "")
        per[task] = task_row(res, out / task)
    return summarize_tasks(per, out, checkpoint)


def task_row(res: dict[str, Any], task_dir: str | Path) -> dict[str, Any]:
    """One task's line of the summary from its `evaluate` (or merged) report."""
    row = {
        k: res[k] for k in ("successes", "n_episodes", "success_rate", "success_ci95", "mean_episode_length")
    }
    row["per_instruction"] = res["per_instruction"]
    if "per_template" in res:
        row["per_template"] = res["per_template"]
    row["report"] = str(Path(task_dir) / "eval.json")
    return row


def summarize_tasks(per: dict[str, dict[str, Any]], out_dir: str | Path, checkpoint: str) -> dict[str, Any]:
    """Write `<out_dir>/eval.json` + `eval.png` from the per-task rows (`task_row`) and return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    k = sum(r["successes"] for r in per.values())
    n = sum(r["n_episodes"] for r in per.values())
    summary = {
        "tasks": per,
        "overall": {"successes": k, "n_episodes": n, "success_rate": k / n if n else 0.0,
                    "success_ci95": list(wilson_interval(k, n))},
        "min_task_success_rate": min(r["success_rate"] for r in per.values()),
        "checkpoint": checkpoint,
    }  # fmt: skip
    summary["plot"] = str(_plot(per, summary["overall"], out / "eval.png"))
    write_json(out / "eval.json", summary)
    return summary


def _plot(per: dict[str, dict[str, Any]], overall: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [*per, "overall"]
    rows = [*per.values(), overall]
    rates = [100 * r["success_rate"] for r in rows]
    lo = [100 * (r["success_rate"] - r["success_ci95"][0]) for r in rows]
    hi = [100 * (r["success_ci95"][1] - r["success_rate"]) for r in rows]
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.6))
    bars = ax.bar(names, rates, yerr=[lo, hi], capsize=4, color=["tab:blue"] * len(per) + ["tab:gray"])
    for b, r in zip(bars, rows, strict=True):
        # Above the bar's upper CI: readable at 0% too.
        y = min(100 * r["success_ci95"][1] + 2, 103)
        ax.text(b.get_x() + b.get_width() / 2, y, f"{r['successes']}/{r['n_episodes']}", ha="center")
    ax.set_ylim(0, 110)
    ax.set_ylabel("success % (95% CI)")
    ax.set_title("closed-loop success per task")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
