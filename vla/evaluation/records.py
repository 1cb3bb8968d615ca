"""One episode record and one summary for every closed-loop evaluation (`vla-eval`, `vla-deploy`).

Both write the same schema, so a person can diff `eval.json` against `results.json`:

    record = EpisodeRecord(episode=0, seed=100000, instruction="...", success=True, steps=57, ...)
    summary = summarize([record, ...], task="pick_cube")  # success + Wilson 95% CI, per instruction ...
    print(format_summary(summary))

Steps are control periods of the robot's clock until success (or the episode's end); `misses` are
periods in which no fresh action was ready (the robot held its last command); gate counters are
chunks the world-model gate changed (rate-limited, cut, held) and decisions with no safe stop.

Task diagnostics (why episodes failed) come from the task: each record's `extra` holds the entries of
`task.diagnostics()` at the episode's end, and `summarize(..., task=name)` adds the entries of that
task class's `summarize_diagnostics` over the episodes, so both runners summarize them with the one
function.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class EpisodeRecord:
    """One closed-loop episode (the fields both `vla-eval` and `vla-deploy` report)."""

    episode: int
    seed: int
    instruction: str
    success: bool
    steps: int
    final_progress: float = float("nan")
    success_step: int = -1
    wall_time_s: float = float("nan")
    chunks: int = 0
    misses: int = 0
    gate_limited: int = 0
    gate_truncated: int = 0
    gate_rejected: int = 0
    gate_hold_steps: int = 0
    gate_unsafe_stops: int = 0
    latency_ms: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # task diagnostics, runner specifics (timeouts ...)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("latency_ms")
        d["latency_ms"] = _percentiles(self.latency_ms)
        extra = d.pop("extra")
        d.update(extra)
        return d


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a binomial proportion (well-behaved at 0 and n)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # The interval contains p: at 0/n and n/n rounding put a bound 1e-17 inside it, which made the
    # error bars (p - lo, hi - p) negative and matplotlib refuse the plot of a 50/50 task.
    return (min(p, max(0.0, centre - half)), max(p, min(1.0, centre + half)))


def _percentiles(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"p50": None, "p99": None, "n": 0}
    arr = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "n": len(values)}


def summarize(records: list[EpisodeRecord], task: str | None = None) -> dict[str, Any]:
    """Success rate (+ Wilson 95% CI), per-instruction table, lengths, misses, latency, gate totals;
    with `task` (a registered `sim` task name) also the task's summary of its episode diagnostics."""
    n = len(records)
    k = sum(r.success for r in records)
    lo, hi = wilson_interval(k, n)
    per: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        per[r.instruction].append(r.success)
    lat = np.asarray([x for r in records for x in r.latency_ms], np.float64)
    wins = [r.steps for r in records if r.success]
    episodes = [r.as_dict() for r in records]
    summary = {
        "success_rate": k / n if n else 0.0,
        "successes": k,
        "misses": int(sum(r.misses for r in records)),
        "n_episodes": n,
        "success_ci95": [lo, hi],
        "per_instruction": {
            s: {"n": len(v), "successes": int(sum(v)), "success_rate": sum(v) / len(v)}
            for s, v in sorted(per.items())
        },
        "mean_episode_length": float(np.mean([r.steps for r in records])) if n else float("nan"),
        "mean_success_length": float(np.mean(wins)) if wins else float("nan"),
        "mean_final_progress": float(np.nanmean([r.final_progress for r in records])) if n else float("nan"),
        "mean_episode_wall_s": float(np.nanmean([r.wall_time_s for r in records])) if n else float("nan"),
        "chunk_latency_p50_s": float(np.quantile(lat, 0.5)) / 1e3 if len(lat) else float("nan"),
        "chunk_latency_p99_s": float(np.quantile(lat, 0.99)) / 1e3 if len(lat) else float("nan"),
        "n_chunks": int(sum(r.chunks for r in records)),
        "gate_limited_total": int(sum(r.gate_limited for r in records)),
        "gate_truncated_total": int(sum(r.gate_truncated for r in records)),
        "gate_rejected_total": int(sum(r.gate_rejected for r in records)),
        "gate_unsafe_stops_total": int(sum(r.gate_unsafe_stops for r in records)),
        "episodes": episodes,
    }
    templates: dict[str, list[bool]] = defaultdict(list)
    for r in records:
        if "template" in r.extra:
            templates[str(r.extra["template"])].append(r.success)
    if templates:  # instructions from a file (vla-eval instructions_file=): one row per template
        summary["per_template"] = {
            t: {"n": len(v), "successes": int(sum(v)), "success_rate": sum(v) / len(v)}
            for t, v in sorted(templates.items())
        }
    if task is not None:
        summary.update(summarize_diagnostics(task, episodes))
    return summary


def summarize_diagnostics(task: str, episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The task's summary entries over episode dicts (`EpisodeRecord.as_dict()`) holding its
    diagnostics: `sim`'s `Task.summarize_diagnostics` of the registered task `task`."""
    import sim

    return sim.task_class(task).summarize_diagnostics(episodes)


def format_summary(summary: dict[str, Any]) -> str:
    """A few human lines: success + CI, length, misses, latency, gate; then per instruction."""
    lo, hi = summary["success_ci95"]
    p50, p99 = summary["chunk_latency_p50_s"], summary["chunk_latency_p99_s"]
    lat = "n/a" if not np.isfinite(p50) else f"{1e3 * p50:.0f}/{1e3 * p99:.0f} ms"
    lines = [
        f"success {summary['successes']}/{summary['n_episodes']} = {100 * summary['success_rate']:.0f}% "
        f"(95% CI {100 * lo:.0f}-{100 * hi:.0f}%), mean length {summary['mean_episode_length']:.1f} steps, "
        f"missed periods {summary['misses']}, chunk latency p50/p99 {lat}, gate: "
        f"{summary['gate_limited_total']} limited, {summary['gate_truncated_total']} truncated, "
        f"{summary['gate_rejected_total']} held, {summary['gate_unsafe_stops_total']} without a safe stop "
        f"of {summary['n_chunks']} chunks"
    ]
    for text, e in summary["per_instruction"].items():
        lines.append(f"  {e['successes']}/{e['n']}  {text}")
    return "\n".join(lines)
