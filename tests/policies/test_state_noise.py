"""Training-time state noise (`state_noise_std`): applied in compute_loss only, never to the batch."""

from __future__ import annotations

import pytest
import torch

from policies import make_policy


@pytest.mark.parametrize("name", ["diffusion", "transformer"])
def test_state_noise_is_training_only_and_does_not_mutate(name: str, make_tiny) -> None:
    torch.manual_seed(0)
    head = make_policy(name, make_tiny(name, state_noise_std=0.5))
    batch = head.config.fake_batch(4, torch.Generator().manual_seed(1))
    state = batch["state"].clone()
    head.train()
    noisy = head.augment_state(batch)
    assert torch.equal(batch["state"], state)  # the caller's batch is untouched
    diff = noisy["state"] - state
    assert 0.3 < float(diff.std()) < 0.7
    assert noisy["tokens"] is batch["tokens"]
    head.eval()
    assert head.augment_state(batch) is batch
    # The loss sees the noise: same seed, with and without noise, different losses.
    head.train()
    torch.manual_seed(3)
    with_noise = head.compute_loss(batch)[0]
    plain = make_policy(name, make_tiny(name, state_noise_std=0.0))
    plain.load_state_dict(head.state_dict())
    plain.train()
    torch.manual_seed(3)
    without = plain.compute_loss(batch)[0]
    assert not torch.allclose(with_noise, without)


def test_negative_state_noise_is_rejected(make_tiny) -> None:
    with pytest.raises(ValueError, match="state_noise_std"):
        make_tiny("diffusion", state_noise_std=-0.1)
