"""Policy-head speed on CPU at default sizes: chunk latency (p50/p99) per head and denoising-step
count, and training steps/s. Prints a table and writes benchmarks/results/bench_policies.json.

    python -m benchmarks.bench_policies [--threads 2] [--reps 30] [--token-dim 128] [--n-tokens 144]

Token defaults are the default encoder's output (configs/encoder/sim_siglip.yaml: width 128,
64 patch tokens x 2 cameras + 16 text tokens).

Latency is one `predict_chunk` call on a batch of 1 (what the closed loop runs per chunk);
ratios are relative to the ACT-style transformer head (one forward pass).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from policies import DiffusionConfig, PolicyConfig, TransformerConfig, make_policy

RESULTS = Path(__file__).resolve().parent / "results" / "bench_policies.json"


def _variants(token_dim: int, n_tokens: int) -> list[tuple[str, str, PolicyConfig]]:
    shape = {"token_dim": token_dim, "n_tokens": n_tokens}
    return [
        ("transformer (ACT)", "transformer", TransformerConfig(**shape)),
        ("diffusion unet ddim", "diffusion", DiffusionConfig(**shape, denoiser="unet")),
        (
            "diffusion unet dpm++",
            "diffusion",
            DiffusionConfig(**shape, denoiser="unet", scheduler="dpmsolver"),
        ),
        ("diffusion dit ddim", "diffusion", DiffusionConfig(**shape, denoiser="transformer")),
    ]


def _train_step_fn(name: str, cfg: PolicyConfig, batch_size: int) -> Callable[[], None]:
    policy = make_policy(name, cfg).train()
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    batch = cfg.fake_batch(batch_size)

    def step() -> None:
        loss, _ = policy.compute_loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        opt.step()

    return step


def _round_robin_ms(fns: list[Callable[[], Any]], reps: int, warmup: int) -> list[np.ndarray]:
    """Time every fn once per round, `reps` rounds: load from other processes on a shared machine
    then hits every variant alike, so the ratios stay meaningful."""
    for _ in range(warmup):
        for fn in fns:
            fn()
    times = np.zeros((len(fns), reps))
    for r in range(reps):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            times[i, r] = (time.perf_counter() - t0) * 1e3
    return list(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--token-dim", type=int, default=128, help="encoder token width (sim_siglip: 128)")
    ap.add_argument("--n-tokens", type=int, default=144, help="tokens per sample (sim_siglip: 2 x 64 + 16)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 10, 16], help="denoising steps")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cases: list[dict[str, Any]] = []
    fns: list[Callable[[], Any]] = []
    trainers: dict[str, Callable[[], None]] = {}
    for label, name, cfg in _variants(args.token_dim, args.n_tokens):
        policy = make_policy(name, cfg).eval()
        obs = cfg.fake_obs(1)
        n_params = sum(p.numel() for p in policy.parameters())
        # Training cost does not depend on the inference scheduler: one trainer per architecture.
        arch = f"{name}/{getattr(cfg, 'denoiser', '')}"
        if arch not in trainers:
            trainers[arch] = _train_step_fn(name, cfg, args.train_batch)
        for k in args.steps if name == "diffusion" else [None]:
            if k is not None and k > cfg.num_train_timesteps:  # type: ignore[attr-defined]
                continue
            kw = {"num_inference_steps": k} if k is not None else {}
            fns.append(lambda p=policy, o=obs, kw=kw: p.predict_chunk(o, **kw))
            cases.append(
                {"head": label, "policy": name, "arch": arch, "denoise_steps": k, "params_M": n_params / 1e6}
            )

    print(f"timing {len(fns)} chunk cases x {args.reps} rounds ...", flush=True)
    for case, t in zip(cases, _round_robin_ms(fns, args.reps, warmup=3), strict=True):
        case["latency_p50_ms"] = float(np.percentile(t, 50))
        case["latency_p99_ms"] = float(np.percentile(t, 99))
    print(f"timing {len(trainers)} training steps x {args.train_steps} rounds ...", flush=True)
    train_ms = dict(
        zip(trainers, _round_robin_ms(list(trainers.values()), args.train_steps, warmup=2), strict=True)
    )
    rows = []
    for case in cases:
        sps = 1e3 / float(np.median(train_ms[case["arch"]]))
        rows.append(case | {"train_steps_per_s": sps, "train_samples_per_s": sps * args.train_batch})

    base = next(r for r in rows if r["policy"] == "transformer")
    for r in rows:
        r["latency_vs_act"] = r["latency_p50_ms"] / base["latency_p50_ms"]
        r["train_speed_vs_act"] = r["train_steps_per_s"] / base["train_steps_per_s"]

    header = (f"{'head':22s} {'steps':>5s} {'params':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'x ACT':>6s} "
              f"{'train it/s':>10s} {'x ACT':>6s}")  # fmt: skip
    print(f"\nchunk latency (B=1) and training speed (B={args.train_batch}), {args.threads} CPU threads, "
          f"tokens {args.n_tokens}x{args.token_dim}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['head']:22s} {r['denoise_steps'] or '-'!s:>5s} {r['params_M']:6.2f}M {r['latency_p50_ms']:8.2f} "
              f"{r['latency_p99_ms']:8.2f} {r['latency_vs_act']:6.1f} {r['train_steps_per_s']:10.2f} "
              f"{r['train_speed_vs_act']:6.2f}")  # fmt: skip

    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"threads": args.threads, "reps": args.reps, "token_dim": args.token_dim, "n_tokens": args.n_tokens,
            "train_batch": args.train_batch, "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
            "loadavg_1m": _loadavg()}  # fmt: skip
    args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


def _loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return None


if __name__ == "__main__":
    main()
