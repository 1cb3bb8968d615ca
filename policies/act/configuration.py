"""Configuration of the ACT-style transformer head (action chunking with learned queries)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from policies.config import PolicyConfig


@dataclass(kw_only=True)
class TransformerConfig(PolicyConfig):
    """ACT-style head: encoder over pooled tokens + state, decoder with `horizon` learned queries.

    L1 loss on the chunk. The CVAE latent of ACT is optional (`use_vae`, `kl_weight`), off by default.
    """

    name: ClassVar[str] = "transformer"

    # Sized for a 2-core CPU (~2 M parameters); ACT itself uses 512 wide, 4 + 7 layers.
    d_model: int = 192
    n_heads: int = 6
    n_encoder_layers: int = 3
    n_decoder_layers: int = 2
    dim_feedforward: int = 768
    dropout: float = 0.1
    n_pool_tokens: int = 16
    use_vae: bool = False
    latent_dim: int = 32
    kl_weight: float = 10.0
    n_vae_encoder_layers: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        n = type(self).__name__
        if self.d_model % self.n_heads:
            raise ValueError(f"{n}.d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        for f in (
            "n_encoder_layers",
            "n_decoder_layers",
            "dim_feedforward",
            "latent_dim",
            "n_vae_encoder_layers",
        ):
            if getattr(self, f) < 1:
                raise ValueError(f"{n}.{f} must be >= 1, got {getattr(self, f)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{n}.dropout must be in [0, 1), got {self.dropout}")
        if self.kl_weight < 0:
            raise ValueError(f"{n}.kl_weight must be >= 0, got {self.kl_weight}")
