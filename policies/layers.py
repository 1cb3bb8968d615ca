"""Building blocks shared by the heads: the token front end and a timestep embedding."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from policies.config import PolicyConfig


class TokenPool(nn.Module):
    """Reduce many encoder tokens (B, N, D) to a few model-width tokens (B, K, d_model).

    mode "attention": K learned queries attend over the valid tokens (the key/value projection
    from D to d_model happens inside the attention), followed by a residual MLP.
    text_cond (attention only): each query is the learned query plus a projection of the masked
    mean of the instruction's text tokens, so the instruction chooses which image patches survive
    pooling (fixed queries pool the same patches whatever the instruction says, and the colour word
    then barely moves the action).
    mode "spatial_softmax": `SpatialKeypoints` (K = n_queries keypoints per camera, plus a text token);
    needs the camera count and tokens per camera, and reads the text through `text_mask`.
    mode "mean": masked mean over tokens, then a linear projection (K = 1).
    mode "none": every token is projected to d_model (K = N); the mask is passed through.
    """

    @classmethod
    def from_config(cls, c: PolicyConfig, d_model: int) -> TokenPool:
        """The pool a head builds from its config's front-end fields (token_pool, n_pool_tokens ...)."""
        return cls(
            c.token_pool,
            c.token_dim,
            d_model,
            c.n_pool_tokens,
            c.n_heads,
            text_cond=c.pool_text_cond,
            n_cameras=c.n_cameras,
            tokens_per_camera=c.tokens_per_camera,
            text_pool=c.text_pool,
            n_text_queries=c.n_text_queries,
            keypoint_text_queries=c.keypoint_text_queries,
        )

    def __init__(
        self,
        mode: str,
        token_dim: int,
        d_model: int,
        n_queries: int,
        n_heads: int,
        text_cond: bool = False,
        n_cameras: int = 1,
        tokens_per_camera: int = 0,
        text_pool: str = "mean",
        n_text_queries: int = 4,
        keypoint_text_queries: bool = False,
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
        elif mode == "spatial_softmax":
            text = TextAttentionPool(token_dim, n_text_queries) if text_pool == "attention" else None
            self.spatial = SpatialKeypoints(
                token_dim,
                d_model,
                n_queries,
                n_cameras,
                tokens_per_camera,
                text_pool=text,
                text_queries=keypoint_text_queries,
            )
        elif mode in ("mean", "none"):
            self.proj = nn.Linear(token_dim, d_model)
        else:
            raise ValueError(f"unknown token pool mode {mode!r}")
        self.n_queries = n_queries

    def out_tokens(self, n_tokens: int) -> int:
        """Number of tokens this front end returns for an input of `n_tokens`."""
        if self.mode == "spatial_softmax":
            return self.spatial.n_out
        return {"attention": self.n_queries, "mean": 1, "none": n_tokens}[self.mode]

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, D), mask (B, N) True=valid -> (B, K, d_model), out mask (B, K) True=valid.

        text_mask (B, N) bool, True = a valid text token (optional): used by text_cond pooling;
        without it (or with no text token in a sample) the queries are the learned ones alone.
        """
        b = tokens.shape[0]
        if self.mode == "spatial_softmax":
            return self.spatial(tokens, mask, text_mask)
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


class TextAttentionPool(nn.Module):
    """The instruction's text tokens (B, N, D) -> one vector (B, D) by learned-query attention.

    Q learned queries each take a softmax over the valid text tokens (logits from the normalized
    token states), pool a D/Q-wide projection of them, and the Q pools are concatenated and mapped
    back to D. Unlike a masked mean, one query can follow the first colour word and another the
    second, so the roles in "put the red cube on the blue pad" survive pooling. A sample with no
    valid text token gets zeros (the caller gates on it).
    """

    def __init__(self, token_dim: int, n_queries: int = 4) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(token_dim)
        self.logits = nn.Linear(token_dim, n_queries)
        width = -(-token_dim // n_queries)  # ceil: Q pools of this width, then back to D
        self.value = nn.Linear(token_dim, width)
        self.out = nn.Linear(n_queries * width, token_dim)

    def forward(self, tokens: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D), text_mask (B, N) bool True = valid text token -> (B, D)."""
        x = self.norm(tokens)
        logits = self.logits(x).masked_fill(~text_mask.unsqueeze(-1), float("-inf"))  # (B, N, Q)
        # A sample without text would softmax over all -inf (NaN): give it uniform weights, then zero.
        has = text_mask.any(1)
        attn = torch.where(has[:, None, None], logits, torch.zeros_like(logits)).softmax(1)
        pooled = torch.einsum("bnq,bnw->bqw", attn, self.value(x)).flatten(1)
        return self.out(pooled) * has.unsqueeze(-1).to(tokens.dtype)


class SpatialKeypoints(nn.Module):
    """Instruction-conditioned spatial softmax over each camera's patch grid (B, N, D) -> (B, C*K+1, d_model).

    Diffusion Policy reads images through a spatial softmax: K heatmaps over the feature grid, each
    reduced to its expected (x, y). Here the heatmaps are computed from the frozen encoder's patch
    tokens after a FiLM by the instruction (masked mean of its text tokens), so "the red cube" and
    "the blue cube" light up different patches. Each keypoint becomes one token from its expected
    (x, y) in [-1, 1] and the heatmap-weighted patch features; one more token carries the instruction.
    Learned query pooling, by contrast, pools the same patches whatever the text says: on the
    pick_cube grounding probe (`benchmarks/probe_grounding.py`, 4000 scenes) it identified the named
    cube in 44% of held-out scenes against 99.8% for this front end (ARCHITECTURE.md, "Token front ends").

    Token layout (as `vla.encoders` writes it): n_cameras * tokens_per_camera image tokens, camera by
    camera, each camera a row-major square grid, then any text tokens (marked by `text_mask`).

    text_pool: a `TextAttentionPool` reads the text tokens in place of their masked mean
    (`PolicyConfig.text_pool="attention"`); None keeps the mean.
    text_queries: each keypoint's heatmap query also gets its own linear function of the text
    (`PolicyConfig.keypoint_text_queries`). Why: the FiLM is one modulation per camera, shared by
    every keypoint, so when the instruction names two colours (place_cube: the cube's and the pad's)
    it lifts both objects' patches in every heatmap, and a keypoint's expected (x, y) lands between
    them (place_cube's grasps closed a median 1.75 cm toward the pad). A per-keypoint query lets
    one keypoint look for the first colour and another for the second. Starts at zero: the module
    then computes exactly what it computes without it.
    """

    def __init__(
        self,
        token_dim: int,
        d_model: int,
        n_keypoints: int,
        n_cameras: int,
        tokens_per_camera: int,
        hidden: int = 128,
        value_dim: int = 16,
        text_pool: TextAttentionPool | None = None,
        text_queries: bool = False,
    ) -> None:
        super().__init__()
        self.text_pool = text_pool
        g = math.isqrt(tokens_per_camera)
        if g * g != tokens_per_camera:
            raise ValueError(
                f"token_pool='spatial_softmax' needs a square patch grid per camera, got "
                f"tokens_per_camera={tokens_per_camera}"
            )
        self.c, self.p, self.k = n_cameras, tokens_per_camera, n_keypoints
        self.inp = nn.Linear(token_dim, hidden)
        self.pos = nn.Parameter(torch.randn(n_cameras, tokens_per_camera, hidden) * 0.02)
        self.text_norm = nn.LayerNorm(token_dim)
        self.film = nn.Linear(token_dim, 2 * n_cameras * hidden)
        # FiLM starts as identity so an untrained head sees plain patch features.
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)
        self.logits = nn.Parameter(torch.randn(n_cameras, hidden, n_keypoints) * hidden**-0.5)
        self.text_queries: nn.Linear | None = None
        if text_queries:
            self.text_queries = nn.Linear(token_dim, n_cameras * hidden * n_keypoints)
            nn.init.zeros_(self.text_queries.weight)
            nn.init.zeros_(self.text_queries.bias)
        self.value = nn.Linear(hidden, value_dim)
        self.out = nn.Linear(2 + value_dim, d_model)
        self.kp_emb = nn.Parameter(torch.randn(n_cameras * n_keypoints, d_model) * 0.02)
        self.text_out = nn.Linear(token_dim, d_model)
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, g), torch.linspace(-1, 1, g), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)

    @property
    def n_out(self) -> int:
        return self.c * self.k + 1

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor, text_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (B, N, D), mask (B, N), text_mask (B, N) or None -> (B, C*K+1, d_model), all-valid mask."""
        b, n, _ = tokens.shape
        n_img = self.c * self.p
        if n < n_img:
            raise ValueError(
                f"token_pool='spatial_softmax': batch['tokens'] has {n} tokens, fewer than n_cameras * "
                f"tokens_per_camera = {self.c} * {self.p}"
            )
        if text_mask is None:
            text_mask = torch.zeros_like(mask)
            text_mask[:, n_img:] = True
        elif tuple(text_mask.shape) != (b, n) or text_mask.dtype != torch.bool:
            raise ValueError(
                f"batch['text_mask'] must be bool {(b, n)}, got {text_mask.dtype} {tuple(text_mask.shape)}"
            )
        text_mask = text_mask & mask
        w = text_mask.to(tokens.dtype).unsqueeze(-1)
        n_text = w.sum(1)
        if self.text_pool is None:
            text = (tokens * w).sum(1) / n_text.clamp_min(1.0)  # (B, D); zero without text
        else:
            # Only the tokens after the images can be text (the layout above): reading those alone
            # keeps the pool's cost at the text length, not 144+ tokens (11% of a CPU training step).
            text = self.text_pool(tokens[:, n_img:], text_mask[:, n_img:])
        has_text = (n_text > 0).to(tokens.dtype)
        normed = self.text_norm(text)
        gamma, beta = (self.film(normed) * has_text).view(b, 2, self.c, 1, -1).unbind(1)
        h = self.inp(tokens[:, :n_img]).view(b, self.c, self.p, -1) + self.pos
        h = nn.functional.gelu(h * (1 + gamma) + beta)  # (B, C, P, hidden)
        if self.text_queries is None:
            logits = torch.einsum("bcph,chk->bckp", h, self.logits)
        else:
            dq = (self.text_queries(normed) * has_text).view(b, self.c, -1, self.k)
            logits = torch.einsum("bcph,bchk->bckp", h, self.logits + dq)
        img_mask = mask[:, :n_img].view(b, self.c, 1, self.p)
        if not torch.compiler.is_compiling() and not bool(img_mask.any(-1).all()):
            raise ValueError(
                "token_pool='spatial_softmax': a camera has no valid image token in batch['token_mask']"
            )
        attn = logits.masked_fill(~img_mask, float("-inf")).softmax(-1)  # (B, C, K, P)
        xy = attn @ self.grid  # (B, C, K, 2) expected patch position
        val = attn @ self.value(h)  # (B, C, K, value_dim)
        kp = self.out(torch.cat([xy, val], -1)).reshape(b, self.c * self.k, -1) + self.kp_emb
        txt = (self.text_out(text) * has_text).unsqueeze(1)
        out = torch.cat([kp, txt], 1)
        return out, torch.ones(b, out.shape[1], dtype=torch.bool, device=tokens.device)


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
