"""Training tokens in RAM vs memory-mapped (`data.tokens=ram|mmap`): setup time, private memory, and
the time to gather one batch's tokens, warm and with the page cache dropped.

    python -m benchmarks.bench_token_arrays --dataset outputs/demos/all_2k.zarr [--group NAME]
        [--modes mmap ram] [--batch-size 64] [--batches 200] [--cache-dir outputs/cache/tokens]

Opens the dataset's embeddings group (`--group`, default its first complete one; `--model` embeds a
dataset that has none, for small ones) the way `vla-train` does (`PrecomputedTokens`), then times
`--batches` gathers of `--batch-size` random frames' image tokens (the token part of a training
batch, float32 on return). `mmap` runs twice: the first setup builds the cache file (or reuses
it), the second reuses it; its gathers are timed first with the files evicted from the page cache
(`posix_fadvise(DONTNEED)`; cold: what a batch costs when the tokens do not fit), then again on the
same frames (warm). Private
memory is the process's RssAnon growth over the setup (memory the kernel cannot reclaim). Prints a
table with ratios to the first mode and writes benchmarks/results/bench_token_arrays.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "bench_token_arrays.json"


def rss_anon_bytes() -> int:
    """The process's anonymous (private, unreclaimable) resident memory, from /proc/self/status."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def _store(dataset: Path, group: str | None, model: str | None):
    from vla.data import ReplayBuffer
    from vla.encoders.cache import EmbeddingStore, embeddings_group

    rb = ReplayBuffer.open(dataset)
    emb = embeddings_group(rb)
    names = [] if emb is None else sorted(k for k, _ in emb.groups())
    complete = [n for n in names if emb[n].attrs.get("complete")]
    if not complete and model:
        from vla.encoders import EncoderConfig, build_encoder
        from vla.encoders.cache import precompute_embeddings

        enc = build_encoder(EncoderConfig(family="siglip", model=model, max_text_len=16))
        precompute_embeddings(ReplayBuffer.open(dataset, mode="a"), enc, dtype="float16")
        return _store(dataset, group, None)
    name = group or (complete[0] if complete else None)
    if name is None or name not in complete:
        raise SystemExit(
            f"{dataset}: no complete embeddings group {group or ''} (have {names}); give --model"
        )
    return EmbeddingStore(rb, str(emb[name].attrs["fingerprint"]))


def _gather_ms(images: list[torch.Tensor], frames: np.ndarray, batch: int) -> float:
    """Median ms to gather `batch` rows of every camera (as float32), over `frames` (n_batches, batch)."""
    times = []
    for idx in frames:
        t0 = time.perf_counter()
        cur = torch.from_numpy(idx)
        torch.cat([img[cur] for img in images], dim=1).float()
        times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def _drop_cache(paths: list[Path]) -> None:
    """Evict `paths` from the page cache (written back first: dirty pages are not dropped)."""
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--group", default=None, help="embeddings group name (default: the first complete one)")
    ap.add_argument("--model", default=None, help="encoder dir to embed a dataset that has no embeddings")
    ap.add_argument("--modes", nargs="+", default=["mmap", "ram"], choices=["mmap", "ram"])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--batches", type=int, default=200)
    ap.add_argument("--cache-dir", type=Path, default=Path("outputs/cache/tokens"))
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from vla.training.batches import PrecomputedTokens
    from vla.training.token_arrays import cache_path, image_tokens_nbytes

    store = _store(args.dataset, args.group, args.model)
    cams = list(store.cameras)
    n = int(store.rb.n_frames)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, n, size=(args.batches, args.batch_size))
    rows = []
    for mode in args.modes:
        for attempt in range(2 if mode == "mmap" else 1):
            anon0 = rss_anon_bytes()
            t0 = time.perf_counter()
            src = PrecomputedTokens(store, cams, use_text=False, mode=mode, cache_dir=str(args.cache_dir))
            setup_s = time.perf_counter() - t0
            anon = rss_anon_bytes() - anon0
            row = {
                "mode": mode if mode == "ram" else f"mmap ({'build or reuse' if attempt == 0 else 'reuse'})",
                "setup_s": round(setup_s, 2),
                "private_memory_gb": round(anon / 1e9, 3),
            }
            if mode == "mmap":
                # Cold first: pages this process has touched stay mapped and cannot be evicted.
                _drop_cache([cache_path(store, c, args.cache_dir) for c in cams])
                row["gather_ms_cold"] = round(_gather_ms(src.images, frames, args.batch_size), 3)
            row["gather_ms_warm"] = round(_gather_ms(src.images, frames, args.batch_size), 3)
            rows.append(row)
            del src
    base = rows[0]["gather_ms_warm"]
    for r in rows:
        r["warm_ratio_vs_first"] = round(r["gather_ms_warm"] / base, 2)
    gb = image_tokens_nbytes(store, cams) / 1e9
    print(
        f"\nimage tokens of {args.dataset} ({n} frames, cameras {cams}, {gb:.1f} GB at the stored "
        f"precision), batch {args.batch_size}, {args.batches} batches, {os.cpu_count()} CPUs"
    )
    print(f"{'mode':<24} {'setup s':>8} {'private GB':>10} {'warm ms':>8} {'ratio':>6} {'cold ms':>8}")
    for r in rows:
        cold = f"{r['gather_ms_cold']:>8.2f}" if "gather_ms_cold" in r else f"{'-':>8}"
        print(
            f"{r['mode']:<24} {r['setup_s']:>8.1f} {r['private_memory_gb']:>10.2f} {r['gather_ms_warm']:>8.2f} "
            f"{r['warm_ratio_vs_first']:>5.2f}x {cold}"
        )
    result = {
        "benchmark": "bench_token_arrays",
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "n_frames": n,
        "tokens_gb": round(gb, 3),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
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
