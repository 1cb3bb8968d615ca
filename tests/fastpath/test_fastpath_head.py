"""The head fast path produces the eager head's chunks: static-buffer replay and torch.compile on CPU,
CUDA graphs on a GPU (marked `gpu`). RTC prefixes are still kept exactly."""

from __future__ import annotations

import pytest
import torch
from fastpath_heads import TINY, make_head

from vla.fastpath import FastHead, FastPathConfig, StaticGraph

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _obs(head: torch.nn.Module, b: int = 2, device: str = "cpu") -> dict[str, torch.Tensor]:
    obs = head.config.fake_obs(b, torch.Generator().manual_seed(3))  # odd samples have masked tokens
    return {k: v.to(device) for k, v in obs.items()}


def _predict(head: torch.nn.Module, obs: dict, device: str = "cpu", **kw) -> torch.Tensor:
    return head.predict_chunk(obs, generator=torch.Generator(device=device).manual_seed(7), **kw)


@pytest.mark.parametrize("kind", sorted(TINY))
def test_static_buffers_equal_eager_and_restore(kind: str) -> None:
    head = make_head(kind)
    obs = _obs(head)
    ref = _predict(head, obs)
    fast = FastHead(head, "static_buffers")
    for _ in range(2):  # second call replays the same buffers: nothing may leak between calls
        torch.testing.assert_close(
            fast.predict_chunk(obs, generator=torch.Generator().manual_seed(7)), ref, rtol=0, atol=0
        )
    # Another batch size is another signature (its own buffers), still exact.
    obs1 = {k: v[:1] for k, v in obs.items()}
    torch.testing.assert_close(_predict(head, obs1), _predict(make_head(kind), obs1), rtol=0, atol=0)
    sigs = {k: g.n_signatures for k, g in fast.graphs.items()}
    # The observation carries a text mask, so it is a graph input ("_text") and never dropped.
    assert "text_mask" in obs
    expect = {
        "diffusion": {"condition_text", "denoise"},
        "transformer": {"forward_chunk_text_latent" if "vae" in kind else "forward_chunk_text"},
    }
    assert set(sigs) == expect[head.name]
    assert all(n == 2 for n in sigs.values()), sigs
    fast.uninstall()
    assert not head.replaced_networks()
    torch.testing.assert_close(_predict(head, obs), ref, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["diffusion_unet", "diffusion_dit", "transformer"])
def test_rtc_prefix_kept_on_fast_path(kind: str) -> None:
    head = make_head(kind)
    obs = _obs(head)
    prefix = torch.rand(2, 3, 7, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ref = _predict(head, obs, prefix=prefix)
    FastHead(head, "static_buffers")
    out = _predict(head, obs, prefix=prefix)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    torch.testing.assert_close(out[:, :3], prefix, rtol=0, atol=0)


def test_outputs_are_not_aliased_to_static_buffers() -> None:
    g = StaticGraph(lambda x: x * 2, mode="static_buffers")
    a = g(torch.ones(3))
    b = g(torch.full((3,), 5.0))
    assert a.tolist() == [2.0, 2.0, 2.0] and b.tolist() == [10.0, 10.0, 10.0]
    assert g.stats.replays == 2 and g.n_signatures == 1


@pytest.mark.parametrize("kind", ["diffusion_unet", "transformer"])
def test_compile_on_cpu_equals_eager(kind: str) -> None:
    """torch.compile of the same hooks (dynamo with the eager backend: no C++ toolchain needed)."""
    head = make_head(kind)
    obs = _obs(head)
    ref = _predict(head, obs)
    fast = FastHead(head, "compile", compile_backend="eager")
    torch.testing.assert_close(_predict(head, obs), ref, rtol=1e-5, atol=1e-5)
    fast.uninstall()


def test_cpu_resolves_to_eager_and_cuda_only_backends_refuse_cpu() -> None:
    r = FastPathConfig().resolve("cpu")
    assert (r.encoder_autocast, r.encoder_backend, r.head_backend, r.pinned_memory) == (
        "none",
        "eager",
        "eager",
        False,
    )
    assert FastPathConfig(head_backend="compile").resolve("cpu").head_backend == "eager"
    assert (
        FastPathConfig(head_backend="compile", compile_on_cpu=True).resolve("cpu").head_backend == "compile"
    )
    with pytest.raises(ValueError, match="needs the head on CUDA"):
        FastHead(make_head("transformer"), "cuda_graph")
    with pytest.raises(ValueError, match="head_backend"):
        FastPathConfig(head_backend="tensorrt")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("kind", ["diffusion_unet", "diffusion_dit", "diffusion_dpm", "transformer"])
def test_cuda_graph_equals_eager(kind: str) -> None:
    head = make_head(kind, "cuda")
    obs = _obs(head, device="cuda")
    ref = _predict(head, obs, "cuda")
    fast = FastHead(head, "cuda_graph")
    for _ in range(3):
        out = _predict(head, obs, "cuda")
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    assert not fast.fallbacks()
    assert all(g.stats.captures == 1 for g in fast.graphs.values())
