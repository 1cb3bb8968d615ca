"""Closed-loop evaluation of a ChunkPolicy in the simulator, through `vla.runtime`'s control loop.

    res = evaluate(VLAPolicy.from_checkpoint(run_dir), EvalConfig(task="pick_cube", n_episodes=50,
                   out_dir="outputs/eval/x"))
    res["success_rate"], res["success_ci95"]

Receding horizon: `ControlLoop` in sync mode executes `n_action_steps` of each chunk, then asks
for the next (optionally ACT temporal ensembling). The world-model safety gate checks every chunk
(on by default; `safety=False` turns it off) with the simulator's full state, so the gate sees the
objects too. Inference latency is charged as `latency_s` (0: the simulated robot waits for the
policy, as in the demonstrations; None: the measured compute time).

Writes to `out_dir`: `eval.json` (success rate + 95% Wilson CI, per-instruction breakdown, mean
episode length, chunk latency p50/p99, per-episode gate truncations/rejections), `eval.png`
(a plot), and `videos/episode_<i>.mp4` of the first `n_videos` episodes.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vla.runtime import ChunkPolicy, ControlLoop, RuntimeConfig, SimulatedClock, run_episode


@dataclass
class EvalConfig:
    """Settings of `evaluate`.

    task / env_overrides: simulator task and its config fields (image size, cameras, max_steps ...).
    n_episodes: episodes, seeds `seed, seed + 1, ...` (default far from the demo seeds 0..).
    max_steps: control steps per episode (None: the task's max_steps).
    n_action_steps: actions executed per chunk (None: the policy's own Ta).
    smoothing: "none" (receding horizon) or "ensemble" (ACT temporal ensembling, `ensemble_decay`).
    latency_s: inference latency charged per chunk in control time (None: measured).
    safety: run every chunk through the world-model safety gate (`safety_config`).
    n_videos: episodes recorded to mp4 (front view, `env.render()`).
    """

    task: str = "pick_cube"
    env_overrides: dict[str, Any] = field(default_factory=dict)
    n_episodes: int = 50
    seed: int = 100_000
    max_steps: int | None = None
    n_action_steps: int | None = None
    smoothing: str = "none"
    ensemble_decay: float = 0.01
    latency_s: float | None = 0.0
    safety: bool = True
    safety_config: str = "configs/safety/ur5e_default.yaml"
    n_videos: int = 3
    video_fps: int | None = None
    out_dir: str = "outputs/eval"
    progress: bool = True

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"EvalConfig.n_episodes must be >= 1, got {self.n_episodes}")
        if self.smoothing not in ("none", "ensemble"):
            raise ValueError(f"EvalConfig.smoothing must be 'none' or 'ensemble', got {self.smoothing!r}")
        if self.n_videos < 0:
            raise ValueError(f"EvalConfig.n_videos must be >= 0, got {self.n_videos}")


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved at 0 and n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


class _Recorder:
    """Gymnasium env wrapper that keeps the episode's instruction, (optionally) rendered frames, and
    where the gripper was first commanded closed (`grasp`, see `_grasp_report`)."""

    def __init__(self, env: Any) -> None:
        self.env = env
        self.record = False
        self.frames: list[np.ndarray] = []
        self.instruction = ""
        self.grasp: dict[str, Any] = {}
        self._steps = 0

    def reset(self, **kw: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kw)
        self.instruction = str(obs.get("instruction", info.get("instruction", "")))
        self.frames = [self.env.render()] if self.record else []
        self.grasp, self._steps = {}, 0
        return obs, info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._steps += 1
        if not self.grasp and len(action) > 6 and float(action[6]) > 0.5:
            self.grasp = _grasp_report(self.env.unwrapped.task, self._steps)
        out = self.env.step(action)
        if self.record:
            self.frames.append(self.env.render())
        return out


def _grasp_report(task: Any, step: int) -> dict[str, Any]:
    """Where the gripper was when it was first commanded closed: separates "closed on the wrong cube",
    "closed a few cm off the right one" and "never closed" (the failures need different fixes)."""
    out: dict[str, Any] = {"close_step": step}
    target, names = getattr(task, "target", None), list(getattr(task, "cube_names", []))
    if target is None or target not in names:
        return out
    pinch = task.pinch_pos()
    dist = {n: float(np.linalg.norm(pinch[:2] - task.cube_pos(n)[:2])) for n in names}
    out["close_xy_to_target_m"] = dist[target]
    out["close_height_above_target_m"] = float(pinch[2] - task.cube_pos(target)[2])
    out["close_nearest_is_target"] = min(dist, key=dist.get) == target
    return out


def _make_gate(env: Any, cfg: EvalConfig):
    from sim.safety.config import load_safety_config
    from sim.safety.gate import SafetyGate

    path = Path(cfg.safety_config)
    if not path.is_file():
        raise FileNotFoundError(f"EvalConfig.safety_config: {path} does not exist (or set safety=False)")
    gate = SafetyGate.for_env(env, load_safety_config(path))

    def check(q: np.ndarray, qd: np.ndarray, chunk: np.ndarray):
        # Full simulator state: the world model simulates the objects as they are now.
        return gate.filter(q, qd, chunk, full_state=gate.env_state(env))

    return gate, check


def evaluate(policy: ChunkPolicy, cfg: EvalConfig) -> dict[str, Any]:
    """Run `cfg.n_episodes` closed-loop episodes; write eval.json, eval.png, videos; return the results."""
    import sim

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = dict(cfg.env_overrides)
    if cfg.max_steps:
        # The env truncates at its own max_steps: a longer evaluation budget must reach it too.
        env_kwargs["max_steps"] = int(cfg.max_steps)
    env = sim.make(cfg.task, **env_kwargs)
    max_steps = int(env.unwrapped.cfg.max_steps)
    n_obs = int(getattr(policy, "n_obs_steps", 2))
    ta = int(cfg.n_action_steps or getattr(policy, "n_action_steps", 8))
    period = 1.0 / float(env.unwrapped.cfg.control_rate_hz)
    rcfg = RuntimeConfig(
        mode="sync",
        smoothing=cfg.smoothing,
        n_obs_steps=n_obs,
        n_action_steps=ta,
        ensemble_decay=cfg.ensemble_decay,
        threaded=False,
    )
    gate, check = _make_gate(env, cfg) if cfg.safety else (None, None)
    loop = ControlLoop(policy, rcfg, clock=SimulatedClock(period, latency_s=cfg.latency_s), gate=check)
    rec = _Recorder(env)
    episodes: list[dict[str, Any]] = []
    videos: list[str] = []
    compute: list[float] = []
    t0 = time.perf_counter()
    try:
        for i in range(cfg.n_episodes):
            rec.record = i < cfg.n_videos
            if gate is not None:
                gate.reset_stats()
            res = run_episode(rec, loop, max_steps=max_steps, seed=cfg.seed + i)
            s = res.stats.summary()
            compute += [c.compute_s for c in res.stats.chunks if np.isfinite(c.compute_s)]
            ep = {
                "episode": i,
                "seed": cfg.seed + i,
                "instruction": rec.instruction,
                "success": bool(res.success),
                "steps": int(res.steps),
                "success_step": int(res.success_step),
                "wall_time_s": float(res.wall_time_s),
                "chunks": int(s["chunks_requested"]),
                "gate_truncated": int(s["gate_truncations"]),
                "gate_rejected": int(s["gate_rejections"]),
                "gate_hold_steps": int(s["gate_holds"]),
                # Dense task score at the end (sim.tasks: reach, grasp, lift...): tells a miss by
                # centimetres from an arm that never went near the object.
                "final_progress": float(env.unwrapped.task.progress()),
                "grasp": dict(rec.grasp),  # {} when the gripper was never commanded closed
            }
            if gate is not None:
                ep["gate_by_check"] = dict(gate.stats.by_check)
            episodes.append(ep)
            if rec.record and rec.frames:
                videos.append(
                    str(_write_video(rec.frames, out / "videos" / f"episode_{i:03d}.mp4", cfg, env))
                )
            if cfg.progress:
                n_ok = sum(e["success"] for e in episodes)
                print(
                    f"[vla-eval] episode {i + 1}/{cfg.n_episodes}: {'success' if res.success else 'failure'} "
                    f"in {res.steps} steps ({res.wall_time_s:.1f} s) | {n_ok}/{i + 1} so far",
                    flush=True,
                )
    finally:
        loop.close()
        env.close()
        if gate is not None:
            gate.close()
    results = _summarise(episodes, compute, cfg, time.perf_counter() - t0, ta)
    results["videos"] = videos
    results["plot"] = str(_plot(results, episodes, compute, out / "eval.png"))
    (out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def _summarise(
    episodes: list[dict[str, Any]], compute: list[float], cfg: EvalConfig, seconds: float, ta: int
) -> dict[str, Any]:
    n = len(episodes)
    k = sum(e["success"] for e in episodes)
    lo, hi = wilson_interval(k, n)
    per: dict[str, list[bool]] = defaultdict(list)
    for e in episodes:
        per[e["instruction"]].append(e["success"])
    lat = np.asarray(compute, dtype=np.float64)
    return {
        "success_rate": k / n,
        "successes": k,
        "n_episodes": n,
        "success_ci95": [lo, hi],
        "per_instruction": {
            s: {"n": len(v), "successes": int(sum(v)), "success_rate": sum(v) / len(v)}
            for s, v in sorted(per.items())
        },
        "mean_episode_length": float(np.mean([e["steps"] for e in episodes])),
        "mean_final_progress": float(np.mean([e["final_progress"] for e in episodes])),
        "mean_success_length": float(np.mean([e["steps"] for e in episodes if e["success"]]))
        if k
        else float("nan"),
        "chunk_latency_p50_s": float(np.quantile(lat, 0.5)) if len(lat) else float("nan"),
        "chunk_latency_p99_s": float(np.quantile(lat, 0.99)) if len(lat) else float("nan"),
        "n_chunks": len(lat),
        "grasp_summary": _grasp_summary(episodes),
        "gate_truncated_total": sum(e["gate_truncated"] for e in episodes),
        "gate_rejected_total": sum(e["gate_rejected"] for e in episodes),
        "n_action_steps": ta,
        "eval_seconds": seconds,
        "config": asdict(cfg),
        "episodes": episodes,
    }


def _grasp_summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over episodes of where the gripper first closed (see `_grasp_report`)."""
    closed = [e["grasp"] for e in episodes if e.get("grasp")]
    located = [g for g in closed if "close_xy_to_target_m" in g]
    return {
        "never_closed": len(episodes) - len(closed),
        "closed": len(closed),
        "closed_nearest_target": sum(bool(g["close_nearest_is_target"]) for g in located),
        "median_close_xy_to_target_m": float(np.median([g["close_xy_to_target_m"] for g in located]))
        if located
        else float("nan"),
    }


def _write_video(frames: list[np.ndarray], path: Path, cfg: EvalConfig, env: Any) -> Path:
    import imageio.v2 as imageio

    path.parent.mkdir(parents=True, exist_ok=True)
    fps = cfg.video_fps or int(env.metadata.get("render_fps", 20))
    imageio.mimwrite(path, frames, fps=fps, macro_block_size=1)
    return path


def _plot(results: dict[str, Any], episodes: list[dict[str, Any]], compute: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    per = results["per_instruction"]
    names = list(per)
    rates = [per[s]["success_rate"] for s in names]
    axes[0].barh(range(len(names)), rates, color="tab:green")
    axes[0].set_yticks(range(len(names)), [f"{s} (n={per[s]['n']})" for s in names], fontsize=8)
    axes[0].set_xlim(0, 1)
    lo, hi = results["success_ci95"]
    axes[0].set_title(f"success {results['success_rate']:.0%} (95% CI {lo:.0%}-{hi:.0%})")
    ok = [e["steps"] for e in episodes if e["success"]]
    bad = [e["steps"] for e in episodes if not e["success"]]
    axes[1].hist(
        [ok, bad], bins=15, stacked=True, label=["success", "failure"], color=["tab:green", "tab:red"]
    )
    axes[1].set_xlabel("episode length [steps]")
    axes[1].legend()
    axes[1].set_title(f"mean length {results['mean_episode_length']:.1f}")
    if compute:
        axes[2].hist(np.asarray(compute) * 1e3, bins=30, color="tab:blue")
    axes[2].set_xlabel("chunk latency [ms]")
    axes[2].set_title(
        f"p50 {results['chunk_latency_p50_s'] * 1e3:.0f} ms, p99 {results['chunk_latency_p99_s'] * 1e3:.0f} ms"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
