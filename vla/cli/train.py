"""`vla-train`: train a policy head on frozen-encoder tokens (Hydra entry point, configs/train.yaml).

    vla-train                                   # diffusion head, task=pick_cube, encoder=sim_siglip
    vla-train policy=transformer train.steps=2000
    vla-train experiment=debug                  # tiny model, 4 steps
    vla-train -m policy=diffusion,transformer   # one run dir per head under outputs/train/multirun/
    vla-train resume=outputs/train/<run> train.steps=6000   # continue a run (its saved config + overrides)
    torchrun --standalone --nproc_per_node=2 -m vla.cli.train experiment=debug   # DDP (gloo on CPU)

Saves the resolved config as `<run dir>/config.yaml` before training. Under torchrun every process
runs this; they join one process group (NCCL for train.device=cuda, else gloo), take rank 0's run
directory (its name has rank 0's timestamp), and rank 0 alone writes it (vla.training.distributed).
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry
from vla.cli.tasks import task_config
from vla.encoders import EncoderConfig
from vla.paths import config_dir
from vla.training import TrainConfig, distributed
from vla.training.batches import DataSpec
from vla.training.grounding import DEFAULT_GROUNDING_SEED, GroundingSpec
from vla.training.job import TrainJob, TrainOutcome, fresh_run_dir, run_training

GROUPS = ("task", "policy", "encoder", "experiment")


@hydra.main(config_path=config_dir(), config_name="train", version_base="1.3")
def _sweep(cfg: DictConfig) -> None:
    """`vla-train -m ...`: Hydra's multirun, each job in its own sweep subdir."""
    hc = HydraConfig.get()
    # Multirun: each job writes to its own sweep subdir (run_dir would be shared by all jobs).
    run_dir = hc.runtime.output_dir if hc.mode == RunMode.MULTIRUN else cfg.run_dir
    run(cfg, run_dir, list(hc.overrides.task))


COMMAND = Command(
    prog="vla-train",
    config="train",
    summary="train a policy head (diffusion or transformer) on frozen-encoder tokens of a demo dataset",
    examples=(
        "vla-train dataset=outputs/demos/pick_cube.zarr train.steps=3000",
        "vla-train policy=transformer experiment=debug",
        "vla-train resume=outputs/train/<run> train.steps=6000   # continue (also after Ctrl-C); a longer",
        "    # train.steps than the run's own stretches its cosine from the resume step on (a warm restart)",
        "vla-train -m policy=diffusion,transformer                # one run dir per head",
        "torchrun --standalone --nproc_per_node=2 -m vla.cli.train experiment=debug   # 2 processes (DDP)",
    ),
    multirun=_sweep,
)


def to_job(cfg: DictConfig, run_dir: Path) -> TrainJob:
    """Resolved train config -> TrainJob (unknown policy/encoder/train fields raise naming the group)."""
    r: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    policy = dict(r["policy"])
    name = policy.pop("name")
    policy.update((r.get("policy_overrides") or {}).get(name) or {})
    d = r["data"]
    spec = DataSpec(
        dataset=str(r["dataset"]),
        cameras=tuple(d["cameras"]) if d.get("cameras") else None,
        use_text=bool(d["use_text"]),
        n_obs_steps=int(r["n_obs_steps"]),
        horizon=int(r["horizon"]),
        val_fraction=float(d["val_fraction"]),
        split_seed=int(d["split_seed"]),
        embeddings=str(d["embeddings"]),
        repeat_sources={str(k): int(v) for k, v in (d.get("repeat_sources") or {}).items()},
        repeat_tasks={str(k): int(v) for k, v in (d.get("repeat_tasks") or {}).items()},
        # .get: configs saved before these keys resume with the old behaviour (tokens in RAM)
        tokens=str(d.get("tokens", "ram")),
        token_cache_dir=str(d["token_cache_dir"]) if d.get("token_cache_dir") else None,
    )
    t = dict(r["train"])
    grounding = _grounding_spec(r)
    t["betas"] = tuple(t.get("betas", (0.95, 0.999)))
    try:
        tcfg = TrainConfig(**t)
    except TypeError as e:
        raise ValueError(f"configs/train.yaml: train: {e}") from e
    return TrainJob(
        run_dir=run_dir,
        data=spec,
        encoder=EncoderConfig.from_dict(r["encoder"], source="configs/encoder (encoder group)"),
        policy_name=name,
        policy_values=policy,
        train=tcfg,
        n_action_steps=int(r["n_action_steps"]),
        batch_size=int(r["batch_size"]),
        num_workers=int(r["num_workers"]),
        task={
            "name": r["task"]["name"],
            "env": r["task"].get("env") or {},
            **({"tasks": list(r["task"]["tasks"])} if r["task"].get("tasks") else {}),
        },
        eval_episodes=int(r["eval_episodes"]),
        eval_every=int(r["eval_every"]),
        threads=r.get("threads"),
        grounding=grounding,
        grounding_cache=_grounding_cache(r) if grounding is not None else None,
        grounding_workers=_grounding_workers(r),
    )


def _grounding_spec(r: dict[str, Any]) -> GroundingSpec | None:
    """data.grounding -> the scenes of the auxiliary grounding loss (None: n_scenes 0 or absent, as in
    configs saved before it). Each task with its configs/task/<name>.yaml env, the run's env on top."""
    g = r["data"].get("grounding") or {}
    n = int(g.get("n_scenes", 0) or 0)
    if n <= 0:
        return None
    task = r["task"]
    shared = dict(task.get("env") or {})
    if task["name"] == "all":
        names = tuple(task.get("tasks") or ())
        envs = {t: {**(task_config(t, "data.grounding").get("env") or {}), **shared} for t in names}
    else:
        names, envs = (str(task["name"]),), {str(task["name"]): shared}
    try:
        return GroundingSpec(
            tasks=names,
            n_scenes=n,
            env=envs,
            seed=int(g.get("seed", DEFAULT_GROUNDING_SEED)),
            rollouts=int(g.get("rollouts", 0) or 0),
            frames_per_rollout=int(g.get("frames_per_rollout", 4)),
            rollout_steps=int(g.get("rollout_steps", 60)),
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"configs/train.yaml: data.grounding: {e}") from e


def _grounding_cache(r: dict[str, Any]) -> Path | None:
    """data.grounding.cache_dir (null or absent, as in configs saved before it: no cache)."""
    d = (r["data"].get("grounding") or {}).get("cache_dir")
    return Path(str(d)) if d else None


def _grounding_workers(r: dict[str, Any]) -> int | None:
    """data.grounding.workers (null or absent: the CPU's cores, at most 4)."""
    w = (r["data"].get("grounding") or {}).get("workers")
    if w is None:
        return None
    if not isinstance(w, int) or isinstance(w, bool) or w < 1:
        raise ValueError(
            f"configs/train.yaml: data.grounding.workers must be an integer >= 1 or null, got {w!r}"
        )
    return w


def resume_config(run_dir: Path, overrides: list[str]) -> DictConfig:
    """The saved resolved config of `run_dir` with `key=value` overrides applied (no group changes)."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise FileNotFoundError(f"resume={run_dir}: no {saved} (not a vla-train run directory)")
    cfg = OmegaConf.load(saved)
    dots = []
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        if key in ("resume", "run_dir") or key.startswith("hydra"):
            continue
        if key in GROUPS:
            raise ValueError(f"resume={run_dir}: cannot change config group {key!r} of an existing run")
        dots.append(o.lstrip("+"))
    cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(dots))
    cfg.resume = str(run_dir)
    return cfg  # type: ignore[return-value]


def run(
    cfg: DictConfig, run_dir: str | Path | None = None, overrides: list[str] | None = None
) -> TrainOutcome:
    """Train from a composed config (the body of `main`, callable with the compose API).

    Launched by torchrun (WORLD_SIZE > 1 in the environment), this joins the job's process group
    first and leaves it at the end."""
    # The device picks the backend (NCCL for CUDA): a resumed run's is in its saved config.
    full = resume_config(Path(cfg.resume), overrides or []) if cfg.get("resume") else cfg
    ctx = distributed.init_from_env(str(OmegaConf.select(full, "train.device", default="cpu")))
    if ctx.enabled and not ctx.is_main:
        # Every rank prepares the same data and would print the same warnings N times; rank 0's
        # copy is enough (errors still come from every rank).
        logging.getLogger("vla").setLevel(logging.ERROR)
    try:
        if not cfg.get("resume"):
            cfg = _with_debug_assets(cfg, ctx)
        out = _run(cfg, run_dir, overrides, ctx)
    finally:
        if ctx.enabled:
            distributed.shutdown()
    return out


def _with_debug_assets(cfg: DictConfig, ctx: distributed.DistContext) -> DictConfig:
    """experiment=debug (its `debug_assets`) with the default dataset or the default sim encoder
    missing (a fresh clone): the config switched to tiny demos and/or a tiny encoder under
    `debug_assets.dir`, made there by rank 0 when missing. Any other config is returned as it is."""
    b = cfg.get("debug_assets")
    if not b:
        return cfg
    dataset, enc = Path(str(cfg.dataset)), Path(str(cfg.encoder.model))
    # Only the defaults are replaced: a path the user gave that does not exist stays an error.
    default_enc = OmegaConf.load(Path(config_dir()) / "encoder" / "sim_siglip.yaml").model
    dataset_missing = not dataset.exists() and str(cfg.dataset) == str(cfg.task.get("dataset_path"))
    enc_missing = not enc.exists() and str(cfg.encoder.model) == str(default_enc)
    if not (dataset_missing or enc_missing):
        return cfg
    from vla.cli.debug_assets import ensure_debug_assets

    root = Path(str(b.dir))
    # Only what is missing is replaced (a user's dataset is kept, a missing encoder made).
    new_dataset = root / f"{b.task}.zarr" if dataset_missing else dataset
    new_enc = root / "encoder" if enc_missing else enc
    if ctx.is_main:
        made = (
            [f"{b.n_demos} {b.task} demos at {b.image_size} px ({new_dataset})"]
            if new_dataset != dataset
            else []
        )
        made += [f"a tiny encoder ({new_enc})"] if new_enc != enc else []
        print(
            f"[vla-train] experiment=debug: {dataset if new_dataset != dataset else enc} not found; "
            f"training with {' and '.join(made)}, made when missing",
            flush=True,
        )
    with distributed.main_first(ctx):
        if ctx.is_main:
            assets = OmegaConf.to_container(b, resolve=True)
            ensure_debug_assets(
                assets, new_dataset, new_enc, log=lambda m: print(f"[vla-train] {m}", flush=True)
            )
    cfg = copy.deepcopy(cfg)
    changes: list[tuple[str, Any]] = [("encoder.model", str(new_enc))]
    if new_dataset != dataset:
        changes += [
            ("dataset", str(new_dataset)),
            ("task.env.image_size", int(b.image_size)),
            ("task.env.max_steps", int(b.max_steps)),
        ]
    for key, value in changes:
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def _run(
    cfg: DictConfig, run_dir: str | Path | None, overrides: list[str] | None, ctx: distributed.DistContext
) -> TrainOutcome:
    main = ctx.is_main
    if cfg.get("resume"):
        rd = Path(cfg.resume)
        cfg = resume_config(rd, overrides or [])
        ctx.barrier()  # every rank has read the saved config before rank 0 rewrites it
        if main:
            # The run dir's config says what the run now is (e.g. the new train.steps); the first
            # one is kept beside it.
            first = rd / "config.initial.yaml"
            if not first.exists():
                first.write_text((rd / "config.yaml").read_text())
            (rd / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        out = run_training(to_job(cfg, rd))
    else:
        # Every rank resolved ${now:...} itself: rank 0's name is the run's.
        rd = Path(ctx.broadcast_object(str(run_dir if run_dir is not None else cfg.run_dir)))
        if not main:
            return run_training(to_job(cfg, rd))
        # A run that fails before its first checkpoint (bad dataset, bad config, Ctrl-C) leaves no
        # directory behind.
        with fresh_run_dir(rd):
            (rd / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
            out = run_training(to_job(cfg, rd))
    if not main:
        return out
    resumed = f" (resumed at step {out.start_step})" if out.start_step else ""
    print(
        f"[vla-train] done: step {out.step}{resumed}: {out.steps_run} steps in {out.seconds:.0f} s "
        f"({out.steps_per_s:.2f} steps/s), loss {out.last_loss:.4f} | checkpoint {out.checkpoint} | "
        f"run dir {out.run_dir}",
        flush=True,
    )
    return out


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    run(cfg, None, overrides)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
