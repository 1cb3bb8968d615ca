"""Scripted-expert success rates: every task over N seeded episodes (no rendering).

    python -m benchmarks.bench_experts [--n 100] [--tasks pick_cube place_cube]

Prints a table and writes benchmarks/results/bench_experts.json. Also reports episode length,
the largest change of commanded joint velocity between steps (smoothness) and episodes in which
any robot geom touched the table (must be 0).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import sim
from sim.scene import TABLE_GEOM, robot_geom_ids

RESULTS = Path(__file__).resolve().parent / "results"


def run_task(task: str, n: int, seed0: int = 0) -> dict:
    env = sim.make(task, render_images=False)
    expert = sim.make_expert(env)
    m, d = env.model, env.data
    robot = set(robot_geom_ids(m).tolist())
    table = m.geom(TABLE_GEOM).id
    successes, lengths, table_hits, max_dd = 0, [], 0, 0.0
    failed_seeds = []
    t0 = time.perf_counter()
    for seed in range(seed0, seed0 + n):
        obs, _ = env.reset(seed=seed)
        expert.reset()
        actions, hit = [], False
        while True:
            a = expert.act(obs)
            actions.append(a[:6])
            obs, _, terminated, truncated, info = env.step(a)
            for c in d.contact[: d.ncon]:
                g1, g2 = int(c.geom1), int(c.geom2)
                if table in (g1, g2) and (g1 in robot or g2 in robot):
                    hit = True
            if terminated or truncated:
                break
        ok = bool(info["is_success"])
        successes += ok
        if not ok:
            failed_seeds.append(seed)
        lengths.append(len(actions))
        table_hits += hit
        if len(actions) > 2:
            max_dd = max(max_dd, float(np.abs(np.diff(np.asarray(actions), 2, axis=0)).max()))
    seconds = time.perf_counter() - t0
    env.close()
    return {
        "task": task,
        "episodes": n,
        "success_rate": successes / n,
        "failed_seeds": failed_seeds,
        "mean_length": float(np.mean(lengths)),
        "max_length": int(np.max(lengths)),
        "max_steps": env.cfg.max_steps,
        "table_contact_episodes": table_hits,
        "max_joint_target_second_diff_rad": max_dd,
        "episodes_per_minute_no_render": 60.0 * n / seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--tasks", nargs="*", default=None)
    ap.add_argument(
        "--out", type=Path, default=RESULTS / "bench_experts.json", help="JSON path (default %(default)s)"
    )
    args = ap.parse_args()
    rows = [run_task(t, args.n) for t in (args.tasks or sim.task_names())]
    head = f"{'task':<12} {'success':>8} {'mean len':>8} {'max len':>8} {'limit':>6} {'table hits':>10} {'max ddq':>8} {'ep/min':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['task']:<12} {100 * r['success_rate']:>7.1f}% {r['mean_length']:>8.1f} {r['max_length']:>8d} "
            f"{r['max_steps']:>6d} {r['table_contact_episodes']:>10d} {r['max_joint_target_second_diff_rad']:>8.3f} "
            f"{r['episodes_per_minute_no_render']:>7.1f}"
        )
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"episodes_per_task": args.n, "tasks": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
