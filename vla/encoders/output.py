"""`EncoderOutput`: token embeddings, their mask and which tokens came from which camera or the text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    """Tokens of a batch of observations.

    Attributes:
        tokens: (B, N, D) float32 embeddings.
        mask: (B, N) bool, True where a token is real (False: text padding).
        segments: name -> slice of the N axis; names are camera names (`front`, `wrist`, ...) and `text`.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    segments: dict[str, slice]

    def __post_init__(self) -> None:
        if self.tokens.ndim != 3:
            raise ValueError(f"EncoderOutput.tokens must be (B, N, D), got shape {tuple(self.tokens.shape)}")
        if self.mask.shape != self.tokens.shape[:2] or self.mask.dtype != torch.bool:
            raise ValueError(
                f"EncoderOutput.mask must be bool (B, N)={tuple(self.tokens.shape[:2])}, "
                f"got {self.mask.dtype} {tuple(self.mask.shape)}"
            )
        n = self.tokens.shape[1]
        for name, s in self.segments.items():
            if not (0 <= s.start <= s.stop <= n) or s.step not in (None, 1):
                raise ValueError(f"EncoderOutput.segments[{name!r}]={s} does not fit N={n}")

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @property
    def n_tokens(self) -> int:
        return self.tokens.shape[1]

    @property
    def dim(self) -> int:
        return self.tokens.shape[2]

    def segment(self, name: str) -> EncoderOutput:
        """The tokens of one segment only (segments renamed to start at 0)."""
        if name not in self.segments:
            raise KeyError(f"no segment {name!r}; have {sorted(self.segments)}")
        s = self.segments[name]
        return EncoderOutput(self.tokens[:, s], self.mask[:, s], {name: slice(0, s.stop - s.start)})

    def to(self, device: torch.device | str) -> EncoderOutput:
        return EncoderOutput(self.tokens.to(device), self.mask.to(device), dict(self.segments))

    def index(self, idx: torch.Tensor | slice | Sequence[int]) -> EncoderOutput:
        """Rows `idx` of the batch."""
        return EncoderOutput(self.tokens[idx], self.mask[idx], dict(self.segments))

    @staticmethod
    def concat(outputs: Sequence[EncoderOutput]) -> EncoderOutput:
        """Concatenate along the token axis (same B and D); segment names must be distinct."""
        if not outputs:
            raise ValueError("EncoderOutput.concat needs at least one output")
        b, d = outputs[0].batch_size, outputs[0].dim
        segments: dict[str, slice] = {}
        offset = 0
        for o in outputs:
            if o.batch_size != b or o.dim != d:
                raise ValueError(
                    f"EncoderOutput.concat: shapes differ, (B={o.batch_size}, D={o.dim}) vs (B={b}, D={d})"
                )
            for name, s in o.segments.items():
                if name in segments:
                    raise ValueError(f"EncoderOutput.concat: segment {name!r} appears twice")
                segments[name] = slice(s.start + offset, s.stop + offset)
            offset += o.n_tokens
        return EncoderOutput(
            torch.cat([o.tokens for o in outputs], dim=1),
            torch.cat([o.mask for o in outputs], dim=1),
            segments,
        )

    @staticmethod
    def cat_batch(outputs: Sequence[EncoderOutput]) -> EncoderOutput:
        """Concatenate along the batch axis (same segments)."""
        if not outputs:
            raise ValueError("EncoderOutput.cat_batch needs at least one output")
        seg = outputs[0].segments
        for o in outputs[1:]:
            if o.segments != seg:
                raise ValueError(f"EncoderOutput.cat_batch: segments differ, {o.segments} vs {seg}")
        return EncoderOutput(
            torch.cat([o.tokens for o in outputs]), torch.cat([o.mask for o in outputs]), dict(seg)
        )
