"""`vla-collect task=<name> n_episodes=<N> out=<path.zarr>`: scripted-expert demos into a zarr store.

Composes `configs/collect.yaml` (+ `configs/task/<name>.yaml`), saves the resolved config beside the
store as `<out>.collect.yaml`, and calls :func:`vla.collect.collect`.

Sharded (any scheduler): `num_shards=n shard=i` writes `<out stem>.shard_i_of_n.zarr`; the same
command with `merge=true` instead of `shard=` joins them into `out` (:func:`vla.collect_shards.merge_shards`),
equal to the unsharded store.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry
from vla.collect import ActionNoise, CollectConfig, Recovery, collect
from vla.collect_shards import merge_shards, shard_store
from vla.paths import config_dir


@hydra.main(config_path=config_dir(), config_name="collect", version_base="1.3")
def _sweep(cfg: DictConfig) -> None:
    """`vla-collect -m ...`: Hydra's multirun, one job per combination (hydra/launcher=local|slurm)."""
    _body(cfg, list(HydraConfig.get().overrides.task))


COMMAND = Command(
    prog="vla-collect",
    config="collect",
    summary="run a task's scripted expert in MuJoCo and store the demos in a zarr replay buffer",
    examples=(
        "vla-collect task=pick_cube n_episodes=100 out=outputs/demos/pick_cube.zarr",
        "vla-collect task=pick_cube n_episodes=100 out=outputs/demos/pick_cube.zarr resume=true   # after Ctrl-C",
        "vla-collect task=push_cube n_episodes=200 workers=2 'action_noise={std: 0.03, tau_s: 0.5}'",
        "vla-collect task=pick_cube n_episodes=200 'recovery={fraction: 0.3}'   # 30% show a retry",
        "vla-collect task=pick_cube n_episodes=1000 num_shards=4 shard=0   # one of 4 shards (any machine)",
        "vla-collect task=pick_cube n_episodes=1000 num_shards=4 merge=true   # join them into out=",
    ),
    multirun=_sweep,
)


def _noise(values: dict | None) -> ActionNoise | None:
    if not values:
        return None
    values = dict(values)
    if "phases" in values:
        values["phases"] = tuple(values["phases"])
    return ActionNoise(**values)


def _recovery(values: dict | None) -> Recovery | None:
    if not values:
        return None
    values = dict(values)
    if "kinds" in values:
        values["kinds"] = tuple(values["kinds"] or ())
    try:
        return Recovery(**values)
    except TypeError as e:
        raise ValueError(f"configs/collect.yaml: recovery: {e}") from e


def to_collect_config(cfg: DictConfig) -> CollectConfig:
    """Resolved Hydra config -> :class:`CollectConfig` (task env overrides merged with `env_overrides`)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    task = resolved["task"]
    overrides = {**(task.get("env") or {}), **(resolved.get("env_overrides") or {})}
    return CollectConfig(
        task=task["name"],
        n_episodes=int(resolved["n_episodes"]),
        out=str(resolved["out"]),
        seed=int(resolved["seed"]),
        keep_failures=bool(resolved["keep_failures"]),
        max_attempts=resolved.get("max_attempts"),
        overwrite=bool(resolved["overwrite"]),
        resume=bool(resolved.get("resume", False)),
        video_episodes=int(resolved["video_episodes"]),
        video_path=resolved.get("video_path"),
        env_overrides=overrides,
        progress=bool(resolved.get("progress", True)),
        extra_meta={"collect_config": resolved},
        workers=resolved.get("workers", 1),  # CollectConfig validates it (an int >= 1)
        action_noise=_noise(resolved.get("action_noise")),
        recovery=_recovery(resolved.get("recovery")),
        robot=str(resolved["robot"]["name"]),
        joint_names=tuple(resolved["robot"]["dataset_joint_names"]),
        shard=resolved.get("shard", 0),
        num_shards=resolved.get("num_shards", 1),
    )


def _kept(ccfg: CollectConfig) -> str:
    """What an interrupted collection left behind, and how to go on."""
    from vla.data import ReplayBuffer

    out = Path(ccfg.out)
    if ccfg.overwrite:
        return f"the previous {out} is unchanged (the replacement was discarded)"
    try:
        n = ReplayBuffer.open(out).n_episodes
    except Exception:
        return f"nothing usable was written to {out}"
    return f"{n} whole episodes kept in {out}; continue with the same command and resume=true"


def _task_envs(cfg: DictConfig) -> dict[str, dict] | None:
    """task=all: each task's env (configs/task/<name>.yaml, then task.env, then env_overrides); None
    for one task."""
    from vla.cli.tasks import task_config

    r = OmegaConf.to_container(cfg, resolve=True)
    if r["task"]["name"] != "all":
        return None
    envs = {}
    for t in r["task"].get("tasks") or []:
        own = task_config(t, "configs/task/all.yaml: tasks").get("env") or {}
        envs[t] = {**own, **(r["task"].get("env") or {}), **(r.get("env_overrides") or {})}
    return envs


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    ccfg = to_collect_config(cfg)
    envs = _task_envs(cfg)
    if envs is not None:
        from vla.collect_tasks import collect_tasks

        Path(ccfg.out).parent.mkdir(parents=True, exist_ok=True)
        res = collect_tasks(ccfg, envs)
        (Path(ccfg.out).parent / f"{Path(ccfg.out).stem}.collect.yaml").write_text(
            OmegaConf.to_yaml(cfg, resolve=True)
        )
        print(
            f"[vla-collect] all: stored {res.n_saved} episodes of {len(envs)} tasks in {res.path} | expert "
            f"success {res.n_success}/{res.n_attempts} | {res.seconds:.1f} s"
            + (f" | video {res.video}" if res.video else "")
        )
        return 0
    if cfg.get("merge"):
        res = merge_shards(ccfg)
        (Path(ccfg.out).parent / f"{Path(ccfg.out).stem}.collect.yaml").write_text(
            OmegaConf.to_yaml(cfg, resolve=True)
        )
        print(
            f"[vla-collect] merged {ccfg.num_shards} shards into {res.path}: {res.n_saved} episodes "
            f"({res.n_attempts} collected now for the shards' failed attempts) | {res.seconds:.1f} s"
        )
        return 0
    if ccfg.num_shards > 1:
        import dataclasses

        ccfg = dataclasses.replace(ccfg, out=str(shard_store(ccfg.out, ccfg.shard, ccfg.num_shards)))
    out = Path(ccfg.out)
    if out.exists() and not (ccfg.overwrite or ccfg.resume):
        raise FileExistsError(
            f"{out} already exists: resume=true adds episodes to it, overwrite=true replaces it, "
            "or choose another out="
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        res = collect(ccfg)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_kept(ccfg)) from None
    (out.parent / f"{out.stem}.collect.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(
        f"[vla-collect] {ccfg.task}: stored {res.n_saved} episodes in {res.path} | expert success "
        f"{res.n_success}/{res.n_attempts} ({100 * res.success_rate:.0f}%) | {res.seconds:.1f} s "
        f"({res.episodes_per_minute:.1f} episodes/min)" + (f" | video {res.video}" if res.video else "")
    )
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
