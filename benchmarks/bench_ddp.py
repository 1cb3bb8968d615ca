"""Training throughput of `vla.training.train` in 1 and 2 processes (torch.distributed, gloo on this
CPU; the same code runs NCCL on GPUs). Prints a table and writes benchmarks/results/bench_ddp.json.

    python -m benchmarks.bench_ddp [--steps 30] [--batch-size 64] [--threads 1]

Each row is a fresh job: `world` processes spawned on loopback, each training the default
diffusion head (configs/policy/diffusion.yaml, token shapes of the default encoder) on its part of
the same global batch (`batch_size` is global). Samples/s = global batch x steps / wall time of the
steps after the first 3 (warm-up, DDP bucket construction), measured on rank 0. Ratios are against
1 process x `threads` in the same run; 1 process x 2 `threads` uses the same cores as 2 processes x
`threads` (on a 2-core CPU: both cores either way), so those two rows compare intra-op threading
with data parallelism on equal hardware.

On N GPUs (no benchmark run here: no GPU in this environment):
    torchrun --standalone --nproc_per_node=N -m vla.cli.train train.device=cuda batch_size=<N x 64>
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

RESULTS = Path(__file__).resolve().parent / "results" / "bench_ddp.json"
WARMUP = 3


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Data(torch.utils.data.Dataset):
    def __init__(self, cfg, n: int) -> None:
        self.batch = cfg.fake_batch(n, torch.Generator().manual_seed(0))
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.batch.items()}


def _worker(rank: int, world: int, port: int, args: dict, out: str) -> None:
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(args["threads"])
    from policies import DiffusionConfig, make_policy
    from vla.training import ResumableLoader, TrainConfig, seed_everything, train
    from vla.training.distributed import init_from_env, shutdown

    ctx = init_from_env("cpu")
    try:
        cfg = DiffusionConfig(token_dim=128, n_tokens=144)  # the default encoder's token shapes
        seed_everything(0)
        policy = make_policy("diffusion", cfg)
        bs = args["batch_size"]
        loader = ResumableLoader(_Data(cfg, 4 * bs), bs, seed=0, part=ctx.shard_slice(bs))
        tcfg = dict(lr=1e-4, warmup_steps=1, log_every=1000, ckpt_every=0, progress=False)
        with tempfile.TemporaryDirectory() as tmp:
            # Warm-up run, then the timed steps as a resumed run of the same directory.
            train(policy, loader, TrainConfig(steps=WARMUP + args["steps"], **tcfg), tmp, until_step=WARMUP)
            ctx.barrier()
            t0 = time.perf_counter()
            train(policy, loader, TrainConfig(steps=WARMUP + args["steps"], **tcfg), tmp)
            ctx.barrier()
            dt = time.perf_counter() - t0
        if ctx.is_main:
            Path(out).write_text(json.dumps({"seconds": dt}))
    finally:
        shutdown()


def _run(world: int, args: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "r.json")
        if world == 1:
            os.environ.pop("WORLD_SIZE", None)
            _worker_single(args, out)
        else:
            mp.spawn(_worker, args=(world, _port(), args, out), nprocs=world, join=True)
        return float(json.loads(Path(out).read_text())["seconds"])


def _worker_single(args: dict, out: str) -> None:
    # One process through the same function, in a spawned process too (same start-up conditions).
    ctx = mp.get_context("spawn")
    p = ctx.Process(target=_worker, args=(0, 1, _port(), args, out))
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError(f"single-process run failed (exit {p.exitcode})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    rows = []
    # 1 x t, then the same cores as 1 process x 2t threads and as 2 processes x t threads.
    for world, threads in ((1, a.threads), (1, 2 * a.threads), (2, a.threads)):
        args = {"steps": a.steps, "batch_size": a.batch_size, "threads": threads}
        dt = _run(world, args)
        sps = a.batch_size * a.steps / dt
        rows.append({"processes": world, "threads_per_process": threads, "seconds": dt, "samples_per_s": sps})
        print(f"{world} process(es) x {threads} thread(s): {sps:.1f} samples/s ({dt:.1f} s)", flush=True)
    for r in rows:
        r["ratio_to_1_process"] = r["samples_per_s"] / rows[0]["samples_per_s"]
    print("\n| processes | threads each | global batch | samples/s | vs 1 process |\n|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['processes']} | {r['threads_per_process']} | {a.batch_size} | {r['samples_per_s']:.1f} | "
            f"{r['ratio_to_1_process']:.2f}x |"
        )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpu_count": os.cpu_count(), "machine": platform.machine(), "torch": torch.__version__}
    args = {"steps": a.steps, "batch_size": a.batch_size, "threads": a.threads}
    a.out.write_text(json.dumps({"rows": rows, "args": args, "backend": "gloo", **meta}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
