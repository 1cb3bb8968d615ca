"""Closed-loop evaluation of a ChunkPolicy in the simulator, through `vla.runtime`'s control loop.

    res = evaluate(VLAPolicy.from_checkpoint(run_dir), EvalConfig(task="pick_cube", n_episodes=50,
                   out_dir="outputs/eval/x"))
    res["success_rate"], res["success_ci95"]

The episodes run through `vla.runtime.ControlLoop`, the loop the ROS policy node runs: by default
in sync mode (receding horizon: `n_action_steps` of each chunk, then the next; optionally ACT
temporal ensembling), or async with real-time chunking (`mode="async", smoothing="rtc"`, what
`vla-deploy` runs). The world-model safety gate checks every chunk (on by default; `safety=False`
turns it off) with the simulator's full state, so the gate sees the objects too. Inference latency
is charged as `latency_s` (0: the simulated robot waits for the policy, as in the demonstrations;
None: the measured compute time). Episodes are `vla.evaluation.EpisodeRecord`s, summarized like
`vla-deploy`'s results.

Writes to `out_dir`: `eval.json` (success rate + 95% Wilson CI, per-instruction breakdown, mean
episode length, chunk latency p50/p99, per-episode gate truncations/rejections, the task's
diagnostics per episode and their summary (`sim.tasks.base.Task.diagnostics`), the checkpoint and
whether its EMA weights were used: `checkpoint`, `used_ema`), `eval.png`
(a plot), and `videos/episode_<i>.mp4` of the first `n_videos` episodes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from sim.tasks.base import GRIPPER_CLOSED
from vla.evaluation import EpisodeRecord, summarize
from vla.evaluation.phrasings import load_phrasings
from vla.runtime import ChunkPolicy, ControlLoop, RuntimeConfig, SimulatedClock, run_episode
from vla.shards import check_shard, shard_range

# The per-episode records of a shard (beside its eval.json), which `merge_shards` reads.
SHARD_RECORDS = "shard_records.json"


@dataclass
class EvalConfig:
    """Settings of `evaluate`.

    task / env_overrides: simulator task and its config fields (image size, cameras, max_steps ...).
    n_episodes: episodes, seeds `seed, seed + 1, ...` (default far from the demo seeds 0..).
    max_steps: control steps per episode (None: the task's max_steps).
    n_action_steps: actions executed per chunk (None: the policy's own Ta).
    mode: "sync" (the robot waits for each chunk) or "async" (the next chunk is computed while the
        current one runs; its latency is charged in control time).
    smoothing: "none" (receding horizon), "ensemble" (ACT temporal ensembling, `ensemble_decay`),
        "rtc" (real-time chunking, async only) or "auto" (rtc when async, else none).
    margin_steps: steps of slack on the delay estimate (async: the RTC prefix and the early trigger).
    latency_s: inference latency charged per chunk in control time (None: measured).
    safety: run every chunk through the world-model safety gate (`safety_config`).
    n_videos: episodes recorded to mp4 (front view, `env.render()`).
    instructions_file: JSON of instruction templates per task (`vla.evaluation.phrasings`): episode
        i gets the task's template i mod n, filled with the episode's colours/side; results per template.
    shard / num_shards: run only shard `shard`'s contiguous block of the n_episodes (`vla.shards`;
        episode i keeps seed `seed + i`); `merge_shards` joins the shards' results into the report
        the unsharded evaluation writes (`vla.evaluation.shards.merge_shards`).
    """

    task: str = "pick_cube"
    env_overrides: dict[str, Any] = field(default_factory=dict)
    n_episodes: int = 50
    seed: int = 100_000
    max_steps: int | None = None
    n_action_steps: int | None = None
    mode: str = "sync"
    smoothing: str = "none"
    margin_steps: int = 0
    ensemble_decay: float = 0.01
    latency_s: float | None = 0.0
    safety: bool = True
    safety_config: str | None = None  # None: the packaged configs/safety/ur5e_default.yaml
    instruction: str | None = None
    n_videos: int = 3
    video_fps: int | None = None
    out_dir: str = "outputs/eval"
    progress: bool = True
    shard: int = 0
    num_shards: int = 1
    instructions_file: str | None = None

    def __post_init__(self) -> None:
        if self.n_episodes < 1:
            raise ValueError(f"EvalConfig.n_episodes must be >= 1, got {self.n_episodes}")
        if self.mode not in ("sync", "async"):
            raise ValueError(f"EvalConfig.mode must be 'sync' or 'async', got {self.mode!r}")
        if self.smoothing == "auto":
            self.smoothing = "rtc" if self.mode == "async" else "none"
        if self.smoothing not in ("none", "ensemble", "rtc"):
            raise ValueError(
                f"EvalConfig.smoothing must be 'none', 'ensemble', 'rtc' or 'auto', got {self.smoothing!r}"
            )
        if self.instruction and self.instructions_file:
            raise ValueError("EvalConfig: instruction= and instructions_file= both set; pick one")
        if self.smoothing == "rtc" and self.mode != "async":
            raise ValueError("EvalConfig.smoothing='rtc' needs mode='async'")
        if self.n_videos < 0:
            raise ValueError(f"EvalConfig.n_videos must be >= 0, got {self.n_videos}")
        check_shard(self.shard, self.num_shards)
        if self.num_shards > self.n_episodes:
            raise ValueError(f"EvalConfig.num_shards={self.num_shards} > n_episodes={self.n_episodes}")


class EpisodeObserver(Protocol):
    """Sees every episode of `evaluate` as it runs (e.g. `vla.dagger.LabelRecorder`).

    on_reset: the env was just reset (`obs` its first observation), before the policy is asked.
    on_step: `action` (Da,) is about to be executed in the state `obs` was observed in.
    finish: after the last episode.
    """

    def on_reset(self, env: Any, obs: dict[str, Any]) -> None: ...
    def on_step(self, obs: dict[str, Any], action: np.ndarray) -> None: ...
    def finish(self) -> None: ...


class _Recorder:
    """Gymnasium env wrapper that keeps the episode's instruction and (optionally) rendered frames,
    hands every gripper command to the task's diagnostics (`Task.on_gripper_command`, before the
    action runs; `Task.diagnostics()` reads them at the episode's end) and to an `EpisodeObserver`."""

    def __init__(
        self, env: Any, instruction: str | None = None, observer: EpisodeObserver | None = None
    ) -> None:
        self.env = env
        self.override = instruction
        # Per episode: the task -> this episode's instruction (an instructions file's template).
        self.phrase: Any = None
        self._episode_text: str | None = instruction
        self.observer = observer
        self.record = False
        self.frames: list[np.ndarray] = []
        self.instruction = ""
        self._steps = 0
        self._obs: dict[str, Any] = {}

    def reset(self, **kw: Any) -> tuple[dict, dict]:
        obs, info = self.env.reset(**kw)  # clears the task's diagnostics
        self._episode_text = (
            self.phrase(self.env.unwrapped.task) if self.phrase is not None else self.override
        )
        if self._episode_text:
            obs = {**obs, "instruction": self._episode_text}
        self.instruction = str(obs.get("instruction", info.get("instruction", "")))
        self.frames = [self.env.render()] if self.record else []
        self._steps = 0
        self._obs = obs
        if self.observer is not None:
            self.observer.on_reset(self.env, obs)
        return obs, info

    def step(self, action: np.ndarray) -> tuple[dict, float, bool, bool, dict]:
        self._steps += 1
        if len(action) > 6:
            self.env.unwrapped.task.on_gripper_command(self._steps, float(action[6]) > GRIPPER_CLOSED)
        if self.observer is not None:
            self.observer.on_step(self._obs, action)
        out = self.env.step(action)
        if self._episode_text:
            out = ({**out[0], "instruction": self._episode_text}, *out[1:])
        self._obs = out[0]
        if self.record:
            self.frames.append(self.env.render())
        return out


def _make_gate(env: Any, cfg: EvalConfig):
    from sim.safety.config import load_safety_config
    from sim.safety.gate import SafetyGate
    from vla.paths import CONFIG_DIR

    path = Path(cfg.safety_config) if cfg.safety_config else CONFIG_DIR / "safety" / "ur5e_default.yaml"
    if not path.is_file():
        raise FileNotFoundError(
            f"safety_config: {path} does not exist (relative to {Path.cwd()}); give an existing safety "
            "YAML, null for the packaged default, or safety_gate=false to run without the gate"
        )
    gate = SafetyGate.for_env(env, load_safety_config(path))

    def check(q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, command: np.ndarray | None = None):
        # Full simulator state: the world model simulates the objects as they are now.
        return gate.filter(q, qd, chunk, full_state=gate.env_state(env), command=command)

    return gate, check


def evaluate(policy: ChunkPolicy, cfg: EvalConfig, observer: EpisodeObserver | None = None) -> dict[str, Any]:
    """Run `cfg.n_episodes` closed-loop episodes; write eval.json, eval.png, videos; return the results.

    `observer` sees every reset and every executed action (DAgger records and labels the episodes).
    """
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
        mode=cfg.mode,
        smoothing=cfg.smoothing,
        margin_steps=cfg.margin_steps,
        n_obs_steps=n_obs,
        n_action_steps=ta,
        ensemble_decay=cfg.ensemble_decay,
        threaded=False,
    )
    gate, check = _make_gate(env, cfg) if cfg.safety else (None, None)
    loop = ControlLoop(policy, rcfg, clock=SimulatedClock(period, latency_s=cfg.latency_s), gate=check)
    rec = _Recorder(env, cfg.instruction, observer)
    episodes: list[EpisodeRecord] = []
    videos: list[str] = []
    compute: list[float] = []
    t0 = time.perf_counter()
    todo = shard_range(cfg.n_episodes, cfg.shard, cfg.num_shards)
    phrasings = load_phrasings(cfg.instructions_file, [cfg.task]) if cfg.instructions_file else None
    try:
        for i in todo:
            template = phrasings.template(cfg.task, i) if phrasings is not None else None
            if phrasings is not None:
                rec.phrase = lambda task, t=template: phrasings.render(t, task.instruction_fields)
            rec.record = i < cfg.n_videos
            if gate is not None:
                gate.reset_stats()
            reseed = getattr(policy, "seed_sampling", None)
            if callable(reseed):
                # Episode i's sampling noise depends on its seed alone, not on the episodes before
                # it: a shard that starts at episode i runs it exactly as the whole evaluation does.
                reseed(cfg.seed + i)
            res = run_episode(rec, loop, max_steps=max_steps, seed=cfg.seed + i)
            s = res.stats.summary()
            compute += [c.compute_s for c in res.stats.chunks if np.isfinite(c.compute_s)]
            ep = EpisodeRecord(
                episode=i,
                seed=cfg.seed + i,
                instruction=rec.instruction,
                success=bool(res.success),
                steps=int(res.steps),
                # Dense task score at the end (`task.progress()`): tells a miss by
                # centimetres from an arm that never went near the object.
                final_progress=float(env.unwrapped.task.progress()),
                success_step=int(res.success_step),
                wall_time_s=float(res.wall_time_s),
                chunks=int(s["chunks_requested"]),
                misses=int(s["deadline_misses"]),
                gate_limited=int(s["gate_limited"]),
                gate_truncated=int(s["gate_truncations"]),
                gate_rejected=int(s["gate_rejections"]),
                gate_hold_steps=int(s["gate_holds"]),
                gate_unsafe_stops=int(s["gate_unsafe_stops"]),
                latency_ms=[1e3 * c.latency_s for c in res.stats.chunks if np.isfinite(c.latency_s)],
                # The task's diagnostics of the episode (why it failed), as vla-deploy records them.
                extra=dict(env.unwrapped.task.diagnostics()),
            )
            if template is not None:
                ep.extra["template"] = template
            if gate is not None:
                ep.extra["gate_by_check"] = dict(gate.stats.by_check)
                ep.extra["gate_braking"] = int(gate.stats.braking)
            episodes.append(ep)
            if rec.record and rec.frames:
                videos.append(
                    str(_write_video(rec.frames, out / "videos" / f"episode_{i:03d}.mp4", cfg, env))
                )
            if cfg.progress:
                n_ok = sum(e.success for e in episodes)
                print(
                    f"[vla-eval] episode {i + 1}/{cfg.n_episodes}: {'success' if res.success else 'failure'} "
                    f"in {res.steps} steps ({res.wall_time_s:.1f} s) | {n_ok}/{len(episodes)} so far",
                    flush=True,
                )
    finally:
        if observer is not None:
            observer.finish()
        loop.close()
        env.close()
        if gate is not None:
            gate.close()
    seconds = time.perf_counter() - t0
    ckpt = getattr(policy, "checkpoint", None)
    # Which weights were evaluated: EMA or raw (None: not a checkpoint policy, or not known), and
    # the denoising-step override (None: the head's own count), so a reuse can tell (vla-dagger).
    about = {
        "used_ema": getattr(policy, "used_ema", None),
        "checkpoint": str(ckpt) if ckpt else None,
        "num_inference_steps": getattr(policy, "num_inference_steps", None),
    }
    if cfg.num_shards > 1:
        raw = {
            "config": asdict(cfg),
            "episodes": [asdict(e) for e in episodes],
            "compute_s": compute,
            "videos": videos,
            "seconds": seconds,
            "n_action_steps": ta,
            **about,
        }
        write_json(out / SHARD_RECORDS, raw)
    return write_report(episodes, compute, cfg, seconds, ta, videos, about, out)


def write_report(
    episodes: list[EpisodeRecord],
    compute: list[float],
    cfg: EvalConfig,
    seconds: float,
    ta: int,
    videos: list[str],
    about: dict[str, Any],
    out: Path,
) -> dict[str, Any]:
    """Summary + plot of `episodes` -> out/eval.json, out/eval.png; returns the results (what
    `evaluate` writes; `vla.evaluation.shards.merge_shards` writes the same from shards' records)."""
    results = _summarise(episodes, compute, cfg, seconds, ta)
    results["videos"] = videos
    results.update(about)
    results["plot"] = str(_plot(results, results["episodes"], compute, out / "eval.png"))
    write_json(out / "eval.json", results)
    return results


def write_json(path: Path, data: Any) -> None:
    # Atomic: a scheduler that reads a shard's results while it is written sees the old file or the new.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    tmp.replace(path)


def _summarise(
    episodes: list[EpisodeRecord], compute: list[float], cfg: EvalConfig, seconds: float, ta: int
) -> dict[str, Any]:
    results = summarize(episodes, task=cfg.task)  # + the task's summary of its diagnostics
    # Compute time of the policy calls (the latency charged may be injected, e.g. 0).
    lat = np.asarray(compute, dtype=np.float64)
    results["chunk_latency_p50_s"] = float(np.quantile(lat, 0.5)) if len(lat) else float("nan")
    results["chunk_latency_p99_s"] = float(np.quantile(lat, 0.99)) if len(lat) else float("nan")
    results["gate_braking_total"] = sum(e.extra.get("gate_braking", 0) for e in episodes)
    results["n_action_steps"] = ta
    results["eval_seconds"] = seconds
    results["config"] = asdict(cfg)
    return results


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
