"""Real time over ROS 2: missed control periods and success with injected inference latency, async+RTC vs sync.

    python -m benchmarks.bench_realtime [--checkpoint RUN_DIR] [--episodes 20] [--delays 0 100 300]

Each cell is one `vla-deploy robot=sim` run (a simulated robot process and the policy node's process
over loopback DDS, `vla.deploy.launch.run_deploy`) with every policy call lasting at least the
injected delay (`inject.inference_delay_ms`), on the same seeds (100000+). Rows: the loop's modes,
async inference with real-time chunking (what deployment runs) and synchronous chunks (the robot
waits while the policy computes). Without `--checkpoint` the scripted expert is the policy (it reads
the simulator's state through the policy process's replica; the timing path is the same).

Figures per cell: success rate (Wilson 95% CI), missed control periods (total, and per episode:
periods in which no fresh command was ready), mean episode length [control steps], chunk latency
p50/p99 as the loop measured it (policy + the gate on the worker). Prints a table with the ratios
to the 0 ms cell of the same mode and writes benchmarks/results/bench_realtime.json. Run it on an
otherwise idle machine: both processes share its cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from ros_bridge.config import PolicyNodeConfig, RobotNodeConfig
from vla.deploy.launch import DeployConfig, run_deploy
from vla.runtime.inject import InferenceDelay

RESULTS = Path(__file__).resolve().parent / "results"
MODES = {"async+rtc": ("async", "rtc"), "sync": ("sync", "none")}


def _sim_robot_node() -> RobotNodeConfig:
    """The simulated robot's rates as `vla-deploy robot=sim` runs it (configs/robot/sim.yaml)."""
    from omegaconf import OmegaConf

    from vla.paths import CONFIG_DIR

    r = OmegaConf.load(CONFIG_DIR / "robot" / "sim.yaml")
    return RobotNodeConfig(
        command_rate_hz=float(r.command_rate_hz),
        joint_state_rate_hz=float(r.joint_state_rate_hz),
        camera_rate_hz=float(r.camera_rate_hz),
    )


def run_cell(args: argparse.Namespace, mode: str, delay_ms: float, out: Path) -> dict:
    loop_mode, smoothing = MODES[mode]
    cfg = DeployConfig(
        robot="sim",
        source="checkpoint" if args.checkpoint else "expert",
        checkpoint=args.checkpoint or "",
        task=args.task,
        image_size=args.image_size,
        policy=PolicyNodeConfig(
            camera_names=tuple(args.cameras),
            n_action_steps=args.n_action_steps,
            mode=loop_mode,
            smoothing=smoothing,
            max_input_age_s=0.5,
        ),
        robot_node=_sim_robot_node(),
        inject=InferenceDelay(
            delay_s=delay_ms / 1e3, jitter_s=args.jitter_ms / 1e3, distribution=args.distribution
        ),
        n_episodes=args.episodes,
        seed=args.seed,
        episode_timeout_s=60.0,
        startup_timeout_s=120.0,
        out_dir=str(out),
    )
    t0 = time.monotonic()
    summary = run_deploy(cfg)
    eps = summary["episodes"]
    return {
        "mode": mode,
        "inference_delay_ms": delay_ms,
        "episodes": len(eps),
        "successes": summary["successes"],
        "success_rate": summary["success_rate"],
        "success_ci95": summary["success_ci95"],
        "misses": summary["misses"],
        "misses_per_episode": summary["misses"] / max(1, len(eps)),
        "missed_breakdown": {
            k: sum(e.get("missed", {}).get(k, 0) for e in eps)
            for k in ("missed_dry", "missed_late", "skipped")
        },
        # Periods the gate held the arm (a refused chunk, or past a cut chunk's stop until the next
        # one): safety holds, reported beside the misses, not in them.
        "gate_hold_periods": sum(int(e.get("gate_hold_steps", 0)) for e in eps),
        "mean_episode_length": summary["mean_episode_length"],
        "chunk_latency_p50_ms": 1e3 * summary["chunk_latency_p50_s"],
        "chunk_latency_p99_ms": 1e3 * summary["chunk_latency_p99_s"],
        "gate": {
            k: summary[k] for k in ("gate_limited_total", "gate_truncated_total", "gate_rejected_total")
        },
        "wall_s": time.monotonic() - t0,
        "results": str(out / "results.json"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--checkpoint", default="", help="run dir of a trained policy (default: the scripted expert)"
    )
    ap.add_argument("--task", default="pick_cube")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=100_000)
    ap.add_argument(
        "--delays", type=float, nargs="+", default=[0.0, 100.0, 300.0], help="injected delays [ms]"
    )
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--distribution", default="none")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--cameras", nargs="+", default=["front", "wrist"])
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--n-action-steps", type=int, default=8)
    ap.add_argument("--out", default="", help="folder for each run's logs (default: a temp dir)")
    ap.add_argument(
        "--json", type=Path, default=RESULTS / "bench_realtime.json", help="JSON path (default %(default)s)"
    )
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_realtime_"))
    rows = []
    for mode in args.modes:
        for delay in args.delays:
            print(f"\n=== {mode}, injected inference delay {delay:.0f} ms ===", flush=True)
            rows.append(run_cell(args, mode, delay, root / f"{mode.replace('+', '_')}_{delay:.0f}ms"))
    base = {r["mode"]: r for r in rows if r["inference_delay_ms"] == min(args.delays)}
    for r in rows:
        b = base.get(r["mode"])
        r["success_points_vs_base"] = None if b is None else 100 * (r["success_rate"] - b["success_rate"])
    print(
        f"\n{'mode':<10} {'delay ms':>8} {'success':>12} {'vs base':>8} {'misses':>7} {'/episode':>9} "
        f"{'held':>5} {'length':>7} {'lat p50':>8} {'lat p99':>8}"
    )
    for r in rows:
        d = r["success_points_vs_base"]
        print(
            f"{r['mode']:<10} {r['inference_delay_ms']:>8.0f} {r['successes']:>4}/{r['episodes']:<3} "
            f"{100 * r['success_rate']:>3.0f}% {'' if d is None else f'{d:+.0f}':>8} {r['misses']:>7} "
            f"{r['misses_per_episode']:>9.1f} {r['gate_hold_periods']:>5} {r['mean_episode_length']:>7.1f} {r['chunk_latency_p50_ms']:>8.0f} "
            f"{r['chunk_latency_p99_ms']:>8.0f}"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    out = {
        "policy": args.checkpoint or "scripted expert",
        "task": args.task,
        "seed": args.seed,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "json")},
        "rows": rows,
    }
    args.json.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.json} (runs in {root})")


if __name__ == "__main__":
    main()
