"""Put a whole policy (frozen encoder + head) on the fast path and warm it up before real-time use.

    fast = accelerate(vla_policy, FastPathConfig(), device="cuda")   # installs hooks in place
    warmup(vla_policy, obs, fast.config.warmup_iters)                # captures graphs, fills caches
    chunk = vla_policy(obs)                                           # same call as before
    fast.uninstall()

Works on any object with `.encoder` (a FrozenEncoder) and `.head` (a policies.Policy), i.e. a
`vla.policy.VLAPolicy`. On a CPU the resolved fast path is plain eager execution.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vla.fastpath.config import FastPathConfig, ResolvedFastPath
from vla.fastpath.encoder import FastEncoder
from vla.fastpath.head import FastHead


def synchronize(device: str | torch.device) -> None:
    """Wait for queued kernels (timings on CUDA are otherwise launch times); no-op on a CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class FastPolicy:
    """The hooks installed on one policy and what they resolved to."""

    config: FastPathConfig
    resolved: ResolvedFastPath
    encoder: FastEncoder | None
    head: FastHead | None
    warmup_s: list[float] = field(default_factory=list)

    def fallbacks(self) -> list[str]:
        out = []
        for part in (self.encoder, self.head):
            if part is not None:
                out += part.fallbacks()
        return out

    def uninstall(self) -> None:
        for part in (self.encoder, self.head):
            if part is not None:
                part.uninstall()


def accelerate_parts(
    encoder: Any | None, head: torch.nn.Module | None, cfg: FastPathConfig, device: str | torch.device
) -> FastPolicy:
    """Install the fast path on an encoder and/or a head (either may be None)."""
    r = cfg.resolve(device)
    fe = (
        FastEncoder(encoder, r.encoder_autocast, r.encoder_backend, r.pinned_memory, cfg.graph_warmup_iters)
        if encoder is not None
        else None
    )
    fh = (
        FastHead(head, r.head_backend, cfg.graph_warmup_iters, cfg.compile_mode, cfg.compile_backend)
        if head is not None
        else None
    )
    return FastPolicy(cfg, r, fe, fh)


def accelerate(policy: Any, cfg: FastPathConfig, device: str | torch.device | None = None) -> FastPolicy:
    """Install the fast path on `policy.encoder` and `policy.head` (a VLAPolicy) in place."""
    for attr in ("encoder", "head"):
        if not hasattr(policy, attr):
            raise TypeError(f"accelerate: {type(policy).__name__} has no .{attr} (expected a VLAPolicy)")
    dev = device if device is not None else getattr(policy, "device", "cpu")
    return accelerate_parts(policy.encoder, policy.head, cfg, dev)


def warmup(policy: Any, obs: dict[str, Any], iters: int, device: str | torch.device = "cpu") -> list[float]:
    """Call `policy(obs)` `iters` times (captures graphs and compiles on the first calls, fills the
    instruction cache); returns the seconds of each call. Run before the control loop starts."""
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        out = policy(obs)
        synchronize(device)
        times.append(time.perf_counter() - t0)
        if not np.all(np.isfinite(np.asarray(out))):
            raise ValueError("warmup: the policy returned non-finite actions")
    return times
