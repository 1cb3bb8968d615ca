"""One training job: dataset + frozen encoder + head -> a self-describing run directory.

`vla-train` (vla/cli/train.py) builds a `TrainJob` from Hydra config; tests and `make demo` may call
`run_training` directly. The run directory gets checkpoints (`checkpoints/<step>/`, written by
`vla.training`), TensorBoard logs, and `train_summary.json`. A new run's directory is made with
`fresh_run_dir`, which removes it again when the run fails before writing more than its config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from policies import make_config, make_policy
from policies.config import DEFAULT_AUX_FUTURE_OFFSETS
from vla.data import ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.policy import PolicyMeta, VLAPolicy
from vla.training import ResumableLoader, TrainConfig, seed_everything, train
from vla.training.batches import DataSpec, build_train_data, collate
from vla.training.distributed import current, main_first
from vla.training.grounding import GroundedLoader, GroundingSpec, build_grounding_set

log = logging.getLogger(__name__)


@dataclass
class TrainJob:
    """Everything a training run needs (typed; no Hydra).

    policy_name / policy_values: registry name and config fields of the head (shape fields are
        filled from the data: token_dim, state_dim, action_dim, n_tokens, n_cameras, tokens_per_camera,
        n_obs_steps, horizon, n_action_steps).
    eval_episodes / eval_every: closed-loop simulator evaluation of the inference copy (0: none).
    eval_task / eval_env: the simulator task and its config overrides (default: the dataset's task).
    grounding: the extra scenes of the heads' auxiliary grounding loss (`vla.training.grounding`);
        needed when policy_values sets aux_ground_weight > 0, ignored otherwise.
    grounding_cache: where encoded grounding scenes are kept between runs (None: render every time).
    grounding_workers: processes that render the grounding scenes (None: the CPU's cores, at most 4).
    """

    run_dir: Path
    data: DataSpec
    encoder: EncoderConfig
    policy_name: str
    policy_values: dict[str, Any]
    train: TrainConfig
    n_action_steps: int = 8
    batch_size: int = 64
    num_workers: int = 0
    task: dict[str, Any] = field(default_factory=dict)  # {"name": ..., "env": {...}}
    eval_episodes: int = 0
    eval_every: int = 0
    threads: int | None = None
    grounding: GroundingSpec | None = None
    grounding_cache: Path | None = None
    grounding_workers: int | None = None


def _scenes_like_the_frames(
    g: GroundingSpec, dataset: str | Path, cameras: Sequence[str]
) -> tuple[GroundingSpec, str]:
    """`g` rendered at the size of the dataset's own camera frames, which its tokens were embedded
    from (a task config's image_size may differ from what the demos were collected at), and a note
    saying so ("" when nothing changed or the store keeps no square frames of these cameras)."""
    rb = ReplayBuffer.open(dataset, mode="r")
    sizes = {rb.shape(f"image_{c}")[:2] for c in cameras if f"image_{c}" in rb.keys}
    if len(sizes) != 1:
        return g, ""
    h, w = sizes.pop()
    current = {t: g.env.get(t, {}).get("image_size") for t in g.tasks}
    if h != w or all(v == h for v in current.values()):
        return g, ""
    return g.at_image_size(h), f"rendered at the dataset's {h} px (the task config says {current})"


@dataclass
class TrainOutcome:
    """What a `run_training` call did. `step` is where the run now is; a resumed run started at
    `start_step` and ran `steps_run` steps in this call, in `seconds` (`steps_per_s` = their rate)."""

    run_dir: Path
    checkpoint: Path | None
    step: int
    last_loss: float
    seconds: float
    steps_per_s: float
    eval_metrics: dict[str, float]
    start_step: int = 0
    steps_run: int = 0


@contextlib.contextmanager
def fresh_run_dir(path: str | Path, config_names: tuple[str, ...] = ("config.yaml",)) -> Iterator[Path]:
    """Create the directory of a new (not resumed) run for the `with` body (write its config there,
    then `run_training`). When the body raises (any error, Ctrl-C) and the directory holds nothing
    but `config_names` files, it is removed again, so a run that failed before its first checkpoint
    (bad dataset path, bad config) leaves no orphan. A directory that existed before, or holds
    anything else (checkpoints, logs, other files), is never touched.
    """
    run_dir = Path(path)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield run_dir
    except BaseException:
        if created:
            _remove_if_only_config(run_dir, config_names)
        raise


def _remove_if_only_config(run_dir: Path, config_names: tuple[str, ...]) -> None:
    try:
        entries = list(run_dir.iterdir())
        if any(e.name not in config_names or e.is_symlink() or not e.is_file() for e in entries):
            return
        for e in entries:
            e.unlink()
        run_dir.rmdir()
    except OSError as e:  # never hide the run's own error behind a clean-up problem
        log.warning("could not remove the failed run's directory %s: %s", run_dir, e)


def run_training(job: TrainJob) -> TrainOutcome:
    """Build data, encoder and head; train (resuming from `job.run_dir` if it has checkpoints).

    Under torchrun (an initialized process group, `vla.training.distributed`), every rank runs this:
    rank 0 prepares the data first (it may write cached embeddings into the dataset), the others
    then read it; each trains on its part of every global batch; rank 0 writes the run directory.
    """
    if job.threads:
        torch.set_num_threads(int(job.threads))
    ctx = current()
    t0 = time.perf_counter()
    encoder = build_encoder(job.encoder)
    spec = job.data
    if float(job.policy_values.get("aux_future_weight", 0.0)) > 0:
        # The head's auxiliary future-state loss reads future_state at its offsets from the data.
        offsets = job.policy_values.get("aux_future_offsets", DEFAULT_AUX_FUTURE_OFFSETS)
        spec = dataclasses.replace(spec, future_offsets=tuple(int(o) for o in offsets))
    with main_first(ctx):
        data = build_train_data(spec, encoder)
    n_windows = len(data.dataset)
    if job.batch_size > n_windows:
        raise ValueError(
            f"{spec.dataset}: {n_windows} training windows (from {len(data.train_episodes)} episodes) but "
            f"batch_size={job.batch_size}: use batch_size={n_windows} or smaller, or a bigger dataset"
        )
    values = dict(job.policy_values)
    values.update(
        token_dim=data.token_dim,
        state_dim=data.state_dim,
        action_dim=data.action_dim,
        n_tokens=data.n_tokens,
        n_cameras=len(data.cameras),
        tokens_per_camera=encoder.tokens_per_image,
        n_obs_steps=job.data.n_obs_steps,
        horizon=job.data.horizon,
        n_action_steps=job.n_action_steps,
    )
    pconf = make_config(job.policy_name, values, source=f"policy config {job.policy_name!r}")
    # Seeded init: the same config gives the same initial weights in any process (building the
    # encoder above may consume the global RNG); a resumed run then loads its checkpoint.
    seed_everything(job.train.seed)
    head = make_policy(job.policy_name, pconf)
    meta = PolicyMeta(
        cameras=tuple(data.cameras),
        use_text=job.data.use_text,
        n_obs_steps=job.data.n_obs_steps,
        horizon=job.data.horizon,
        n_action_steps=job.n_action_steps,
        state_dim=data.state_dim,
        action_dim=data.action_dim,
        token_dim=data.token_dim,
        n_tokens=data.n_tokens,
        encoder=job.encoder.to_dict(),
        state_key=job.data.state_key,
        action_key=job.data.action_key,
        task=dict(job.task),
    )
    per_rank = job.batch_size // ctx.world_size
    if ctx.world_size * job.train.grad_accum_steps > 1 and per_rank % job.train.grad_accum_steps:
        raise ValueError(
            f"batch_size={job.batch_size}: the global batch must split evenly over {ctx.world_size} "
            f"process(es) x train.grad_accum_steps={job.train.grad_accum_steps} micro-batches"
        )
    loader = ResumableLoader(
        data.dataset,
        batch_size=job.batch_size,
        seed=job.train.seed,
        num_workers=job.num_workers,
        collate_fn=collate,
        part=ctx.shard_slice(job.batch_size),
    )
    ground_note = ""
    if float(job.policy_values.get("aux_ground_weight", 0.0)) > 0:
        if job.grounding is None:
            raise ValueError(
                f"policy {job.policy_name!r}: aux_ground_weight > 0 needs grounding scenes "
                "(vla-train data.grounding.n_scenes=N, or policy.aux_ground_weight=0)"
            )
        gspec, size_note = _scenes_like_the_frames(job.grounding, spec.dataset, data.cameras)
        if size_note and ctx.is_main:
            print(f"[vla-train] grounding scenes: {size_note}", flush=True)
        scenes = build_grounding_set(
            gspec,
            encoder,
            data.cameras,
            data.processor,
            cache_dir=job.grounding_cache,
            workers=job.grounding_workers,
        )
        loader = GroundedLoader(
            loader,
            scenes,
            job.batch_size,
            seed=job.train.seed,
            part=ctx.shard_slice(job.batch_size),
            dims=int(job.policy_values.get("aux_ground_dim", 2)),
        )
        how = "from the cache" if scenes.cached else "rendered"
        ground_note = f" | {len(scenes)} grounding scenes ({how}, {scenes.seconds:.1f} s)"
    eval_fn = None
    if job.eval_episodes > 0:
        eval_fn = _make_eval_fn(job, encoder, data.processor, meta)
    cfg = job.train
    if job.eval_every and job.eval_episodes:
        cfg = TrainConfig(**{**cfg.to_dict(), "eval_every": job.eval_every})
    prep_s = time.perf_counter() - t0
    dist_note = (
        f" | {ctx.world_size} processes ({ctx.backend}) x {per_rank // job.train.grad_accum_steps} "
        f"samples x {job.train.grad_accum_steps} micro-batches"
        if ctx.enabled or job.train.grad_accum_steps > 1
        else ""
    )
    if ctx.is_main:
        print(
            f"[vla-train] {job.policy_name}: {sum(p.numel() for p in head.parameters()) / 1e6:.2f} M params | "
            f"{len(data.dataset)} windows from {len(data.train_episodes)} episodes | tokens {data.n_tokens} x "
            f"{data.token_dim} ({data.token_source}) | To={job.data.n_obs_steps} T={job.data.horizon} "
            f"Ta={job.n_action_steps}{ground_note} | setup {prep_s:.1f} s{dist_note}",
            flush=True,
        )
    t1 = time.perf_counter()
    result = train(
        head,
        loader,
        cfg,
        job.run_dir,
        eval_fn=eval_fn,
        processor_state=data.processor.state_dict(),
        shape_meta=meta.to_dict(),
        encoder_fingerprint=encoder.fingerprint,
    )
    seconds = time.perf_counter() - t1
    steps_run = result.step - result.start_step
    outcome = TrainOutcome(
        run_dir=job.run_dir,
        checkpoint=result.checkpoint,
        step=result.step,
        last_loss=result.last_loss,
        seconds=seconds,
        # Steps run by this call: a resumed run starts at result.start_step.
        steps_per_s=steps_run / seconds if seconds > 0 else float("nan"),
        eval_metrics=dict(result.eval_metrics),
        start_step=result.start_step,
        steps_run=steps_run,
    )
    summary = {
        "policy": job.policy_name,
        "step": outcome.step,
        "start_step": outcome.start_step,
        "steps_run": outcome.steps_run,
        "last_loss": outcome.last_loss,
        "train_seconds": seconds,
        "setup_seconds": prep_s,
        "checkpoint": str(outcome.checkpoint) if outcome.checkpoint else None,
        "token_source": data.token_source,
        "n_windows": len(data.dataset),
        "n_train_episodes": len(data.train_episodes),
        "eval": outcome.eval_metrics,
        "world_size": ctx.world_size,
        "grad_accum_steps": job.train.grad_accum_steps,
        "samples_per_s": outcome.steps_per_s * job.batch_size,
    }
    if ctx.is_main:
        job.run_dir.mkdir(parents=True, exist_ok=True)
        (job.run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return outcome


def _make_eval_fn(job: TrainJob, encoder, processor, meta: PolicyMeta):
    from vla.evaluation.multitask import ALL_TASKS, evaluate_tasks
    from vla.evaluation.simulator import EvalConfig, evaluate

    name = str(job.task.get("name", "pick_cube"))
    env = dict(job.task.get("env") or {})

    def eval_fn(head, step: int) -> dict[str, float]:
        # train() evaluates the EMA copy when the head uses EMA.
        policy = VLAPolicy(head, encoder, processor, meta, used_ema=bool(head.config.use_ema))
        out = job.run_dir / "eval" / f"step_{step}"

        def config(task: str, out_dir: str) -> EvalConfig:
            return EvalConfig(task=task, env_overrides=env, n_episodes=job.eval_episodes, out_dir=out_dir,
                              n_videos=1, progress=False)  # fmt: skip

        if name == "all":  # a multi-task run: every task (its own defaults + the run's env fields)
            tasks = list(job.task.get("tasks") or ALL_TASKS)
            res = evaluate_tasks(policy, {t: config(t, str(out / t)) for t in tasks}, out)
            return {
                "success_rate": res["overall"]["success_rate"],
                "min_task_success": res["min_task_success_rate"],
            }
        res = evaluate(policy, config(name, str(out)))
        return {"success_rate": res["success_rate"], "mean_length": res["mean_episode_length"]}

    return eval_fn
