"""vla-train experiment=debug writes a self-describing checkpoint; vla-eval runs it in the simulator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hydra_helpers import compose
from omegaconf import OmegaConf
from pipeline_helpers import train_overrides

from vla.training import latest_checkpoint


@pytest.mark.parametrize("policy", ["diffusion", "transformer"])
def test_debug_training_writes_checkpoint(debug_runs: dict[str, Path], policy: str) -> None:
    run = debug_runs[policy]
    ckpt = latest_checkpoint(run)
    assert ckpt is not None and ckpt.name == "4"  # experiment=debug: 4 steps
    for f in ("model.safetensors", "config.json", "shape_meta.json", "processor.json", "encoder.json"):
        assert (ckpt / f).is_file(), f
    proc = json.loads((ckpt / "processor.json").read_text())
    assert proc["cameras"] == ["front", "wrist"] and proc["n_obs_steps"] == 2 and proc["use_text"] is True
    assert proc["n_text_tokens"] > 0 and set(proc["normalizer"]["stats"]) == {"state", "action"}
    meta = json.loads((ckpt / "shape_meta.json").read_text())
    assert meta["cameras"] == ["front", "wrist"] and meta["horizon"] == 8 and meta["n_action_steps"] == 4
    assert json.loads((ckpt / "encoder.json").read_text())["fingerprint"].startswith("siglip-")
    saved = OmegaConf.load(run / "config.yaml")  # the resolved config
    assert saved.policy.name == policy and saved.train.steps == 4
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["token_source"] == "on_the_fly"  # the tiny dataset has no cached embeddings
    assert summary["step"] == 4 and math.isfinite(summary["last_loss"]) and summary["last_loss"] > 0


def test_resume_continues_a_run(tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path) -> None:
    from vla.cli import train as train_cli

    cfg = compose(
        "train", [*train_overrides(tiny_dataset, tiny_encoder_dir), "train.steps=2", "policy=transformer"]
    )
    train_cli.run(cfg, tmp_path)
    assert latest_checkpoint(tmp_path).name == "2"
    resumed = compose("train", [f"resume={tmp_path}", "train.steps=4"])
    out = train_cli.run(resumed, overrides=[f"resume={tmp_path}", "train.steps=4"])
    assert out.step == 4 and latest_checkpoint(tmp_path).name == "4"
    # The run dir's config now says 4 steps; the config it started with is kept.
    assert OmegaConf.load(tmp_path / "config.yaml").train.steps == 4
    assert OmegaConf.load(tmp_path / "config.initial.yaml").train.steps == 2
    with pytest.raises(ValueError, match="config group"):
        train_cli.resume_config(tmp_path, ["policy=diffusion"])


def test_eval_writes_results_plot_and_video(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    from vla.cli import eval as eval_cli

    out = tmp_path / "eval"
    cfg = compose(
        "eval",
        [
            f"checkpoint={debug_runs['diffusion']}",
            "n_episodes=2",
            "n_videos=1",
            f"out_dir={out}",
            "progress=false",
        ],
    )
    res = eval_cli.run(cfg)
    data = json.loads((out / "eval.json").read_text())
    assert data["n_episodes"] == 2 and len(data["episodes"]) == 2
    assert 0.0 <= data["success_ci95"][0] <= data["success_rate"] <= data["success_ci95"][1] <= 1.0
    assert sum(v["n"] for v in data["per_instruction"].values()) == 2
    assert data["mean_episode_length"] == 12  # untrained: runs to task.env.max_steps=12
    assert data["chunk_latency_p50_s"] > 0 and data["n_chunks"] >= 2 * 3  # Ta=4 over 12 steps
    assert all("gate_truncated" in e and "gate_rejected" in e for e in data["episodes"])
    # An untrained arm barely moves toward the cube: some reach credit, no grasp or lift.
    assert all(0.0 <= e["final_progress"] < 0.25 for e in data["episodes"])
    assert data["mean_final_progress"] == sum(e["final_progress"] for e in data["episodes"]) / 2
    assert data["config"]["safety"] is True
    g = data["grasp_summary"]
    assert g["closed"] + g["never_closed"] == 2
    for e in data["episodes"]:  # where the gripper first closed, if it did
        assert set(e["grasp"]) in (
            set(),
            {"close_step", "close_xy_to_target_m", "close_height_above_target_m", "close_nearest_is_target"},
        )
    assert (out / "eval.png").stat().st_size > 1000
    videos = list((out / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
    assert res["success_rate"] == data["success_rate"]


def test_eval_max_steps_overrides_the_env_limit(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    """max_steps longer than the task's own limit runs that long (the env no longer truncates first)."""
    from vla.cli import eval as eval_cli

    out = tmp_path / "eval"
    run, limit = debug_runs["diffusion"], "max_steps=16"
    cfg = compose(
        "eval", [f"checkpoint={run}", "n_episodes=1", "n_videos=0", limit, f"out_dir={out}", "progress=false"]
    )
    eval_cli.run(cfg)
    data = json.loads((out / "eval.json").read_text())
    assert data["episodes"][0]["steps"] == 16  # the debug task's env says 12


def test_eval_without_safety_gate_and_with_ensembling(debug_runs: dict[str, Path], tmp_path: Path) -> None:
    from vla.cli import eval as eval_cli

    cfg = compose(
        "eval",
        [
            f"checkpoint={debug_runs['transformer']}",
            "n_episodes=1",
            "n_videos=0",
            f"out_dir={tmp_path}",
            "progress=false",
            "safety_gate=false",
            "mode=sync",
            "latency_s=0",  # no time charged for inference: a chunk every control step
            "smoothing=ensemble",
            "n_action_steps=1",
        ],
    )
    data = eval_cli.run(cfg)
    assert data["config"]["safety"] is False and data["gate_truncated_total"] == 0
    assert data["n_chunks"] == 12  # a chunk every step with n_action_steps=1


def test_multirun_sweeps_both_heads(tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path) -> None:
    """`vla-train -m policy=diffusion,transformer` gives one run dir (with a checkpoint) per head."""
    import subprocess
    import sys

    sweep = tmp_path / "sweep"
    cmd = [
        sys.executable,
        "-m",
        "vla.cli.train",
        "-m",
        "policy=diffusion,transformer",
        *train_overrides(tiny_dataset, tiny_encoder_dir),
        f"hydra.sweep.dir={sweep}",
    ]
    subprocess.run(cmd, check=True, cwd=tmp_path, capture_output=True, timeout=300)
    for job in ("0_diffusion", "1_transformer"):
        assert latest_checkpoint(sweep / job) is not None, job
        assert OmegaConf.load(sweep / job / "config.yaml").policy.name == job.split("_")[1]


def test_plain_vla_train_trains_the_sim_cpu_model(
    tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path
) -> None:
    """The default head configs are the recipe: a few steps of plain `vla-train` and of
    `experiment=sim_cpu` (same steps, same threads) give bit-identical weights."""
    import torch
    from safetensors.torch import load_file

    from vla.cli import train as train_cli

    base = [
        f"dataset={tiny_dataset}",
        f"encoder.model={tiny_encoder_dir}",
        "task.env.image_size=32",
        "train.steps=2",
        "train.ckpt_every=2",
        "batch_size=4",
        "threads=1",
        "train.progress=false",
    ]
    weights = []
    for extra in ([], ["experiment=sim_cpu", "threads=1", "train.steps=2"]):
        run_dir = tmp_path / ("sim_cpu" if extra else "plain")
        train_cli.run(compose("train", [*base, *extra]), run_dir)
        weights.append(load_file(latest_checkpoint(run_dir) / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
