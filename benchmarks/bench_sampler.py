"""Sampler throughput: SequenceDataset windows (To=2, T=16, 2 cameras) through a torch DataLoader.

    python -m benchmarks.bench_sampler [--sizes 96 224] [--workers 0 2] [--reads zarr direct] [--batches 30]

Builds a temporary native store per image size (synthetic rendered-like frames: smooth background,
moving boxes, sensor noise), then times random batches with DataLoader num_workers 0 and 2, for both
image read paths (zarr's API and direct chunk decoding). Prints a table (samples/s and the ratio to
zarr reads with workers 0) and writes benchmarks/results/bench_sampler.json.
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

from vla.data import DatasetMeta, ReplayBuffer, SequenceDataset

RESULTS = Path(__file__).resolve().parent / "results" / "bench_sampler.json"


def synthetic_episode(seed: int, T: int, hw: int) -> dict[str, np.ndarray]:
    """Frames that compress like rendered scenes (not like pure noise, not like flat colour)."""
    rng = np.random.default_rng(seed)
    yy = np.mgrid[0:hw, 0:hw][0].astype(np.float32) / hw
    ep: dict[str, np.ndarray] = {}
    for cam, tint in (("front", (0.6, 0.7, 0.8)), ("wrist", (0.8, 0.6, 0.5))):
        frames = np.empty((T, hw, hw, 3), np.uint8)
        base = np.stack([(0.5 + 0.5 * yy) * c for c in tint], -1) * 255
        for t in range(T):
            img = base.copy()
            cx, cy = int(hw * (0.2 + 0.6 * t / T)), int(hw * 0.5)
            s = hw // 8
            img[cy - s : cy + s, max(0, cx - s) : cx + s] = (200, 40, 40)
            img += rng.normal(0, 2.0, img.shape)
            frames[t] = np.clip(img, 0, 255).astype(np.uint8)
        ep[f"image_{cam}"] = frames
    ep["state"] = rng.normal(size=(T, 7)).astype(np.float32)
    ep["action"] = rng.normal(size=(T, 7)).astype(np.float32)
    return ep


def build_store(path: Path, hw: int, episodes: int, frames: int) -> tuple[ReplayBuffer, float, int]:
    meta = DatasetMeta(
        fps=20.0, robot="ur5e_2f85", joint_names=[f"j{i}" for i in range(7)], camera_names=["front", "wrist"]
    )
    rb = ReplayBuffer.create(path, meta, overwrite=True)
    t0 = time.perf_counter()
    for e in range(episodes):
        rb.add_episode(synthetic_episode(e, frames, hw), instruction="pick up the red cube")
    write_s = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return ReplayBuffer.open(path), write_s, size


def time_loader(ds: SequenceDataset, workers: int, batch_size: int, batches: int, warmup: int) -> float:
    g = torch.Generator().manual_seed(0)
    # Uniform random windows with replacement, so the run length does not depend on the dataset size.
    sampler = torch.utils.data.RandomSampler(
        ds, replacement=True, num_samples=(warmup + batches) * batch_size, generator=g
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True
    )
    it = iter(loader)
    for _ in range(warmup):  # worker start-up and first-touch caches are not throughput
        next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        b = next(it)
        n += b["action"].shape[0]
    dt = time.perf_counter() - t0
    del it
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[96, 224], help="image sizes (square)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument(
        "--reads",
        nargs="+",
        default=["zarr", "direct"],
        choices=["zarr", "direct"],
        help="image read path: zarr's API, or direct chunk-file decoding (vla.data.frame_reader)",
    )
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--frames", type=int, default=80, help="frames per episode")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for hw in args.sizes:
            rb, write_s, size = build_store(Path(tmp) / f"bench_{hw}.zarr", hw, args.episodes, args.frames)
            raw = rb.n_frames * 2 * hw * hw * 3
            base = None
            for reads in args.reads:
                ds = SequenceDataset(
                    rb,
                    ["image_front", "image_wrist", "state"],
                    n_obs_steps=2,
                    horizon=16,
                    direct_image_reads=reads == "direct",
                )
                for w in args.workers:
                    sps = time_loader(ds, w, args.batch_size, args.batches, args.warmup)
                    base = sps if base is None else base
                    rows.append(
                        {
                            "image_hw": hw,
                            "reads": reads,
                            "workers": w,
                            "samples_per_s": round(sps, 1),
                            "ratio_vs_first": round(sps / base, 2),
                            "frames": rb.n_frames,
                            "write_frames_per_s": round(rb.n_frames / write_s, 1),
                            "compression_ratio": round(raw / size, 2),
                        }
                    )

    print(
        f"\nSequenceDataset throughput (To=2, T=16, cameras front+wrist, batch {args.batch_size}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})"
    )
    print("ratio: samples/s relative to the first row of the same image size (zarr reads, workers 0)")
    print(
        f"{'image':>9} {'reads':>6} {'workers':>7} {'samples/s':>10} {'ratio':>6} {'write fr/s':>10} {'compress':>8}"
    )
    for r in rows:
        print(
            f"{r['image_hw']:>4}x{r['image_hw']:<4} {r['reads']:>6} {r['workers']:>7} {r['samples_per_s']:>10.1f} "
            f"{r['ratio_vs_first']:>5.2f}x {r['write_frames_per_s']:>10.1f} {r['compression_ratio']:>7.2f}x"
        )
    result = {
        "benchmark": "bench_sampler",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "n_obs_steps": 2,
        "horizon": 16,
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),  # shared machines: context for the figures
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
