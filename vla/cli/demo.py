"""`make demo`: the whole default job on pick_cube, each stage through its own entry point.

    1. collect   vla-collect  >= n_demos scripted demos (skipped when the store matches the config)
    2. encoder   vla-pretrain-encoder (skipped when a checkpoint exists in encoder_dir)
    3. embed     vla-embed    (skipped by vla-embed itself when the embeddings are up to date)
    4. train     vla-train    the diffusion head (skipped when the run dir has a finished checkpoint)
    5. evaluate  vla-eval     closed loop, safety gate on; prints success rate + 95% CI, plot, videos
                              (eval_shards processes side by side, then merged into one report)

Configured by configs/demo.yaml; progress and time are printed per stage.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vla.cli.app import Command, entry
from vla.cli.tasks import task_config
from vla.paths import REPO_ROOT

COMMAND = Command(
    prog="vla-demo (make demo)",
    config="demo",
    summary="collect, pretrain the encoder, embed, train and evaluate the default pick_cube policy, each stage skipped when its output is up to date",
    examples=(
        "make demo",
        'python -m vla.cli.demo n_demos=200 \'train_overrides=["experiment=sim_cpu","train.steps=2000"]\'',
        "python -m vla.cli.demo task=place_cube out_dir=outputs/demo_place",
    ),
)


def _stage(name: str, t_start: float) -> None:
    print(f"\n=== [demo] {name} (t = {time.perf_counter() - t_start:.0f} s) ===", flush=True)


def _run(args: list[str]) -> None:
    cmd = [sys.executable, "-m", *args]
    print("[demo] $ " + " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO_ROOT)


def _run_parallel(jobs: list[list[str]]) -> None:
    """Run the entry points side by side; the first failure stops the others and is raised."""
    cmds = [[sys.executable, "-m", *args] for args in jobs]
    for cmd in cmds:
        print("[demo] $ " + " ".join(cmd[1:]) + " &", flush=True)
    procs = [subprocess.Popen(cmd, cwd=REPO_ROOT) for cmd in cmds]
    try:
        pending = list(zip(procs, cmds, strict=True))
        while pending:
            for p, cmd in list(pending):
                rc = p.poll()
                if rc is None:
                    continue
                pending.remove((p, cmd))
                if rc != 0:
                    raise subprocess.CalledProcessError(rc, cmd)
            time.sleep(0.2)
    finally:  # a failed shard or Ctrl-C: do not leave the others running
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            p.wait()


def dataset_matches(
    dataset: Path, task: str, n_demos: int, seed: int, env: dict[str, Any], noise: dict | None = None
) -> tuple[bool, str]:
    """Whether `dataset` is a valid store collected with this config (the collect.yaml beside it)."""
    from vla.data import ReplayBuffer

    saved = dataset.parent / f"{dataset.stem}.collect.yaml"
    if not dataset.exists():
        return False, f"{dataset} does not exist"
    if not saved.is_file():
        return False, f"{saved} (the config the store was collected with) is missing"
    c = OmegaConf.to_container(OmegaConf.load(saved), resolve=True)
    assert isinstance(c, dict)
    have = {**(c.get("task", {}).get("env") or {}), **(c.get("env_overrides") or {})}
    diffs = []
    if c.get("task", {}).get("name") != task:
        diffs.append(f"task {c.get('task', {}).get('name')!r} != {task!r}")
    if int(c.get("seed", -1)) != seed:
        diffs.append(f"seed {c.get('seed')} != {seed}")
    if int(c.get("n_episodes", 0)) < n_demos:
        diffs.append(f"n_episodes {c.get('n_episodes')} < {n_demos}")
    if have != env:
        diffs.append(f"env {have} != {env}")
    if (c.get("action_noise") or None) != (dict(noise) if noise else None):
        diffs.append(f"action_noise {c.get('action_noise')} != {noise}")
    if diffs:
        return False, f"{saved}: " + "; ".join(diffs)
    try:
        rb = ReplayBuffer.open(dataset)
    except Exception as e:  # a truncated or foreign store: recollect
        return False, f"{dataset}: not a readable dataset ({e})"
    if rb.n_episodes < n_demos:
        return False, f"{dataset}: {rb.n_episodes} episodes < {n_demos}"
    return True, f"{dataset}: {rb.n_episodes} episodes, config matches {saved}"


def run(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    r: dict[str, Any] = OmegaConf.to_container(cfg, resolve=True)  # type: ignore[assignment]
    task, dataset = str(r["task"]), Path(r["dataset"])
    task_cfg = task_config(task, "configs/demo.yaml: task")
    env = dict(task_cfg.get("env") or {})
    times: dict[str, float] = {}
    # Checked before the first stage, not after half an hour of them.
    shards = int(r["eval_shards"])
    if shards < 1:
        raise ValueError(f"configs/demo.yaml: eval_shards must be >= 1, got {shards}")

    _stage(f"1/5 collect {r['n_demos']} {task} demos", t0)
    t = time.perf_counter()
    noise = r.get("collect_action_noise")
    ok, why = dataset_matches(dataset, task, int(r["n_demos"]), int(r["collect_seed"]), env, noise)
    if ok:
        print(f"[demo] skip: {why}", flush=True)
    else:
        print(f"[demo] collecting: {why}", flush=True)
        _run(
            [
                "vla.cli.collect",
                f"task={task}",
                f"n_episodes={r['n_demos']}",
                f"out={dataset}",
                f"seed={r['collect_seed']}",
                f"workers={r['collect_workers']}",
                *_noise_override(noise),
                "overwrite=true",
            ]
        )
    times["collect"] = time.perf_counter() - t

    _stage("2/5 pretrain the encoder", t0)
    t = time.perf_counter()
    enc = Path(r["encoder_dir"])
    if (enc / "config.json").is_file() and any(enc.glob("*.safetensors")):
        print(f"[demo] skip: {enc} has a pretrained encoder", flush=True)
    else:
        _run(["vla.cli.pretrain_encoder", f"out_dir={enc}", f"threads={r['threads']}"])
    times["pretrain_encoder"] = time.perf_counter() - t

    _stage("3/5 embed the dataset", t0)
    t = time.perf_counter()
    _run(["vla.cli.embed", f"dataset={dataset}", f"encoder.model={enc}", f"threads={r['threads']}"])
    times["embed"] = time.perf_counter() - t

    _stage(f"4/5 train the {r['policy']} head", t0)
    t = time.perf_counter()
    out = Path(r["out_dir"])
    run_dir = out / f"train_{r['policy']}"
    summary = run_dir / "train_summary.json"
    if summary.is_file() and not r["retrain"]:
        print(f"[demo] skip: {run_dir} already trained ({summary}; retrain=true to train again)", flush=True)
    elif not r["retrain"] and (run_dir / "config.yaml").is_file() and _has_checkpoint(run_dir):
        # An interrupted demo (Ctrl-C saves a checkpoint): go on from it instead of starting over.
        print(f"[demo] resuming the interrupted training in {run_dir}", flush=True)
        _run(["vla.cli.train", f"resume={run_dir}"])
    else:
        _run(
            [
                "vla.cli.train",
                f"task={task}",
                f"policy={r['policy']}",
                f"dataset={dataset}",
                f"encoder.model={enc}",
                f"run_dir={run_dir}",
                *r["train_overrides"],
            ]
        )
    times["train"] = time.perf_counter() - t

    _stage(f"5/5 evaluate on {r['eval_episodes']} episodes", t0)
    t = time.perf_counter()
    eval_dir = out / "eval"
    ev = [
        "vla.cli.eval",
        f"checkpoint={run_dir}",
        f"n_episodes={r['eval_episodes']}",
        f"out_dir={eval_dir}",
        "progress=false",
        *r["eval_overrides"],
    ]
    if shards == 1:
        _run(ev)
    else:
        _run_parallel([[*ev, f"num_shards={shards}", f"shard={i}"] for i in range(shards)])
        _run([*ev, f"num_shards={shards}", "merge=true"])
    times["eval"] = time.perf_counter() - t

    res = json.loads((eval_dir / "eval.json").read_text())
    lo, hi = res["success_ci95"]
    total = time.perf_counter() - t0
    print("\n=== [demo] result ===")
    print(
        f"task {task}: {r['policy']} head success {res['successes']}/{res['n_episodes']} = "
        f"{res['success_rate']:.0%} (95% Wilson CI {lo:.0%}-{hi:.0%})"
    )
    for s, v in res["per_instruction"].items():
        print(f"  {s!r}: {v['successes']}/{v['n']}")
    print(
        f"mean episode length {res['mean_episode_length']:.1f} steps | chunk latency p50 "
        f"{res['chunk_latency_p50_s'] * 1e3:.0f} ms, p99 {res['chunk_latency_p99_s'] * 1e3:.0f} ms"
    )
    print(f"eval.json: {eval_dir / 'eval.json'}\nplot: {res['plot']}\nvideos: {', '.join(res['videos'])}")
    print(
        "stage times [s]: " + ", ".join(f"{k} {v:.0f}" for k, v in times.items()) + f" | total {total:.0f} s"
    )
    return {"eval": res, "times": times, "total_s": total}


def _has_checkpoint(run_dir: Path) -> bool:
    from vla.training.checkpoint import latest_checkpoint

    return latest_checkpoint(run_dir) is not None


def _noise_override(noise: dict | None) -> list[str]:
    """vla-collect override for the demo's action noise (none when null)."""
    if not noise:
        return []
    return ["action_noise={" + ", ".join(f"{k}: {v}" for k, v in noise.items()) + "}"]


def _body(cfg: DictConfig, overrides: list[str]) -> int:
    run(cfg)
    return 0


main = entry(COMMAND, _body)


if __name__ == "__main__":
    main()
