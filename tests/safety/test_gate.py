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


def test_crash_is_truncated_to_its_safe_prefix(gate) -> None:
    chunk = pinch_line(gate, [0.45, 0.0, -0.03])
    d = gate.filter(Q0, QD0, chunk)
    assert d.status == "truncated" and not d.hold
    k = d.verdict.first_unsafe_step
    assert 0 < k < len(chunk) and d.actions.shape == (k, 7)
    np.testing.assert_array_equal(d.actions, chunk[:k])
    assert d.verdict.check in ("workspace", "collision")
    # The prefix itself is safe when checked again.
    assert gate.check(Q0, QD0, d.actions).safe


def test_unsafe_first_step_holds_position(gate) -> None:
    d = gate.filter(Q0, QD0, joint_ramp([1.0, 0, 0, 0, 0, 0], 1))
    assert d.hold and d.status == "hold" and d.verdict.check == "jump"
    np.testing.assert_array_equal(d.actions, Q0[None].astype(np.float32))
    assert d.reason.startswith("hold: jump")


def test_stats_count_decisions_per_episode(gate) -> None:
    gate.reset_stats()
    gate.filter(Q0, QD0, pinch_line(gate, [0.45, 0.0, 0.1]))
    gate.filter(Q0, QD0, pinch_line(gate, [0.45, 0.0, -0.03]))
    gate.filter(Q0, QD0, np.full((4, 7), np.nan))
    s = gate.reset_stats().as_dict()
    assert (s["chunks"], s["passed"], s["truncated"], s["held"]) == (3, 1, 1, 1)
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
    assert reason == verdict["reason"] and verdict["status"] == "truncated"
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
