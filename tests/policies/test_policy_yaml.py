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


RECIPE = {
    "diffusion": {
        "token_pool": "spatial_softmax",
        "d_model": 64,
        "down_dims": [48, 96, 192],
        "diffusion_step_embed_dim": 64,
        "state_noise_std": 0.1,
        "aux_future_weight": 1.0,
        "aux_ground_weight": 1.0,  # with vla-train's data.grounding scenes (README "Grounding scenes")
        "text_pool": "attention",  # the dataclass keeps "mean" so older checkpoints load unchanged
    },
    "transformer": {
        "token_pool": "spatial_softmax",
        "n_pool_tokens": 8,
        "d_model": 128,
        "n_heads": 4,
        "dim_feedforward": 256,
        "state_noise_std": 0.1,
        "aux_future_weight": 1.0,
        "text_pool": "attention",
    },
}


def _typed(v):
    return tuple(v) if isinstance(v, list) else v


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
    # A token layout the spatial-softmax front end accepts (the entry point fills the real one in).
    layout = {"n_cameras": 2, "tokens_per_camera": 8, "n_tokens": 32}
    cfg = make_config(name, {**values, **layout}, source=f"configs/policy/{option}.yaml")
    if option == name:
        # The head's own file carries the dataclass defaults, except the project's recipe (the
        # front end, widths and copycat measures that work on the embedded task, ARCHITECTURE.md
        # "Defaults are the recipe"): the library defaults stay generic (any token layout).
        recipe = RECIPE[name]
        assert {k: values[k] for k in recipe} == recipe, f"configs/policy/{option}.yaml: recipe changed"
        default = dataclasses.replace(
            config_class(name)(**layout), **{k: _typed(v) for k, v in recipe.items()}
        )
        assert cfg == default
