"""Fast path for a frozen encoder: autocast + CUDA graph of the vision tower, pinned frame uploads.

Installed on the encoder instance (`FrozenEncoder` from `vla.encoders`), so every caller of
`encode_images` / `encode` (e.g. `VLAPolicy`) gets it:

    encoder.image_tokens(pixels (n, 3, S, S)) -> (n, tokens_per_image, D) float32
        runs under `torch.autocast(<dtype>, cache_enabled=False)` (the autocast weight cache must be
        off while a graph is captured) and, with backend "cuda_graph", from a captured graph
        (installed through the encoder's network seam, `FrozenEncoder.replace_networks`);
    encoder.encode_images(images {camera: uint8 (B, H, W, 3)}) uploads numpy frames through pinned
        buffers before the encoder's own preprocessing (which then runs on the device).

`FastEncoder.uninstall()` restores the originals. Text tokens are cached per instruction by the
encoder itself and are not on the per-step path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from vla.fastpath.config import AUTOCAST_DTYPES
from vla.fastpath.graphs import StaticGraph
from vla.fastpath.transfer import PinnedStager


class FastEncoder:
    """Accelerates `encoder` in place.

    Args:
        encoder: a `vla.encoders.FrozenEncoder` (its model already on its device).
        autocast: "none" | "bfloat16" | "float16" (CUDA only; resolved by `FastPathConfig.resolve`).
        backend: "eager" | "cuda_graph" | "static_buffers".
        pinned: stage numpy frames through pinned host buffers (CUDA only).
    """

    def __init__(
        self,
        encoder: Any,
        autocast: str = "none",
        backend: str = "eager",
        pinned: bool = False,
        graph_warmup_iters: int = 3,
    ) -> None:
        self.encoder = encoder
        self.device = torch.device(encoder.device)
        self.autocast = autocast
        self.backend = backend
        self.graph: StaticGraph | None = None
        self._installed: list[str] = []  # replaced networks of the encoder
        self._patched: list[str] = []  # instance attributes set on the encoder
        if autocast != "none" and self.device.type != "cuda":
            raise ValueError(
                f"FastEncoder: autocast={autocast!r} is for CUDA; the encoder is on {self.device}"
            )
        if backend == "cuda_graph" and self.device.type != "cuda":
            raise ValueError(f"FastEncoder: backend='cuda_graph' needs CUDA; the encoder is on {self.device}")
        context = self._autocast_context() if autocast != "none" else None
        orig_tokens = encoder.networks()["image_tokens"]
        if backend in ("cuda_graph", "static_buffers"):
            self.graph = StaticGraph(
                orig_tokens, backend, graph_warmup_iters, context, name="encoder.image_tokens"
            )
            self._replace("image_tokens", self.graph)
        elif context is not None:

            def tokens(pixels: torch.Tensor) -> torch.Tensor:
                with context():
                    return orig_tokens(pixels)

            self._replace("image_tokens", tokens)
        self.stager = PinnedStager(self.device, pinned) if pinned and self.device.type == "cuda" else None
        if self.stager is not None:
            orig_images = encoder.encode_images
            stager = self.stager

            def encode_images(images: Any) -> Any:
                return orig_images({k: stager.stage(f"image_{k}", v) for k, v in images.items()})

            self._install("encode_images", encode_images)

    def _autocast_context(self) -> Callable[[], Any]:
        dtype = AUTOCAST_DTYPES[self.autocast]
        dev = self.device.type
        return lambda: torch.autocast(dev, dtype=dtype, cache_enabled=False)

    def _replace(self, network: str, fn: Any) -> None:
        self.encoder.replace_networks({network: fn})
        self._installed.append(network)

    def _install(self, attr: str, fn: Any) -> None:
        self._patched.append(attr)
        self.encoder.__dict__[attr] = fn

    def fallbacks(self) -> list[str]:
        return list(self.graph.stats.fallbacks) if self.graph is not None else []

    def uninstall(self) -> None:
        if self._installed:
            self.encoder.restore_networks(self._installed)
        for attr in self._patched:
            self.encoder.__dict__.pop(attr, None)
        self._installed, self._patched = [], []
        self.graph = None
