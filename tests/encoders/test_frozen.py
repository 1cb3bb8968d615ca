"""Frozen: no gradients, eval mode, and bit-identical weights after policy training on the tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vla.encoders import FAMILIES, EncoderConfig, build_encoder

INSTR = ["pick up the red cube", "open the drawer"]


@pytest.mark.parametrize("family", FAMILIES)
def test_weights_bit_identical_after_policy_training(family: str, tiny_dirs) -> None:
    enc = build_encoder(EncoderConfig(family=family, model=str(tiny_dirs[family]), max_text_len=8))
    assert all(not p.requires_grad for p in enc.parameters())
    assert not enc.model.training
    before = {k: v.detach().clone() for k, v in enc.model.state_dict().items()}

    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    head = torch.nn.Linear(enc.dim, 7)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    target = torch.randn(2, 7)
    losses = []
    for _ in range(5):
        frames = {c: rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for c in ("front", "wrist")}
        out = enc.encode(frames, INSTR)
        assert not out.tokens.requires_grad
        m = out.mask.unsqueeze(-1).float()
        # The head consumes the tokens directly (autograd saves them): they must be normal tensors.
        pooled = (head(out.tokens) * m).sum(1) / m.sum(1)
        loss = torch.nn.functional.mse_loss(pooled, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        # A training loop that switches modules to train mode must not switch the encoder.
        enc.model.train()
        assert not enc.model.training
    assert losses[-1] < losses[0]  # the head did learn
    assert all(p.grad is None for p in enc.parameters())
    after = enc.model.state_dict()
    assert before.keys() == after.keys()
    for k, v in before.items():
        assert torch.equal(v, after[k]), f"{family}: weight {k} changed"
