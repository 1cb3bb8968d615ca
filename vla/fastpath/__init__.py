"""GPU fast path: autocast + CUDA graphs for the encoder, CUDA graphs / torch.compile for the head's
denoising step, pinned host -> device transfers, warm-up. Every feature degrades to plain eager on a CPU.

    from vla.fastpath import FastPathConfig, accelerate, warmup
    fast = accelerate(vla_policy, FastPathConfig(), device="cuda")
    warmup(vla_policy, obs, iters=3, device="cuda")
    print(fast.resolved.describe(), fast.fallbacks())
"""

from vla.fastpath.config import FastPathConfig, ResolvedFastPath
from vla.fastpath.encoder import FastEncoder
from vla.fastpath.graphs import StaticGraph
from vla.fastpath.head import FastHead
from vla.fastpath.policy import FastPolicy, accelerate, accelerate_parts, synchronize, warmup
from vla.fastpath.transfer import PinnedStager

__all__ = [
    "FastEncoder",
    "FastHead",
    "FastPathConfig",
    "FastPolicy",
    "PinnedStager",
    "ResolvedFastPath",
    "StaticGraph",
    "accelerate",
    "accelerate_parts",
    "synchronize",
    "warmup",
]
