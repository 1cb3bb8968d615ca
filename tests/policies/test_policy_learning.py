"""The heads learn: a few hundred steps on a small fixed set must fit state -> action chunk.

Catches wiring errors the shape tests cannot (wrong noise target, scheduler mismatch, a
condition that never reaches the denoiser): the check is on sampled chunks, not only the loss.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from policies import make_policy


def _dataset(cfg: Any, n: int) -> dict[str, torch.Tensor]:
    """Actions are a smooth function of the last state: each sample needs its own condition."""
    g = torch.Generator().manual_seed(0)
    batch = cfg.fake_batch(n, g)
    s = batch["state"][:, -1, : cfg.action_dim].tanh()  # (n, Da)
    ramp = torch.linspace(0, 1, cfg.horizon)[None, :, None]  # (1, T, 1)
    batch["action"] = (s[:, None, :] * (1 - ramp) + 0.5 * s.flip(-1)[:, None, :] * ramp).clamp(-1, 1)
    return batch


@pytest.mark.parametrize(
    ("name", "overrides", "steps"),
    [
        ("diffusion", {"denoiser": "unet", "num_inference_steps": 10}, 200),
        ("diffusion", {"denoiser": "transformer", "scheduler": "dpmsolver", "num_inference_steps": 10}, 200),
        ("transformer", {"dropout": 0.0}, 200),
    ],
    ids=["diffusion-unet", "diffusion-transformer", "transformer"],
)
def test_head_fits_a_small_set(name: str, overrides: dict[str, Any], steps: int, make_tiny: Any) -> None:
    torch.manual_seed(0)
    cfg = make_tiny(name, **overrides)
    policy = make_policy(name, cfg)
    data = _dataset(cfg, 8)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss, _ = policy.compute_loss(data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:20]) / 20
    policy.eval()
    obs = {k: v for k, v in data.items() if k != "action"}
    chunk = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    err = (chunk - data["action"]).pow(2).mean().item()
    baseline = (data["action"] - data["action"].mean(0)).pow(2).mean().item()  # ignoring the condition
    assert err < 0.25 * baseline, f"chunk MSE {err:.4f} vs unconditional baseline {baseline:.4f}"


@pytest.mark.parametrize("scheduler", ["ddim", "dpmsolver"])
@pytest.mark.parametrize("prediction_type", ["epsilon", "sample"])
def test_sampler_recovers_the_data_with_an_ideal_denoiser(
    scheduler: str, prediction_type: str, make_tiny: Any
) -> None:
    """If the data is one chunk a*, the ideal denoiser is known in closed form; sampling with it
    must return a* (this checks the noise schedule, target and scheduler wiring end to end)."""
    cfg = make_tiny("diffusion", scheduler=scheduler, prediction_type=prediction_type, num_inference_steps=5)
    policy = make_policy("diffusion", cfg).eval()
    target = torch.rand(2, cfg.horizon, cfg.action_dim) * 2 - 1
    alpha_bar = policy.train_scheduler.alphas_cumprod

    def ideal(x: torch.Tensor, t: torch.Tensor, *_: Any) -> torch.Tensor:
        if prediction_type == "sample":
            return target
        a = alpha_bar[t.long()].view(-1, 1, 1)
        return (x - a.sqrt() * target) / (1 - a).sqrt()

    policy.replace_networks({"denoise": ideal})
    chunk = policy.predict_chunk(cfg.fake_obs(2), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(chunk, target, atol=1e-3, rtol=0)
    # With a committed prefix that disagrees with a*, the prefix is kept and the rest still is a*.
    prefix = -target[:, :2]
    chunk = policy.predict_chunk(cfg.fake_obs(2), prefix=prefix)
    assert torch.equal(chunk[:, :2], prefix)
    torch.testing.assert_close(chunk[:, 2:], target[:, 2:], atol=1e-3, rtol=0)
