"""ACT-style transformer head (Zhao et al., RSS 2023) over encoder tokens instead of CNN features.

Encoder input: [latent token (if CVAE)] + [state token] + pooled observation tokens.
Decoder: `horizon` learned queries cross-attend to the encoder output; a linear layer reads actions.
With `use_vae`, a small transformer encodes (state, action chunk) into a Gaussian latent during
training (loss = L1 + kl_weight * KL); at inference the latent is the prior mean (zeros).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from policies.act.configuration import TransformerConfig
from policies.base import Policy, paste_prefix
from policies.layers import TokenPool


def _encoder(c: TransformerConfig, n_layers: int) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(
        c.d_model,
        c.n_heads,
        c.dim_feedforward,
        c.dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(c.d_model), enable_nested_tensor=False)


class TransformerPolicy(Policy):
    """Predicts the whole chunk (B, horizon, action_dim) in one forward pass."""

    name = "transformer"
    network_names = ("forward_chunk",)

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__(config)
        c = config
        d = c.d_model
        self.pool = TokenPool.from_config(c, d)
        self.build_aux_heads(self.pool.out_tokens(c.n_tokens), d)
        # Learned positions only where the token count is fixed (attention pooling); otherwise
        # the encoder tokens carry their own positional information.
        self.token_pos = (
            nn.Parameter(torch.randn(1, c.n_pool_tokens, d) * 0.02) if c.token_pool == "attention" else None
        )
        self.token_type = nn.Parameter(torch.zeros(1, 1, d))
        self.state_proj = nn.Linear(c.n_obs_steps * c.state_dim, d)
        self.state_type = nn.Parameter(torch.randn(1, 1, d) * 0.02)
        self.encoder = _encoder(c, c.n_encoder_layers)
        dec_layer = nn.TransformerDecoderLayer(
            d, c.n_heads, c.dim_feedforward, c.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.decoder = nn.TransformerDecoder(dec_layer, c.n_decoder_layers, norm=nn.LayerNorm(d))
        self.queries = nn.Parameter(torch.randn(1, c.horizon, d) * 0.02)
        self.action_head = nn.Linear(d, c.action_dim)
        if c.use_vae:
            self.latent_proj = nn.Linear(c.latent_dim, d)
            self.latent_type = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.vae_cls = nn.Parameter(torch.randn(1, 1, d) * 0.02)
            self.vae_state = nn.Linear(c.n_obs_steps * c.state_dim, d)
            self.vae_action = nn.Linear(c.action_dim, d)
            self.vae_pos = nn.Parameter(torch.randn(1, c.horizon + 2, d) * 0.02)
            self.vae_encoder = _encoder(c, c.n_vae_encoder_layers)
            self.vae_out = nn.Linear(d, 2 * c.latent_dim)

    def forward_chunk(self, obs: dict[str, torch.Tensor], latent: torch.Tensor | None) -> torch.Tensor:
        """obs -> chunk (B, horizon, action_dim); latent (B, latent_dim) when use_vae.
        (The network of `predict_chunk`, see `Policy.networks`: the GPU fast path captures it whole.)"""
        tokens, mask = self.pool(obs["tokens"], obs["token_mask"], obs.get("text_mask"))
        return self._decode(tokens, mask, obs, latent)

    def _decode(
        self,
        tokens: torch.Tensor,
        mask: torch.Tensor,
        obs: dict[str, torch.Tensor],
        latent: torch.Tensor | None,
    ) -> torch.Tensor:
        """Pooled tokens (B, K, d_model) + mask (B, K) + state -> chunk (B, horizon, action_dim)."""
        tokens = tokens + self.token_type
        if self.token_pos is not None:
            tokens = tokens + self.token_pos
        b = tokens.shape[0]
        parts = [self.state_proj(obs["state"].flatten(1)).unsqueeze(1) + self.state_type]
        if latent is not None:
            parts.insert(0, self.latent_proj(latent).unsqueeze(1) + self.latent_type)
        prefix_mask = torch.ones(b, len(parts), dtype=torch.bool, device=tokens.device)
        src = torch.cat([*parts, tokens], dim=1)
        src_mask = torch.cat([prefix_mask, mask], dim=1)
        memory = self.encoder(src, src_key_padding_mask=~src_mask)
        h = self.decoder(self.queries.expand(b, -1, -1), memory, memory_key_padding_mask=~src_mask)
        return self.action_head(h)

    def _encode_latent(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """CVAE posterior q(z | state, action chunk) -> mu, logvar (B, latent_dim)."""
        b = batch["state"].shape[0]
        seq = torch.cat(
            [
                self.vae_cls.expand(b, -1, -1),
                self.vae_state(batch["state"].flatten(1)).unsqueeze(1),
                self.vae_action(batch["action"]),
            ],
            dim=1,
        )
        h = self.vae_encoder(seq + self.vae_pos)
        mu, logvar = self.vae_out(h[:, 0]).chunk(2, dim=-1)
        return mu, logvar

    def loss_noise(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """State noise (base) and, with the CVAE, the latent's reparameterization noise (B, latent_dim).
        Dropout is not among them: with dropout > 0, split batches differ from the whole batch."""
        out = super().loss_noise(batch_size, generator)
        if self.config.use_vae:
            out["noise_latent"] = torch.randn(batch_size, self.config.latent_dim, generator=generator)
        return out

    def compute_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """L1 between predicted and demonstrated chunk (+ kl_weight * KL with the CVAE)."""
        self.check_inputs(batch, need_action=True)
        batch = self.augment_state(batch)
        latent = None
        kl = None
        if self.config.use_vae:
            mu, logvar = self._encode_latent(batch)
            eps = batch.get("noise_latent")
            eps = torch.randn_like(mu) if eps is None else eps.to(mu)
            latent = mu + eps * (0.5 * logvar).exp()
            kl = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp())).sum(-1).mean()
        # Pool once: the chunk and the auxiliary future-state loss read the same pooled tokens.
        pooled, mask = self.pool(batch["tokens"], batch["token_mask"], batch.get("text_mask"))
        pred = self._decode(pooled, mask, batch, latent)
        l1 = F.l1_loss(pred, batch["action"])
        loss = l1 if kl is None else l1 + self.config.kl_weight * kl
        if self.aux_future is not None:
            aux = self.aux_future_loss(batch, pooled)
            loss = loss + self.config.aux_future_weight * aux
        ground = self.aux_ground_loss(batch, self.pool)
        if ground is not None:
            loss = loss + self.config.aux_ground_weight * ground
        metrics = {"loss": float(loss.detach()), "l1": float(l1.detach())}
        if ground is not None:
            metrics["aux_ground"] = float(ground.detach())
        if self.aux_future is not None:
            metrics["aux_future"] = float(aux.detach())
        if kl is not None:
            metrics["kl"] = float(kl.detach())
        return loss, metrics

    @torch.no_grad()
    def predict_chunk(
        self,
        obs: dict[str, torch.Tensor],
        prefix: torch.Tensor | None = None,
        prefix_mask: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One forward pass with the prior-mean latent. A regression head cannot be conditioned on a
        committed prefix, so a given prefix is written over the chunk's first steps (the executor
        runs those actions anyway); `generator` is unused (deterministic)."""
        self.check_inputs(obs, need_action=False)
        b = obs["state"].shape[0]
        mask = self.check_prefix(prefix, prefix_mask, b) if prefix is not None else None
        latent = None
        if self.config.use_vae:
            latent = obs["state"].new_zeros(b, self.config.latent_dim)
        chunk = self.forward_chunk(obs, latent)
        return paste_prefix(chunk, prefix, mask) if prefix is not None else chunk
