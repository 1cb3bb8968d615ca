"""The token front end: text-conditioned attention pooling lets the instruction change what is pooled."""

from __future__ import annotations

import pytest
import torch

from policies import make_config, make_policy
from policies.layers import TokenPool

N_IMG, N_TEXT, D = 6, 4, 16


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """tokens (2, 10, D): 6 image tokens then 4 text tokens; sample 1's last text token is padding."""
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(2, N_IMG + N_TEXT, D, generator=g)
    mask = torch.ones(2, N_IMG + N_TEXT, dtype=torch.bool)
    mask[1, -1] = False
    text_mask = mask.clone()
    text_mask[:, :N_IMG] = False
    return tokens, mask, text_mask


def _pool(text_cond: bool) -> TokenPool:
    torch.manual_seed(0)
    return TokenPool("attention", D, 32, n_queries=3, n_heads=2, text_cond=text_cond).eval()


def _swap_text(tokens: torch.Tensor) -> torch.Tensor:
    """Same images, another instruction: the text tokens of the two samples exchanged."""
    out = tokens.clone()
    out[0, N_IMG:], out[1, N_IMG:] = tokens[1, N_IMG:], tokens[0, N_IMG:]
    return out


def test_text_conditioned_pool_depends_on_the_text_tokens() -> None:
    pool = _pool(text_cond=True)
    tokens, mask, text_mask = _inputs()
    a, out_mask = pool(tokens, mask, text_mask)
    assert a.shape == (2, 3, 32) and out_mask.all()
    b, _ = pool(_swap_text(tokens), mask, text_mask)
    # Text changes the queries, so it changes the pooled tokens by far more than their own weight
    # in the attention would; compare with the same swap through fixed queries.
    fixed = _pool(text_cond=False)
    fa, _ = fixed(tokens, mask, text_mask)
    fb, _ = fixed(_swap_text(tokens), mask, text_mask)
    assert (a - b).abs().mean() > 1e-3
    assert not torch.allclose(a - b, fa - fb, atol=1e-4)


def test_masked_tokens_have_no_effect_on_the_text_conditioned_pool() -> None:
    pool = _pool(text_cond=True)
    tokens, mask, text_mask = _inputs()
    other = tokens.clone()
    other[~mask] = 1e3  # the padded text token of sample 1
    torch.testing.assert_close(pool(tokens, mask, text_mask)[0], pool(other, mask, text_mask)[0])
    # A text_mask that wrongly marks a padded token is still gated by token_mask.
    loose = text_mask.clone()
    loose[1, -1] = True
    torch.testing.assert_close(pool(tokens, mask, text_mask)[0], pool(other, mask, loose)[0])


def test_without_text_mask_the_queries_are_the_learned_ones() -> None:
    pool = _pool(text_cond=True)
    tokens, mask, text_mask = _inputs()
    no_text = torch.zeros_like(text_mask)
    torch.testing.assert_close(pool(tokens, mask)[0], pool(tokens, mask, no_text)[0])


def test_bad_text_mask_raises_naming_the_key() -> None:
    pool = _pool(text_cond=True)
    tokens, mask, text_mask = _inputs()
    with pytest.raises(ValueError, match="text_mask"):
        pool(tokens, mask, text_mask[:, :-1])
    with pytest.raises(ValueError, match="text_mask"):
        pool(tokens, mask, text_mask.float())


@pytest.mark.parametrize("name", ["diffusion", "transformer"])
def test_head_chunk_depends_on_the_text_with_pool_text_cond(name: str) -> None:
    torch.manual_seed(0)
    sizes = {"token_dim": 16, "n_tokens": 8, "horizon": 8, "n_action_steps": 4, "d_model": 32}
    sizes |= {"n_heads": 2, "n_pool_tokens": 2, "dim_feedforward": 64, "pool_text_cond": True}
    if name == "diffusion":
        sizes |= {"down_dims": (16, 32), "n_groups": 4, "diffusion_step_embed_dim": 16}
        sizes |= {"num_train_timesteps": 20, "num_inference_steps": 4}
    else:
        sizes |= {"n_encoder_layers": 1, "n_decoder_layers": 1}
    cfg = make_config(name, sizes, source="tests")
    policy = make_policy(name, cfg).eval()
    obs = cfg.fake_obs(2, torch.Generator().manual_seed(3))
    text = obs["text_mask"]
    swapped = dict(obs)
    swapped["tokens"] = obs["tokens"].clone()
    swapped["tokens"][text] = torch.randn(
        int(text.sum()), cfg.token_dim, generator=torch.Generator().manual_seed(4)
    )
    a = policy.predict_chunk(obs, generator=torch.Generator().manual_seed(0))
    b = policy.predict_chunk(swapped, generator=torch.Generator().manual_seed(0))
    assert (a - b).abs().max() > 1e-4


def test_pool_text_cond_is_ignored_without_attention_pooling() -> None:
    """mean/none pooling have no queries to condition: no extra parameters, same outputs."""
    tokens, mask, text_mask = _inputs()
    for mode in ("mean", "none"):
        torch.manual_seed(0)
        plain = TokenPool(mode, D, 32, n_queries=3, n_heads=2)
        torch.manual_seed(0)
        cond = TokenPool(mode, D, 32, n_queries=3, n_heads=2, text_cond=True)
        assert sum(p.numel() for p in cond.parameters()) == sum(p.numel() for p in plain.parameters())
        torch.testing.assert_close(cond(tokens, mask, text_mask)[0], plain(tokens, mask)[0])
