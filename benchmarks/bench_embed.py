"""`vla-embed` throughput: the embedding loop before and after the direct-read / prefetch / 1-thread fix.

    python -m benchmarks.bench_embed [--dataset outputs/demos/pick_cube_1k.zarr] [--episodes 40]

Copies the first `--episodes` episodes of `--dataset` (opened read-only, never written) into a
temporary store, then runs `precompute_embeddings` (default encoder configs/encoder/sim_siglip.yaml,
batch 32, float16) once per variant into that copy:

1. before: zarr slice reads, reads/encode/writes in series, torch's default thread count (the old CLI)
2. the same loop with 1 torch thread
3. + direct chunk reads (`ReplayBuffer.read_frames`, the sampler's reader)
4. + one I/O thread prefetching the next batch and writing the previous one (the new default)

Every variant's stored arrays must be bit-identical to variant 1's. Prints camera frames/s, the ratio
to variant 1 and the time projected for the whole `--dataset`; writes benchmarks/results/bench_embed.json.
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

from vla.data import ReplayBuffer
from vla.encoders import EncoderConfig, build_encoder
from vla.encoders.cache import EMBEDDINGS_GROUP, precompute_embeddings

RESULTS = Path(__file__).resolve().parent / "results" / "bench_embed.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="outputs/demos/pick_cube_1k.zarr")
    ap.add_argument("--episodes", type=int, default=40)
    ap.add_argument("--model", default="outputs/encoder/sim_siglip")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", type=Path, default=RESULTS, help=f"JSON path (default {RESULTS})")
    args = ap.parse_args()

    default_threads = torch.get_num_threads()  # what the old CLI ran with (one per core)
    src = ReplayBuffer.open(args.dataset, mode="r")
    k = min(args.episodes, src.n_episodes)
    cams = len(src.meta.camera_names)
    enc = build_encoder(EncoderConfig(family="siglip", model=args.model, max_text_len=16))
    variants = [
        ("before: zarr reads, serial, default threads", False, False, default_threads),
        ("zarr reads, serial, 1 thread", False, False, 1),
        ("direct reads, serial, 1 thread", True, False, 1),
        ("after: direct reads + I/O thread, 1 thread", True, True, 1),
    ]
    res: dict = {
        "dataset": args.dataset,
        "episodes": k,
        "model": args.model,
        "fingerprint": enc.fingerprint,
        "batch_size": args.batch,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_start": os.getloadavg()[0],
        "variants": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        rb = ReplayBuffer.create(Path(tmp) / "subset.zarr", src.meta)
        for i in range(k):
            rb.add_episode(src.episode(i), src.instructions[i], src.episode_info(i))
        frames = rb.n_frames * cams
        reference: dict[str, np.ndarray] | None = None
        for name, direct, prefetch, threads in variants:
            torch.set_num_threads(threads)
            t = time.perf_counter()
            fp = precompute_embeddings(
                rb, enc, batch_size=args.batch, overwrite=True, direct_reads=direct, prefetch=prefetch
            )
            dt = time.perf_counter() - t
            g = rb.root[EMBEDDINGS_GROUP][fp]
            got = {a: np.asarray(g[a][:]) for a in sorted(g.array_keys())}
            if reference is None:
                reference = got
            identical = got.keys() == reference.keys() and all(
                np.array_equal(got[a].view(np.uint8), reference[a].view(np.uint8)) for a in got
            )
            if not identical:
                raise SystemExit(f"{name}: stored embeddings differ from the first variant's")
            res["variants"].append(
                {
                    "name": name,
                    "direct_reads": direct,
                    "prefetch": prefetch,
                    "torch_threads": threads,
                    "seconds": dt,
                    "frames_per_s": frames / dt,
                    "bit_identical": identical,
                }
            )
    base = res["variants"][0]["frames_per_s"]
    total = src.n_frames * cams
    print(
        f"vla-embed on {k} episodes of {args.dataset} ({frames} camera frames, batch {args.batch}); "
        f"load average {res['load_avg_1min_at_start']:.2f} on {os.cpu_count()} CPUs"
    )
    w = max(len(v["name"]) for v in res["variants"])
    print(f"{'variant':<{w}}  {'threads':>7}  {'frames/s':>9}  {'ratio':>6}  whole dataset ({total} frames)")
    for v in res["variants"]:
        v["ratio"] = v["frames_per_s"] / base
        v["projected_dataset_s"] = total / v["frames_per_s"]
        print(
            f"{v['name']:<{w}}  {v['torch_threads']:>7}  {v['frames_per_s']:>9.1f}  "
            f"x{v['ratio']:>5.2f}  {v['projected_dataset_s'] / 60:.1f} min"
        )
    print("stored arrays bit-identical across variants: yes")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
