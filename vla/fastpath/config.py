"""Typed settings of the GPU fast path and what they resolve to on a given device."""

from __future__ import annotations

from dataclasses import dataclass

import torch

AUTOCASTS = ("none", "bfloat16", "float16")
HEAD_BACKENDS = ("eager", "cuda_graph", "compile", "static_buffers")
ENCODER_BACKENDS = ("eager", "cuda_graph", "static_buffers")
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class FastPathConfig:
    """What the fast path does on CUDA. On a CPU every option degrades to plain eager execution.

    encoder_autocast: run the encoder's vision tower under `torch.autocast(<dtype>)` (CUDA only).
    encoder_backend: "cuda_graph" captures the vision tower forward (one graph per input shape).
    head_backend: how the head's per-call network runs:
        "cuda_graph": one denoising step (diffusion; the diffusers scheduler step stays eager) or the
            whole forward (transformer head) replayed from a captured CUDA graph with static buffers;
        "compile": `torch.compile(mode=compile_mode, backend=compile_backend)` of the same functions;
        "static_buffers": the cuda_graph code path without capture (inputs copied into static buffers,
            outputs copied out): runs anywhere, so CPU tests check the buffer handling;
        "eager": untouched.
    compile_on_cpu: allow head_backend="compile" on a CPU (otherwise it resolves to eager there).
    pinned_memory: camera frames go host -> device through reused page-locked buffers (non_blocking).
    warmup_iters: full observation-to-action calls made by `warmup` (graphs are captured on the first).
    graph_warmup_iters: eager iterations on a side stream before each capture (cuDNN/cuBLAS set-up).
    """

    encoder_autocast: str = "bfloat16"
    encoder_backend: str = "cuda_graph"
    head_backend: str = "cuda_graph"
    compile_mode: str = "reduce-overhead"
    compile_backend: str = "inductor"
    compile_on_cpu: bool = False
    pinned_memory: bool = True
    warmup_iters: int = 3
    graph_warmup_iters: int = 3

    def __post_init__(self) -> None:
        n = type(self).__name__
        if self.encoder_autocast not in AUTOCASTS:
            raise ValueError(
                f"{n}.encoder_autocast must be one of {AUTOCASTS}, got {self.encoder_autocast!r}"
            )
        if self.encoder_backend not in ENCODER_BACKENDS:
            raise ValueError(
                f"{n}.encoder_backend must be one of {ENCODER_BACKENDS}, got {self.encoder_backend!r}"
            )
        if self.head_backend not in HEAD_BACKENDS:
            raise ValueError(f"{n}.head_backend must be one of {HEAD_BACKENDS}, got {self.head_backend!r}")
        if self.warmup_iters < 0 or self.graph_warmup_iters < 0:
            raise ValueError(f"{n}.warmup_iters and graph_warmup_iters must be >= 0")

    @classmethod
    def eager(cls) -> FastPathConfig:
        """Everything off (the reference the fast path is compared with)."""
        return cls(
            encoder_autocast="none",
            encoder_backend="eager",
            head_backend="eager",
            pinned_memory=False,
            warmup_iters=0,
        )

    def resolve(self, device: str | torch.device) -> ResolvedFastPath:
        """What actually runs on `device`: CUDA-only features become no-ops elsewhere."""
        cuda = torch.device(device).type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise RuntimeError(
                f"FastPathConfig.resolve: device {device!r} requested but CUDA is not available"
            )
        head = self.head_backend
        if head == "cuda_graph" and not cuda:
            head = "eager"
        if head == "compile" and not cuda and not self.compile_on_cpu:
            head = "eager"
        enc = self.encoder_backend
        if enc == "cuda_graph" and not cuda:
            enc = "eager"
        return ResolvedFastPath(
            device=str(torch.device(device)),
            encoder_autocast=self.encoder_autocast if cuda else "none",
            encoder_backend=enc,
            head_backend=head,
            pinned_memory=self.pinned_memory and cuda,
        )


@dataclass
class ResolvedFastPath:
    """The features in effect on one device (reported by vla-bench beside its timings)."""

    device: str
    encoder_autocast: str
    encoder_backend: str
    head_backend: str
    pinned_memory: bool

    def describe(self) -> str:
        return (
            f"encoder autocast={self.encoder_autocast} backend={self.encoder_backend}, "
            f"head backend={self.head_backend}, pinned={self.pinned_memory}"
        )
