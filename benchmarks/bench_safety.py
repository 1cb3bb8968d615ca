"""Safety-gate latency: one chunk of 1 s of motion, and best-of-16, with 1 and 2 rollout threads.

    python -m benchmarks.bench_safety [--reps 30] [--reps-k 10]

Reports p50/p99 wall time and the fraction of the chunk's duration it takes (goals: one chunk < 5%,
best-of-16 < 20%). Prints a table and writes benchmarks/results/bench_safety.json. Every physics
substep (2 ms) is checked for joint/workspace/force limits. Collision variants, side by side in one
run: ``sensors`` (default: MuJoCo evaluates forbidden near-contacts inside every physics step, all
substeps) and the reference ``twin`` (one Python collision call per evaluated substep, near-contacts
every ``collision_stride`` = 1 or 5 substeps). Ratios are against ``twin`` stride 1 at the same thread
count. The machine is shared, so the spread (p99) matters as much as p50.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from sim.ik import ArmIK, down_quat
from sim.safety import SafetyGate, load_safety_config
from sim.scene import HOME_QPOS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def reach_chunk(gate: SafetyGate, goal: np.ndarray, steps: int) -> np.ndarray:
    """(steps, 7) joint targets moving the pinch site on a line from home to ``goal`` (fingers down)."""
    ik = ArmIK(gate.wm.model)
    q = np.asarray(HOME_QPOS, np.float64)
    start = ik.site_pose(q)[0]
    rows = []
    for t in np.linspace(0, 1, steps + 1)[1:]:
        q, _ = ik.solve(start + t * (goal - start), down_quat(0.0), q)
        rows.append(np.append(q, 0.0))
    return np.asarray(rows, np.float32)


def timed(fn, reps: int) -> np.ndarray:
    fn()  # warm-up: buffers and thread pool
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/safety/ur5e_default.yaml"))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--reps-k", type=int, default=10)
    ap.add_argument("--k", type=int, default=16)
    args = ap.parse_args()
    base = load_safety_config(args.config)
    horizon = round(base.control_rate_hz)  # 1 s of motion
    duration = horizon / base.control_rate_hz
    q = np.append(HOME_QPOS, 0.0)
    qd = np.zeros(6)
    rng = np.random.default_rng(0)
    rows = []
    variants = [(m, s, t) for t in (1, 2) for m, s in (("twin", 1), ("twin", 5), ("sensors", 1))]
    for method, stride, nthread in variants:
        cfg = dataclasses.replace(base, gate=dataclasses.replace(base.gate, nthread=nthread))
        with SafetyGate(cfg, collision_stride=stride, collision_method=method) as gate:
            chunk = reach_chunk(gate, np.array([0.5, 0.1, 0.12]), horizon)
            assert gate.check(q, qd, chunk).safe
            # K candidates: the policy's chunk plus small perturbations (as a diffusion head would sample).
            cands = chunk[None] + rng.normal(0, 0.01, (args.k, horizon, 7)).astype(np.float32)
            cands[:, :, 6] = 0.0
            one = timed(lambda g=gate, c=chunk: g.check(q, qd, c), args.reps)
            many = timed(lambda g=gate, c=cands: g.select(q, qd, c), args.reps_k)
        for name, t, goal in (("one chunk", one, 0.05), (f"best-of-{args.k}", many, 0.20)):
            p50, p99 = np.percentile(t, 50), np.percentile(t, 99)
            rows.append(
                {
                    "case": name,
                    "collision_method": method,
                    "nthread": nthread,
                    "collision_stride": stride,
                    "reps": len(t),
                    "p50_ms": 1e3 * p50,
                    "p99_ms": 1e3 * p99,
                    "p50_fraction": p50 / duration,
                    "p99_fraction": p99 / duration,
                    "goal_fraction": goal,
                    "meets_goal_p50": bool(p50 / duration < goal),
                }
            )
    print(
        f"chunk: {horizon} actions = {duration:.1f} s of motion, {horizon * base.n_substeps} physics substeps"
    )
    ref = {(r["case"], r["nthread"], r["collision_method"], r["collision_stride"]): r["p50_ms"] for r in rows}
    for r in rows:
        r["speedup_vs_twin_stride1"] = ref[(r["case"], r["nthread"], "twin", 1)] / r["p50_ms"]
    print(
        f"{'case':<12} {'collision':>9} {'stride':>6} {'threads':>7} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'p50 frac':>9} {'p99 frac':>9} {'goal':>6} {'vs twin/1':>9}"
    )
    for r in sorted(rows, key=lambda r: (r["case"] != "one chunk", r["nthread"])):
        print(
            f"{r['case']:<12} {r['collision_method']:>9} {r['collision_stride']:>6} {r['nthread']:>7} "
            f"{r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} {r['p50_fraction']:>8.1%} {r['p99_fraction']:>8.1%} "
            f"{r['goal_fraction']:>5.0%} {r['speedup_vs_twin_stride1']:>8.2f}x"
        )
    speedup = ref[(f"best-of-{args.k}", 1, "sensors", 1)] / ref[(f"best-of-{args.k}", 2, "sensors", 1)]
    print(f"best-of-{args.k} (sensors): 2 threads are {speedup:.2f}x faster than 1 (p50)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "config": args.config,
        "horizon": horizon,
        "chunk_seconds": duration,
        "substeps_checked": horizon * base.n_substeps,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "machine": platform.machine(),
        "rows": rows,
        "best_of_k_thread_speedup": speedup,
    }
    (RESULTS / "bench_safety.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / 'bench_safety.json'}")


if __name__ == "__main__":
    main()
