"""The gate with the default config: safe prefix / hold, counters, best-of-K, ROS checker, config errors."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from safety_chunks import Q0, QD0, joint_ramp, pinch_line

from sim.safety import SafetyGate, load_safety_config, safety_config_from_dict

ROOT = Path(__file__).resolve().parents[2]
CFG_PATH = ROOT / "configs/safety/ur5e_default.yaml"
DEFAULT = load_safety_config(CFG_PATH)


@pytest.fixture(scope="module")
def gate():
    with SafetyGate(DEFAULT) as g:
        yield g


def test_crash_is_truncated_to_a_prefix_whose_stop_is_safe(gate) -> None:
    chunk = pinch_line(gate, [0.45, 0.0, -0.03])
    d = gate.filter(Q0, QD0, chunk)
    assert d.status == "truncated" and not d.hold and d.stop_safe
    v = d.verdict.first_unsafe_step
    assert 0 < d.rows <= v < len(chunk)
    np.testing.assert_array_equal(d.actions[: d.rows], chunk[: d.rows])
    assert d.verdict.check in ("workspace", "collision")
    # The arm lags the targets: holding the row just before the violation coasts on into the table,
    # so the gate returns a shorter prefix (or brakes) whose stop it simulated.
    assert d.rows < v or d.braking == 1
    assert d.stop_verdict is not None and d.stop_verdict.safe
    # What was returned, executed and then held, is safe when checked again; the old contract's
    # answer (every row before the first violation, then hold) is not.
    assert gate.check(Q0, QD0, d.actions).safe
    old = gate.check(Q0, QD0, chunk[:v])
    assert not old.safe and old.in_stop, old.reason()


def test_unsafe_first_step_brakes_where_it_is(gate) -> None:
    d = gate.filter(Q0, QD0, joint_ramp([1.0, 0, 0, 0, 0, 0], 1))
    assert d.hold and d.status == "hold" and d.verdict.check == "jump" and d.stop_safe
    # At rest every braking target is the measured position (with the chunk's gripper value).
    np.testing.assert_allclose(d.actions, Q0[None].astype(np.float32), atol=1e-6)
    assert d.reason.startswith("hold: jump") and d.rows == 0


def test_stats_count_decisions_per_episode(gate) -> None:
    gate.reset_stats()
    gate.filter(Q0, QD0, pinch_line(gate, [0.45, 0.0, 0.1]))
    gate.filter(Q0, QD0, pinch_line(gate, [0.45, 0.0, -0.03]))
    gate.filter(Q0, QD0, np.full((4, 7), np.nan))
    s = gate.reset_stats().as_dict()
    assert (s["chunks"], s["passed"], s["limited"], s["truncated"], s["held"]) == (3, 1, 0, 1, 1)
    assert s["by_check"]["action_invalid"] == 1 and s["steps_passed"] < s["steps_proposed"]
    assert gate.stats.chunks == 0


@pytest.mark.parametrize("nthread", [0, 1, 2])
def test_best_of_k_picks_the_safe_candidate(gate, nthread: int) -> None:
    crash = pinch_line(gate, [0.45, 0.0, -0.03])
    ok_far = pinch_line(gate, [0.5, 0.1, 0.15])
    ok_near = pinch_line(gate, [0.47, 0.0, 0.1])
    jump = crash.copy()
    jump[:, 0] += 1.0
    nan = np.full_like(crash, np.nan)
    cands = np.stack([crash, ok_far, ok_near, jump, nan])
    cfg = dataclasses.replace(DEFAULT, gate=dataclasses.replace(DEFAULT.gate, nthread=nthread))
    with SafetyGate(cfg) as g:
        i, d, verdicts = g.select(Q0, QD0, cands)
        assert len(verdicts) == 5
        assert [v.safe for v in verdicts] == [False, True, True, False, False]
        assert verdicts[3].check == "jump" and verdicts[4].check == "action_invalid"
        assert i == 2  # closest to the first candidate among the fully safe ones
        assert d.verdict.safe and d.actions.shape == crash.shape
        # A task score overrides the default: prefer the candidate ending highest.
        i2, _, _ = g.select(Q0, QD0, cands, score_fn=lambda states, c: -np.abs(c[:, -1, 0] - 0.3))
        assert i2 in (1, 2)
        # Same verdict as checking candidates one by one.
        assert verdicts[0].first_unsafe_step == g.check(Q0, QD0, crash).first_unsafe_step


def test_best_of_k_all_unsafe_holds(gate) -> None:
    # First targets 1 rad from the robot: the jump check judges the policy's own targets, so the
    # rate limiter cannot turn these into ramps.
    jump = np.repeat(joint_ramp([1.0, 0, 0, 0, 0, 0], 1), 3, axis=0)
    _, d, verdicts = gate.select(Q0, QD0, np.stack([jump, jump * 1.1]))
    assert d.hold and all(not v.safe for v in verdicts)


def test_ros_checker_is_json_able(gate) -> None:
    check = gate.as_checker()
    prefix, reason, verdict = check(Q0, QD0, pinch_line(gate, [0.45, 0.0, -0.03]))
    text = json.dumps(verdict)
    assert json.loads(text)["check"] == verdict["check"] and prefix.dtype == np.float32
    assert reason.startswith(verdict["reason"]) and verdict["status"] == "truncated"
    assert verdict["rows"] + verdict["braking"] == len(prefix) and verdict["stop_safe"]
    _, reason, verdict = check(Q0, QD0, np.full((3, 7), np.inf))
    json.dumps(verdict)
    assert verdict["hold"] and reason.startswith("hold")


def test_bad_robot_state_raises(gate) -> None:
    with pytest.raises(ValueError, match="q must be 7"):
        gate.filter(Q0[:6], QD0, joint_ramp([0.1, 0, 0, 0, 0, 0], 3))
    with pytest.raises(ValueError, match="qd must be 6"):
        gate.filter(Q0, np.full(6, np.nan), joint_ramp([0.1, 0, 0, 0, 0, 0], 3))


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        ({"jump": {"limt": 0.3}}, r"src\.jump: unknown field"),
        ({"joint_velocity": {"limit": [1.0, 2.0]}}, r"src\.joint_velocity"),
        ({"collision": {"margin": "big"}}, r"src\.collision\.margin: expected a number"),
        ({"control_rate_hz": 30.0}, "whole number of substeps"),
    ],
)
def test_config_errors_name_the_field(patch: dict, match: str) -> None:
    with pytest.raises((KeyError, ValueError, TypeError), match=match):
        safety_config_from_dict(patch, source="src")


def test_every_safety_yaml_loads() -> None:
    for path in sorted((ROOT / "configs/safety").glob("*.yaml")):
        assert load_safety_config(path).n_substeps >= 1


def test_diverging_simulation_is_never_certified(gate) -> None:
    """A state MuJoCo cannot integrate (absurd joint speed): it resets the data mid-rollout, which
    would otherwise look like a calm arm; the gate reports it and certifies no stop."""
    crazy = np.full(6, 1e12)
    v = gate.check(Q0, crazy, joint_ramp([0, 0, 0, 0, 0, 0], 4))
    assert v.check == "unstable", v.reason()
    d = gate.filter(Q0, crazy, joint_ramp([0, 0, 0, 0, 0, 0], 4))
    assert d.hold and not d.stop_safe and "NO SAFE STOP" in d.reason
