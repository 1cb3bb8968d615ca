"""Host -> device transfers through reused page-locked (pinned) buffers.

Pageable memory is copied by the driver through a staging buffer, synchronously; from pinned memory
the copy is a DMA that can overlap with work already queued (`non_blocking=True`). Buffers are kept
per (name, shape, dtype) and reused; an event recorded after each copy is waited on before a buffer
is overwritten, so an in-flight copy never reads a half-written frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


class PinnedStager:
    """`stage(name, array) -> tensor on device`. On a CPU device it is `torch.from_numpy` (no copy)."""

    def __init__(self, device: str | torch.device, pinned: bool = True) -> None:
        self.device = torch.device(device)
        self.pinned = bool(pinned) and self.device.type == "cuda"
        self._buffers: dict[tuple[str, tuple[int, ...], Any], tuple[torch.Tensor, Any]] = {}

    def stage(self, name: str, array: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(…) array -> the same values as a tensor on `device` (uint8 frames stay uint8)."""
        src = torch.as_tensor(np.ascontiguousarray(array)) if isinstance(array, np.ndarray) else array
        if self.device.type != "cuda":
            return src.to(self.device)
        if not self.pinned or src.device.type == "cuda":
            return src.to(self.device, non_blocking=False)
        key = (name, tuple(src.shape), src.dtype)
        if key not in self._buffers:
            buf = torch.empty(src.shape, dtype=src.dtype, pin_memory=True)
            self._buffers[key] = (buf, None)
        buf, event = self._buffers[key]
        if event is not None:
            event.synchronize()  # the previous copy out of this buffer has finished
        buf.copy_(src)
        out = buf.to(self.device, non_blocking=True)
        ev = torch.cuda.Event()
        ev.record(torch.cuda.current_stream(self.device))
        self._buffers[key] = (buf, ev)
        return out

    def stage_all(self, arrays: dict[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.stage(k, v) for k, v in arrays.items()}
