"""Fast path for a policy head: its per-call networks replayed from CUDA graphs (or compiled).

The heads' sampling loops live in `policies/` and stay untouched: the diffusion loop (including
RTC prefix inpainting and the diffusers scheduler step, which does host-side work and cannot be
captured) runs eagerly and calls the networks of each call by name. The heads name them
(`Policy.network_names`, `Policy.networks()`) and take accelerated versions through their public
seam `Policy.replace_networks` (undone by `restore_networks`):

    diffusion:   head.condition(obs) -> (pooled (B, K, d), pooled_mask (B, K))       once per chunk
                 head.denoise(x (B, T, Da), t (B,), pooled, pooled_mask, state (B, To, Ds)) -> (B, T, Da)
                                                                                     once per step
    transformer: head.forward_chunk(obs, latent) -> (B, T, Da)                       once per chunk

`FastHead.uninstall()` restores the originals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from policies import Policy
from vla.fastpath.graphs import StaticGraph

log = logging.getLogger(__name__)

# head name -> its networks (`Policy.network_names`) whose calls are accelerated; how each is
# wrapped depends on its signature (see `FastHead._wrap`).
HOOKS = {"diffusion": ("condition", "denoise"), "transformer": ("forward_chunk",)}


def _obs_fn(orig: Callable[..., Any], with_text: bool) -> Callable[..., Any]:
    if with_text:
        return lambda tokens, mask, text_mask: orig(
            {"tokens": tokens, "token_mask": mask, "text_mask": text_mask}
        )
    return lambda tokens, mask: orig({"tokens": tokens, "token_mask": mask})


def _forward_fn(orig: Callable[..., Any], with_latent: bool, with_text: bool) -> Callable[..., Any]:
    def fn(tokens: torch.Tensor, mask: torch.Tensor, state: torch.Tensor, *rest: torch.Tensor) -> Any:
        obs = {"tokens": tokens, "token_mask": mask, "state": state}
        if with_text:
            obs["text_mask"] = rest[0]
        return orig(obs, rest[-1] if with_latent else None)

    return fn


class FastHead:
    """Accelerates `head` in place (see module docstring); `predict_chunk` forwards to the head.

    Args:
        head: a `policies.Policy` (diffusion or transformer), already on its device, in eval mode.
        backend: "eager" | "cuda_graph" | "static_buffers" | "compile" (resolved for the device by
            `FastPathConfig.resolve`; "cuda_graph" needs the head on a CUDA device).
        graph_warmup_iters / compile_mode / compile_backend: see `FastPathConfig`.
    """

    def __init__(
        self,
        head: Policy,
        backend: str = "eager",
        graph_warmup_iters: int = 3,
        compile_mode: str = "reduce-overhead",
        compile_backend: str = "inductor",
    ) -> None:
        self.head = head
        self.backend = backend
        self.graphs: dict[str, StaticGraph] = {}
        self._installed: list[str] = []
        name = getattr(head, "name", type(head).__name__)
        if backend == "eager":
            return
        if name not in HOOKS:
            raise ValueError(f"FastHead: no fast path for head {name!r}; known heads {sorted(HOOKS)}")
        if backend == "cuda_graph":
            dev = next(head.parameters()).device
            if dev.type != "cuda":
                raise ValueError(f"FastHead: backend='cuda_graph' needs the head on CUDA, it is on {dev}")
        own = head.networks()
        fns = {
            attr: self._wrap(attr, own[attr], graph_warmup_iters, compile_mode, compile_backend)
            for attr in HOOKS[name]
        }
        head.replace_networks(fns)
        self._installed = list(fns)

    def _accel(
        self, key: str, fn: Callable[..., Any], warmup: int, mode: str, backend: str
    ) -> Callable[..., Any]:
        if self.backend == "compile":
            compiled = torch.compile(
                fn, mode=mode if backend == "inductor" else None, backend=backend, dynamic=False
            )

            def call(*args: torch.Tensor) -> Any:
                out = compiled(*args)
                # reduce-overhead keeps outputs in cudagraph-owned memory that the next call reuses.
                return tuple(o.clone() for o in out) if isinstance(out, tuple) else out.clone()

            return call
        graph = StaticGraph(fn, self.backend, warmup_iters=warmup, name=f"{self.head.name}.{key}")
        self.graphs[key] = graph
        return graph

    def _wrap(
        self, attr: str, orig: Callable[..., Any], warmup: int, mode: str, backend: str
    ) -> Callable[..., Any]:
        if attr == "denoise":
            return self._accel(attr, orig, warmup, mode, backend)
        # The observation may carry a text mask (instruction-conditioned front ends read it) and the
        # transformer a CVAE latent: one function (graph) per combination, built on first use, so
        # every tensor the head reads is a graph input and none is silently dropped.
        cache: dict[str, Callable[..., Any]] = {}

        def get(key: str, make: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
            if key not in cache:
                cache[key] = self._accel(key, make(), warmup, mode, backend)
            return cache[key]

        if attr == "condition":

            def condition(obs: dict[str, torch.Tensor]) -> Any:
                text = obs.get("text_mask")
                if text is None:
                    return get("condition", lambda: _obs_fn(orig, False))(obs["tokens"], obs["token_mask"])
                run = get("condition_text", lambda: _obs_fn(orig, True))
                return run(obs["tokens"], obs["token_mask"], text)

            return condition

        def forward(obs: dict[str, torch.Tensor], latent: torch.Tensor | None) -> torch.Tensor:
            text = obs.get("text_mask")
            key = attr + ("_text" if text is not None else "") + ("_latent" if latent is not None else "")
            run = get(key, lambda: _forward_fn(orig, latent is not None, text is not None))
            args = [obs["tokens"], obs["token_mask"], obs["state"]]
            args += [text] if text is not None else []
            args += [latent] if latent is not None else []
            return run(*args)

        return forward

    def predict_chunk(self, obs: dict[str, torch.Tensor], **kwargs: Any) -> torch.Tensor:
        """The head's own `predict_chunk` (B, T, Da), running the accelerated networks."""
        return self.head.predict_chunk(obs, **kwargs)

    def fallbacks(self) -> list[str]:
        return [m for g in self.graphs.values() for m in g.stats.fallbacks]

    def uninstall(self) -> None:
        """Restore the head's own networks (drops the graphs)."""
        if self._installed:
            self.head.restore_networks(self._installed)
        self._installed = []
        self.graphs.clear()
