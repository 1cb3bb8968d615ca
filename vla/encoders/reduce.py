"""Optional reduction of each image's patch tokens to a fixed count (pooling or a fixed selection)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def reduce_tokens(
    tokens: torch.Tensor, grid: tuple[int, int], n_tokens: int | None, mode: str
) -> torch.Tensor:
    """(n, P, D) patch tokens on a `grid` (gh * gw == P) -> (n, n_tokens, D).

    `pool`: adaptive average pooling over the 2-D patch grid when `n_tokens` is a square number (k x k
    cells), over the token sequence otherwise. `select`: a fixed, evenly spaced subset (same indices
    for every image, so a policy sees the same spatial layout every step).
    """
    n, p, d = tokens.shape
    if n_tokens is None or n_tokens == p:
        return tokens
    if n_tokens > p:
        raise ValueError(f"encoder.n_tokens={n_tokens} exceeds the {p} patch tokens per image")
    gh, gw = grid
    if gh * gw != p:
        raise ValueError(f"patch grid {grid} does not match {p} tokens")
    if mode == "select":
        idx = torch.linspace(0, p - 1, n_tokens, device=tokens.device).round().long()
        return tokens[:, idx]
    k = math.isqrt(n_tokens)
    if k * k == n_tokens and k <= min(gh, gw):
        x = tokens.transpose(1, 2).reshape(n, d, gh, gw)
        return F.adaptive_avg_pool2d(x, (k, k)).reshape(n, d, n_tokens).transpose(1, 2)
    return F.adaptive_avg_pool1d(tokens.transpose(1, 2), n_tokens).transpose(1, 2)
