"""`EncoderConfig`: which frozen vision-language model to load and how to turn its outputs into tokens."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DUAL_FAMILIES = ("siglip", "siglip2", "clip", "lit")
GENERATIVE_FAMILIES = ("paligemma", "smolvlm")
FAMILIES = DUAL_FAMILIES + GENERATIVE_FAMILIES
DTYPES = ("float32", "bfloat16", "float16")
REDUCTIONS = ("pool", "select")
PROJECTIONS = ("auto", "none", "heads")


@dataclass(frozen=True)
class EncoderConfig:
    """Typed settings of a frozen encoder (what `configs/encoder/*.yaml` holds).

    Attributes:
        family: model family; dual encoders `siglip`/`siglip2`/`clip`/`lit` give image patch tokens
            and text tokens from two towers (`lit`: a `VisionTextDualEncoderModel`, e.g. the sim
            vision tower aligned to the locked MiniLM by `vla.pretrain.lit`); generative `paligemma`/`smolvlm` give hidden states of the
            image+text prefix from `layer`.
        model: a local directory written by `save_pretrained`, or a hub id found in the local cache.
        dtype: weights and compute dtype (`float32` on CPU; `bfloat16`/`float16` on GPU).
        device: `cpu` or `cuda[:i]`.
        layer: generative families: index into `hidden_states` (0 = input embeddings, -1 = last layer).
        n_tokens: optional number of tokens per camera image after reduction (None keeps all patches).
        reduce: `pool` (adaptive average pooling over the patch grid) or `select` (a fixed, evenly
            spaced subset of patch tokens); only used when `n_tokens` is set.
        image_size: input resolution (square); None takes the checkpoint's own.
        max_text_len: instructions are padded/truncated to this many tokens (fixed N per encoder).
        project: dual encoders whose towers differ in width: `auto` uses the raw hidden states when
            widths match and the model's own projection heads otherwise; `heads` always projects;
            `none` never does (and fails when widths differ). No trainable parameters are added.
        text_cache_size: how many distinct instructions are kept in the embedding cache.
    """

    family: str = "siglip"
    model: str = "google/siglip-base-patch16-224"
    dtype: str = "float32"
    device: str = "cpu"
    layer: int = -1
    n_tokens: int | None = None
    reduce: str = "pool"
    image_size: int | None = None
    max_text_len: int = 32
    project: str = "auto"
    text_cache_size: int = 1024

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"EncoderConfig.family={self.family!r}: expected one of {FAMILIES}")
        if not isinstance(self.model, str) or not self.model:
            raise ValueError(f"EncoderConfig.model must be a local directory or a hub id, got {self.model!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"EncoderConfig.dtype={self.dtype!r}: expected one of {DTYPES}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"EncoderConfig.device={self.device!r}: expected 'cpu' or 'cuda[:i]'")
        if self.n_tokens is not None and self.n_tokens < 1:
            raise ValueError(f"EncoderConfig.n_tokens={self.n_tokens}: must be None or >= 1")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"EncoderConfig.reduce={self.reduce!r}: expected one of {REDUCTIONS}")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"EncoderConfig.image_size={self.image_size}: must be None or >= 8")
        if self.max_text_len < 2:
            raise ValueError(f"EncoderConfig.max_text_len={self.max_text_len}: must be >= 2")
        if self.project not in PROJECTIONS:
            raise ValueError(f"EncoderConfig.project={self.project!r}: expected one of {PROJECTIONS}")
        if self.text_cache_size < 0:
            raise ValueError(f"EncoderConfig.text_cache_size={self.text_cache_size}: must be >= 0")

    @property
    def is_generative(self) -> bool:
        return self.family in GENERATIVE_FAMILIES

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "encoder config") -> EncoderConfig:
        """Build from a plain mapping; unknown keys raise naming the source (no silent skip)."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown encoder field(s) {unknown}; known: {sorted(known)}")
        return cls(**d)
