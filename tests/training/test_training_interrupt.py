"""Ctrl-C during train(): the step in progress is finished and checkpointed, the resumed run equals an
uninterrupted one; a second Ctrl-C stops at once; off the main thread no handler is installed."""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from policies import make_policy
from vla.training import ResumableLoader, TrainConfig, seed_everything, train
from vla.training.checkpoint import list_checkpoints

STEPS = 8


class SigintAt:
    """A resumable data source that sends this process SIGINT while fetching the batch of given
    steps, i.e. in the middle of a training step (before its forward/backward/optimizer step)."""

    def __init__(self, loader: ResumableLoader, at: dict[int, int]) -> None:
        self.loader, self.at = loader, at  # {step: number of SIGINTs}
        self.handlers: list[Any] = []

    def iter_from(self, step: int) -> Iterator[dict[str, Any]]:
        for batch in self.loader.iter_from(step):
            self.handlers.append(signal.getsignal(signal.SIGINT))
            for _ in range(self.at.get(step, 0)):
                os.kill(os.getpid(), signal.SIGINT)
            yield batch
            step += 1


def _train(pcfg: Any, ds: Any, run_dir: Path, at: dict[int, int] | None = None, **kw: Any) -> Any:
    seed_everything(0)
    policy = make_policy("diffusion", pcfg)  # EMA + noise sampling: exercises the EMA and RNG restore
    data = SigintAt(ResumableLoader(ds, batch_size=4, seed=5), at or {})
    cfg = TrainConfig(steps=STEPS, lr=1e-3, warmup_steps=1, log_every=1, ckpt_every=4, progress=False, seed=3)
    return train(policy, data, cfg, run_dir, **kw), data


def _assert_same_weights(a: Path, b: Path) -> None:
    for f in ("model.safetensors", "ema.safetensors"):
        wa, wb = load_file(a / f), load_file(b / f)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{f}:{k}"


def test_sigint_checkpoints_the_step_in_progress_and_resume_matches(
    tiny: Any, fake_dataset: Any, tmp_path: Path
) -> None:
    pcfg = tiny("diffusion")
    ds = fake_dataset(pcfg)
    before = signal.getsignal(signal.SIGINT)
    full, _ = _train(pcfg, ds, tmp_path / "full")
    assert full.step == STEPS

    run = tmp_path / "split"
    with pytest.raises(KeyboardInterrupt) as e:
        _train(pcfg, ds, run, at={5: 1})  # SIGINT during step 6 (steps count from 1), not a ckpt step
    msg = str(e.value)
    assert f"after step 6 of {STEPS}" in msg, msg
    assert f"checkpoint saved: {run / 'checkpoints' / '6'}" in msg and f"vla-train resume={run}" in msg
    assert [s for s, _ in list_checkpoints(run)] == [4, 6]  # 6 is the interrupt's; none lost
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back

    resumed, _ = _train(pcfg, ds, run)
    assert (resumed.start_step, resumed.step) == (6, STEPS)
    _assert_same_weights(tmp_path / "full/checkpoints" / str(STEPS), run / "checkpoints" / str(STEPS))


def test_second_sigint_stops_at_once_without_a_checkpoint(
    tiny: Any, fake_dataset: Any, tmp_path: Path
) -> None:
    pcfg = tiny("diffusion")
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt, match="twice"):
        _train(pcfg, fake_dataset(pcfg), tmp_path, at={5: 2})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [4]  # the step in progress is not saved
    assert signal.getsignal(signal.SIGINT) is before


def test_off_the_main_thread_no_handler_is_installed(tiny: Any, fake_dataset: Any, tmp_path: Path) -> None:
    pcfg = tiny("diffusion")
    before = signal.getsignal(signal.SIGINT)
    out: dict[str, Any] = {}

    def work() -> None:
        try:
            out["result"], out["data"] = _train(pcfg, fake_dataset(pcfg), tmp_path)
        except BaseException as e:  # reported below
            out["error"] = e

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert "error" not in out, out.get("error")
    assert out["result"].step == STEPS
    assert set(out["data"].handlers) == {before}


def test_sigint_during_the_last_step_completes_the_run(tiny: Any, fake_dataset: Any, tmp_path: Path) -> None:
    pcfg = tiny("diffusion")
    result, _ = _train(pcfg, fake_dataset(pcfg), tmp_path, at={STEPS - 1: 1})
    assert result.step == STEPS and result.checkpoint == tmp_path / "checkpoints" / str(STEPS)
    assert re.fullmatch(r"\d+", result.checkpoint.name)
