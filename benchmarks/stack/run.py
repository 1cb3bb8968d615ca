"""`run_bench(cfg)`: every section of vla-bench on every requested device, in one run."""

from __future__ import annotations

import platform
import time
from typing import Any

import torch

from benchmarks.stack.build import build_policy, encoder_for, resolve_devices
from benchmarks.stack.config import BenchConfig
from benchmarks.stack.sections import (
    Scene,
    encoder_section,
    gate_section,
    head_section,
    obs_to_action_section,
    sim_section,
)


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[vla-bench] {msg}", flush=True)


def run_bench(cfg: BenchConfig, quick: bool = False, progress: bool = True) -> dict[str, Any]:
    """Measure everything; returns the JSON-able results (see `benchmarks.stack.report.format_report`)."""
    torch.set_num_threads(cfg.threads)
    devices = resolve_devices(cfg.device)
    t0 = time.perf_counter()
    scene = Scene(cfg)
    res: dict[str, Any] = {
        "meta": {
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%S"),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "threads": cfg.threads,
            "devices": devices,
            "quick": quick,
            "reps": cfg.reps,
            "task": cfg.task,
            "checkpoint": cfg.checkpoint,
            "policy_weights": "trained checkpoint" if cfg.checkpoint else "random (timing only)",
        },
        "devices": {},
    }
    try:
        _log("world-model check", progress)
        res["world_model"] = gate_section(cfg, scene)
        for dev in devices:
            d: dict[str, Any] = {"fastpath": vars(cfg.fastpath.resolve(dev))}
            _log(f"{dev}: encoder", progress)
            encoder, enc_weights = encoder_for(cfg, dev)
            d["encoder"] = encoder_section(cfg, scene, encoder, enc_weights, dev)
            _log(f"{dev}: heads", progress)
            d["heads"] = head_section(cfg, encoder, dev)
            _log(f"{dev}: observation -> action", progress)
            policy, weights = build_policy(cfg, dev, encoder)
            d["obs_to_action"] = obs_to_action_section(cfg, scene, policy, weights, dev)
            _log(f"{dev}: simulator sync vs async", progress)
            variants = d["obs_to_action"]["variants"]
            best = variants.get("fast", variants["eager"])
            if cfg.checkpoint:
                d["sim"] = sim_section(cfg, policy, None, "measured per chunk (trained policy)")
            else:
                lat = best["total"]["p50_ms"] / 1e3
                src = f"injected = measured obs->action p50 on {dev} ({'fast' if 'fast' in variants else 'eager'})"
                d["sim"] = sim_section(cfg, None, lat, src)
            res["devices"][dev] = d
            del policy, encoder
            if dev == "cuda":
                torch.cuda.empty_cache()
    finally:
        scene.close()
    res["meta"]["seconds"] = time.perf_counter() - t0
    return res
