"""vla-deploy's default builder serves the same VLAPolicy as vla-eval to the ROS node's control loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros_bridge.interfaces import Observation
from vla.deploy.controller import LoopController
from vla.deploy.sources import load_checkpoint_policy
from vla.policy import VLAPolicy
from vla.runtime import RuntimeConfig


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
def test_checkpoint_builder_feeds_the_node_loop(debug_runs: dict[str, Path], policy: str) -> None:
    built, n_obs_steps = load_checkpoint_policy(str(debug_runs[policy]))
    assert isinstance(built, VLAPolicy) and n_obs_steps == built.n_obs_steps
    calls: list[dict] = []

    def spy(obs, prefix):
        calls.append(obs)
        return built(obs, prefix)

    runtime = RuntimeConfig(
        mode="sync", smoothing="none", n_obs_steps=n_obs_steps, n_action_steps=4, threaded=False
    )
    controller = LoopController(spy, runtime, period_s=0.05)
    q = np.array([-0.3, -1.7, 1.9, -1.77, -1.57, -0.3, 0.0])
    controller.reset()
    cmd = controller.step(_node_obs("pick up the red cube", q))
    assert cmd.status == "ok" and cmd.plan.shape[1] == 7 and np.isfinite(cmd.plan).all()
    # Robot units, not normalized ones: the chunk starts near the measured arm pose.
    assert np.abs(cmd.action[:6] - q[:6]).max() < 1.5
    # The policy got the env's observation layout, its history padded to n_obs_steps.
    obs = calls[0]
    assert obs["state"].shape == (n_obs_steps, 7) and obs["image_front"].shape == (n_obs_steps, 32, 32, 3)
    assert obs["instruction"] == "pick up the red cube" and obs["step"] == 0
    controller.close()


def test_checkpoint_builder_names_a_missing_run(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="nothing_here"):
        load_checkpoint_policy(str(tmp_path / "nothing_here"))
