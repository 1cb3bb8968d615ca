"""Frozen vision-language encoders: (camera frames, instruction) -> tokens (B, N, D) for policy heads.

    from vla.encoders import EncoderConfig, build_encoder
    enc = build_encoder(EncoderConfig(family="siglip", model="outputs/encoder/sim_siglip"))
    out = enc.encode({"front": frames, "wrist": frames}, ["pick up the red cube"] * len(frames))
    out.tokens  # (B, N, D) float32;  out.mask (B, N) bool;  out.segments {"front", "wrist", "text"}

`vla.encoders.cache` precomputes and reads frame embeddings stored in a dataset's zarr store.
"""

from vla.encoders.base import FrozenEncoder
from vla.encoders.config import FAMILIES, EncoderConfig
from vla.encoders.factory import build_encoder
from vla.encoders.fingerprint import fingerprint_identity, same_encoder
from vla.encoders.loading import EncoderLoadError
from vla.encoders.output import EncoderOutput

__all__ = [
    "FAMILIES",
    "EncoderConfig",
    "EncoderLoadError",
    "EncoderOutput",
    "FrozenEncoder",
    "build_encoder",
    "fingerprint_identity",
    "same_encoder",
]
