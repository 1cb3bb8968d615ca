"""DAgger rounds (Ross et al. 2011) in the simulator, for any task and either head.

Each round r = 1..N:

1. roll out the current policy for `episodes_per_round` episodes through the evaluation loop
   (`vla.evaluation.simulator.evaluate`: the control loop and safety gate of vla-eval/vla-deploy),
   each chunk coming from the expert with probability beta_r = beta * beta_decay**(r-1);
2. label the visited states: by default (`labels="branch"`, `vla.dagger.branches`) the expert
   finishes the task from every `branch_every`-th of them in a forked simulator, and each fork it
   completes is a demonstration starting where the policy went; `labels="step"` pairs each visited
   state with the expert's next command (`vla.dagger.LabelRecorder`);
3. append the episodes to the dataset (`vla.dagger.aggregate`), info `{"source": "dagger",
   "dagger": {"round": r, "labels": ..., ...}}`;
4. embed the new frames (`precompute_embeddings` extends the stored set; old frames are not re-encoded);
5. fine-tune: a copy of the previous round's run directory resumes for `finetune_steps` more steps
   on the grown dataset (`vla-train resume=`: same config, normalizer and optimizer state);
6. evaluate the fine-tuned policy on the fixed evaluation seeds (success + 95% CI).

Round 0 is the starting policy's evaluation (or, with `round0_eval`, a vla-eval eval.json of it on
the same episodes and loop settings, read instead of evaluating again: `reused_round0`).
`out_dir/dagger.json` holds every round's figures and is rewritten after each round (atomically),
so an interrupted run continues where it stopped (`vla-dagger` with the same out_dir);
`dagger.png` plots success per round with its CI.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.dagger.round0 import eval_config, reused_round0

STATE_FILE = "dagger.json"


@dataclass(frozen=True)
class DaggerConfig:
    """What `run_dagger` does (see the module docstring).

    checkpoint: the starting policy (run dir or checkpoint dir).
    dataset: the zarr store the labelled episodes are appended to; it must be the one the policy was
        trained on (same keys, cameras, image size) since fine-tuning resumes that run on it.
    out_dir: rounds' run dirs, rollouts, evaluations, dagger.json, dagger.png.
    rounds / episodes_per_round / beta / beta_decay / finetune_steps: the DAgger schedule.
    eval_episodes / eval_seed: the fixed evaluation of every round (the vla-eval default seeds).
    rollout_seed: round r rolls out seeds rollout_seed + 10_000 r + i (disjoint from demos and eval).
    task / env_overrides: the simulator task and its config fields (the checkpoint's, normally).
    safety: the world-model gate on every chunk, as in evaluation and deployment.
    repeat: the DAgger episodes' training windows appear this many times per epoch while fine-tuning
        (`data.repeat_sources`): a few hundred labelled episodes beside thousands of demos would
        otherwise be a few percent of every batch.
    train_overrides: extra `key=value` for the fine-tuning runs (e.g. `train.lr=1e-4`).
    labels: "branch" (default): fork the expert from every `branch_every`-th visited state and keep
        its successful continuations as episodes (`vla.dagger.branches`); "step": pair each visited
        state with the expert's next command (`vla.dagger.labeler.LabelRecorder`; measured worse on
        pick_cube: a chunk of one-step labels along the policy's path is no expert trajectory).
    branch_every / branch_max_steps: forks every this many steps; the expert's budget from a fork
        (None: the task's max_steps).
    mode / smoothing / margin_steps / latency_s: the control loop's schedule for rollouts and
        evaluations (`vla.evaluation.simulator.EvalConfig`), by default vla-eval's (vla-deploy's).
    n_videos: videos of the first rollouts and evaluation episodes per round.
    round0_eval: a vla-eval eval.json of `checkpoint` (sharded or not) whose episodes and loop
        settings are round 0's: read instead of evaluating again (~7 min for 50 place_cube episodes
        on the 2-core CPU); refused, naming the field, when anything that decides the episodes differs.
    threads: torch threads while rolling out and evaluating (the fine-tuning uses its run's own
        `threads`): one, as vla-eval, since the gate's MuJoCo rollouts share the cores with inference
        (2 threads made the 50 evaluation episodes 4x slower here: 4.5 min instead of ~1).
    """

    checkpoint: str
    dataset: str
    out_dir: str
    task: str
    env_overrides: dict[str, Any] = field(default_factory=dict)
    rounds: int = 3
    episodes_per_round: int = 50
    beta: float = 0.5
    beta_decay: float = 0.5
    finetune_steps: int = 2000
    eval_episodes: int = 50
    eval_seed: int = 100_000
    rollout_seed: int = 300_000
    max_steps: int | None = None
    safety: bool = True
    repeat: int = 4
    train_overrides: tuple[str, ...] = ()
    n_videos: int = 1
    progress: bool = True
    threads: int = 1
    labels: str = "branch"
    branch_every: int = 8
    branch_max_steps: int | None = None
    mode: str = "async"
    smoothing: str = "auto"
    margin_steps: int = 2
    latency_s: float = 0.18
    round0_eval: str | None = None

    def __post_init__(self) -> None:
        if self.labels not in ("branch", "step"):
            raise ValueError(f"DaggerConfig.labels must be 'branch' or 'step', got {self.labels!r}")
        for name in (
            "rounds",
            "episodes_per_round",
            "finetune_steps",
            "eval_episodes",
            "repeat",
            "branch_every",
        ):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DaggerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.beta <= 1.0 or not 0.0 <= self.beta_decay <= 1.0:
            raise ValueError(
                f"DaggerConfig: beta and beta_decay must be in [0, 1], got {self.beta}, {self.beta_decay}"
            )

    def beta_of(self, r: int) -> float:
        """Expert share of the chunks in round r (1-based)."""
        return float(self.beta * self.beta_decay ** (r - 1))


def run_dir_of(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    tmp.replace(path)  # atomic: an interrupt leaves the previous state file whole


def _evaluate(
    ckpt: Path, cfg: DaggerConfig, out: Path, n: int, seed: int, observer=None, beta: float = 0.0, rng=None
):
    import torch

    from vla.dagger.labeler import MixedPolicy
    from vla.evaluation.simulator import evaluate
    from vla.policy import VLAPolicy

    torch.set_num_threads(cfg.threads)  # the fine-tuning before may have set its own
    policy = VLAPolicy.from_checkpoint(ckpt)
    runner: Any = policy
    if observer is not None:
        runner = MixedPolicy(policy, beta, rng if rng is not None else np.random.default_rng(seed))
        observer.mixed = runner
    res = evaluate(runner, eval_config(cfg, out, n, seed), observer=observer)
    return res, policy, runner


# Resumes a vla-train run directory with `key=value` overrides (the entry point supplies it: only
# entry points compose configs). vla-dagger passes vla-train's own resume path.
ResumeTraining = Callable[[Path, list[str]], None]


def _finetune(
    prev: Path, dst: Path, dataset: str, cfg: DaggerConfig, resume: ResumeTraining, log: Callable[[str], None]
) -> Path:
    """Copy `prev`'s run dir (config + its checkpoint) to `dst` and resume it `finetune_steps` further."""
    from vla.training.checkpoint import latest_checkpoint

    src_run = run_dir_of(prev)
    if dst.exists():
        shutil.rmtree(dst)  # a fine-tune interrupted before: start it again from the copy
    (dst / "checkpoints").mkdir(parents=True)
    for name in ("config.yaml", "config.initial.yaml"):
        if (src_run / name).is_file():
            shutil.copy2(src_run / name, dst / name)
    shutil.copytree(prev, dst / "checkpoints" / prev.name)
    step = int(prev.name)
    overrides = [
        f"train.steps={step + cfg.finetune_steps}",
        f"dataset={dataset}",
        f"data.repeat_sources.dagger={cfg.repeat}",
        *cfg.train_overrides,
    ]
    log(f"fine-tune: vla-train resume={dst} {' '.join(overrides)}")
    resume(dst, overrides)
    ckpt = latest_checkpoint(dst)
    if ckpt is None or int(ckpt.name) != step + cfg.finetune_steps:
        raise RuntimeError(f"fine-tune in {dst}: no checkpoint at step {step + cfg.finetune_steps}")
    return ckpt


def _row(r: int, ckpt: Path, res: dict[str, Any]) -> dict[str, Any]:
    lo, hi = res["success_ci95"]
    return {
        "round": r,
        "checkpoint": str(ckpt),
        "success_rate": res["success_rate"],
        "successes": res["successes"],
        "n_episodes": res["n_episodes"],
        "success_ci95": [lo, hi],
        "mean_episode_length": res["mean_episode_length"],
    }


def run_dagger(
    cfg: DaggerConfig, resume: ResumeTraining, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run (or continue) the DAgger rounds; returns the state written to out_dir/dagger.json.
    `resume(run_dir, overrides)` continues a vla-train run (the fine-tuning)."""
    from vla.dagger.aggregate import append_episodes
    from vla.dagger.branches import BranchRecorder
    from vla.dagger.labeler import LabelRecorder
    from vla.data import ReplayBuffer
    from vla.encoders.cache import precompute_embeddings
    from vla.training.checkpoint import resolve_checkpoint

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / STATE_FILE
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    start = resolve_checkpoint(cfg.checkpoint)
    if state and state.get("start_checkpoint") != str(start):
        raise ValueError(
            f"{state_path}: a DAgger run of {state.get('start_checkpoint')} already lives here; "
            f"use another out_dir for {start}"
        )
    state.setdefault("start_checkpoint", str(start))
    state.setdefault("dataset", cfg.dataset)
    state["config"] = asdict(cfg)
    rows: list[dict[str, Any]] = state.setdefault("rounds", [])
    t0 = time.perf_counter()
    if not rows:
        t = time.perf_counter()
        if cfg.round0_eval:
            res = reused_round0(Path(cfg.round0_eval), start, cfg)
            log(f"round 0: read from {cfg.round0_eval} (the same checkpoint, episodes and settings)")
        else:
            res, *_ = _evaluate(start, cfg, out / "round_0" / "eval", cfg.eval_episodes, cfg.eval_seed)
        reused = {"reused_eval": str(cfg.round0_eval)} if cfg.round0_eval else {}
        rows.append({**_row(0, start, res), "seconds": {"eval": time.perf_counter() - t}, **reused})
        _write_json(state_path, state)
        log(_line(rows[-1]))
    for r in range(len(rows), cfg.rounds + 1):
        prev = Path(rows[-1]["checkpoint"])
        beta = cfg.beta_of(r)
        rdir = out / f"round_{r}"
        secs: dict[str, float] = {}
        pending = state.get("pending") or {}
        policy = None
        if pending.get("round") == r and "appended" in pending:
            appended = pending["appended"]  # rolled out and appended before an interrupt
            roll = pending["rollouts"]
            log(f"round {r}: episodes {appended} were appended before; continuing with embedding")
        else:
            t = time.perf_counter()
            rec: Any = (
                LabelRecorder()
                if cfg.labels == "step"
                else BranchRecorder(cfg.task, dict(cfg.env_overrides), cfg.branch_every, cfg.branch_max_steps)
            )
            rng = np.random.default_rng([cfg.rollout_seed, r])
            res, policy, mixed = _evaluate(
                prev,
                cfg,
                rdir / "rollouts",
                cfg.episodes_per_round,
                cfg.rollout_seed + 10_000 * r,
                rec,
                beta,
                rng,
            )
            episodes = rec.dataset_episodes(res)
            appended = append_episodes(cfg.dataset, episodes, r, beta, prev, cfg)
            roll = {
                "success_rate": res["success_rate"],
                "successes": res["successes"],
                "episodes": res["n_episodes"],
                "frames": int(sum(len(e[0]["action"]) for e in episodes)),
                "expert_chunks": mixed.expert_chunks,
                "policy_chunks": mixed.policy_chunks,
                "expert_replans": int(sum(len(e[3].get("replans", ())) for e in episodes)),
                "labels": cfg.labels,
            }
            if isinstance(rec, BranchRecorder):
                roll["forks"], roll["forks_kept"] = rec.attempted, len(rec.branches)
                rec.close()
            secs["rollouts"] = time.perf_counter() - t
            state["pending"] = {"round": r, "appended": appended, "rollouts": roll}
            _write_json(state_path, state)
            log(
                f"round {r}: rolled out {roll['episodes']} episodes (beta {beta:.2f}, policy success "
                f"{roll['successes']}/{roll['episodes']}), appended episodes {appended[0]}..{appended[1] - 1} "
                f"({roll['frames']} frames) to {cfg.dataset}"
            )
        t = time.perf_counter()
        if policy is None:  # rolled out before an interrupt: load the policy for its encoder
            from vla.policy import VLAPolicy

            policy = VLAPolicy.from_checkpoint(prev)
        encoder = policy.encoder
        precompute_embeddings(ReplayBuffer.open(cfg.dataset, mode="a"), encoder)
        secs["embed"] = time.perf_counter() - t
        t = time.perf_counter()
        ckpt = _finetune(prev, rdir / "train", cfg.dataset, cfg, resume, log)
        secs["finetune"] = time.perf_counter() - t
        t = time.perf_counter()
        res, *_ = _evaluate(ckpt, cfg, rdir / "eval", cfg.eval_episodes, cfg.eval_seed)
        secs["eval"] = time.perf_counter() - t
        n_total = ReplayBuffer.open(cfg.dataset).n_episodes
        rows.append(
            {
                **_row(r, ckpt, res),
                "beta": beta,
                "rollouts": roll,
                "appended_episodes": appended,
                "dataset_episodes": n_total,
                "seconds": secs,
            }
        )
        state.pop("pending", None)
        _write_json(state_path, state)
        log(_line(rows[-1]))
    state["plot"] = str(plot_rounds(rows, out / "dagger.png", cfg.task))
    state["seconds_this_call"] = time.perf_counter() - t0
    _write_json(state_path, state)
    return state


def _line(row: dict[str, Any]) -> str:
    lo, hi = row["success_ci95"]
    return (
        f"round {row['round']}: success {row['successes']}/{row['n_episodes']} = {row['success_rate']:.0%} "
        f"(95% CI {lo:.0%}-{hi:.0%}), mean length {row['mean_episode_length']:.1f} | {row['checkpoint']}"
    )


def plot_rounds(rows: list[dict[str, Any]], path: Path, task: str) -> Path:
    """Success rate per round with its 95% CI (and the rollouts' success, expert-mixed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = [row["round"] for row in rows]
    p = np.array([row["success_rate"] for row in rows])
    ci = np.array([row["success_ci95"] for row in rows])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(
        r, p, yerr=[p - ci[:, 0], ci[:, 1] - p], marker="o", capsize=4, label="evaluation (policy alone)"
    )
    roll = [(row["round"], row["rollouts"]["success_rate"]) for row in rows if "rollouts" in row]
    if roll:
        ax.plot(*zip(*roll), "s--", alpha=0.6, label="rollouts (with expert chunks)")
    ax.set_xlabel("DAgger round")
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(r)
    ax.set_title(f"{task}: DAgger, {rows[-1]['n_episodes']} evaluation episodes per round")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
