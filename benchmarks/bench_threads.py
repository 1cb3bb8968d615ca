"""Training speed on a busy CPU: torch threads x OpenMP wait policy, with and without a competing
process. Prints a table and writes benchmarks/results/bench_threads.json.

    python -m benchmarks.bench_threads [--seconds 8] [--batch-size 64]

Each cell is a fresh subprocess (the OpenMP runtime reads OMP_WAIT_POLICY once, when torch loads)
running training steps of the default diffusion head on a fake batch of the default encoder's
token shape. "busy" runs one `while True: pass` process beside it, pinned nowhere (what another
job, a simulator or an editor's indexer does to a 2-core machine). Ratios are against the same
thread count's default policy on an idle machine, measured in the same run.

Why: with 2 threads, training was measured to fall from ~10 to ~0.2 steps/s whenever another
process used a core (OpenMP workers spin at their barriers, and a spinning worker that lost its
core holds up every step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "bench_threads.json"

_WORKER = r"""
import sys, time, torch
from policies import DiffusionConfig, make_policy
threads, seconds, bs, adaptive = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = DiffusionConfig(token_dim=128, n_tokens=144)
policy = make_policy("diffusion", cfg).train()
opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
batch = cfg.fake_batch(bs)
def step():
    loss, _ = policy.compute_loss(batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
for _ in range(3):
    step()
gov = None
if adaptive:
    from vla.training.threads import ThreadGovernor
    gov = ThreadGovernor(threads, window=5, probe_every=40)
n, t0 = 0, time.perf_counter()
while time.perf_counter() - t0 < seconds:
    t = time.perf_counter()
    step()
    if gov is not None:
        gov.tick(time.perf_counter() - t)
    n += 1
print(n / (time.perf_counter() - t0))
"""


# OpenMP waiting settings compared: libgomp's default (spin ~300k iterations at a barrier, then
# sleep), passive (sleep at once) and a short spin (GOMP_SPINCOUNT) in between.
POLICIES = {
    "default": {},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},
    "GOMP_SPINCOUNT=10000": {"GOMP_SPINCOUNT": "10000"},
    # The training loop's default: vla.training.threads.ThreadGovernor picks threads or 1 by step time.
    "adaptive (ThreadGovernor)": {},
}


def _cell(threads: int, policy: str, busy: bool, seconds: float, bs: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _WORKER,
                str(threads),
                str(seconds),
                str(bs),
                str(int(policy.startswith("adaptive"))),
            ],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON file to write")
    args = ap.parse_args()
    rows = []
    for threads in (1, 2):
        for policy in POLICIES if threads > 1 else ["default"]:
            for busy in (False, True):
                sps = _cell(threads, policy, busy, args.seconds, args.batch_size)
                rows.append(
                    {
                        "threads": threads,
                        "omp_wait_policy": policy,
                        "busy": busy,
                        "steps_per_s": sps,
                    }
                )
                print(
                    f"threads {threads} wait {policy or 'default':8s} {'busy' if busy else 'idle'}: {sps:.2f} steps/s",
                    flush=True,
                )
    base = {
        r["threads"]: r["steps_per_s"] for r in rows if r["omp_wait_policy"] == "default" and not r["busy"]
    }
    for r in rows:
        r["ratio_to_idle_default"] = r["steps_per_s"] / base[r["threads"]]
    print(
        "\n| threads | OpenMP waiting | competing process | steps/s | vs idle default |\n|---|---|---|---|---|"
    )
    for r in rows:
        print(
            f"| {r['threads']} | {r['omp_wait_policy']} | {'yes' if r['busy'] else 'no'} | "
            f"{r['steps_per_s']:.2f} | {r['ratio_to_idle_default']:.2f}x |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "rows": rows,
                "batch_size": args.batch_size,
                "seconds_per_cell": args.seconds,
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "date": time.strftime("%Y-%m-%d %H:%M"),
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\n{args.out}")


if __name__ == "__main__":
    main()
