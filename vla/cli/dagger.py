"""`vla-dagger checkpoint=<run dir>`: DAgger rounds in the simulator (configs/dagger.yaml).

Composes the config, resolves what the checkpoint implies (task, dataset, out_dir) and calls
:func:`vla.dagger.rounds.run_dagger`. With `dagger.bootstrap` and no checkpoint (experiment=debug)
it first makes one: demos (vla-collect), a tiny encoder (vla-pretrain-encoder), a policy (vla-train
with the same experiment), all under out_dir/bootstrap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, UsageError, compose_command, entry

COMMAND = Command(
    prog="vla-dagger",
    config="dagger",
    summary="improve a policy with DAgger in the simulator: roll out, label with the expert, aggregate, fine-tune, evaluate, per round",
    examples=(
        "vla-dagger checkpoint=outputs/train/<run> dagger.rounds=3 dagger.episodes_per_round=100",
        "vla-dagger checkpoint=outputs/train/<run> dagger.beta=0 dagger.finetune_steps=3000   # pure policy rollouts",
        "vla-dagger experiment=debug   # self-contained tiny run (< 1 min)",
    ),
)


def _choice(group: str, default: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    try:
        return str(HydraConfig.get().runtime.choices.get(group) or default)
    except ValueError:  # composed without the entry point (tests)
        return default


def bootstrap(b: dict[str, Any], out: Path, experiment: str, log=print) -> tuple[Path, Path]:
    """Demos, a tiny encoder and a policy trained with `experiment` under `out`: (run dir, dataset)."""
    from vla.cli import train as train_cli
    from vla.cli.debug_assets import ensure_debug_assets
    from vla.training.checkpoint import latest_checkpoint

    task, size = str(b.get("task", "pick_cube")), int(b.get("image_size", 32))
    max_steps = int(b.get("max_steps", 12))
    dataset, enc_dir, run_dir = out / "demos.zarr", out / "encoder", out / "train"
    ensure_debug_assets(b, dataset, enc_dir, log)
    if latest_checkpoint(run_dir) is None:
        log(f"bootstrap: vla-train experiment={experiment} -> {run_dir}")
        overrides = [
            f"experiment={experiment}",
            f"task={task}",
            f"policy={b.get('policy', 'diffusion')}",
            f"dataset={dataset}",
            f"encoder.model={enc_dir}",
            f"task.env.image_size={size}",
            f"task.env.max_steps={max_steps}",
        ]
        cfg = compose_command(train_cli.COMMAND, overrides)
        train_cli.run(cfg, run_dir, overrides)
    return run_dir, dataset


def to_dagger_config(r: dict[str, Any], checkpoint: Path, dataset: str | None, out_dir: str) -> Any:
    """Resolved config + what the checkpoint implies -> DaggerConfig (unknown dagger.* keys raise)."""
    from vla.cli.eval import eval_task
    from vla.dagger.rounds import DaggerConfig
    from vla.policy import PolicyMeta
    from vla.training.checkpoint import resolve_checkpoint

    ckpt = resolve_checkpoint(checkpoint)
    meta = PolicyMeta.from_dict(_shape_meta(ckpt), source=str(ckpt / "shape_meta.json"))
    task, env = eval_task(meta.task, {"name": r["task"]} if r.get("task") else None, ckpt)
    env.update(r.get("env_overrides") or {})
    run_cfg = ckpt.parent.parent / "config.yaml"
    if dataset is None:
        if not run_cfg.is_file():
            raise UsageError(
                f"dataset=null: {run_cfg} (the run's config, naming its dataset) is missing; pass dataset="
            )
        dataset = str(OmegaConf.load(run_cfg).dataset)
    if not Path(dataset).exists():
        raise UsageError(f"dataset={dataset}: no such store (the labelled episodes are appended to it)")
    d = dict(r["dagger"])
    d.pop("bootstrap", None)
    d["safety"] = bool(d.pop("safety_gate", True))
    d["train_overrides"] = tuple(d.get("train_overrides") or ())
    try:
        return DaggerConfig(
            checkpoint=str(ckpt), dataset=dataset, out_dir=out_dir, task=task, env_overrides=env, **d
        )
    except TypeError as e:
        raise ValueError(f"configs/dagger.yaml: dagger: {e}") from e


def _shape_meta(ckpt: Path) -> dict[str, Any]:
    import json

    return json.loads((ckpt / "shape_meta.json").read_text())


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    import torch

    from vla.dagger.rounds import run_dagger

    r: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    if r.get("threads"):
        torch.set_num_threads(int(r["threads"]))
    experiment = _choice("experiment", "default")
    boot = r["dagger"].get("bootstrap")
    checkpoint, dataset = r.get("checkpoint"), r.get("dataset")
    if checkpoint is None:
        if not boot:
            raise UsageError(
                "missing checkpoint=<run dir of the policy to improve> (or experiment=debug for a self-contained run)"
            )
        out_dir = r.get("out_dir") or f"outputs/dagger/{experiment}"
        run_dir, ds = bootstrap(boot, Path(out_dir) / "bootstrap", experiment)
        checkpoint, dataset = str(run_dir), dataset or str(ds)
    else:
        out_dir = r.get("out_dir") or f"outputs/dagger/{Path(checkpoint).resolve().name}"
    dcfg = to_dagger_config(r, Path(checkpoint), dataset, out_dir)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    (Path(out_dir) / "dagger_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    from vla.cli import train as train_cli

    def resume(run_dir: Path, train_overrides: list[str]) -> None:
        train_cli.run(OmegaConf.create({"resume": str(run_dir)}), overrides=train_overrides)

    state = run_dagger(dcfg, resume, log=lambda m: print(f"[vla-dagger] {m}", flush=True))
    rows = state["rounds"]
    print(
        "[vla-dagger] success per round: "
        + ", ".join(f"{x['round']}: {x['successes']}/{x['n_episodes']}" for x in rows)
        + f" | {out_dir}/dagger.json, plot {state['plot']}",
        flush=True,
    )
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
