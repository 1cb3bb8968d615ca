"""Recovery demos: vla-collect stores episodes with an injected failure the expert recovers from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("vla.data")
from vla.collect import CollectConfig, Recovery, collect
from vla.data import ReplayBuffer, validate_store


def test_recovery_episodes_are_stored_with_their_provenance(tmp_path: Path) -> None:
    rec = Recovery(fraction=1.0, kinds=("drop", "knock"))
    cfg = CollectConfig(
        task="pick_cube", n_episodes=3, out=str(tmp_path / "r.zarr"), seed=20,
        env_overrides={"image_size": 32}, progress=False, recovery=rec,
    )  # fmt: skip
    res = collect(cfg)
    assert res.n_saved == 3
    assert validate_store(cfg.out).problems == []
    rb = ReplayBuffer.open(cfg.out)
    for i in range(rb.n_episodes):
        info = rb.episode_info(i)
        injected = info["recovery"]["injected"]
        assert injected["fired"] and injected["kind"] == rec.draw("pick_cube", info["seed"])
        assert injected["kind"] in ("drop", "knock")
        # The expert re-planned after the failure, and the episode shows it: the stored gripper
        # command opens again after it first closed (re-open / re-grasp), or the arm went back down.
        assert info["recovery"]["replans"], info
        ep = rb.episode(i)
        grip = ep["action"][:, 6]
        closes = np.flatnonzero(np.diff((grip > 0.5).astype(int)) == 1)
        assert len(closes) >= 2 or injected["kind"] == "knock", f"episode {i}: one grasp only ({info})"
        assert info["success"] and info["length"] == len(ep["action"])


def test_recovery_draw_is_deterministic_and_validated() -> None:
    rec = Recovery(fraction=0.5)
    kinds = [rec.draw("push_cube", s) for s in range(200)]
    assert kinds == [rec.draw("push_cube", s) for s in range(200)]
    drawn = [k for k in kinds if k is not None]
    assert 70 < len(drawn) < 130  # about half
    assert set(drawn) == {"knock", "knock_held", "closed_empty"}  # push has no grasp to drop
    assert all(Recovery(fraction=0.0).draw("pick_cube", s) is None for s in range(50))
    with pytest.raises(ValueError, match="fraction"):
        Recovery(fraction=1.5)
    with pytest.raises(ValueError, match="unknown"):
        Recovery(kinds=("explode",))
