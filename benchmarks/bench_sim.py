"""Simulation speed: render fps (full vs decimated meshes), env control steps/s, demo episodes/min.

    python -m benchmarks.bench_sim [--frames 60] [--steps 60] [--episodes 5]

Prints a table and writes benchmarks/results/bench_sim.json. Variants run side by side in one
process and are reported as ratios to the full-mesh baseline, since absolute numbers depend on the
load of this (shared, software-rendered) machine.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import sim

RESULTS = Path(__file__).resolve().parent / "results"


def render_fps(fast: bool, size: int, frames: int, lod: int = 800) -> float:
    env = sim.make("pick_cube", render_images=False, fast_meshes=fast, lod_max_faces=lod, image_size=size)
    env.reset(seed=0)
    env.render_camera("front")  # context creation and mesh upload are not timed
    t0 = time.perf_counter()
    for i in range(frames):
        env.render_camera("front" if i % 2 == 0 else "wrist")
    dt = time.perf_counter() - t0
    env.close()
    return frames / dt


def env_steps_per_s(steps: int, **overrides) -> float:
    env = sim.make("pick_cube", **overrides)
    obs, _ = env.reset(seed=0)
    expert = sim.make_expert(env)
    expert.reset()
    env.step(expert.act(obs))
    t0 = time.perf_counter()
    n = 0
    while n < steps:
        obs, _, terminated, truncated, _ = env.step(expert.act(obs))
        n += 1
        if terminated or truncated:
            obs, _ = env.reset(seed=n)
            expert.reset()
    dt = time.perf_counter() - t0
    env.close()
    return n / dt


def collect_episodes_per_min(episodes: int) -> dict:
    from vla.collect import CollectConfig, collect

    with tempfile.TemporaryDirectory() as tmp:
        res = collect(
            CollectConfig(
                task="pick_cube", n_episodes=episodes, out=os.path.join(tmp, "d.zarr"), progress=False
            )
        )
    return {
        "episodes": res.n_attempts,
        "seconds": res.seconds,
        "episodes_per_minute": res.episodes_per_minute,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--episodes", type=int, default=5)
    ap.add_argument(
        "--out", type=Path, default=RESULTS / "bench_sim.json", help="JSON path (default %(default)s)"
    )
    args = ap.parse_args()
    out: dict = {"MUJOCO_GL": os.environ.get("MUJOCO_GL"), "render_fps": [], "env_steps_per_s": []}

    print(f"{'render (1 camera)':<34} {'fps':>8} {'x full':>7}")
    for size in (96, 224):
        base = render_fps(False, size, args.frames)
        rows = [("full meshes", base)]
        for lod in (800, 300):
            rows.append((f"decimated <= {lod} faces/mesh", render_fps(True, size, args.frames, lod)))
        for name, fps in rows:
            print(f"{f'{size}x{size} {name}':<34} {fps:>8.1f} {fps / base:>6.2f}x")
            out["render_fps"].append({"size": size, "variant": name, "fps": fps, "ratio_to_full": fps / base})

    print(f"\n{'env.step, 2 cameras 96x96':<34} {'steps/s':>8} {'x full':>7}")
    variants = [
        ("full meshes", {"fast_meshes": False}),
        ("decimated meshes (default)", {}),
        ("no images (render_images=False)", {"render_images": False}),
    ]
    base = None
    for name, ov in variants:
        sps = env_steps_per_s(args.steps, **ov)
        base = base or sps
        print(f"{name:<34} {sps:>8.1f} {sps / base:>6.2f}x")
        out["env_steps_per_s"].append({"variant": name, "steps_per_s": sps, "ratio_to_full": sps / base})

    col = collect_episodes_per_min(args.episodes)
    print(
        f"\ndemo collection (pick_cube, 2 cameras 96x96, zarr): {col['episodes_per_minute']:.1f} episodes/min"
    )
    out["collect"] = col
    path = args.out
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
