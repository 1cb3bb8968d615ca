"""vla-deploy's default builder serves the same VLAPolicy as vla-eval to the ROS policy node."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros_bridge.interfaces import Observation
from vla.deploy.sources import ChunkPolicySource, load_checkpoint_policy
from vla.pipeline.vla_policy import VLAPolicy


def _node_obs(instruction: str, q: np.ndarray) -> Observation:
    rng = np.random.default_rng(0)
    return Observation(
        images={c: rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for c in ("front", "wrist")},
        joint_positions=q,
        joint_velocities=np.zeros(7),
        instruction=instruction,
        stamp=0.0,
    )


@pytest.mark.parametrize("policy", ["diffusion", "transformer"])
def test_checkpoint_builder_feeds_node_observations(debug_runs: dict[str, Path], policy: str) -> None:
    built, n_obs_steps = load_checkpoint_policy(str(debug_runs[policy]))
    assert isinstance(built, VLAPolicy) and n_obs_steps == built.n_obs_steps
    source = ChunkPolicySource(built, n_obs_steps)
    q = np.array([-0.3, -1.7, 1.9, -1.77, -1.57, -0.3, 0.0])
    chunk = source(_node_obs("pick up the red cube", q))
    assert chunk.shape == (built.meta.horizon, 7) and np.isfinite(chunk).all()
    # Robot units, not normalized ones: the chunk starts near the measured arm pose.
    assert np.abs(chunk[0, :6] - q[:6]).max() < 1.5
    # A new instruction starts a new episode: the observation history is cleared.
    source(_node_obs("pick up the blue cube", q))
    assert source._step == 1


def test_checkpoint_builder_names_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="nothing_here"):
        load_checkpoint_policy(str(tmp_path / "nothing_here"))
