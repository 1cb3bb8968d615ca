"""1D temporal U-Net with FiLM conditioning, as in Diffusion Policy (Chi et al., RSS 2023).

The noisy action chunk is a 1D signal over time with Da channels. Every residual block is
conditioned by FiLM (per-channel scale and bias) on [timestep embedding, global condition].
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from policies.layers import SinusoidalPosEmb


class Conv1dBlock(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length preserving."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, n_groups: int) -> None:
        super().__init__(
            nn.Conv1d(c_in, c_out, kernel_size, padding=kernel_size // 2),
            nn.GroupNorm(n_groups, c_out),
            nn.Mish(),
        )


class ConditionalResidualBlock1D(nn.Module):
    """Two conv blocks; FiLM from the condition between them; 1x1 conv on the skip if widths differ."""

    def __init__(self, c_in: int, c_out: int, cond_dim: int, kernel_size: int, n_groups: int) -> None:
        super().__init__()
        self.block1 = Conv1dBlock(c_in, c_out, kernel_size, n_groups)
        self.block2 = Conv1dBlock(c_out, c_out, kernel_size, n_groups)
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T), cond (B, cond_dim) -> (B, C_out, T)."""
        h = self.block1(x)
        scale, bias = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        h = self.block2(scale * h + bias)
        return h + self.skip(x)


class ConditionalUnet1D(nn.Module):
    """Denoiser eps/x0 = f(x_t, t, global_cond) over action chunks (B, T, Da).

    Downsamples by 2 at every level but the last, so T must be divisible by 2 ** (levels - 1).
    """

    def __init__(
        self,
        action_dim: int,
        global_cond_dim: int,
        step_embed_dim: int,
        down_dims: tuple[int, ...],
        kernel_size: int,
        n_groups: int,
    ) -> None:
        super().__init__()
        self.step_encoder = nn.Sequential(
            SinusoidalPosEmb(step_embed_dim),
            nn.Linear(step_embed_dim, 4 * step_embed_dim),
            nn.Mish(),
            nn.Linear(4 * step_embed_dim, step_embed_dim),
        )
        cond_dim = step_embed_dim + global_cond_dim
        dims = [action_dim, *down_dims]
        in_out = list(itertools.pairwise(dims))

        def res(a: int, b: int) -> ConditionalResidualBlock1D:
            return ConditionalResidualBlock1D(a, b, cond_dim, kernel_size, n_groups)

        self.down = nn.ModuleList()
        for i, (a, b) in enumerate(in_out):
            last = i == len(in_out) - 1
            self.down.append(
                nn.ModuleList([res(a, b), res(b, b), nn.Identity() if last else nn.Conv1d(b, b, 3, 2, 1)])
            )
        mid = dims[-1]
        self.mid = nn.ModuleList([res(mid, mid), res(mid, mid)])
        self.up = nn.ModuleList()
        for i, (a, b) in enumerate(reversed(in_out[1:])):
            last = i == len(in_out) - 1
            self.up.append(
                nn.ModuleList(
                    [res(2 * b, a), res(a, a), nn.Identity() if last else nn.ConvTranspose1d(a, a, 4, 2, 1)]
                )
            )
        start = down_dims[0]
        self.final = nn.Sequential(
            Conv1dBlock(start, start, kernel_size, n_groups), nn.Conv1d(start, action_dim, 1)
        )

    def forward(
        self, sample: torch.Tensor, timestep: torch.Tensor, global_cond: torch.Tensor
    ) -> torch.Tensor:
        """sample (B, T, Da), timestep (B,), global_cond (B, G) -> (B, T, Da)."""
        x = sample.transpose(1, 2)
        cond = torch.cat([self.step_encoder(timestep), global_cond], dim=-1)
        skips = []
        for r1, r2, down in self.down:
            x = r2(r1(x, cond), cond)
            skips.append(x)
            x = down(x)
        for r in self.mid:
            x = r(x, cond)
        for r1, r2, up in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = up(r2(r1(x, cond), cond))
        return self.final(x).transpose(1, 2)
