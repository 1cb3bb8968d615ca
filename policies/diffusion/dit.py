"""DiT-style transformer denoiser: action tokens with adaLN-Zero on the timestep, cross-attention
to the observation tokens (pooled encoder tokens + state tokens)."""

from __future__ import annotations

import torch
from torch import nn

from policies.layers import SinusoidalPosEmb


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class DiTBlock(nn.Module):
    """Self-attention and MLP modulated by the condition c (adaLN-Zero); plain cross-attention between."""

    def __init__(self, d_model: int, n_heads: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.self_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(d_model)
        self.cross_attn = nn.MultiheadAttention(d_model, n_heads, dropout=dropout, batch_first=True)
        self.norm3 = nn.LayerNorm(d_model, elementwise_affine=False)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
        )
        # Zero init: each block starts as the identity (the "Zero" of adaLN-Zero).
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 6 * d_model))
        nn.init.zeros_(self.ada[1].weight)
        nn.init.zeros_(self.ada[1].bias)

    def forward(
        self, x: torch.Tensor, c: torch.Tensor, ctx: torch.Tensor, ctx_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (B, T, d), c (B, d), ctx (B, M, d), ctx_mask (B, M) True=valid -> (B, T, d)."""
        sh1, sc1, g1, sh3, sc3, g3 = self.ada(c).chunk(6, dim=-1)
        h = _modulate(self.norm1(x), sh1, sc1)
        x = x + g1.unsqueeze(1) * self.self_attn(h, h, h, need_weights=False)[0]
        h = self.norm2(x)
        x = x + self.cross_attn(h, ctx, ctx, key_padding_mask=~ctx_mask, need_weights=False)[0]
        h = _modulate(self.norm3(x), sh3, sc3)
        return x + g3.unsqueeze(1) * self.mlp(h)


class TransformerDenoiser(nn.Module):
    """Denoiser over action chunks (B, T, Da) conditioned on timestep + state (adaLN) and context tokens."""

    def __init__(
        self,
        action_dim: int,
        horizon: int,
        state_dim: int,
        n_obs_steps: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        dim_feedforward: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.in_proj = nn.Linear(action_dim, d_model)
        self.pos = nn.Parameter(torch.randn(1, horizon, d_model) * 0.02)
        self.time = nn.Sequential(
            SinusoidalPosEmb(d_model),
            nn.Linear(d_model, 4 * d_model),
            nn.SiLU(),
            nn.Linear(4 * d_model, d_model),
        )
        self.state_global = nn.Linear(n_obs_steps * state_dim, d_model)
        self.state_tokens = nn.Linear(state_dim, d_model)
        self.state_pos = nn.Parameter(torch.randn(1, n_obs_steps, d_model) * 0.02)
        self.blocks = nn.ModuleList(
            DiTBlock(d_model, n_heads, dim_feedforward, dropout) for _ in range(n_layers)
        )
        self.final_norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d_model, 2 * d_model))
        self.out = nn.Linear(d_model, action_dim)
        for lin in (self.final_ada[1], self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor,
        tokens: torch.Tensor,
        token_mask: torch.Tensor,
        state: torch.Tensor,
    ) -> torch.Tensor:
        """sample (B, T, Da), timestep (B,), tokens (B, K, d) + mask (B, K), state (B, To, Ds) -> (B, T, Da)."""
        c = self.time(timestep) + self.state_global(state.flatten(1))
        ctx = torch.cat([tokens, self.state_tokens(state) + self.state_pos], dim=1)
        state_mask = torch.ones(state.shape[:2], dtype=torch.bool, device=state.device)
        ctx_mask = torch.cat([token_mask, state_mask], dim=1)
        x = self.in_proj(sample) + self.pos
        for block in self.blocks:
            x = block(x, c, ctx, ctx_mask)
        shift, scale = self.final_ada(c).chunk(2, dim=-1)
        return self.out(_modulate(self.final_norm(x), shift, scale))
