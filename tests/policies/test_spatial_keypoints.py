"""The instruction-conditioned spatial-softmax front end (`token_pool="spatial_softmax"`)."""

from __future__ import annotations

import pytest
import torch

from policies import make_config, make_policy
from policies.layers import SpatialKeypoints, TextAttentionPool

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


# ---------------------------------------------------------------- text_pool="attention"
def test_text_attention_pool_masks_padding_and_zeroes_a_sample_without_text() -> None:
    torch.manual_seed(0)
    pool = TextAttentionPool(D, n_queries=3)
    tokens, _, text_mask = _batch(3)
    text_mask[1, -1] = False  # one padded text token
    text_mask[2] = False  # no text at all
    out = pool(tokens, text_mask)
    assert out.shape == (3, D) and torch.isfinite(out).all()
    assert out[2].abs().max() == 0
    moved = tokens.clone()
    moved[1, -1] += 7.0  # the padded token
    moved[:, :5] += 7.0  # image tokens are never text
    torch.testing.assert_close(pool(moved, text_mask), out)


def test_text_pool_config_builds_the_attention_reader_and_old_configs_keep_the_mean() -> None:
    base = {"token_pool": "spatial_softmax", "n_tokens": 8, "tokens_per_camera": 4}
    assert make_config("diffusion", base).text_pool == "mean"  # a checkpoint without the field
    pol = make_policy("diffusion", make_config("diffusion", {**base, "text_pool": "attention"}))
    assert isinstance(pol.pool.spatial.text_pool, TextAttentionPool)
    with pytest.raises(ValueError, match="text_pool"):
        make_config("diffusion", {**base, "text_pool": "max"})
    with pytest.raises(ValueError, match="n_text_queries"):
        make_config("diffusion", {**base, "n_text_queries": 0})


def test_attention_keeps_word_roles_that_the_mean_loses() -> None:
    """Text = two colour words, each with a role embedding (first / second), plus filler; the label
    is the FIRST colour. The mean of the tokens is symmetric in the two colours (it cannot beat
    ~50% on pairs of distinct colours); learned queries can attend to the first role."""
    torch.manual_seed(0)
    k_col, n_txt, b = 5, 6, 512
    colours, roles = torch.randn(k_col, D), 2.0 * torch.randn(2, D)

    def texts(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        tok = 0.1 * torch.randn(n, n_txt, D, generator=g)
        first = torch.randint(k_col, (n,), generator=g)
        second = (first + torch.randint(1, k_col, (n,), generator=g)) % k_col
        slots = torch.stack([torch.randperm(n_txt, generator=g)[:2] for _ in range(n)])
        rows = torch.arange(n)
        tok[rows, slots[:, 0]] += colours[first] + roles[0]
        tok[rows, slots[:, 1]] += colours[second] + roles[1]
        return tok, first

    def fit(attention: bool) -> float:
        torch.manual_seed(1)
        pool = TextAttentionPool(D, n_queries=2) if attention else None
        head = torch.nn.Sequential(torch.nn.Linear(D, 64), torch.nn.GELU(), torch.nn.Linear(64, k_col))
        params = [*head.parameters(), *(pool.parameters() if pool else [])]
        opt = torch.optim.Adam(params, 3e-3)
        tok, y = texts(b, 0)
        m = torch.ones(b, n_txt, dtype=torch.bool)

        def read(t: torch.Tensor, mk: torch.Tensor) -> torch.Tensor:
            return head(pool(t, mk) if pool else t.mean(1))

        for _ in range(300):
            loss = torch.nn.functional.cross_entropy(read(tok, m), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        t_tok, t_y = texts(256, 1)
        with torch.no_grad():
            return float((read(t_tok, m[:256]).argmax(1) == t_y).float().mean())

    mean_acc, attn_acc = fit(False), fit(True)
    assert mean_acc < 0.65, mean_acc
    assert attn_acc > 0.9, attn_acc


def test_keypoint_text_queries_start_as_the_plain_front_end_and_condition_each_keypoint() -> None:
    """`text_queries`: zero at init (the same output as without them, for the same weights); once
    trained, the instruction moves one keypoint's heatmap without touching another's (the FiLM,
    shared by a camera's keypoints, cannot)."""
    plain = _front(k=2)
    torch.manual_seed(0)
    queried = SpatialKeypoints(
        D, 16, n_keypoints=2, n_cameras=C, tokens_per_camera=P, hidden=16, text_queries=True
    )
    missing, unexpected = queried.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["text_queries.bias", "text_queries.weight"] and not unexpected
    tokens, mask, text_mask = _batch(3)
    torch.testing.assert_close(queried(tokens, mask, text_mask)[0], plain(tokens, mask, text_mask)[0])

    # Train keypoint 0's query only (weights laid out (camera, hidden, keypoint)); FiLM stays identity.
    with torch.no_grad():
        w = torch.zeros(C, 16, 2, D)
        w[:, :, 0] = torch.randn(C, 16, D)
        queried.text_queries.weight.copy_(w.view(C * 16 * 2, D))
    other = tokens.clone()
    other[:, C * P :] = torch.randn(3, L, D, generator=torch.Generator().manual_seed(9))
    a, b = queried(tokens, mask, text_mask)[0], queried(other, mask, text_mask)[0]
    kp = a[:, : C * 2].view(3, C, 2, -1), b[:, : C * 2].view(3, C, 2, -1)
    assert (kp[0][:, :, 0] - kp[1][:, :, 0]).abs().max() > 1e-3  # keypoint 0 follows the text
    torch.testing.assert_close(kp[0][:, :, 1], kp[1][:, :, 1])  # keypoint 1 does not
