"""Building blocks shared by the heads: the token front end and a timestep embedding."""

from __future__ import annotations

import math

import torch
from torch import nn


class TokenPool(nn.Module):
    """Reduce many encoder tokens (B, N, D) to a few model-width tokens (B, K, d_model).

    mode "attention": K learned queries attend over the valid tokens (the key/value projection
    from D to d_model happens inside the attention), followed by a residual MLP.
    text_cond (attention only): each query is the learned query plus a projection of the masked
    mean of the instruction's text tokens, so the instruction chooses which image patches survive
    pooling (fixed queries pool the same patches whatever the instruction says, and the colour word
    then barely moves the action).
    mode "mean": masked mean over tokens, then a linear projection (K = 1).
    mode "none": every token is projected to d_model (K = N); the mask is passed through.
    """

    def __init__(
        self,
        mode: str,
        token_dim: int,
        d_model: int,
        n_queries: int,
        n_heads: int,
        text_cond: bool = False,
    ) -> None:
        super().__init__()
        self.mode = mode
        self.text_cond = text_cond and mode == "attention"
        if mode == "attention":
            self.queries = nn.Parameter(torch.randn(n_queries, d_model) * 0.02)
            self.attn = nn.MultiheadAttention(
                d_model, n_heads, kdim=token_dim, vdim=token_dim, batch_first=True
            )
            self.norm = nn.LayerNorm(d_model)
            self.mlp = nn.Sequential(
                nn.Linear(d_model, 2 * d_model), nn.GELU(), nn.Linear(2 * d_model, d_model)
            )
            if self.text_cond:
                # One projection per query: queries can look for different things given the text.
                self.text_norm = nn.LayerNorm(token_dim)
                self.text_proj = nn.Linear(token_dim, n_queries * d_model)
        elif mode in ("mean", "none"):
            self.proj = nn.Linear(token_dim, d_model)
        else:
            raise ValueError(f"unknown token pool mode {mode!r}")
        self.n_queries = n_queries

    def out_tokens(self, n_tokens: int) -> int:
        """Number of tokens this front end returns for an input of `n_tokens`."""
        return {"attention": self.n_queries, "mean": 1, "none": n_tokens}[self.mode]

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, D), mask (B, N) True=valid -> (B, K, d_model), out mask (B, K) True=valid.

        text_mask (B, N) bool, True = a valid text token (optional): used by text_cond pooling;
        without it (or with no text token in a sample) the queries are the learned ones alone.
        """
        b = tokens.shape[0]
        if self.mode == "attention":
            q = self.queries.unsqueeze(0).expand(b, -1, -1)
            if self.text_cond and text_mask is not None:
                if tuple(text_mask.shape) != tuple(mask.shape) or text_mask.dtype != torch.bool:
                    raise ValueError(
                        f"batch['text_mask'] must be bool {tuple(mask.shape)}, "
                        f"got {text_mask.dtype} {tuple(text_mask.shape)}"
                    )
                q = q + self._text_query(tokens, mask & text_mask)
            pooled, _ = self.attn(q, tokens, tokens, key_padding_mask=~mask, need_weights=False)
            pooled = pooled + self.mlp(self.norm(pooled))
            return pooled, torch.ones(b, pooled.shape[1], dtype=torch.bool, device=tokens.device)
        if self.mode == "mean":
            w = mask.to(tokens.dtype).unsqueeze(-1)
            mean = (tokens * w).sum(1) / w.sum(1).clamp_min(1.0)
            return self.proj(mean).unsqueeze(1), torch.ones(b, 1, dtype=torch.bool, device=tokens.device)
        return self.proj(tokens), mask

    def _text_query(self, tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """Query offsets (B, K, d_model) from the masked mean of the text tokens; zero without text."""
        w = text_mask.to(tokens.dtype).unsqueeze(-1)
        n = w.sum(1)
        mean = (tokens * w).sum(1) / n.clamp_min(1.0)
        off = self.text_proj(self.text_norm(mean)) * (n > 0).to(tokens.dtype)
        return off.view(tokens.shape[0], self.n_queries, -1)


class SinusoidalPosEmb(nn.Module):
    """Sinusoidal embedding of a (B,) float/int timestep -> (B, dim)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalPosEmb dim must be even, got {dim}")
        self.dim = dim

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.dim // 2
        freqs = torch.exp(
            -math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / (half - 1)
        )
        args = t.float()[:, None] * freqs[None]
        return torch.cat([args.sin(), args.cos()], dim=-1)
