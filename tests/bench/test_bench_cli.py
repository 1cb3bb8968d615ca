"""`vla-bench quick=true` in process: every section present with finite numbers, JSON + config written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra_helpers import compose as compose_config

from vla.cli import bench as bench_cli


def compose(overrides: list[str]):
    return compose_config("bench", overrides)


def _finite(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _timing_ok(t: dict) -> bool:
    return all(_finite(t[k]) and t[k] >= 0 for k in ("p50_ms", "p99_ms", "mean_ms", "min_ms")) and t["n"] >= 1


def test_vla_bench_quick_writes_every_section(tmp_path: Path, tiny_siglip_dir: Path) -> None:
    out = tmp_path / "b" / "bench.json"
    cfg = compose(
        [
            "quick=true",
            f"out={out}",
            f"encoder.model={tiny_siglip_dir}",
            "encoder.max_text_len=16",
            "device=cpu",
        ]
    )
    _, path = bench_cli.run(cfg)
    assert path == out and (out.parent / "bench_config.yaml").is_file()
    data = json.loads(out.read_text())
    assert set(data) == {"meta", "world_model", "devices"}
    assert data["meta"]["quick"] is True and data["meta"]["policy_weights"].startswith("random")
    assert data["meta"]["threads"] == 1 and torch.get_num_threads() == 1
    wm = data["world_model"]
    assert len(wm["rows"]) == 2 and all(_timing_ok(r) for r in wm["rows"]) and wm["k"] == 2
    assert list(data["devices"]) == ["cpu"]
    d = data["devices"]["cpu"]
    assert set(d) == {"fastpath", "encoder", "heads", "obs_to_action", "sim"}
    assert d["fastpath"]["head_backend"] == "eager"  # CUDA-only features resolve away on a CPU
    enc = d["encoder"]
    assert enc["cameras"] == ["front", "wrist"] and enc["batch"] == 1
    assert all(_timing_ok(r) for r in enc["rows"])
    heads = {(r["head"], r["steps"]) for r in d["heads"]}
    assert heads == {
        ("diffusion_unet", 1),
        ("diffusion_unet", 2),
        ("diffusion_dit", 1),
        ("diffusion_dit", 2),
        ("transformer", 1),
    }
    assert all(_timing_ok(r) for r in d["heads"])
    o2a = d["obs_to_action"]["variants"]["eager"]
    for stage in ("encode", "head", "unnormalize", "gate", "policy (no gate)", "total"):
        assert _timing_ok(o2a[stage]), stage
    sim = d["sim"]
    assert [r["mode"] for r in sim["rows"]] == ["sync", "async+rtc"]
    for r in sim["rows"]:
        for k in (
            "success_rate",
            "steps",
            "time_to_finish_s",
            "wall_time_s",
            "deadline_misses",
            "boundary_jerk_mean",
            "interior_jerk_mean",
            "chunks",
        ):
            assert _finite(r[k]), (r["mode"], k)
        assert r["steps"] >= 1
    assert _finite(sim["latency_ms"]) and sim["latency_ms"] == pytest.approx(o2a["total"]["p50_ms"])


def test_bench_config_errors_name_the_field() -> None:
    r = bench_cli.OmegaConf.to_container(compose([]), resolve=True)
    r["heads"]["transformer"].pop("name")
    with pytest.raises(ValueError, match=r"heads.transformer has no 'name'"):
        bench_cli.bench_config(r)
    r = bench_cli.OmegaConf.to_container(compose(["pipeline_head=nope"]), resolve=True)
    with pytest.raises(ValueError, match="pipeline_head='nope'"):
        bench_cli.bench_config(r)
    r = bench_cli.OmegaConf.to_container(compose(["sim.modes=[async+warp]"]), resolve=True)
    with pytest.raises(ValueError, match="smoothing"):
        bench_cli.bench_config(r)


def test_accelerated_vla_policy_matches_eager(tiny_siglip_dir: Path) -> None:
    """A whole VLAPolicy on the fast path (static buffers: the CUDA-graph code path without capture)."""
    from benchmarks.stack.build import build_policy, encoder_for
    from benchmarks.stack.sections import Scene
    from vla.fastpath import FastPathConfig, accelerate, warmup

    r = bench_cli.OmegaConf.to_container(
        compose(["quick=true", f"encoder.model={tiny_siglip_dir}", "encoder.max_text_len=16"]), resolve=True
    )
    cfg = bench_cli.bench_config(r)
    torch.set_num_threads(1)
    encoder, label = encoder_for(cfg, "cpu")
    assert label.startswith("checkpoint")
    policy, weights = build_policy(cfg, "cpu", encoder)
    assert "random" in weights
    scene = Scene(cfg)
    try:
        policy.generator.manual_seed(0)
        ref = policy(scene.obs)
        fast = accelerate(
            policy, FastPathConfig(encoder_backend="static_buffers", head_backend="static_buffers")
        )
        times = warmup(policy, scene.obs, 2)
        assert len(times) == 2 and all(t > 0 for t in times)
        policy.generator.manual_seed(0)
        np.testing.assert_allclose(policy(scene.obs), ref, rtol=0, atol=1e-6)
        assert fast.head is not None and fast.head.graphs["denoise"].stats.replays > 0
        assert (
            fast.encoder is not None
            and fast.encoder.graph is not None
            and fast.encoder.graph.stats.replays > 0
        )
        fast.uninstall()
    finally:
        scene.close()
