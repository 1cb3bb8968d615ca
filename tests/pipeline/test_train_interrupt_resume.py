"""`vla-train` stopped by Ctrl-C keeps the step it was on; resuming reaches the same weights (and EMA) as
an uninterrupted run. Failed runs leave no orphan run dir; a batch bigger than the data is an error."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra_helpers import compose
from pipeline_helpers import train_overrides
from safetensors.torch import load_file

from vla.training import latest_checkpoint
from vla.training.checkpoint import list_checkpoints

VLA_TRAIN = str(Path(sys.executable).parent / "vla-train")
STEPS = 60  # ~2 s of training at the debug size: Ctrl-C lands well before the end


def _vla_train(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [VLA_TRAIN, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_ctrl_c_keeps_the_step_and_resume_matches_an_uninterrupted_run(
    tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path
) -> None:
    from vla.cli import train as train_cli

    args = [
        *train_overrides(tiny_dataset, tiny_encoder_dir),
        "policy=diffusion",  # EMA and diffusion noise: the EMA state and the RNG streams must resume
        f"train.steps={STEPS}",
        "train.ckpt_every=5",
        "threads=1",
    ]
    # Uninterrupted, in this process (after other tests used the global RNG: init must be seeded).
    full = tmp_path / "full"
    train_cli.run(compose("train", args), full)
    assert latest_checkpoint(full).name == str(STEPS)

    split = tmp_path / "split"
    proc = _vla_train([*args, f"run_dir={split}"])
    deadline = time.monotonic() + 120
    while not (split / "checkpoints" / "5" / "config.json").is_file():  # the first checkpoint
        if proc.poll() is not None:
            pytest.fail(
                f"vla-train exited ({proc.returncode}) before its first checkpoint:\n{proc.stderr.read()}"
            )
        assert time.monotonic() < deadline, "no first checkpoint after 120 s"
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err
    m = re.search(rf"stopped after step (\d+) of {STEPS}; checkpoint saved: (\S+);", err)
    assert m, err
    step = int(m.group(1))
    assert 5 <= step < STEPS
    assert Path(m.group(2)) == split / "checkpoints" / str(step)
    assert [s for s, _ in list_checkpoints(split)][-1] == step  # the interrupted step was saved
    assert f"vla-train resume={split}" in err

    resume = _vla_train([f"resume={split}"])
    _, err = resume.communicate(timeout=120)
    assert resume.returncode == 0, err
    summary = json.loads((split / "train_summary.json").read_text())
    assert (summary["start_step"], summary["steps_run"], summary["step"]) == (step, STEPS - step, STEPS)

    a, b = full / "checkpoints" / str(STEPS), split / "checkpoints" / str(STEPS)
    for f in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_file(a / f), load_file(b / f)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{f}:{k} differs after resume"


def test_batch_size_bigger_than_the_training_windows_is_an_error(
    tmp_path: Path, tiny_dataset: Path, tiny_encoder_dir: Path
) -> None:
    from vla.cli import train as train_cli
    from vla.training.job import run_training

    cfg = compose("train", [*train_overrides(tiny_dataset, tiny_encoder_dir), "batch_size=100000"])
    with pytest.raises(ValueError) as e:
        run_training(train_cli.to_job(cfg, tmp_path / "run"))
    msg = str(e.value)
    assert "\n" not in msg
    m = re.fullmatch(
        rf"{re.escape(str(tiny_dataset))}: (\d+) training windows \(from 3 episodes\) but batch_size=100000: "
        r"use batch_size=(\d+) or smaller, or a bigger dataset",
        msg,
    )
    assert m and m.group(1) == m.group(2) and 0 < int(m.group(1)) < 100000, msg
    assert not (tmp_path / "run").exists()


def test_fresh_run_dir_removes_only_a_failed_run_with_nothing_but_its_config(tmp_path: Path) -> None:
    from vla.training.job import fresh_run_dir

    def fail(path: Path, exc: BaseException, extra: str | None = None) -> None:
        with pytest.raises(type(exc)), fresh_run_dir(path) as d:
            assert d == path and d.is_dir()
            (d / "config.yaml").write_text("a: 1\n")
            if extra:
                (d / extra).parent.mkdir(parents=True, exist_ok=True)
                (d / extra).write_text("x")
            raise exc

    fail(tmp_path / "bad_config" / "run", ValueError("bad config"))
    assert not (tmp_path / "bad_config" / "run").exists() and (tmp_path / "bad_config").is_dir()
    fail(tmp_path / "ctrl_c", KeyboardInterrupt())
    assert not (tmp_path / "ctrl_c").exists()
    # Anything besides the config is kept: checkpoints, logs, a user's file.
    fail(tmp_path / "ckpt", ValueError("late failure"), "checkpoints/2/config.json")
    fail(tmp_path / "notes", ValueError("x"), "notes.txt")
    assert (tmp_path / "ckpt" / "checkpoints/2/config.json").is_file()
    assert (tmp_path / "notes" / "notes.txt").is_file() and (tmp_path / "notes" / "config.yaml").is_file()
    # A directory that existed before is never removed; a run that succeeds keeps its directory.
    (tmp_path / "existing").mkdir()
    fail(tmp_path / "existing", ValueError("x"))
    assert (tmp_path / "existing" / "config.yaml").is_file()
    with fresh_run_dir(tmp_path / "ok") as d:
        (d / "config.yaml").write_text("a: 1\n")
    assert (tmp_path / "ok" / "config.yaml").is_file()


def test_fresh_run_with_a_bad_dataset_leaves_no_run_dir(tmp_path: Path, tiny_encoder_dir: Path) -> None:
    from omegaconf import OmegaConf

    from vla.cli import train as train_cli
    from vla.training.job import fresh_run_dir, run_training

    cfg = compose("train", train_overrides(tmp_path / "missing.zarr", tiny_encoder_dir))
    run_dir = tmp_path / "runs" / "x"
    with pytest.raises((OSError, ValueError), match=r"missing\.zarr"), fresh_run_dir(run_dir):
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        run_training(train_cli.to_job(cfg, run_dir))
    assert not run_dir.exists()


def test_eval_json_records_whether_ema_weights_were_used(
    debug_runs: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import shutil

    from vla.evaluation.simulator import EvalConfig, evaluate
    from vla.policy import VLAPolicy

    src = latest_checkpoint(debug_runs["diffusion"])
    assert VLAPolicy.from_checkpoint(src).used_ema is True
    assert VLAPolicy.from_checkpoint(src, use_ema=False).used_ema is False
    ckpt = tmp_path / "ckpt"
    shutil.copytree(src, ckpt)
    (ckpt / "ema.safetensors").unlink()
    with caplog.at_level(logging.INFO, logger="vla"):
        policy = VLAPolicy.from_checkpoint(ckpt)  # EMA asked for (the default), not there
    assert policy.used_ema is False and policy.checkpoint == ckpt
    assert f"{ckpt}: no ema.safetensors; using the raw weights" in caplog.text
    out = tmp_path / "eval"
    cfg = EvalConfig(
        task="pick_cube",
        env_overrides={"image_size": 32},
        n_episodes=1,
        max_steps=4,
        safety=False,
        n_videos=0,
        out_dir=str(out),
        progress=False,
    )
    evaluate(policy, cfg)
    data = json.loads((out / "eval.json").read_text())
    assert data["used_ema"] is False and data["checkpoint"] == str(ckpt)
