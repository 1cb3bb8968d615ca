"""Config validation, registry errors, JSON round-trips and EMA behaviour."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from policies import (
    EMA,
    DiffusionConfig,
    TransformerConfig,
    config_class,
    make_config,
    make_policy,
    policy_names,
)


@pytest.mark.parametrize("name", policy_names())
def test_default_config_round_trips_through_json(name: str) -> None:
    cfg = config_class(name)()
    again = make_config(name, json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (DiffusionConfig, {"horizon": 10, "down_dims": (8, 16, 32)}, "horizon"),
        (DiffusionConfig, {"denoiser": "mlp"}, "denoiser"),
        (DiffusionConfig, {"scheduler": "euler"}, "scheduler"),
        (DiffusionConfig, {"num_inference_steps": 200, "num_train_timesteps": 100}, "num_inference_steps"),
        (DiffusionConfig, {"token_pool": "none", "denoiser": "unet"}, "token_pool"),
        (DiffusionConfig, {"clip_sample": True, "scheduler": "dpmsolver"}, "clip_sample"),
        (DiffusionConfig, {"d_model": 30, "n_heads": 4}, "d_model"),
        (DiffusionConfig, {"n_action_steps": 20, "horizon": 16}, "n_action_steps"),
        (TransformerConfig, {"kl_weight": -1.0}, "kl_weight"),
        (TransformerConfig, {"token_pool": "max"}, "token_pool"),
        (TransformerConfig, {"state_dim": 0}, "state_dim"),
        (TransformerConfig, {"aux_ground_dim": 3}, "aux_ground_dim"),
    ],
)
def test_invalid_config_raises_naming_the_field(cls: type, kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        cls(**kwargs)


def test_unknown_field_names_source_and_field() -> None:
    with pytest.raises(ValueError, match=r"configs/policy/x.yaml.*n_layerz"):
        make_config("diffusion", {"n_layerz": 3}, source="configs/policy/x.yaml")


def test_registry_errors() -> None:
    with pytest.raises(KeyError, match="registered"):
        make_policy("nope")
    with pytest.raises(TypeError, match="DiffusionConfig"):
        make_policy("diffusion", TransformerConfig())


def test_fake_batch_follows_the_spec() -> None:
    cfg = DiffusionConfig(token_dim=12, n_tokens=6, state_dim=5, action_dim=3, n_obs_steps=3, horizon=8)
    b = cfg.fake_batch(4)
    assert b["tokens"].shape == (4, 6, 12) and b["token_mask"].dtype == torch.bool
    assert b["state"].shape == (4, 3, 5) and b["action"].shape == (4, 8, 3)
    assert b["token_mask"][0].all() and not b["token_mask"][1].all()


def test_ema_warms_up_and_tracks_the_weights() -> None:
    model = torch.nn.Linear(3, 2)
    ema = EMA(model, power=0.75, max_decay=0.9, update_after_step=1)
    assert not any(p.requires_grad for p in ema.averaged.parameters())
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # within update_after_step: copies
    assert ema.decay() == 0.0 and torch.equal(ema.averaged.weight, model.weight)
    with torch.no_grad():
        model.weight.fill_(2.0)
    ema.update(model)
    d = ema.decay()
    assert d == pytest.approx(1 - 2**-0.75)
    torch.testing.assert_close(ema.averaged.weight, torch.full((2, 3), d * 1.0 + (1 - d) * 2.0))
    for _ in range(200):
        ema.update(model)
    assert ema.decay() == 0.9  # capped
    torch.testing.assert_close(ema.averaged.weight, model.weight, atol=1e-6, rtol=0)
