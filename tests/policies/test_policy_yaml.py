"""configs/policy/*.yaml mirror the config dataclasses: same fields, defaults in sync."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from policies import config_class, make_config, policy_names

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
OPTIONS = sorted(p.stem for p in (CONFIG_DIR / "policy").glob("*.yaml"))
# Filled by the entry point from the task / encoder configs, never in configs/policy/.
SHAPE_FIELDS = {
    "token_dim",
    "state_dim",
    "action_dim",
    "n_obs_steps",
    "horizon",
    "n_action_steps",
    "n_tokens",
    "n_cameras",
    "tokens_per_camera",
}


def _load(option: str) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name=f"policy/{option}")
    return OmegaConf.to_container(cfg.policy, resolve=True)  # type: ignore[return-value]


def test_every_head_has_a_config_named_after_it() -> None:
    assert set(policy_names()) <= set(OPTIONS)


@pytest.mark.parametrize("option", OPTIONS)
def test_policy_yaml_mirrors_its_dataclass(option: str) -> None:
    values = _load(option)
    name = values.pop("name")
    fields = {f.name for f in dataclasses.fields(config_class(name))}
    assert set(values) == fields - SHAPE_FIELDS, f"configs/policy/{option}.yaml drifted from the dataclass"
    cfg = make_config(name, values, source=f"configs/policy/{option}.yaml")
    if option == name:  # the head's own file carries the dataclass defaults
        assert cfg == config_class(name)()
