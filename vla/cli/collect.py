"""`vla-collect task=<name> n_episodes=<N> out=<path.zarr>`: scripted-expert demos into a zarr store.

Composes `configs/collect.yaml` (+ `configs/task/<name>.yaml`), saves the resolved config beside the
store as `<out>.collect.yaml`, and calls :func:`vla.collect.collect`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from vla.collect import ActionNoise, CollectConfig, collect
from vla.paths import config_dir


def _noise(values: dict | None) -> ActionNoise | None:
    if not values:
        return None
    values = dict(values)
    if "phases" in values:
        values["phases"] = tuple(values["phases"])
    return ActionNoise(**values)


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
        video_episodes=int(resolved["video_episodes"]),
        video_path=resolved.get("video_path"),
        env_overrides=overrides,
        progress=bool(resolved.get("progress", True)),
        extra_meta={"collect_config": resolved},
        workers=resolved.get("workers", 1),  # CollectConfig validates it (an int >= 1)
        action_noise=_noise(resolved.get("action_noise")),
    )


@hydra.main(config_path=config_dir(), config_name="collect", version_base="1.3")
def main(cfg: DictConfig) -> None:
    ccfg = to_collect_config(cfg)
    out = Path(ccfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    res = collect(ccfg)
    (out.parent / f"{out.stem}.collect.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(
        f"[vla-collect] {ccfg.task}: stored {res.n_saved} episodes in {res.path} | expert success "
        f"{res.n_success}/{res.n_attempts} ({100 * res.success_rate:.0f}%) | {res.seconds:.1f} s "
        f"({res.episodes_per_minute:.1f} episodes/min)" + (f" | video {res.video}" if res.video else "")
    )


if __name__ == "__main__":
    main()
