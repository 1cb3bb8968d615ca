"""Every config file composes through Hydra's compose API, as the entry points compose it."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from vla.paths import CONFIG_DIR

TOP_LEVEL = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
GROUP_OPTIONS = sorted(
    (p.parent.relative_to(CONFIG_DIR).as_posix(), p.stem)
    for p in CONFIG_DIR.glob("*/**/*.yaml")
    if not p.relative_to(CONFIG_DIR).as_posix().startswith("hydra/")
)
LAUNCHERS = sorted(p.stem for p in (CONFIG_DIR / "hydra" / "launcher").glob("*.yaml"))


def _groups_used_by(name: str) -> set[str]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name, return_hydra_config=True)
        return {str(k) for k in cfg.hydra.runtime.choices if not str(k).startswith("hydra")}


@pytest.mark.parametrize("name", TOP_LEVEL)
def test_top_level_config_composes(name: str) -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=name)
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes(group: str, option: str) -> None:
    """Each option composes inside every top-level config that uses its group, or alone."""
    users = [t for t in TOP_LEVEL if group in _groups_used_by(t)]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        if users:
            for top in users:
                overrides = [f"{group}={option}"]
                chosen = compose(config_name=top, overrides=overrides, return_hydra_config=True)
                assert chosen.hydra.runtime.choices[group] == option, (top, group, option)
                cfg = compose(config_name=top, overrides=overrides)
                OmegaConf.to_container(cfg, resolve=True)
        else:
            cfg = compose(config_name=f"{group}/{option}")
            # A standalone option is read by code (not composed into a top-level config): it must
            # hold settings, and every interpolation must resolve.
            assert OmegaConf.to_container(cfg, resolve=True), f"{group}/{option}.yaml composes to nothing"


@pytest.mark.parametrize("launcher", LAUNCHERS)
@pytest.mark.parametrize("top", ["train", "collect", "eval"])  # the commands with -m sweeps
def test_hydra_launcher_composes(top: str, launcher: str) -> None:
    """hydra/launcher=<option> (configs/hydra/launcher, the submitit plugin's configs) composes into
    each sweepable command's Hydra config and names the plugin's launcher class."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=top, overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices["hydra/launcher"] == launcher
    target = cfg.hydra.launcher._target_
    assert target.startswith("hydra_plugins.hydra_submitit_launcher.submitit_launcher."), target
    assert target.endswith("SlurmLauncher" if launcher == "slurm" else "LocalLauncher")


def test_plain_vla_train_is_the_best_recipe_experiments_only_change_scale() -> None:
    """Issue 21: `vla-train` without an experiment trains what `experiment=sim_cpu` trains (the
    recipe lives in the policy configs); the experiment changes only threads, steps and logging."""
    scale = {"threads", "run_dir"}

    def resolved(overrides: list[str]) -> dict:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return OmegaConf.to_container(compose("train", overrides), resolve=True)

    for policy in ("diffusion", "transformer", "diffusion_dit"):
        plain = resolved([f"policy={policy}", "train.steps=500"])
        cpu = resolved([f"policy={policy}", "experiment=sim_cpu", "train.steps=500"])
        for cfg in (plain, cpu):
            for k in scale:
                cfg.pop(k)
            cfg["train"].pop("log_every")
        assert plain == cpu, policy
        head = plain["policy"]
        assert (
            head["token_pool"] == "spatial_softmax"
            and head["state_noise_std"] > 0
            and head["aux_future_weight"] > 0
        )
        assert not plain["policy_overrides"]


def test_demo_takes_fields_named_like_config_directories() -> None:
    """vla-demo's `task` and `policy` are plain strings, yet configs/task/ and configs/policy/ exist:
    Hydra alone read `task=place_cube` as a config-group choice and refused it."""
    from vla.cli.app import UsageError, compose_command
    from vla.cli.demo import COMMAND

    cfg = compose_command(
        COMMAND,
        ["task=place_cube", "policy=transformer", 'train_overrides=["experiment=sim_cpu","train.steps=20"]'],
    )
    assert (cfg.task, cfg.policy) == ("place_cube", "transformer")
    assert cfg.dataset == "outputs/demos/place_cube.zarr"  # interpolations see the new value
    assert list(cfg.train_overrides) == ["experiment=sim_cpu", "train.steps=20"]
    with pytest.raises(UsageError, match="unknown option 'tsk'"):
        compose_command(COMMAND, ["tsk=place_cube"])
    # Commands that load configs/task/ as a group keep Hydra's group choice.
    from vla.cli.eval import COMMAND as EVAL

    assert compose_command(EVAL, ["checkpoint=x", "task=place_cube"]).task.name == "place_cube"
