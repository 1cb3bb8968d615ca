"""One training loop for every policy head (read it top to bottom).

    policy = make_policy("diffusion", cfg)
    loader = ResumableLoader(dataset, batch_size=64, seed=0)
    result = train(policy, loader, TrainConfig(steps=5000), "runs/x", normalizer_state=stats, ...)

Resume: call `train` again with the same run_dir; it continues from the latest checkpoint
(weights, EMA, optimizer, grad scaler, RNG states, and the data position via `iter_from(step)`).

Ctrl-C (SIGINT, on the main thread): the step in progress finishes, a checkpoint of that step is
written and `KeyboardInterrupt` is raised saying where it is and how to continue; a second Ctrl-C
stops at once (no checkpoint). The resumed run reaches the same parameters as an uninterrupted one.

Distributed (`vla.training.distributed`, under torchrun): the head is wrapped in
DistributedDataParallel, each rank computes its slice of the global batch (the loader's `part`),
rank 0 alone logs, checkpoints and evaluates, and every rank resumes from the checkpoint rank 0
chose. Per step, the loss noise of the whole global batch is drawn from a generator seeded by
(seed, step) and sliced, so any split of the batch (ranks, `grad_accum_steps`) trains alike.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from policies import Policy
from policies.ema import EMA
from vla.progress import progress_bar
from vla.training.checkpoint import (
    check_resumable,
    checkpoint_dir,
    latest_checkpoint,
    list_checkpoints,
    load_training_state,
    load_weights,
    read_config,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from vla.training.config import TrainConfig
from vla.training.distributed import (
    DistContext,
    LossModule,
    current,
    device_for,
    full_model_state,
    full_optimizer_state,
    full_value,
    load_full_optimizer_state,
    micro_batches,
    shard_fsdp,
    step_noise,
)
from vla.training.interrupt import StopRequest
from vla.training.loader import StepIterable
from vla.training.optim import make_optimizer, seed_everything
from vla.training.schedule import lr_at

EvalFn = Callable[[Policy, int], dict[str, float]]


@dataclass
class TrainResult:
    step: int  # optimizer steps completed
    last_loss: float  # mean loss over the last logging window (nan if no step ran)
    checkpoint: Path | None  # the last checkpoint written
    eval_metrics: dict[str, float] = field(default_factory=dict)  # the last eval_fn result
    start_step: int = 0  # the step this call resumed from (0 for a fresh run)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


def _batches(data: StepIterable | Iterable[dict[str, Any]], start: int) -> Iterator[dict[str, Any]]:
    """Batches from `start` on. Plain iterables are re-iterated when exhausted (an epoch each)."""
    if isinstance(data, StepIterable):
        yield from data.iter_from(start)
        return
    if start > 0:
        warnings.warn(
            "train(): resuming with a data source that has no iter_from(step); the data order restarts "
            "from its beginning, so the resumed run is not identical to an uninterrupted one",
            stacklevel=3,
        )
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise ValueError("train(): the data source yielded no batch")


def _run_eval(eval_fn: EvalFn, policy: Policy, ema: EMA | None, step: int) -> dict[str, float]:
    """Evaluate the inference copy (EMA when present) without disturbing the training RNG streams."""
    target = ema.averaged if ema is not None else policy
    was_training = target.training
    saved = rng_state()
    target.eval()
    try:
        metrics = dict(eval_fn(target, step))
    finally:
        set_rng_state(saved)
        target.train(was_training)
    return metrics


def train(
    policy: Policy,
    data: StepIterable | Iterable[dict[str, Any]],
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    eval_fn: EvalFn | None = None,
    normalizer_state: dict[str, Any] | None = None,
    processor_state: dict[str, Any] | None = None,
    shape_meta: dict[str, Any] | None = None,
    encoder_fingerprint: Any = None,
    resume: bool = True,
    until_step: int | None = None,
    dist_ctx: DistContext | None = None,
) -> TrainResult:
    """Train `policy` for `cfg.steps` optimizer steps, writing checkpoints and logs under `run_dir`.

    data: batches {"tokens", "token_mask", "state", "action", ...} already normalized; a
        `StepIterable` (e.g. `ResumableLoader`) makes resumed runs see exactly the same data.
    eval_fn(policy, step) -> metrics: called with the inference copy (EMA if used) in eval mode
        every `cfg.eval_every` steps and at the end; metrics go to TensorBoard.
    normalizer_state / processor_state / shape_meta / encoder_fingerprint: JSON-able data stored in
        each checkpoint (normalizer.json / processor.json / shape_meta.json / encoder.json).
    resume: continue from the latest checkpoint in `run_dir` if there is one.
    until_step: stop (with a checkpoint) after this step although the schedule runs to cfg.steps.
    dist_ctx: this process's place in a torchrun job (default: the initialized process group, if
        any); `data` must then yield this rank's part of each global batch (`ResumableLoader.part`).

    Raises:
        KeyboardInterrupt: on Ctrl-C (SIGINT; main thread only), after finishing the step in progress
            and checkpointing it; the message names the step, the checkpoint and how to continue.
    """
    run_dir = Path(run_dir)
    ctx = dist_ctx if dist_ctx is not None else current()
    main = ctx.is_main
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(device_for(cfg.device, ctx))
    policy.to(device)

    # Mixed precision only on CUDA: bf16 where supported (no loss scaling needed), else fp16.
    use_amp = cfg.amp and device.type == "cuda"
    if cfg.amp and not use_amp:
        warnings.warn(f"TrainConfig.amp ignored on device {device} (CUDA only)", stacklevel=2)
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)
    fsdp = bool(cfg.fsdp) and ctx.enabled
    if cfg.fsdp and not ctx.enabled:
        warnings.warn("TrainConfig.fsdp ignored in a single process (launch with torchrun)", stacklevel=2)
    # FSDP2: the optimizer is built over the sharded parameters, after sharding (below).
    optimizer = None if fsdp else make_optimizer(policy, cfg)
    c = policy.config
    ema = EMA(policy, c.ema_power, c.ema_max_decay, c.ema_update_after_step) if c.use_ema else None

    # ---- resume or start fresh
    start = 0
    # Rank 0 picks the checkpoint and every rank loads that one (the directory is shared).
    ckpt = ctx.broadcast_object(latest_checkpoint(run_dir) if resume and main else None)
    opt_state = None
    if ckpt is not None:
        check_resumable(policy, ckpt)
        load_weights(policy, ckpt / "model.safetensors")
        state = load_training_state(ckpt)
        if ema is not None:
            load_weights(ema.averaged, ckpt / "ema.safetensors")
            ema.num_updates = int(read_config(ckpt)["ema_num_updates"] or 0)
        opt_state = state["optimizer"]
        kind = state.get("optimizer_format", "param_ids")
        if opt_state is not None and kind != ("fsdp_full" if fsdp else "param_ids"):
            raise ValueError(
                f"{ckpt / 'training_state.pt'}: the optimizer state was saved "
                f"{'with' if kind == 'fsdp_full' else 'without'} train.fsdp; resume with the same setting"
            )
        if optimizer is not None and opt_state is not None:
            optimizer.load_state_dict(opt_state)
        if state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start = int(state["step"])
    else:
        seed_everything(cfg.seed)
    end = cfg.steps if until_step is None else min(cfg.steps, until_step)
    if start >= end:
        return TrainResult(step=start, last_loss=float("nan"), checkpoint=ckpt, start_step=start)

    # ---- distributed: DDP syncs (averages) the gradients in backward; it also broadcasts rank 0's
    # weights at construction (they are equal already: same seed or same checkpoint).
    loss_module: torch.nn.Module = LossModule(policy)
    if fsdp:
        if eval_fn is not None and ema is None:
            raise ValueError(
                "TrainConfig.fsdp with evaluation needs the policy's EMA (the whole copy rank 0 runs)"
            )
        shard_fsdp(loss_module, device, ctx)
        optimizer = make_optimizer(policy, cfg)
        if opt_state is not None:
            load_full_optimizer_state(loss_module, optimizer, opt_state)
    elif ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        loss_module = DistributedDataParallel(loss_module, device_ids=ids)
    accum = cfg.grad_accum_steps

    # ---- logging (rank 0)
    from torch.utils.tensorboard import SummaryWriter  # imported here: tensorboard is slow to import

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None) if main else None
    wandb_run = None
    if cfg.wandb and main:
        try:
            import wandb
        except ImportError as e:
            raise ImportError("TrainConfig.wandb=True but the `wandb` package is not installed") from e
        wandb_run = wandb.init(
            project=cfg.wandb_project,
            dir=str(run_dir),
            config={"train": cfg.to_dict(), "policy": c.to_dict()},
            resume="allow",
        )

    def log(scalars: dict[str, float], step: int) -> None:
        if writer is None:
            return
        for k, v in scalars.items():
            writer.add_scalar(k, v, step)
        if wandb_run is not None:
            wandb_run.log(scalars, step=step)

    loss_fn = torch.compile(loss_module) if cfg.compile else loss_module
    ckpt_kwargs = {
        "train_config": cfg.to_dict(),
        "normalizer": normalizer_state,
        "processor": processor_state,
        "shape_meta": shape_meta,
        "encoder_fingerprint": encoder_fingerprint,
    }

    def checkpoint(done: int) -> Path:
        # Rank 0 writes (every rank holds the same weights); the others wait until it is complete,
        # so no rank runs ahead of the last checkpoint a restarted job would resume from.
        path = checkpoint_dir(run_dir, done)
        gathered: dict[str, Any] = {}
        if fsdp:  # collectives: every rank gathers, rank 0 writes
            gathered = {
                "model_state": full_model_state(loss_module),
                "optimizer_state": full_optimizer_state(loss_module, optimizer),
                "optimizer_format": "fsdp_full",
            }
        if main:
            path = save_checkpoint(
                run_dir, done, policy, ema=ema, optimizer=optimizer, scaler=scaler, **ckpt_kwargs, **gathered
            )
            if cfg.keep_last_ckpts:
                for _, old in list_checkpoints(run_dir)[: -cfg.keep_last_ckpts]:
                    shutil.rmtree(old)
        ctx.barrier()
        return path

    batches = _batches(data, start)
    governor = None
    if cfg.adaptive_threads and device.type == "cpu" and torch.get_num_threads() > 1:
        from vla.training.threads import ThreadGovernor

        governor = ThreadGovernor(torch.get_num_threads(), log=lambda m: print(f"[train] {m}", flush=True))
    bar = progress_bar(
        total=end, initial=start, disable=not (cfg.progress and main), desc=policy.name, unit="step"
    )
    policy.train()
    window_loss, window_steps, window_samples = 0.0, 0, 0
    window_t0 = time.perf_counter()
    last_loss, last_ckpt, eval_metrics = float("nan"), ckpt, {}
    done = start
    stop = StopRequest()
    try:
        with stop:
            for step in range(start, end):
                t_step = time.perf_counter()
                batch = next(batches)
                n_local = int(batch["action"].shape[0])
                part = ctx.shard_slice(n_local * ctx.world_size)
                noise = step_noise(policy, n_local * ctx.world_size, cfg.seed, step)
                batch = _to_device(batch | {k: v[part] for k, v in noise.items()}, device)
                lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = lr

                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                for i, micro in enumerate(micro_batches(batch, accum)):
                    # DDP all-reduces in the last micro-batch's backward only.
                    last = i == accum - 1
                    if fsdp:  # FSDP2 reduce-scatters in the last micro-batch's backward only
                        loss_module.set_requires_gradient_sync(last)
                    no_sync = last or not ctx.enabled or fsdp
                    sync = contextlib.nullcontext() if no_sync else loss_module.no_sync()
                    with sync:
                        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                            loss, metrics = loss_fn(micro)
                        if not torch.isfinite(loss):
                            raise FloatingPointError(f"train(): non-finite loss at step {step}: {metrics}")
                        # Each micro-batch loss is a mean over its samples: / accum gives the batch mean.
                        scaler.scale(loss / accum).backward()
                    step_loss += float(loss.detach()) / accum
                grad_norm = None
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)
                    grad_norm = float(full_value(norm))
                scaler.step(optimizer)
                scaler.update()
                if ema is not None:
                    ema.update(policy)
                if governor is not None:
                    governor.tick(time.perf_counter() - t_step)
                done = step + 1
                bar.update(1)

                window_loss += step_loss
                window_steps += 1
                window_samples += n_local * ctx.world_size
                if done % cfg.log_every == 0 or done == end:
                    dt = time.perf_counter() - window_t0
                    last_loss = ctx.mean(window_loss / window_steps)
                    scalars = {f"train/{k}": v for k, v in metrics.items()}
                    scalars |= {
                        "train/loss": last_loss,
                        "train/lr": lr,
                        "perf/samples_per_s": window_samples / dt,
                        "perf/steps_per_s": window_steps / dt,
                    }
                    if grad_norm is not None:
                        scalars["train/grad_norm"] = grad_norm
                    if ema is not None:
                        scalars["train/ema_decay"] = ema.decay()
                    log(scalars, done)
                    bar.set_postfix(loss=f"{last_loss:.4f}", lr=f"{lr:.1e}", sps=f"{window_samples / dt:.0f}")
                    if not cfg.progress and main:  # no bar: the log_every line is the progress
                        print(
                            f"[train] step {done}/{end}: loss {last_loss:.4f} lr {lr:.1e} "
                            f"{window_samples / dt:.0f} samples/s",
                            flush=True,
                        )
                    window_loss, window_steps, window_samples = 0.0, 0, 0
                    window_t0 = time.perf_counter()

                # Checkpoint before evaluating: the saved RNG state is the one the next step uses.
                if (cfg.ckpt_every and done % cfg.ckpt_every == 0) or done == end:
                    last_ckpt = checkpoint(done)
                at_eval = cfg.eval_every and done % cfg.eval_every == 0
                if eval_fn is not None and (at_eval or done == cfg.steps):
                    if main:
                        eval_metrics = _run_eval(eval_fn, policy, ema, done)
                        log({f"eval/{k}": float(v) for k, v in eval_metrics.items()}, done)
                        bar.write(
                            f"step {done}: " + ", ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items())
                        )
                    ctx.barrier()  # the other ranks wait for rank 0's evaluation
                # Ctrl-C during this step (on any rank: torchrun forwards it to all): keep it, then stop.
                if ctx.any_true(stop.requested):
                    stop.requested = True
                    if last_ckpt is None or last_ckpt.name != str(done):
                        last_ckpt = checkpoint(done)
                    break
    finally:
        bar.close()
        if writer is not None:
            writer.close()
        if wandb_run is not None:
            wandb_run.finish()
    if stop.requested and done < end:  # (a Ctrl-C during the last step: the run is complete)
        raise KeyboardInterrupt(
            f"training stopped after step {done} of {cfg.steps}; checkpoint saved: {last_ckpt}; "
            f"continue with: vla-train resume={run_dir}"
        )
    return TrainResult(
        step=end, last_loss=last_loss, checkpoint=last_ckpt, eval_metrics=eval_metrics, start_step=start
    )
