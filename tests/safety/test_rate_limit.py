"""The gate's target rate limiter (``gate.max_target_step``): a first target 0.2-0.35 rad from a resting
arm no longer deadlocks the gate (reject, hold, same jump again), and nothing else changes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from safety_chunks import Q0, QD0

from sim.safety import SafetyGate, load_safety_config, safety_config_from_dict
from sim.safety.gate import limit_target_steps

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
OFF = dataclasses.replace(DEFAULT, gate=dataclasses.replace(DEFAULT.gate, max_target_step=None))


@pytest.fixture(scope="module")
def gates():
    with SafetyGate(DEFAULT) as on, SafetyGate(OFF) as off:
        yield on, off


def _jump_chunk(joint: int, jump: float, horizon: int = 10) -> np.ndarray:
    """Every target ``jump`` rad from home on one joint (what a learned policy asked for), gripper half closed."""
    chunk = np.tile(Q0, (horizon, 1)).astype(np.float32)
    chunk[:, joint] += jump
    chunk[:, 6] = 0.5
    return chunk


def test_limit_target_steps_clips_each_step_and_leaves_the_gripper() -> None:
    q = np.zeros(7)
    chunk = np.array(
        [[0.3, -0.05, 0, 0, 0, 0, 0.2], [0.3, -0.3, 0, 0, 0, 0, 0.9], [0.0, -0.3, 0, 0, 0, 0, 1.0]]
    )
    out = limit_target_steps(q, chunk, 0.1)
    np.testing.assert_allclose(out[:, 0], [0.1, 0.2, 0.1])  # up by 0.1 per step, then back down
    np.testing.assert_allclose(out[:, 1], [-0.05, -0.15, -0.25])
    np.testing.assert_array_equal(out[:, 6], chunk[:, 6])
    assert out.shape == chunk.shape and out is not chunk and chunk[0, 0] == 0.3  # input untouched
    # Per-joint limits; a chunk within them comes back bit-identical.
    s = np.array([0.1, 0.1, 0.1, 0.2, 0.2, 0.2])
    ok = np.array([[0.09, 0, 0, 0.19, -0.19, 0, 0.5]], np.float32)
    np.testing.assert_array_equal(limit_target_steps(q, ok, s), ok)
    with pytest.raises(ValueError, match="max_step must be > 0"):
        limit_target_steps(q, ok, 0.0)
    with pytest.raises(ValueError, match=r"chunk must be \(H, 7\)"):
        limit_target_steps(q, ok[:, :6], 0.1)


@pytest.mark.parametrize(("joint", "name"), [(1, "shoulder_lift_joint"), (5, "wrist_3_joint")])
@pytest.mark.parametrize("jump", [0.2, -0.25, 0.35])
def test_first_target_jump_from_rest_is_ramped_not_held(gates, joint: int, name: str, jump: float) -> None:
    on, off = gates
    chunk = _jump_chunk(joint, jump)
    # Limiter off: the servo step breaks the acceleration limit in the first substeps -> hold, forever.
    d = off.filter(Q0, QD0, chunk)
    assert d.hold and d.verdict.check == "joint_acceleration" and name in d.verdict.first.names, d.reason
    assert not d.limited
    # Limiter on: the same chunk becomes a ramp that passes (at least its start).
    on.reset_stats()
    d = on.filter(Q0, QD0, chunk)
    assert not d.hold and d.verdict.first_unsafe_step != 0, d.reason
    assert d.limited and on.stats.limited == 1 and "rate-limited" in d.reason
    step = np.diff(np.concatenate([Q0[None, joint], d.actions[:, joint]]))
    assert np.all(np.sign(step[step != 0]) == np.sign(jump)) and step[0] != 0  # towards the target
    assert np.abs(step).max() <= DEFAULT.gate.max_target_step[joint] + 1e-6
    assert abs(d.actions[-1, joint] - chunk[0, joint]) < abs(Q0[joint] - chunk[0, joint])
    np.testing.assert_array_equal(d.actions[:, 6], chunk[: len(d.actions), 6])  # gripper as asked
    others = [j for j in range(6) if j != joint]
    np.testing.assert_allclose(d.actions[:, others], np.tile(Q0[others], (len(d.actions), 1)), atol=1e-6)
    # The pure verdict still judges the raw chunk.
    assert on.check(Q0, QD0, chunk).check == "joint_acceleration"


def test_select_and_checker_apply_the_limiter(gates) -> None:
    on, _ = gates
    chunk = _jump_chunk(1, 0.3)
    i, d, verdicts = on.select(Q0, QD0, np.stack([chunk, chunk]))
    assert not d.hold and d.limited and verdicts[i].first_unsafe_step != 0, d.reason
    assert abs(d.actions[0, 1] - Q0[1]) <= DEFAULT.gate.max_target_step[1] + 1e-6
    actions, reason, verdict = on.as_checker()(Q0, QD0, chunk)
    assert verdict["limited"] and not verdict["hold"] and "rate-limited" in reason
    np.testing.assert_allclose(actions, d.actions[: len(actions)], atol=1e-6)


def test_jump_check_still_judges_the_policys_first_target(gates) -> None:
    """A first target far from the robot (the policy lost track of it) is held, not ramped."""
    on, _ = gates
    d = on.filter(Q0, QD0, _jump_chunk(0, 0.8))
    assert d.hold and d.verdict.check == "jump" and d.limited


def test_moving_arm_is_limited_from_where_its_servo_is_heading(gates) -> None:
    """A moving servo trails its target by (kv / kp) * velocity; a chunk that keeps the motion going
    from there is not a jump and is left alone."""
    on, _ = gates
    lag = on.wm.servo_lag_s
    np.testing.assert_allclose(lag, 0.2)  # Menagerie UR5e: kv / kp = 400 / 2000 and 100 / 500
    qd = np.zeros(6)
    qd[0] = 1.0  # 1 rad/s on the pan: the servo's target is 0.2 rad ahead of q
    chunk = np.tile(Q0, (5, 1))
    chunk[:, 0] += 0.2 + 0.05 * np.arange(1, 6)  # ... and moves on at 1 rad/s
    np.testing.assert_array_equal(on.limit_targets(Q0, qd, chunk), chunk)
    assert not np.array_equal(on.limit_targets(Q0, QD0, chunk), chunk)  # from rest it is a jump


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), (0.1, (0.1,) * 6), ([0.07, 0.07, 0.07, 0.12, 0.12, 0.12], (0.07,) * 3 + (0.12,) * 3)],
)
def test_max_target_step_config(value, expected) -> None:
    cfg = safety_config_from_dict({"gate": {"max_target_step": value}}, source="src")
    assert cfg.gate.max_target_step == expected


@pytest.mark.parametrize(
    ("value", "match"),
    [(0.0, "must be > 0"), ([0.1, -0.1, 0.1, 0.1, 0.1, 0.1], "must be > 0"), ([0.1, 0.1], "6 finite"),
     ("fast", "matches none")],
)  # fmt: skip
def test_bad_max_target_step_names_the_field(value, match: str) -> None:
    with pytest.raises((TypeError, ValueError), match=rf"src\.gate.*{match}"):
        safety_config_from_dict({"gate": {"max_target_step": value}}, source="src")


def test_default_config_limits_targets() -> None:
    assert DEFAULT.gate.max_target_step == (0.07, 0.07, 0.07, 0.12, 0.12, 0.12)
