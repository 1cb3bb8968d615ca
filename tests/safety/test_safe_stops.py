"""Safe stops, judged by an independent oracle: what the gate returns, executed and then held for
1.5 s in a separate simulator, is safe, for unsafe chunks from resting and moving arms in all four
tasks; and the gate leaves the scripted experts' chunks alone.

The oracle (``independent_oracle.py``) shares no code with ``sim.safety``: its own model copy,
contact classification, force totals and limits (the raw limits, without the gate's margins).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from adversarial_cases import CASES, TASKS, Case, make_env
from independent_oracle import Oracle

import sim
from sim.safety import SafetyGate, load_safety_config

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
HOLD_S = 1.5

_WORLDS: dict[str, tuple] = {}


def _world(task: str):
    """(env, gate, oracle) per task, built once for the module."""
    if task not in _WORLDS:
        env = make_env(task)
        _WORLDS[task] = (env, SafetyGate.for_env(env, DEFAULT), Oracle(env))
    return _WORLDS[task]


@pytest.fixture(scope="module", autouse=True)
def _close_worlds():
    yield
    for env, gate, _ in _WORLDS.values():
        gate.close()
        env.close()
    _WORLDS.clear()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_gate_output_is_safe_to_execute_and_hold(task: str, case: Case) -> None:
    env, gate, oracle = _world(task)
    seed = 10 * TASKS.index(task) + 1
    s = case.start(env, seed)
    chunk = case.chunk(s)
    if not case.invalid:
        # The case is really unsafe: the chunk as given, then its last row held, fails the oracle.
        raw = oracle.execute(s.state, np.asarray(chunk, np.float64), hold_s=HOLD_S)
        assert not raw.safe, f"{case.name}: the raw chunk is not unsafe, the case proves nothing"
    gate.env_state(env)  # per-episode layout (pads) into the world model
    d = gate.filter(s.q, s.qd, chunk, full_state=s.state, command=s.command)
    assert d.actions.ndim == 2 and d.actions.shape[1] == 7 and len(d.actions) >= 1
    assert np.all(np.isfinite(d.actions))
    assert d.stop_safe, f"{case.name}: the gate found no safe stop: {d.reason}"
    out = oracle.execute(s.state, d.actions.astype(np.float64), hold_s=HOLD_S)
    assert out.safe, f"{case.name} on {task}: the gate returned {d.status} ({d.reason}); oracle: {out}"
    if case.invalid:
        assert d.hold


def test_collisions_after_the_chunk_are_covered() -> None:
    """Some cases are safe while their rows run and unsafe only in the hold after them (what the
    old gate, which stopped checking at the last row, let through)."""
    env, _, oracle = _world("pick_cube")
    after = []
    for case in CASES:
        if case.invalid:
            continue
        s = case.start(env, 1)
        chunk = np.asarray(case.chunk(s), np.float64)
        rows_only = oracle.execute(s.state, chunk, hold_s=0.0)
        held = oracle.execute(s.state, chunk, hold_s=HOLD_S)
        # Still moving when the rows end is expected; anything else during the rows is not.
        if set(rows_only.violations) <= {"not_at_rest"} and not held.safe:
            after.append(case.name)
    assert {"after_table", "after_table_slant", "after_out_y"} <= set(after), after


EXPERT_HORIZON = 16
EXPERT_STRIDE = 1


@pytest.mark.parametrize("task", TASKS)
def test_expert_chunks_are_never_held_or_truncated(task: str) -> None:
    """Every step of two expert episodes per task: the next 16 expert actions (fewer at the end)
    pass unchanged, moving or not (>= 50 chunks per task, over 200 in all)."""
    env, gate, oracle = _world(task)
    n = 0
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        gate.env_state(env)
        expert = sim.make_expert(env)
        expert.reset()
        rec, done, info = [], False, {}
        command = np.append(env.unwrapped.data.ctrl[env.unwrapped._arm_act], 0.0)
        while not done:
            a = expert.act(obs)
            rec.append((obs["state"].astype(np.float64), obs["qvel"].astype(np.float64),
                        gate.env_state(env), command.copy(), a))  # fmt: skip
            command = a
            obs, _, term, trunc, info = env.step(a)
            done = term or trunc
        assert info["is_success"]
        actions = np.stack([r[4] for r in rec])
        for t in range(0, len(rec) - 4, EXPERT_STRIDE):
            q, qd, state, cmd, _ = rec[t]
            chunk = actions[t : t + EXPERT_HORIZON]
            d = gate.filter(q, qd, chunk, full_state=state, command=cmd)
            assert d.status == "pass", f"{task} seed {seed} t={t}: {d.status}: {d.reason}"
            n += 1
        # And the oracle agrees that an expert chunk, executed and held, is safe.
        q, qd, state, cmd, _ = rec[len(rec) // 2]
        assert oracle.execute(state, actions[len(rec) // 2 : len(rec) // 2 + EXPERT_HORIZON]).safe
    assert n >= 50
