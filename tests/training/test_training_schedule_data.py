"""LR schedule shape and the resumable data order."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

from vla.training import ResumableLoader, TrainConfig, lr_at


def test_warmup_then_cosine_to_min() -> None:
    lrs = [lr_at(s, 1.0, warmup_steps=10, total_steps=110, min_lr_ratio=0.1) for s in range(130)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a <= b for a, b in itertools.pairwise(lrs[:10]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[9:111]))
    assert lrs[60] == pytest.approx(0.55)  # cosine midpoint between 1.0 and 0.1
    assert lrs[110] == lrs[129] == pytest.approx(0.1)
    assert lr_at(0, 3e-4, warmup_steps=0, total_steps=10) == pytest.approx(3e-4)


def test_resumable_loader_resumes_at_any_step(tiny: Any, fake_dataset: Any) -> None:
    ds = fake_dataset(tiny("diffusion"), n=10)
    loader = ResumableLoader(ds, batch_size=3, seed=7)  # 3 steps per epoch, 1 sample dropped
    it = loader.iter_from(0)
    full = [next(it) for _ in range(8)]
    for start in (1, 3, 5):
        it = loader.iter_from(start)
        for k in range(start, 8):
            got = next(it)
            assert all(torch.equal(got[key], full[k][key]) for key in got)
    # Each epoch visits distinct samples; epochs differ in order; another seed differs.
    seen = torch.cat([b["action"][:, 0, 0] for b in full[:3]])
    assert len(set(seen.tolist())) == 9
    assert not torch.equal(full[0]["action"], full[3]["action"])
    other = next(ResumableLoader(ds, batch_size=3, seed=8).iter_from(0))
    assert not torch.equal(other["action"], full[0]["action"])


def test_loader_and_config_reject_bad_values(tiny: Any, fake_dataset: Any) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        ResumableLoader(fake_dataset(tiny("diffusion"), n=4), batch_size=8)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        TrainConfig(min_lr_ratio=2.0)
    with pytest.raises(ValueError, match=r"configs/train.yaml.*stepz"):
        TrainConfig.from_dict({"stepz": 3}, source="configs/train.yaml")
    cfg = TrainConfig(steps=7, betas=(0.9, 0.99))
    assert TrainConfig.from_dict(cfg.to_dict() | {"betas": [0.9, 0.99]}) == cfg
