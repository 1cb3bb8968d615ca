"""Replay a tensor function from static buffers: a captured CUDA graph, or the same buffer handling
without capture (runs anywhere; CPU tests use it to check the copy-in / copy-out logic).

A CUDA graph records the kernels of one call with fixed input and output addresses. Each replay
reruns them on whatever the static input buffers hold, so a call is: copy the inputs into the
buffers, replay, copy the outputs out (the next replay overwrites them). One graph is captured per
input signature (shapes, dtypes, devices); all graphs of one `StaticGraph` share a memory pool.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

log = logging.getLogger(__name__)

TensorFn = Callable[..., Any]  # (*tensors) -> Tensor | tuple[Tensor, ...]
Signature = tuple[tuple[tuple[int, ...], torch.dtype, torch.device], ...]
MODES = ("cuda_graph", "static_buffers")


@dataclass
class _Entry:
    inputs: list[torch.Tensor]
    outputs: list[torch.Tensor]
    is_tuple: bool
    graph: Any = None  # torch.cuda.CUDAGraph when captured


@dataclass
class GraphStats:
    captures: int = 0
    replays: int = 0
    fallbacks: list[str] = field(default_factory=list)


def signature(args: tuple[torch.Tensor, ...]) -> Signature:
    return tuple((tuple(a.shape), a.dtype, a.device) for a in args)


class StaticGraph:
    """`fn(*tensors)` replayed from static buffers.

    Args:
        fn: a function of tensors only, returning a tensor or a tuple of tensors, with no host
            synchronisation inside (no `.item()`, no data-dependent Python branches) when captured.
        mode: "cuda_graph" (capture on the first call of each signature) or "static_buffers".
        warmup_iters: eager calls on a side stream before capturing (library set-up, autotuning).
        context: a context-manager factory entered around every call of `fn` (e.g. autocast).
        name: used in log messages.

    If a capture fails (an op that cannot be captured), that signature falls back to eager calls and
    the reason is recorded in `stats.fallbacks` (never silently).
    """

    def __init__(
        self,
        fn: TensorFn,
        mode: str = "cuda_graph",
        warmup_iters: int = 3,
        context: Callable[[], Any] | None = None,
        name: str = "graph",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"StaticGraph.mode must be one of {MODES}, got {mode!r}")
        self.fn = fn
        self.mode = mode
        self.warmup_iters = warmup_iters
        self.context = context
        self.name = name
        self.stats = GraphStats()
        self._entries: dict[Signature, _Entry | None] = {}  # None: capture failed, run eager
        self._pool: Any = None

    def _call(self, args: tuple[torch.Tensor, ...] | list[torch.Tensor]) -> Any:
        if self.context is None:
            return self.fn(*args)
        with self.context():
            return self.fn(*args)

    def _build(self, args: tuple[torch.Tensor, ...]) -> _Entry | None:
        inputs = [a.detach().clone() for a in args]
        if self.mode == "static_buffers":
            out = self._call(inputs)
            is_tuple = isinstance(out, tuple)
            outs = [o.detach().clone() for o in (out if is_tuple else (out,))]
            return _Entry(inputs, outs, is_tuple)
        try:
            stream = torch.cuda.Stream(device=inputs[0].device)
            stream.wait_stream(torch.cuda.current_stream(inputs[0].device))
            with torch.cuda.stream(stream):
                for _ in range(self.warmup_iters):
                    self._call(inputs)
            torch.cuda.current_stream(inputs[0].device).wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            with torch.cuda.graph(graph, pool=self._pool):
                out = self._call(inputs)
        except Exception as e:  # an op that cannot be captured: this signature runs eager, reported
            msg = f"{self.name}: CUDA graph capture failed for {signature(args)} ({type(e).__name__}: {e}); eager"
            log.warning(msg)
            self.stats.fallbacks.append(msg)
            torch.cuda.synchronize()
            return None
        is_tuple = isinstance(out, tuple)
        self.stats.captures += 1
        return _Entry(inputs, list(out if is_tuple else (out,)), is_tuple, graph)

    def __call__(self, *args: torch.Tensor) -> Any:
        sig = signature(args)
        if sig not in self._entries:
            self._entries[sig] = self._build(args)
        entry = self._entries[sig]
        if entry is None:
            return self._call(args)
        for buf, a in zip(entry.inputs, args):
            buf.copy_(a)
        if entry.graph is not None:
            entry.graph.replay()
        else:
            out = self._call(entry.inputs)
            for buf, o in zip(entry.outputs, out if entry.is_tuple else (out,)):
                buf.copy_(o)
        self.stats.replays += 1
        # Clones: the next replay overwrites the static outputs, callers may keep these.
        outs = tuple(o.clone() for o in entry.outputs)
        return outs if entry.is_tuple else outs[0]

    @property
    def n_signatures(self) -> int:
        return sum(e is not None for e in self._entries.values())
