"""Image preprocessing shared by the frozen encoders and encoder pretraining (one transform, two users)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ImagePreprocessing:
    """Resize to a square `size` with `interpolation`, rescale to [0, 1], normalize by mean/std."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str  # torch.nn.functional.interpolate mode
    rescale: float = 1.0 / 255.0


def to_pixels(
    frames: np.ndarray | torch.Tensor,
    pre: ImagePreprocessing,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    name: str = "images",
) -> torch.Tensor:
    """uint8 (n, H, W, 3) frames -> normalized (n, 3, size, size) `dtype` pixels on `device`."""
    x = torch.as_tensor(frames)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
        raise ValueError(f"{name}: expected uint8 (B, H, W, 3) frames, got {x.dtype} {tuple(x.shape)}")
    x = x.to(device).permute(0, 3, 1, 2).float()
    s = pre.size
    if tuple(x.shape[-2:]) != (s, s):
        smooth = pre.interpolation in ("bilinear", "bicubic")
        # antialias: downsampling a 224 px camera frame without it aliases fine texture.
        x = F.interpolate(
            x, size=(s, s), mode=pre.interpolation, antialias=smooth, align_corners=False if smooth else None
        )
    mean = torch.tensor(pre.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(pre.std, device=x.device).view(1, 3, 1, 1)
    return ((x * pre.rescale - mean) / std).to(dtype)
