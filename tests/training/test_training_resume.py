"""Train 2 steps, resume to 4 == 4 uninterrupted steps; checkpoints rebuild the policy alone."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from policies import make_policy
from vla.training import ResumableLoader, TrainConfig, load_policy, seed_everything, train
from vla.training.checkpoint import list_checkpoints, load_training_state

HEADS = [
    ("diffusion", {"denoiser": "unet"}),
    ("diffusion", {"denoiser": "transformer", "dropout": 0.1}),
    ("transformer", {"use_vae": True}),  # dropout 0.1 + CVAE sampling: exercises the RNG restore
]
EXTRAS = {
    "normalizer_state": {"action": {"min": [-1.0] * 7, "max": [1.0] * 7}},
    "shape_meta": {"action": [7], "state": [7]},
    "encoder_fingerprint": "tiny-encoder@abc123",
}


def _cfg(**kw: Any) -> TrainConfig:
    base = {
        "steps": 4,
        "lr": 1e-3,
        "warmup_steps": 1,
        "log_every": 1,
        "ckpt_every": 2,
        "progress": False,
        "seed": 3,
    }
    return TrainConfig(**{**base, **kw})


def _run(name: str, pcfg: Any, ds: Any, run_dir: Path, **kw: Any) -> Any:
    seed_everything(0)
    policy = make_policy(name, pcfg)
    loader = ResumableLoader(ds, batch_size=4, seed=5)
    cfg_kw = {k: kw.pop(k) for k in list(kw) if k in ("eval_every",)}
    return train(policy, loader, _cfg(**cfg_kw), run_dir, **EXTRAS, **kw)


@pytest.mark.parametrize(
    ("name", "overrides"), HEADS, ids=["diffusion-unet", "diffusion-transformer", "transformer-cvae"]
)
def test_resume_matches_uninterrupted(
    name: str, overrides: dict, tiny: Any, fake_dataset: Any, tmp_path: Path
) -> None:
    pcfg = tiny(name, **overrides)
    ds = fake_dataset(pcfg)
    calls: list[tuple[int, bool]] = []

    def eval_fn(policy: Any, step: int) -> dict[str, float]:
        # Consumes global RNG on purpose: evaluation must not shift the training streams.
        calls.append((step, policy.training))
        chunk = policy.predict_chunk(pcfg.fake_obs(2))
        return {"chunk_abs_mean": chunk.abs().mean().item(), "noise": torch.rand(()).item()}

    full = _run(name, pcfg, ds, tmp_path / "full", eval_fn=eval_fn, eval_every=1)
    assert full.step == 4 and calls == [(1, False), (2, False), (3, False), (4, False)]
    assert set(full.eval_metrics) == {"chunk_abs_mean", "noise"}

    first = _run(name, pcfg, ds, tmp_path / "split", until_step=2)
    assert first.step == 2 and [s for s, _ in list_checkpoints(tmp_path / "split")] == [2]
    second = _run(name, pcfg, ds, tmp_path / "split")  # a fresh policy, resumed from the run dir
    assert second.step == 4

    a, b = tmp_path / "full/checkpoints/4", tmp_path / "split/checkpoints/4"
    files = ["model.safetensors"] + (["ema.safetensors"] if pcfg.use_ema else [])
    for f in files:
        wa, wb = load_file(a / f), load_file(b / f)
        assert wa.keys() == wb.keys()
        for k in wa:
            torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-6, msg=f"{f}:{k}")
    sa, sb = load_training_state(a), load_training_state(b)
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True):
        torch.testing.assert_close(pa["exp_avg"], pb["exp_avg"], rtol=0, atol=1e-6)
    assert torch.equal(sa["rng"]["torch"], sb["rng"]["torch"])
    # Running again on a finished run is a no-op.
    assert _run(name, pcfg, ds, tmp_path / "split").step == 4


def test_checkpoint_is_self_describing(tiny: Any, fake_dataset: Any, tmp_path: Path) -> None:
    pcfg = tiny("diffusion")
    result = _run("diffusion", pcfg, fake_dataset(pcfg), tmp_path)
    ckpt = result.checkpoint
    assert ckpt == tmp_path / "checkpoints/4"
    names = {p.name for p in ckpt.iterdir()}
    assert names == {"model.safetensors", "ema.safetensors", "config.json", "shape_meta.json",
                     "normalizer.json", "encoder.json", "training_state.pt"}  # fmt: skip
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["policy"] == "diffusion" and cfg["policy_config"]["down_dims"] == [16, 32]
    assert cfg["train_config"]["steps"] == 4
    assert list((tmp_path / "tb").glob("events.out.tfevents.*")), "no TensorBoard events written"

    # Rebuilt from the run directory alone; EMA weights by default, in eval mode.
    policy, info = load_policy(tmp_path)
    assert info.step == 4 and info.used_ema and info.path == ckpt and not policy.training
    assert info.normalizer == EXTRAS["normalizer_state"]
    assert info.shape_meta == EXTRAS["shape_meta"]
    assert info.encoder_fingerprint == EXTRAS["encoder_fingerprint"]
    ema_weights = load_file(ckpt / "ema.safetensors")
    assert all(torch.equal(v, ema_weights[k]) for k, v in policy.state_dict().items())
    raw, info_raw = load_policy(ckpt, use_ema=False)
    model_weights = load_file(ckpt / "model.safetensors")
    assert not info_raw.used_ema
    assert all(torch.equal(v, model_weights[k]) for k, v in raw.state_dict().items())
    obs = pcfg.fake_obs(2)
    g = torch.Generator().manual_seed(0)
    assert policy.predict_chunk(obs, generator=g).shape == (2, pcfg.horizon, pcfg.action_dim)


def test_resume_refuses_a_different_policy_config(tiny: Any, fake_dataset: Any, tmp_path: Path) -> None:
    pcfg = tiny("diffusion")
    _run("diffusion", pcfg, fake_dataset(pcfg), tmp_path, until_step=2)
    other = tiny("diffusion", n_pool_tokens=3)
    with pytest.raises(ValueError, match="n_pool_tokens"):
        _run("diffusion", other, fake_dataset(other), tmp_path)


def test_broken_checkpoints_raise_naming_the_file(tiny: Any, fake_dataset: Any, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path))):
        load_policy(tmp_path)
    pcfg = tiny("transformer")
    _run("transformer", pcfg, fake_dataset(pcfg), tmp_path, until_step=2)
    ckpt = tmp_path / "checkpoints/2"
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["policy_config"]["d_modle"] = 3
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"config.json.*d_modle"):
        load_policy(ckpt)
    del cfg["policy_config"]["d_modle"]
    cfg["policy_config"]["d_model"] = 64
    (ckpt / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"model\.safetensors"):
        load_policy(ckpt)
