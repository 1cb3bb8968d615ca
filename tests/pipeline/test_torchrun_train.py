"""`torchrun --standalone --nproc_per_node=2 -m vla.cli.train experiment=debug` (gloo on this CPU)
writes one run directory with a checkpoint that `vla-eval` loads and runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from hydra_helpers import compose
from pipeline_helpers import train_overrides

from vla.training import latest_checkpoint


def test_torchrun_two_processes(tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun is not None, "torchrun is installed with torch"
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        torchrun, "--standalone", "--nproc_per_node=2", "-m", "vla.cli.train",
        *train_overrides(tiny_dataset, tiny_encoder_dir), f"run_dir={run_dir}",
    ]  # fmt: skip
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    # One report, from rank 0, naming both processes.
    assert done.stdout.count("[vla-train] done: step 4") == 1, done.stdout
    assert "2 processes (gloo)" in done.stdout
    summary = json.loads((run_dir / "train_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["step"] == 4
    assert latest_checkpoint(run_dir).name == "4"
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["run"]  # no second run dir

    from vla.cli import eval as eval_cli

    cfg = compose(
        "eval",
        [
            f"checkpoint={run_dir}",
            "n_episodes=1",
            "n_videos=0",
            f"out_dir={tmp_path / 'eval'}",
            "progress=false",
        ],
    )
    eval_cli.run(cfg)
    res = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert res["n_episodes"] == 1 and res["mean_episode_length"] == 12


def test_debug_experiment_is_self_contained(tmp_path: Path, monkeypatch) -> None:
    """`vla-train experiment=debug` without the default dataset or encoder (a fresh clone: run
    from an empty directory) makes tiny ones under debug_assets.dir and trains on them; the saved
    config says so. (A dataset= the user names that does not exist stays an error: test_cli_errors.)"""
    from omegaconf import OmegaConf

    from vla.cli import train as train_cli

    monkeypatch.chdir(tmp_path)  # the default paths (outputs/...) are relative: absent here
    assets = tmp_path / "debug"
    cfg = compose("train", ["experiment=debug", f"debug_assets.dir={assets}"])
    out = train_cli.run(cfg, tmp_path / "run")
    assert (
        out.step == 4
        and (assets / "pick_cube.zarr").is_dir()
        and (assets / "encoder" / "config.json").is_file()
    )
    saved = OmegaConf.load(tmp_path / "run" / "config.yaml")
    assert saved.dataset == str(assets / "pick_cube.zarr") and saved.encoder.model == str(assets / "encoder")
    assert saved.task.env.image_size == 32 and not (tmp_path / "outputs" / "demos").exists()
