"""vla-bench output: one plain-text table per section, and the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def _f(x: Any, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _table(title: str, header: list[str], rows: list[list[Any]]) -> str:
    cells = [[_f(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [title, line, "-" * len(line)]
    out += [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells
    ]
    return "\n".join(out)


def format_report(res: dict[str, Any]) -> str:
    """All sections as aligned text tables (milliseconds unless stated)."""
    meta = res["meta"]
    parts = [
        f"vla-bench  torch {meta['torch']}  threads={meta['threads']}  devices={meta['devices']}  "
        f"quick={meta['quick']}  reps={meta['reps']}",
        f"policy weights: {meta['policy_weights']}",
    ]
    wm = res["world_model"]
    parts.append(
        _table(
            f"\n[world model] MuJoCo safety gate on the host CPU (horizon {wm['horizon']}, nthread {wm['nthread']}, "
            f"verdict: {wm['verdict']})",
            ["check", "p50 ms", "p99 ms", "mean ms"],
            [[r["check"], r["p50_ms"], r["p99_ms"], r["mean_ms"]] for r in wm["rows"]],
        )
    )
    for dev, d in res["devices"].items():
        e = d["encoder"]
        parts.append(
            _table(
                f"\n[{dev}] encoder {e['model']} ({e['weights']}), batch 1, {len(e['cameras'])} cameras, "
                f"{e['image_size_in']}->{e['image_size_model']} px, N={e['tokens']} D={e['dim']} {e['dtype']}",
                ["part", "variant", "p50 ms", "p99 ms", "mean ms", "max|diff|"],
                [
                    [r["part"], r["variant"], r["p50_ms"], r["p99_ms"], r["mean_ms"], r["max_abs_diff"]]
                    for r in e["rows"]
                ],
            )
        )
        parts.append(
            _table(
                f"\n[{dev}] policy heads, batch 1, random weights (timing only)",
                ["head", "denoiser", "params", "steps", "variant", "p50 ms", "p99 ms", "ms/step"],
                [
                    [
                        r["head"],
                        r["denoiser"],
                        r["params"],
                        r["steps"],
                        r["variant"],
                        r["p50_ms"],
                        r["p99_ms"],
                        r["p50_ms"] / r["steps"],
                    ]
                    for r in d["heads"]
                ],
            )
        )
        o = d["obs_to_action"]
        keys = ["encode", "head", "unnormalize", "gate", "policy (no gate)", "total"]
        rows = []
        for variant, v in o["variants"].items():
            rows += [[variant, k, v[k]["p50_ms"], v[k]["p99_ms"], v[k]["mean_ms"]] for k in keys]
        parts.append(
            _table(
                f"\n[{dev}] observation -> action ({o['weights']}; gate on the {o['gate_on']})",
                ["variant", "stage", "p50 ms", "p99 ms", "mean ms"],
                rows,
            )
        )
        s = d["sim"]
        parts.append(
            _table(
                f"\n[{dev}] {s['task']}: sync vs async, {s['policy']}, latency {s['latency']} "
                f"({_f(s['latency_ms'], 1)} ms), period {s['control_period_ms']:.0f} ms, gate={s['safety_gate']}",
                [
                    "mode",
                    "success",
                    "steps",
                    "finish s",
                    "wall s",
                    "misses",
                    "jerk@bound",
                    "jerk max",
                    "jerk inner",
                    "chunks",
                ],
                [
                    [
                        r["mode"],
                        r["success_rate"],
                        r["steps"],
                        r["time_to_finish_s"],
                        r["wall_time_s"],
                        r["deadline_misses"],
                        r["boundary_jerk_mean"],
                        r["boundary_jerk_max"],
                        r["interior_jerk_mean"],
                        r["chunks"],
                    ]
                    for r in s["rows"]
                ],
            )
        )
    parts.append(
        "\njerk: |third difference| of the joint commands [rad/s^3] at chunk boundaries vs inside chunks"
    )
    return "\n".join(parts)


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> null, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def write_json(res: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(_clean(res), indent=2, allow_nan=False) + "\n")
    return p
