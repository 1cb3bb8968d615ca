"""The measurements of vla-bench, one function per section of the report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.stack.build import build_head, head_config
from benchmarks.stack.config import BenchConfig, HeadSpec
from benchmarks.stack.timing import Timing, measure
from vla.fastpath import FastPathConfig, accelerate, accelerate_parts, synchronize, warmup
from vla.runtime import (
    ControlLoop,
    ExpertChunkPolicy,
    ObservationBuffer,
    RuntimeConfig,
    SimulatedClock,
    run_episode,
)


# ---------------------------------------------------------------------------------------- scene
class Scene:
    """One simulator observation of the task, its history snapshot, an expert chunk and a gate."""

    def __init__(self, cfg: BenchConfig) -> None:
        import sim
        from sim.safety import SafetyGate, load_safety_config

        path = Path(cfg.safety_config)
        if not path.is_file():
            raise FileNotFoundError(f"BenchConfig.safety_config: {path} does not exist")
        overrides = {**cfg.env_overrides, "image_size": cfg.image_size, "cameras": list(cfg.cameras)}
        self.env = sim.make(cfg.task, **overrides)
        raw, _ = self.env.reset(seed=cfg.seed)
        buf = ObservationBuffer(cfg.n_obs_steps)
        buf.push(raw)
        self.obs = buf.snapshot(0, None)  # what the control loop hands a policy: (To, ...) arrays
        self.obs["instruction"] = cfg.instruction
        self.images = {c: np.asarray(raw[f"image_{c}"])[None] for c in cfg.cameras}  # (1, H, W, 3) uint8
        self.q = np.asarray(raw["state"], np.float32)
        self.qd = np.asarray(raw["qvel"], np.float32)
        expert = ExpertChunkPolicy(sim.make_expert(self.env), horizon=cfg.horizon)
        expert.reset()
        self.expert_chunk = expert(self.obs, None)  # (H, 7) a feasible chunk from this state
        self.gate = SafetyGate.for_env(self.env, load_safety_config(path))
        self.full_state = self.gate.env_state(self.env)

    def gate_filter(self, chunk: np.ndarray) -> Any:
        return self.gate.filter(self.q, self.qd, chunk, full_state=self.full_state)

    def close(self) -> None:
        self.gate.close()
        self.env.close()


def _row(timing: Timing, **fields: Any) -> dict[str, Any]:
    return {**fields, **timing.to_dict()}


def _fast_variant(device: str, fast: FastPathConfig) -> bool:
    """A fast-path row is measured where it differs from eager (on a CPU everything resolves to eager)."""
    r = fast.resolve(device)
    return (r.encoder_autocast, r.encoder_backend, r.head_backend, r.pinned_memory) != (
        "none",
        "eager",
        "eager",
        False,
    )


# ---------------------------------------------------------------------------------------- encoder
def encoder_section(
    cfg: BenchConfig, scene: Scene, encoder: Any, weights: str, device: str
) -> dict[str, Any]:
    """Image tokens of one observation (batch 1, all cameras in one forward) + the cached text lookup."""
    rows = []
    images = scene.images
    ref = encoder.encode_images(images).tokens
    t = measure(lambda: encoder.encode_images(images), cfg.reps, cfg.warmup, device)
    rows.append(_row(t, part="images", variant="eager", max_abs_diff=0.0))
    if _fast_variant(device, cfg.fastpath):
        fast = accelerate_parts(encoder, None, cfg.fastpath, device)
        try:
            out = encoder.encode_images(images).tokens
            t = measure(lambda: encoder.encode_images(images), cfg.reps, cfg.warmup, device)
            rows.append(
                _row(
                    t,
                    part="images",
                    variant="fast",
                    max_abs_diff=float((out - ref).abs().max()),
                    fastpath=fast.resolved.describe(),
                    fallbacks=fast.fallbacks(),
                )
            )
        finally:
            fast.uninstall()
    encoder.encode_text([cfg.instruction])
    t = measure(lambda: encoder.encode_text([cfg.instruction]), cfg.reps, cfg.warmup, device)
    rows.append(_row(t, part="text (cached)", variant="eager", max_abs_diff=0.0))
    return {
        "model": encoder.cfg.model,
        "weights": weights,
        "dtype": encoder.cfg.dtype,
        "cameras": list(images),
        "batch": 1,
        "image_size_in": int(next(iter(images.values())).shape[1]),
        "image_size_model": int(encoder.pre.size),
        "tokens": encoder.n_tokens_for(len(images)),
        "dim": encoder.dim,
        "rows": rows,
    }


# ---------------------------------------------------------------------------------------- heads
def _head_calls(spec: HeadSpec, cfg: BenchConfig) -> list[int | None]:
    return [int(s) for s in cfg.denoise_steps] if spec.policy == "diffusion" else [None]


def head_section(cfg: BenchConfig, encoder: Any, device: str) -> list[dict[str, Any]]:
    """Head latency (batch 1, tokens shaped like the encoder's) per denoising-step count."""
    rows = []
    for spec in cfg.heads:
        head = build_head(spec, cfg, encoder, device)
        hc = head_config(spec, cfg, encoder)
        obs = {k: v.to(device) for k, v in hc.fake_obs(1, torch.Generator().manual_seed(cfg.seed)).items()}
        n_params = sum(p.numel() for p in head.parameters())
        variants = ["eager", *(["fast"] if _fast_variant(device, cfg.fastpath) else [])]
        for variant in variants:
            fast = accelerate_parts(None, head, cfg.fastpath, device) if variant == "fast" else None
            try:
                for steps in _head_calls(spec, cfg):
                    kw: dict[str, Any] = {} if steps is None else {"num_inference_steps": steps}

                    def call(kw: dict[str, Any] = kw, head: Any = head, obs: dict = obs) -> torch.Tensor:
                        g = torch.Generator(device=device).manual_seed(cfg.seed)
                        return head.predict_chunk(obs, generator=g, **kw)

                    t = measure(call, cfg.reps, cfg.warmup, device)
                    rows.append(
                        _row(
                            t,
                            head=spec.label,
                            policy=spec.policy,
                            denoiser=getattr(head.config, "denoiser", "-"),
                            steps=steps if steps is not None else 1,
                            variant=variant,
                            params=n_params,
                            **({"fallbacks": fast.fallbacks()} if fast else {}),
                        )
                    )
            finally:
                if fast is not None:
                    fast.uninstall()
    return rows


# ---------------------------------------------------------------------------------------- world model
def gate_section(cfg: BenchConfig, scene: Scene) -> dict[str, Any]:
    """The world-model check of one chunk, and best-of-K over K perturbed copies (MuJoCo, host CPU)."""
    chunk = scene.expert_chunk
    decision = scene.gate_filter(chunk)
    t_filter = measure(lambda: scene.gate_filter(chunk), cfg.reps, cfg.warmup)
    rng = np.random.default_rng(cfg.seed)
    cand = np.repeat(chunk[None], cfg.gate_k, axis=0)
    cand[1:, :, :6] += rng.normal(0, 0.01, cand[1:, :, :6].shape).astype(np.float32)
    sel = lambda: scene.gate.select(scene.q, scene.qd, cand, full_state=scene.full_state)  # noqa: E731
    best, _, _ = sel()
    t_sel = measure(sel, cfg.reps, cfg.warmup)
    return {
        "horizon": len(chunk),
        "k": cfg.gate_k,
        "nthread": scene.gate.cfg.gate.nthread,
        "verdict": decision.reason or ("hold" if decision.hold else "safe"),
        "safe_steps": len(decision.actions) if not decision.hold else 0,
        "best_of_k_choice": int(best),
        "rows": [_row(t_filter, check="filter (1 chunk)"), _row(t_sel, check=f"best-of-{cfg.gate_k}")],
    }


# ---------------------------------------------------------------------------------------- obs -> action
def obs_to_action_section(
    cfg: BenchConfig, scene: Scene, policy: Any, weights: str, device: str
) -> dict[str, Any]:
    """Full latency: encode + head + unnormalize + gate, p50/p99, eager and (on CUDA) fast path.

    With random weights the gate checks the expert's chunk: random actions would be refused by its
    cheap pre-checks and understate the world-model cost.
    """

    random = not cfg.checkpoint
    meta = policy.meta
    obs = scene.obs
    images = {c: np.asarray(obs[f"image_{c}"])[-1:] for c in meta.cameras}
    instruction = str(obs.get("instruction", cfg.instruction))

    def gate_chunk(chunk: np.ndarray) -> np.ndarray:
        return scene.expert_chunk if random else chunk

    def full() -> Any:
        chunk = policy(obs)
        return scene.gate_filter(gate_chunk(chunk))

    out: dict[str, Any] = {
        "weights": weights,
        "gate_on": "expert chunk" if random else "policy chunk",
        "variants": {},
    }
    variants = ["eager", *(["fast"] if _fast_variant(device, cfg.fastpath) else [])]
    ref_chunk = None
    for variant in variants:
        fast = accelerate(policy, cfg.fastpath, device) if variant == "fast" else None
        try:
            warm = warmup(policy, obs, max(1, cfg.fastpath.warmup_iters), device) if fast else []
            # The batch the policy itself builds (the processor: tokens, masks, normalized state).
            batch = policy.batch(obs)
            chunk_n = policy.head.predict_chunk(batch).float().cpu().numpy()[0]
            chunk = policy(obs)
            if ref_chunk is None:
                ref_chunk = chunk
            parts = {
                "encode": measure(
                    lambda: policy.processor.encode(policy.encoder, images, instruction),
                    cfg.reps,
                    cfg.warmup,
                    device,
                ),
                "head": measure(lambda b=batch: policy.head.predict_chunk(b), cfg.reps, cfg.warmup, device),
                "unnormalize": measure(lambda c=chunk_n: policy.processor.to_robot(c), cfg.reps, cfg.warmup),
                "gate": measure(lambda c=chunk: scene.gate_filter(gate_chunk(c)), cfg.reps, cfg.warmup),
                "policy (no gate)": measure(lambda: policy(obs), cfg.reps, cfg.warmup, device),
                "total": measure(full, cfg.reps, cfg.warmup, device),
            }
            entry: dict[str, Any] = {k: v.to_dict() for k, v in parts.items()}
            entry["max_abs_diff_vs_eager"] = float(np.abs(chunk - ref_chunk).max())
            if fast is not None:
                entry["fastpath"] = fast.resolved.describe()
                entry["warmup_ms"] = [w * 1e3 for w in warm]
                entry["fallbacks"] = fast.fallbacks()
            out["variants"][variant] = entry
        finally:
            if fast is not None:
                fast.uninstall()
    synchronize(device)
    return out


# ---------------------------------------------------------------------------------------- simulator
def sim_section(
    cfg: BenchConfig, policy: Any | None, latency_s: float | None, latency_source: str
) -> dict[str, Any]:
    """Synchronous vs asynchronous execution on the task: deadline misses, time to finish, jerk.

    policy None: the scripted expert as a chunk policy, charged `latency_s` per chunk (the measured
    observation-to-action latency), so the timeline is the one the real model would produce.
    """
    import sim
    from sim.safety import SafetyGate, load_safety_config

    overrides = {**cfg.env_overrides, "image_size": cfg.image_size, "cameras": list(cfg.cameras)}
    if policy is None:
        overrides["render_images"] = False  # the expert reads the simulator, not pixels
    env = sim.make(cfg.task, **overrides)
    base = env.unwrapped
    period = 1.0 / float(base.cfg.control_rate_hz)
    max_steps = int(cfg.sim_max_steps or base.cfg.max_steps)
    chunk_policy = (
        policy if policy is not None else ExpertChunkPolicy(sim.make_expert(env), horizon=cfg.horizon)
    )
    gate = SafetyGate.for_env(env, load_safety_config(cfg.safety_config)) if cfg.sim_safety else None
    check: Callable[..., Any] | None = None
    if gate is not None:

        def check(q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, command: np.ndarray | None = None) -> Any:
            return gate.filter(q, qd, chunk, full_state=gate.env_state(env), command=command)

    rows = []
    try:
        for m in cfg.sim_modes:
            rcfg = RuntimeConfig(
                mode=m.mode,
                smoothing=m.smoothing,
                n_obs_steps=cfg.n_obs_steps,
                n_action_steps=cfg.n_action_steps,
                threaded=False,
            )
            clock = SimulatedClock(period, latency_s=latency_s)
            eps = []
            with ControlLoop(chunk_policy, rcfg, clock=clock, gate=check) as loop:
                for i in range(cfg.sim_episodes):
                    res = run_episode(env, loop, max_steps=max_steps, seed=cfg.sim_seed + i)
                    eps.append(res.summary())

            def mean(key: str, eps: list[dict[str, Any]] = eps) -> float:
                v = np.array([e[key] for e in eps], np.float64)
                v = v[np.isfinite(v)]
                return float(v.mean()) if len(v) else float("nan")

            rows.append(
                {
                    "mode": m.label,
                    "episodes": len(eps),
                    "success_rate": mean("success"),
                    "steps": mean("steps"),
                    "time_to_finish_s": mean("sim_time_s"),
                    "wall_time_s": mean("wall_time_s"),
                    "deadline_misses": mean("deadline_misses"),
                    "gate_holds": mean("gate_holds"),
                    "chunks": mean("chunks_requested"),
                    "boundary_jerk_mean": mean("boundary_jerk_mean"),
                    "boundary_jerk_max": mean("boundary_jerk_max"),
                    "interior_jerk_mean": mean("interior_jerk_mean"),
                    "latency_p50_ms": mean("latency_p50_s") * 1e3,
                }
            )
    finally:
        if gate is not None:
            gate.close()
        env.close()
    return {
        "task": cfg.task,
        "policy": "trained checkpoint" if policy is not None else "scripted expert as chunk policy",
        "latency": latency_source,
        "latency_ms": float("nan") if latency_s is None else latency_s * 1e3,
        "control_period_ms": period * 1e3,
        "max_steps": max_steps,
        "safety_gate": cfg.sim_safety,
        "rows": rows,
    }
