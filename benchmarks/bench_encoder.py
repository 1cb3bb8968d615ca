"""Frozen-encoder speed: embedding throughput, and policy training with precomputed embeddings versus
encoding frames every step.

    python -m benchmarks.bench_encoder [--model outputs/encoder/sim_siglip] [--repeats 20] [--threads 1]

1. Throughput of the default encoder (configs/encoder/sim_siglip.yaml) on CPU: `encode_images` of
   two cameras at batch 1 and 32 (observations/s and camera frames/s), and `encode_text` with a cache
   miss versus a cache hit.
2. One training step of the same small head on the same batch (32 observations, 2 cameras + text):
   (a) tokens read from `embeddings/<fingerprint>/` of the store (after `precompute_embeddings`),
   (a') the same tokens held in memory (`EmbeddingStore(..., in_memory=True)`),
   (b) frames read from the store and encoded every step. Prints the ratios (b) / (a) and (b) / (a').
Prints a table and writes benchmarks/results/bench_encoder.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from vla.data import DatasetMeta, ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import EmbeddingStore, frame_episodes, precompute_embeddings

RESULTS = Path(__file__).resolve().parent / "results" / "bench_encoder.json"


def timeit(fn, repeats: int, warmup: int = 2) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


class Head(torch.nn.Module):
    """A small policy head: masked mean of projected tokens -> MLP -> an action chunk (T=16, Da=7)."""

    def __init__(self, dim: int, width: int = 256) -> None:
        super().__init__()
        self.proj = torch.nn.Linear(dim, width)
        self.mlp = torch.nn.Sequential(
            torch.nn.GELU(), torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, 16 * 7)
        )

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(-1).float()
        h = (self.proj(tokens) * m).sum(1) / m.sum(1)
        return self.mlp(h).view(-1, 16, 7)


def build_store(path: Path, n_scenes: int, episode_len: int) -> ReplayBuffer:
    """A real store of simulator frames (scenes from every task, each held for `episode_len` frames)."""
    from vla.pretrain.sim_pairs import PairConfig, render_pairs

    pairs = render_pairs(PairConfig(n_scenes=n_scenes, seed=2_000_000))
    meta = DatasetMeta(fps=20.0, robot="ur5e_2f85", camera_names=["front", "wrist"])
    rb = ReplayBuffer.create(path, meta, overwrite=True)
    rng = np.random.default_rng(0)
    for i in range(n_scenes):
        ep = {f"image_{c}": np.repeat(pairs.images[c][i : i + 1], episode_len, 0) for c in pairs.images}
        ep["action"] = rng.normal(size=(episode_len, 7)).astype(np.float32)
        rb.add_episode(ep, pairs.texts["front"][i]["instruction"])
    return rb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="outputs/encoder/sim_siglip")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    # 1 thread by default: on a shared 2-core machine, 2 OpenMP threads competing with other
    # processes made a 7 ms head step take 200 ms (spinning barriers), hiding what is measured.
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    enc = build_encoder(EncoderConfig(family="siglip", model=args.model, max_text_len=16))
    rows: list[tuple[str, str, str]] = []
    res: dict = {
        "model": args.model,
        "fingerprint": enc.fingerprint,
        "tokens_per_image": enc.tokens_per_image,
        "dim": enc.dim,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    rng = np.random.default_rng(0)
    for b in (1, args.batch):
        obs = {c: rng.integers(0, 256, (b, 96, 96, 3), dtype=np.uint8) for c in ("front", "wrist")}
        s = timeit(lambda obs=obs: enc.encode_images(obs), args.repeats)
        res[f"encode_images_b{b}_s"] = s
        res[f"obs_per_s_b{b}"] = b / s
        res[f"frames_per_s_b{b}"] = 2 * b / s
        rows.append(
            (
                f"encode_images batch {b} (2 cams)",
                f"{s * 1e3:.1f} ms",
                f"{b / s:.1f} obs/s = {2 * b / s:.1f} frames/s",
            )
        )
    texts = [f"pick up the cube number {i}" for i in range(10_000)]
    it = iter(texts)
    miss = timeit(lambda: enc.encode_text([next(it)]), args.repeats)
    hit = timeit(lambda: enc.encode_text(["pick up the red cube"]), args.repeats)
    res.update(text_miss_s=miss, text_hit_s=hit, text_cache_speedup=miss / hit)
    rows.append(("encode_text miss / hit", f"{miss * 1e3:.2f} / {hit * 1e3:.3f} ms", f"x{miss / hit:.0f}"))

    with tempfile.TemporaryDirectory() as tmp:
        rb = build_store(Path(tmp) / "bench.zarr", n_scenes=32, episode_len=8)
        t = time.perf_counter()
        fp = precompute_embeddings(rb, enc, batch_size=args.batch)
        res["precompute_s"] = time.perf_counter() - t
        res["precompute_frames_per_s"] = 2 * rb.n_frames / res["precompute_s"]
        rows.append(
            (
                f"precompute {rb.n_frames} obs (vla-embed)",
                f"{res['precompute_s']:.2f} s",
                f"{res['precompute_frames_per_s']:.1f} frames/s",
            )
        )
        store = EmbeddingStore(rb, fp)
        ram = EmbeddingStore(rb, fp, in_memory=True)
        torch.manual_seed(0)
        head = Head(enc.dim)
        opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
        target = torch.randn(args.batch, 16, 7)
        idx_rng = np.random.default_rng(1)
        instr = rb.instructions

        def step(out) -> None:
            loss = torch.nn.functional.mse_loss(head(out.tokens, out.mask), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def precomputed() -> None:
            idx = np.sort(idx_rng.choice(rb.n_frames, args.batch, replace=False))
            step(store.encoder_output(idx))

        def precomputed_ram() -> None:
            idx = np.sort(idx_rng.choice(rb.n_frames, args.batch, replace=False))
            step(ram.encoder_output(idx))

        def online() -> None:
            idx = np.sort(idx_rng.choice(rb.n_frames, args.batch, replace=False))
            images = {c: np.asarray(rb.array(f"image_{c}").oindex[idx]) for c in ("front", "wrist")}
            step(enc.encode(images, [instr[e] for e in frame_episodes(rb, idx)]))

        a = timeit(precomputed, args.repeats)
        r = timeit(precomputed_ram, args.repeats)
        b = timeit(online, max(5, args.repeats // 2))
        res.update(
            train_step_precomputed_s=a,
            train_step_precomputed_in_memory_s=r,
            train_step_online_s=b,
            online_over_precomputed=b / a,
            online_over_precomputed_in_memory=b / r,
        )
        n = args.batch
        rows.append(
            (f"train step, precomputed from zarr (batch {n})", f"{a * 1e3:.1f} ms", f"{b / a:.1f}x faster")
        )
        rows.append(
            (f"train step, precomputed in memory (batch {n})", f"{r * 1e3:.1f} ms", f"{b / r:.1f}x faster")
        )
        rows.append((f"train step, encode every step (batch {n})", f"{b * 1e3:.1f} ms", "1.0x"))

    w = max(len(r[0]) for r in rows)
    print(
        f"encoder {args.model} ({enc.tokens_per_image} tokens/camera, D={enc.dim}), torch threads {torch.get_num_threads()}"
    )
    for name, v, extra in rows:
        print(f"{name:<{w}}  {v:>16}  {extra}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
