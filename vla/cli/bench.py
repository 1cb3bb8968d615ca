"""`vla-bench`: latency of every stage of the stack, on CPU and CUDA, in one run (configs/bench.yaml).

Prints one table per section and writes `outputs/bench/<timestamp>/bench.json` (or `out=`), with
the resolved config beside it. Without `checkpoint=` every network has random weights (timing only).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry

COMMAND = Command(
    prog="vla-bench",
    config="bench",
    summary="time every stage of the stack (encoder, head, gate, loop) on CPU and CUDA; one table + bench.json",
    examples=(
        "vla-bench",
        "vla-bench checkpoint=outputs/train/<run> quick=true",
    ),
)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def bench_config(r: dict[str, Any]) -> Any:
    """The typed `BenchConfig` of a resolved bench.yaml (quick overrides applied)."""
    from benchmarks.stack import BenchConfig, HeadSpec, SimMode
    from vla.encoders import EncoderConfig
    from vla.fastpath import FastPathConfig

    if r.get("quick"):
        r = _merge(r, r.get("quick_overrides") or {})
    heads = []
    for label, values in (r.get("heads") or {}).items():
        v = dict(values)
        if "name" not in v:
            raise ValueError(f"configs/bench.yaml: heads.{label} has no 'name' (policy registry name)")
        heads.append(HeadSpec(label, str(v.pop("name")), v))
    modes = []
    for m in r["sim"]["modes"]:
        mode, _, smoothing = str(m).partition("+")
        modes.append(SimMode(mode, smoothing or "none"))
    task = r["task"]
    return BenchConfig(
        encoder=EncoderConfig.from_dict(dict(r["encoder"]), source="configs/bench.yaml:encoder"),
        heads=heads,
        device=str(r["device"]),
        encoder_random_if_missing=bool(r["encoder_random_if_missing"]),
        pipeline_head=str(r["pipeline_head"]),
        denoise_steps=tuple(int(s) for s in r["denoise_steps"]),
        checkpoint=r.get("checkpoint"),
        task=str(task["name"]),
        env_overrides={
            k: v for k, v in (task.get("env") or {}).items() if k not in ("image_size", "cameras")
        },
        cameras=tuple(task["env"]["cameras"]),
        image_size=int(r.get("image_size") or task["env"]["image_size"]),
        n_obs_steps=int(r["n_obs_steps"]),
        horizon=int(r["horizon"]),
        n_action_steps=int(r["n_action_steps"]),
        instruction=str(r["instruction"]),
        reps=int(r["reps"]),
        warmup=int(r["warmup"]),
        gate_k=int(r["gate_k"]),
        **({"safety_config": str(r["safety_config"])} if r.get("safety_config") else {}),
        sim_modes=modes,
        sim_episodes=int(r["sim"]["episodes"]),
        sim_max_steps=r["sim"].get("max_steps"),
        sim_seed=int(r["sim"]["seed"]),
        sim_safety=bool(r["sim"]["safety"]),
        threads=int(r["threads"]),
        fastpath=FastPathConfig(**r["fastpath"]),
        seed=int(r["seed"]),
    )


def run(cfg: DictConfig) -> tuple[dict[str, Any], Path]:
    from benchmarks.stack import format_report, run_bench, write_json

    r: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    bcfg = bench_config(r)
    out = Path(r.get("out") or Path("outputs/bench") / time.strftime("%Y-%m-%d_%H-%M-%S") / "bench.json")
    res = run_bench(bcfg, quick=bool(r.get("quick")))
    print(format_report(res), flush=True)
    path = write_json(res, out)
    (path.parent / "bench_config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print(f"[vla-bench] results: {path}", flush=True)
    return res, path


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    run(cfg)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
