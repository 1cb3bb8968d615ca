"""Safety-gate latency: one chunk of 1 s of motion and best-of-16, old gate vs new gate in one run.

    python -m benchmarks.bench_safety [--reps 30] [--reps-k 10] [--old-ref c54286c]

The new gate certifies a stop after every chunk: it simulates the chunk's 20 actions *and* the last
one held for ``stop.horizon_s`` (1 s), every 2 ms physics substep checked. The old gate (the
``sim/safety`` package at ``--old-ref``, loaded from git history into a private module; skipped when
the history is not available) simulated the 20 actions only. Cases:

- ``one chunk``: ``SafetyGate.check`` of a 1 s reach (the cost of every passing chunk);
- ``filter, cut``: ``SafetyGate.filter`` of a 1 s chunk that runs into the table (new: the search for
  the longest prefix whose stop is safe);
- ``best-of-16``: ``SafetyGate.select`` over 16 perturbed copies of the reach.

Goals (new gate, p50 as a fraction of the chunk's 1 s): one chunk <= 3% with 1 thread, best-of-16
<= 15% with 2 threads. Prints a table (ratios new / old per case and thread count) and writes
``benchmarks/results/bench_safety.json``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from sim.ik import ArmIK, down_quat
from sim.safety import SafetyGate, load_safety_config
from sim.scene import HOME_QPOS

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OLD_REF = "c54286c"  # the last commit whose gate checked the chunk's rows only
GOALS = {"one chunk": (1, 0.03), "best-of-16": (2, 0.15)}


def line_chunk(model, goal: np.ndarray, steps: int) -> np.ndarray:
    """(steps, 7) joint targets moving the pinch site on a line from home to ``goal`` (fingers down)."""
    ik = ArmIK(model)
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


def load_old(ref: str) -> tuple[types.ModuleType, object] | None:
    """The ``sim.safety`` package and default config at git ``ref``, as module ``_old_safety``."""
    try:
        files = subprocess.run(
            ["git", "ls-tree", "--name-only", f"{ref}:sim/safety"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
        cfg_text = subprocess.run(
            ["git", "show", f"{ref}:configs/safety/ur5e_default.yaml"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        print(f"[bench_safety] old gate at {ref} not available ({err}); new gate only", file=sys.stderr)
        return None
    tmp = Path(tempfile.mkdtemp(prefix="old_safety_"))
    pkg = tmp / "_old_safety"
    pkg.mkdir()
    for name in files:
        if not name.endswith(".py"):
            continue
        src = subprocess.run(
            ["git", "show", f"{ref}:sim/safety/{name}"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        (pkg / name).write_text(re.sub(r"\bsim\.safety\b", "_old_safety", src))
    (tmp / "old.yaml").write_text(cfg_text)
    sys.path.insert(0, str(tmp))
    mod = importlib.import_module("_old_safety")
    return mod, mod.load_safety_config(tmp / "old.yaml")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/safety/ur5e_default.yaml"))
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--reps-k", type=int, default=10)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--old-ref", default=OLD_REF, help="git ref of the old gate ('' to skip it)")
    ap.add_argument(
        "--out", type=Path, default=RESULTS / "bench_safety.json", help="JSON path (default %(default)s)"
    )
    args = ap.parse_args()
    new_cfg = load_safety_config(args.config)
    gates = {"new": (SafetyGate, new_cfg)}
    old = load_old(args.old_ref) if args.old_ref else None
    if old is not None:
        gates["old"] = (old[0].SafetyGate, old[1])
    horizon = round(new_cfg.control_rate_hz)  # 1 s of motion
    duration = horizon / new_cfg.control_rate_hz
    q = np.append(HOME_QPOS, 0.0)
    qd = np.zeros(6)
    rows = []
    for nthread in (1, 2):
        for version, (cls, base) in gates.items():
            cfg = dataclasses.replace(base, gate=dataclasses.replace(base.gate, nthread=nthread))
            with cls(cfg) as gate:
                model = gate.wm.model
                reach = line_chunk(model, np.array([0.5, 0.1, 0.12]), horizon)
                crash = line_chunk(model, np.array([0.45, 0.0, -0.03]), horizon)
                assert gate.check(q, qd, reach).safe
                rng = np.random.default_rng(0)
                # K candidates: the policy's chunk plus small perturbations (as a diffusion head samples).
                cands = reach[None] + rng.normal(0, 0.01, (args.k, horizon, 7)).astype(np.float32)
                cands[:, :, 6] = 0.0
                cases = {
                    "one chunk": (lambda g=gate, c=reach: g.check(q, qd, c), args.reps),
                    "filter, cut": (lambda g=gate, c=crash: g.filter(q, qd, c), args.reps_k),
                    f"best-of-{args.k}": (lambda g=gate, c=cands: g.select(q, qd, c), args.reps_k),
                }
                cut = gate.filter(q, qd, crash)
                for case, (fn, reps) in cases.items():
                    t = timed(fn, reps)
                    p50, p99 = np.percentile(t, 50), np.percentile(t, 99)
                    rows.append(
                        {
                            "case": case,
                            "gate": version,
                            "nthread": nthread,
                            "reps": len(t),
                            "p50_ms": 1e3 * p50,
                            "p99_ms": 1e3 * p99,
                            "p50_fraction": p50 / duration,
                            "p99_fraction": p99 / duration,
                            "rows_returned": len(cut.actions) if case == "filter, cut" else None,
                        }
                    )
    ref = {(r["case"], r["nthread"], r["gate"]): r["p50_ms"] for r in rows}
    for r in rows:
        old_ms = ref.get((r["case"], r["nthread"], "old"))
        r["new_over_old"] = None if old_ms is None else ref[(r["case"], r["nthread"], "new")] / old_ms
        goal = GOALS.get(r["case"].replace(f"-{args.k}", "-16"))
        r["goal_fraction"] = goal[1] if goal and goal[0] == r["nthread"] and r["gate"] == "new" else None
        r["meets_goal_p50"] = (
            None if r["goal_fraction"] is None else bool(r["p50_fraction"] <= r["goal_fraction"])
        )
    print(
        f"chunk: {horizon} actions = {duration:.1f} s of motion; new gate: + {new_cfg.stop.horizon_s:.1f} s stop, "
        f"{(horizon + new_cfg.stop_periods) * new_cfg.n_substeps} physics substeps checked (old: {horizon * new_cfg.n_substeps})"
    )
    print(
        f"{'case':<13} {'threads':>7} {'gate':>4} {'p50 ms':>8} {'p99 ms':>8} {'p50 frac':>9} {'goal':>6} {'new/old':>8}"
    )
    for r in sorted(rows, key=lambda r: (r["case"], r["nthread"], r["gate"])):
        goal = "" if r["goal_fraction"] is None else f"{r['goal_fraction']:.0%}"
        ratio = "" if r["new_over_old"] is None or r["gate"] == "old" else f"{r['new_over_old']:.2f}x"
        print(
            f"{r['case']:<13} {r['nthread']:>7} {r['gate']:>4} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['p50_fraction']:>8.1%} {goal:>6} {ratio:>8}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "config": args.config,
        "old_ref": args.old_ref if old is not None else None,
        "horizon": horizon,
        "chunk_seconds": duration,
        "stop_seconds": new_cfg.stop.horizon_s,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "rows": rows,
    }
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
