"""Side-by-side replay video: the recorded camera frame (left) next to the simulated render (right)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

_BAR = 2  # white separator columns between the two views


def side_by_side(recorded: np.ndarray, simulated: np.ndarray, scale: int = 1) -> np.ndarray:
    """uint8 (H, W, 3) + (H', W', 3) -> (H*s, (W+W')*s + bar, 3); the shorter view is padded with black.

    scale: integer upscaling (nearest) so that tiny policy images are visible in a player.
    """
    if scale < 1:
        raise ValueError(f"side_by_side: scale must be >= 1, got {scale}")
    for name, im in (("recorded", recorded), ("simulated", simulated)):
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3:
            raise ValueError(f"side_by_side: {name} frame must be uint8 (H, W, 3), got {im.dtype} {im.shape}")
    h = max(recorded.shape[0], simulated.shape[0])

    def pad(im: np.ndarray) -> np.ndarray:
        return np.pad(im, ((0, h - im.shape[0]), (0, 0), (0, 0)))

    bar = np.full((h, _BAR, 3), 255, np.uint8)
    frame = np.concatenate([pad(recorded), bar, pad(simulated)], axis=1)
    if scale > 1:
        frame = frame.repeat(scale, axis=0).repeat(scale, axis=1)
    # H.264 in yuv420p needs even sides.
    return np.pad(frame, ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0)))


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float) -> Path:
    """Write uint8 (H, W, 3) frames as an mp4 (imageio's bundled ffmpeg) and return the path."""
    import imageio.v2 as imageio

    if not frames:
        raise ValueError(f"{path}: no frames to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, list(frames), fps=fps, macro_block_size=1)
    return path
