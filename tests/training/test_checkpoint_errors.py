"""Broken checkpoints are one clear error naming the directory or file; a missing EMA file is a notice
(and `CheckpointInfo.used_ema` False), not a silent switch to the raw weights."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from policies import make_policy
from vla.training import (
    CheckpointError,
    CheckpointFileMissingError,
    ResumableLoader,
    TrainConfig,
    load_policy,
    seed_everything,
    train,
)


def _train(name: str, pcfg: Any, ds: Any, run_dir: Path, steps: int = 2) -> Path:
    seed_everything(0)
    cfg = TrainConfig(steps=steps, lr=1e-3, warmup_steps=1, log_every=1, ckpt_every=2, progress=False)
    return train(make_policy(name, pcfg), ResumableLoader(ds, batch_size=4, seed=5), cfg, run_dir).checkpoint


@pytest.fixture
def ckpt(tiny: Any, fake_dataset: Any, tmp_path: Path) -> Path:
    """A finished 2-step diffusion run (with EMA): run_dir/checkpoints/2."""
    pcfg = tiny("diffusion")
    return _train("diffusion", pcfg, fake_dataset(pcfg), tmp_path / "run")


def _one_line(e: BaseException) -> str:
    msg = str(e)
    assert "\n" not in msg, msg
    return msg


def test_missing_model_file_names_the_dir_the_file_and_what_is_there(ckpt: Path) -> None:
    (ckpt / "model.safetensors").unlink()
    for path in (ckpt, ckpt.parent.parent):  # the checkpoint itself, or its run directory
        with pytest.raises(CheckpointFileMissingError) as e:
            load_policy(path, use_ema=False)
        msg = _one_line(e.value)
        assert msg.startswith(f"{ckpt}: checkpoint has no model.safetensors"), msg
        assert "config.json" in msg and "ema.safetensors" in msg and "unfinished" in msg, msg
        assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)


def test_run_dir_with_only_an_unfinished_save(tmp_path: Path) -> None:
    (tmp_path / "checkpoints" / ".tmp-4-123").mkdir(parents=True)
    with pytest.raises(CheckpointFileMissingError, match=r"no complete checkpoint.*\.tmp-4-123.*unfinished"):
        load_policy(tmp_path)
    with pytest.raises(CheckpointFileMissingError, match=re.escape(f"{tmp_path / 'nope'}: no such")):
        load_policy(tmp_path / "nope")


@pytest.mark.parametrize("name", ["ema.safetensors", "model.safetensors"])
@pytest.mark.parametrize("keep", [0, 10, 0.5])
def test_truncated_weights_name_the_file(ckpt: Path, name: str, keep: float) -> None:
    f = ckpt / name
    data = f.read_bytes()
    f.write_bytes(data[: int(keep * len(data)) if isinstance(keep, float) else keep])
    with pytest.raises(CheckpointError) as e:
        load_policy(ckpt, use_ema=name == "ema.safetensors")
    msg = _one_line(e.value)
    assert msg.startswith(f"{f}: unreadable safetensors file"), msg
    assert "truncated or corrupted" in msg


def test_resume_from_a_damaged_checkpoint_names_the_file(tiny: Any, fake_dataset: Any, ckpt: Path) -> None:
    pcfg = tiny("diffusion")
    run = ckpt.parent.parent
    state = ckpt / "training_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=re.escape(f"{state}: unreadable training state")):
        _train("diffusion", pcfg, fake_dataset(pcfg), run, steps=4)
    state.unlink()
    with pytest.raises(CheckpointFileMissingError, match=r"no training_state\.pt \(needed to resume"):
        _train("diffusion", pcfg, fake_dataset(pcfg), run, steps=4)


def test_missing_ema_file_is_a_notice_and_recorded(ckpt: Path, caplog: pytest.LogCaptureFixture) -> None:
    (ckpt / "ema.safetensors").unlink()
    with caplog.at_level(logging.INFO, logger="vla.training"):
        policy, info = load_policy(ckpt)  # use_ema=True by default
    assert not info.used_ema
    notices = [r.getMessage() for r in caplog.records if "ema.safetensors" in r.getMessage()]
    assert len(notices) == 1 and notices[0].startswith(f"{ckpt}: no ema.safetensors; using the raw weights")
    assert caplog.records[-1].levelno == logging.WARNING  # the policy was trained with EMA
    raw = load_file(ckpt / "model.safetensors")
    assert all(torch.equal(v, raw[k]) for k, v in policy.state_dict().items())


def test_no_notice_when_raw_weights_are_asked_for(ckpt: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="vla.training"):
        _, info = load_policy(ckpt, use_ema=False)
        _, info_ema = load_policy(ckpt)
    assert not info.used_ema and info_ema.used_ema
    assert not [r for r in caplog.records if "ema.safetensors" in r.getMessage()]
