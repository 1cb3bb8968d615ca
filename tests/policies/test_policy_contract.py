"""The contract every registered head keeps (shared/STYLE.md: one data contract, a registry)."""

from __future__ import annotations

import pytest
import torch

from policies import PolicyConfig, make_policy, policy_names


def test_every_registered_head_is_covered(covered_heads: set[str]) -> None:
    assert covered_heads == set(policy_names())
    assert {"diffusion", "transformer"} <= set(policy_names())


def test_loss_is_finite_scalar_and_batch_not_mutated(variant: tuple[str, PolicyConfig]) -> None:
    name, cfg = variant
    torch.manual_seed(0)
    policy = make_policy(name, cfg)
    batch = cfg.fake_batch(3, torch.Generator().manual_seed(1))
    before = {k: (v, v.clone()) for k, v in batch.items()}
    keys = set(batch)
    loss, metrics = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert metrics and all(isinstance(v, float) for v in metrics.values())
    loss.backward()
    no_grad = [n for n, p in policy.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters outside the graph: {no_grad}"
    assert set(batch) == keys
    for k, (orig, copy) in before.items():
        assert batch[k] is orig and torch.equal(orig, copy), f"batch[{k!r}] was mutated"


def test_predict_chunk_shape_and_obs_not_mutated(variant: tuple[str, PolicyConfig]) -> None:
    name, cfg = variant
    policy = make_policy(name, cfg).eval()
    obs = cfg.fake_obs(2)
    copies = {k: v.clone() for k, v in obs.items()}
    chunk = policy.predict_chunk(obs)
    assert chunk.shape == (2, cfg.horizon, cfg.action_dim)
    assert torch.isfinite(chunk).all()
    assert all(torch.equal(obs[k], copies[k]) for k in obs)
    policy.reset()
    assert policy.predict_chunk(obs).shape == chunk.shape


def test_inpainting_prefix_is_kept(variant: tuple[str, PolicyConfig]) -> None:
    name, cfg = variant
    policy = make_policy(name, cfg).eval()
    obs = cfg.fake_obs(2)
    prefix = torch.rand(2, 3, cfg.action_dim) * 2 - 1
    chunk = policy.predict_chunk(obs, prefix=prefix)
    assert chunk.shape == (2, cfg.horizon, cfg.action_dim)
    assert torch.equal(chunk[:, :3], prefix)
    # Per-step mask: only committed steps are kept; the uncommitted one is the model's own.
    mask = torch.tensor([[True, True, False], [True, False, False]])
    chunk = policy.predict_chunk(obs, prefix=prefix, prefix_mask=mask)
    assert torch.equal(chunk[:, :3][mask], prefix[mask])
    assert not torch.equal(chunk[1, 1], prefix[1, 1])


def test_masked_tokens_do_not_change_the_chunk(variant: tuple[str, PolicyConfig]) -> None:
    name, cfg = variant
    policy = make_policy(name, cfg).eval()
    obs = cfg.fake_obs(2)
    assert not obs["token_mask"][1].all()  # fake_obs masks some tokens of odd samples
    other = dict(obs)
    other["tokens"] = obs["tokens"].clone()
    other["tokens"][~obs["token_mask"]] = 1e3
    a = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    b = policy.predict_chunk(other, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_naming_the_key(variant: tuple[str, PolicyConfig]) -> None:
    name, cfg = variant
    policy = make_policy(name, cfg)
    batch = cfg.fake_batch(2)
    with pytest.raises(ValueError, match="action"):
        policy.compute_loss({k: v for k, v in batch.items() if k != "action"})
    with pytest.raises(ValueError, match="tokens"):
        policy.predict_chunk({**batch, "tokens": batch["tokens"][..., :-1]})
    with pytest.raises(ValueError, match="state"):
        policy.predict_chunk({**batch, "state": batch["state"][:, :1]})
    with pytest.raises(ValueError, match="token_mask"):
        policy.predict_chunk({**batch, "token_mask": torch.zeros_like(batch["token_mask"])})
    with pytest.raises(ValueError, match="prefix"):
        policy.predict_chunk(batch, prefix=torch.zeros(2, cfg.horizon + 1, cfg.action_dim))
