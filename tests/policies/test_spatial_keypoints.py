"""The instruction-conditioned spatial-softmax front end (`token_pool="spatial_softmax"`)."""

from __future__ import annotations

import pytest
import torch

from policies import make_config
from policies.layers import SpatialKeypoints

D, C, G, L = 12, 2, 3, 4  # token dim, cameras, grid side, text tokens
P = G * G
N = C * P + L


def _batch(b: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, N, D, generator=g)
    mask = torch.ones(b, N, dtype=torch.bool)
    text_mask = torch.zeros(b, N, dtype=torch.bool)
    text_mask[:, C * P :] = True
    return tokens, mask, text_mask


def _front(k: int = 3) -> SpatialKeypoints:
    torch.manual_seed(0)
    return SpatialKeypoints(D, 16, n_keypoints=k, n_cameras=C, tokens_per_camera=P, hidden=16)


def test_shapes_and_layout_default() -> None:
    front = _front()
    tokens, mask, text_mask = _batch(4)
    out, out_mask = front(tokens, mask, text_mask)
    assert out.shape == (4, C * 3 + 1, 16) and out_mask.all()
    # Without a text mask the tokens after the camera blocks are the text (the encoders' layout).
    torch.testing.assert_close(front(tokens, mask, None)[0], out)


def test_the_instruction_moves_the_keypoints_and_masked_tokens_do_not() -> None:
    front = _front()
    torch.nn.init.normal_(front.film.weight, std=0.5)  # trained FiLM: not the identity it starts as
    tokens, mask, text_mask = _batch(2)
    out = front(tokens, mask, text_mask)[0]
    other = tokens.clone()
    other[:, C * P :] = torch.randn(2, L, D)
    assert (front(other, mask, text_mask)[0] - out).abs().max() > 1e-3
    # A masked text token and a masked image patch change nothing.
    mask2, t2 = mask.clone(), tokens.clone()
    mask2[:, -1] = False
    mask2[:, 0] = False
    ref = front(tokens, mask2, text_mask)[0]
    t2[:, -1] += 5.0
    t2[:, 0] += 5.0
    torch.testing.assert_close(front(t2, mask2, text_mask)[0], ref)


def test_bad_inputs_raise_with_the_field_name() -> None:
    front = _front()
    tokens, mask, text_mask = _batch(2)
    with pytest.raises(ValueError, match="fewer than n_cameras"):
        front(tokens[:, : C * P - 1], mask[:, : C * P - 1], None)
    with pytest.raises(ValueError, match="text_mask"):
        front(tokens, mask, text_mask[:, :-1])
    dead = mask.clone()
    dead[:, :P] = False
    with pytest.raises(ValueError, match="no valid image token"):
        front(tokens, dead, text_mask)
    with pytest.raises(ValueError, match="square patch grid"):
        SpatialKeypoints(D, 16, 2, n_cameras=1, tokens_per_camera=6)
    with pytest.raises(ValueError, match="spatial_softmax"):
        make_config("diffusion", {"token_pool": "spatial_softmax", "n_tokens": 8, "tokens_per_camera": 9})


def test_learns_to_find_the_patch_the_instruction_names() -> None:
    """Each scene has K coloured patches at random places; the text names one colour; the target is
    the named patch's grid position. Fixed-query pooling cannot solve this; the FiLM'd heatmap can."""
    torch.manual_seed(0)
    k_col, b = 3, 256
    colours = torch.randn(k_col, D)
    grid = torch.stack(
        torch.meshgrid(torch.linspace(-1, 1, G), torch.linspace(-1, 1, G), indexing="ij")[::-1], -1
    ).reshape(P, 2)

    def scenes(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        tokens = 0.1 * torch.randn(n, N, D, generator=g)
        target = torch.zeros(n, 2)
        for i in range(n):
            where = torch.randperm(P, generator=g)[:k_col]
            for c in range(C):  # both cameras see the same layout
                tokens[i, c * P + where] += colours
            named = int(torch.randint(k_col, (1,), generator=g))
            tokens[i, C * P :] += colours[named]
            target[i] = grid[where[named]]
        return tokens, target

    front = SpatialKeypoints(D, 16, n_keypoints=2, n_cameras=C, tokens_per_camera=P, hidden=32)
    readout = torch.nn.Linear(16 * (C * 2 + 1), 2)
    opt = torch.optim.Adam([*front.parameters(), *readout.parameters()], 3e-3)
    tokens, target = scenes(b, 0)
    mask = torch.ones(b, N, dtype=torch.bool)
    for _ in range(400):
        loss = torch.nn.functional.mse_loss(readout(front(tokens, mask, None)[0].flatten(1)), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test_tokens, test_target = scenes(128, 1)
    with torch.no_grad():
        pred = readout(front(test_tokens, mask[:128], None)[0].flatten(1))
    err = (pred - test_target).norm(dim=-1)
    # Patches are 1.0 apart on the [-1, 1] grid; guessing the mean position errs by ~0.9.
    assert float(err.mean()) < 0.3, float(err.mean())
