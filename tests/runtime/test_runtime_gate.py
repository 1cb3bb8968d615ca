"""Every chunk passes the safety gate before it enters the queue; what the gate returns is exactly
what runs (a refused chunk runs the gate's braking plan and the robot holds, with the gate's reason
recorded and not counted as a deadline miss)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from runtime_policies import PERIOD, expert_policy

from sim.safety import SafetyGate, load_safety_config
from vla.runtime import ControlLoop, RuntimeConfig, SimulatedClock, run_episode
from vla.runtime.stats import HOLD, OK

SAFETY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "safety" / "ur5e_default.yaml"


@dataclass
class Decision:
    actions: np.ndarray
    hold: bool
    reason: str


class ScriptedGate:
    """Refuses the 2nd chunk, truncates the 3rd to 3 actions, passes the rest. Records its inputs."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]] = []

    def __call__(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, command=None) -> Decision:
        self.calls.append((q.copy(), qd.copy(), chunk.copy(), None if command is None else command.copy()))
        n = len(self.calls)
        if n == 2:
            return Decision(np.asarray(q, np.float32)[None], True, "collision predicted")
        if n == 3:
            return Decision(chunk[:3], False, "joint limit at step 3")
        return Decision(chunk, False, "safe")


def test_gate_hold_and_truncation(make_env) -> None:
    env = make_env()
    gate = ScriptedGate()
    loop = ControlLoop(
        expert_policy(env), RuntimeConfig(mode="sync", threaded=False), SimulatedClock(PERIOD, 0.0), gate
    )
    res = run_episode(env, loop, max_steps=40, seed=0)
    s = res.summary()
    steps = res.stats.steps
    assert s["gate_rejections"] == 1 and s["gate_truncations"] == 1
    held = [r for r in steps if r.status == HOLD]
    assert len(held) == 1 and held[0].step == 8  # the 2nd chunk was due after 8 actions
    assert held[0].reason == "gate: collision predicted"
    # The robot ran the gate's stop (here: the measured joints it was given), nothing else.
    np.testing.assert_array_equal(held[0].action, gate.calls[1][0].astype(np.float32))
    assert s["holds"] == {"gate: collision predicted": 1}
    assert s["deadline_misses"] == 0  # a gate hold is reported as such, not as a miss
    # The gate saw the observation of the step the chunk was installed at, and what will run: in
    # sync mode the Ta = 8 actions before the next request (then the last is held).
    assert gate.calls[0][0].shape == (7,) and gate.calls[0][1].shape == (6,)
    assert [len(c[2]) for c in gate.calls[:3]] == [8, 8, 8]
    # ... and the command in force (None before the first action).
    assert gate.calls[0][3] is None
    np.testing.assert_array_equal(gate.calls[1][3], steps[7].action)
    # Only the 3 accepted actions of the truncated chunk ran, then a new chunk was requested.
    third = res.stats.chunks[2]
    assert third.outcome == "gate_truncated" and third.accepted == 3
    assert [r.chunk_id for r in steps[9:13]] == [2, 2, 2, 3]
    assert all(r.status == OK for r in steps if r.step != 8)


def test_gate_needs_qvel(make_env) -> None:
    env = make_env()
    loop = ControlLoop(
        expert_policy(env), RuntimeConfig(mode="sync"), SimulatedClock(PERIOD, 0.0), ScriptedGate()
    )
    obs, _ = env.reset(seed=0)
    loop.reset()
    del obs["qvel"]
    with pytest.raises(ValueError, match="qvel"):
        loop.step(obs)


class Sabotage:
    """Wraps a chunk policy and swings the base joint by 3 rad in its `bad_call`-th chunk."""

    def __init__(self, policy, bad_call: int) -> None:
        self.policy, self.bad_call, self.n = policy, bad_call, 0

    def reset(self) -> None:
        self.policy.reset()
        self.n = 0

    def __call__(self, obs, prefix):
        chunk = self.policy(obs, prefix)
        self.n += 1
        if self.n == self.bad_call:
            chunk = chunk.copy()
            chunk[:, 0] += 3.0
        return chunk


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_real_safety_gate_in_the_loop(make_env, mode) -> None:
    """The world-model gate (sim.safety) passes the expert's chunks and stops a 3 rad jump."""
    env = make_env()
    safety = SafetyGate.for_env(env, load_safety_config(SAFETY_CONFIG))

    def gate(q, qd, chunk, command=None):
        return safety.filter(q, qd, chunk, full_state=safety.env_state(env), command=command)

    policy = Sabotage(expert_policy(env), bad_call=3)
    cfg = RuntimeConfig(mode=mode, smoothing="rtc" if mode == "async" else "none", threaded=False)
    loop = ControlLoop(policy, cfg, SimulatedClock(PERIOD, 0.1), gate)
    res = run_episode(env, loop, max_steps=100, seed=0)
    s = res.summary()
    assert s["gate_rejections"] == 1, s
    reasons = [r for r in s["holds"] if r.startswith("gate:")]
    assert len(reasons) == 1 and "jump" in reasons[0]
    assert res.success  # the episode recovers with the next (sound) chunk
