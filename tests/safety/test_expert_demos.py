"""Zero false alarms: chunks of every task's scripted expert pass the gate from their recorded states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import sim
from sim.safety import SafetyGate, load_safety_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
HORIZON = 10  # 0.5 s chunks
STRIDE = 8  # check a chunk every 8 control steps (overlapping chunks cover every phase)


def _record(env, gate: SafetyGate, seed: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    obs, _ = env.reset(seed=seed)
    expert = sim.make_expert(env)
    expert.reset()
    rec, done, info = [], False, {}
    while not done:
        a = expert.act(obs)
        rec.append((obs["state"].astype(np.float64), obs["qvel"].astype(np.float64), gate.env_state(env), a))
        obs, _, term, trunc, info = env.step(a)
        done = term or trunc
    assert info["is_success"], "the expert must succeed for this check to mean anything"
    return rec


@pytest.mark.parametrize("task", sim.task_names())
def test_expert_chunks_pass(task: str) -> None:
    env = sim.make(task, render_images=False)
    gate = SafetyGate.for_env(env, DEFAULT)
    hw_gate = _hardware_gate()
    try:
        rec = _record(env, gate, seed=1)
        actions = np.stack([r[3] for r in rec])
        # The rate limiter (gate.max_target_step) never changes an expert chunk, from any step.
        assert DEFAULT.gate.max_target_step is not None
        for t in range(len(rec)):
            q, qd, _, _ = rec[t]
            chunk = actions[t : t + HORIZON].astype(np.float64)
            limited = gate.limit_targets(q, qd, chunk)
            assert np.array_equal(limited, chunk), (
                f"t={t}: limiter moved {np.abs(limited - chunk).max():.4f} rad"
            )
        alarms = []
        for t in range(0, len(rec) - 1, STRIDE):
            q, qd, state, _ = rec[t]
            chunk = actions[t : t + HORIZON]
            d = gate.filter(q, qd, chunk, full_state=state)  # objects simulated too
            if not d.verdict.safe:
                alarms.append(f"t={t} full state: {d.reason}")
            # As on hardware: only the robot's own joints are known, no objects in the world model.
            v = hw_gate.check(q, qd, chunk)
            if not v.safe:
                alarms.append(f"t={t} joints only: {v.reason()}")
        assert not alarms, "\n".join(alarms)
        assert gate.stats.passed == gate.stats.chunks > 0 and gate.stats.limited == 0
    finally:
        env.close()


_HW: list[SafetyGate] = []


def _hardware_gate() -> SafetyGate:
    if not _HW:
        _HW.append(SafetyGate(DEFAULT))
    return _HW[0]
