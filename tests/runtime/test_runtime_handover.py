"""Real-time chunking hand-over with the gate on the worker: never planned past the queued plan.

With a delay estimate plus margin longer than what is left of the queue (300 ms injected at 20 Hz:
7 + 2 steps against 8), the loop once planned the hand-over one step after the queue's end, so every
chunk left a step with nothing queued (a missed period) even when it was ready in time. The oracle
is the step statuses and the gate's inputs; the policy and gate here are plain arrays, no simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from vla.runtime import ControlLoop, RuntimeConfig, SimulatedClock
from vla.runtime.stats import HOLD, MISS, OK

PERIOD, H, DA = 0.05, 16, 7


class RampPolicy:
    """Chunk of H targets ramping joint 0 from the latest state; keeps a committed prefix as given."""

    def __call__(self, obs, prefix):
        start = np.asarray(obs["state"][-1], np.float32)
        chunk = np.repeat(start[None], H, axis=0)
        chunk[:, 0] += 0.01 * np.arange(1, H + 1)
        if prefix is not None:
            chunk[: len(prefix)] = prefix
        return chunk


class PassGate:
    """Certifies every plan as it is; records the plans it was asked about."""

    def __init__(self) -> None:
        self.plans: list[np.ndarray] = []

    def __call__(self, q, qd, plan, command=None):
        self.plans.append(np.array(plan, copy=True))

        class D:
            actions, hold, reason = plan, False, "safe"

        return D()


# (first latencies, later latency, margin): the estimate grows by a step at the step a chunk goes in,
# the step the next request is due, so estimate + margin exceeds what is left of the queue (the
# first three gave missed periods before; the later latency stays within what a 16-step horizon
# can carry with one worker, 8 steps).
@pytest.mark.parametrize(
    "first, later, margin", [(0.35, 0.45, 2), (0.3, 0.4, 3), (0.35, 0.4, 3), (0.2, 0.2, 2), (0.3, 0.35, 0)]
)
def test_hand_over_is_never_planned_after_the_queue_ends(first: float, later: float, margin: int) -> None:
    gate = PassGate()
    cfg = RuntimeConfig(mode="async", smoothing="rtc", n_action_steps=8, margin_steps=margin)
    loop = ControlLoop(RampPolicy(), cfg, SimulatedClock(PERIOD, [first, first, later]), gate)
    state = np.zeros(DA, np.float32)
    with loop:
        loop.reset()
        for _ in range(80):
            r = loop.step({"state": state.copy(), "qvel": np.zeros(DA - 1, np.float32)})
            state = r.action.copy()  # a robot that reaches its target every period
        statuses = [s.status for s in loop.stats.steps]
    assert MISS not in statuses, [i for i, s in enumerate(statuses) if s == MISS]
    assert set(statuses) == {OK}
    # Every plan the worker gated runs without a held (repeated) row before the new chunk's ramp:
    # a hold-filled gap would repeat the last queued action.
    assert len(gate.plans) >= 8
    for plan in gate.plans[1:]:
        steps = np.diff(plan[:, 0])
        assert np.all(steps > 0), steps


def test_a_chunk_requested_while_holding_runs_from_its_first_action() -> None:
    """The robot held while the chunk was computed, so its observation is still the robot's state:
    the chunk starts at its first action. Skipping the actions "whose time passed" would start it
    d actions into a plan made for a robot that did not move (a jump of d ramp steps)."""
    cfg = RuntimeConfig(mode="async", smoothing="rtc", n_action_steps=8, margin_steps=2)
    # The third chunk takes 0.9 s: it comes too late to be used, the queue runs dry and the next
    # request is made while the robot holds; the latency estimate then still carries the slow one.
    loop = ControlLoop(RampPolicy(), cfg, SimulatedClock(PERIOD, [0.2, 0.2, 0.9, 0.2]), PassGate())
    state = np.zeros(DA, np.float32)
    actions = []
    with loop:
        loop.reset()
        for _ in range(40):
            r = loop.step({"state": state.copy(), "qvel": np.zeros(DA - 1, np.float32)})
            actions.append(r.action.copy())
            state = r.action.copy()
        steps = loop.stats.steps
    held = [s.step for s in steps if s.status == MISS]
    assert held, "the slow chunk should have left the queue dry"
    resume = next(s.step for s in steps if s.step > held[0] and s.status == OK)
    dry = loop.stats.chunks[3]
    assert dry.request_step in held and dry.prefix_len == 0, dry  # requested while holding
    # In as soon as it is ready (0.2 s = 3 steps), not after the estimate that includes the 0.9 s.
    assert resume == dry.request_step + 3 == dry.installed_step, (resume, dry)
    # The first action after the hold is the new chunk's first: one ramp step from where it held.
    np.testing.assert_allclose(actions[resume][0] - actions[resume - 1][0], 0.01, atol=1e-6)
    assert np.all(np.diff([a[0] for a in actions[resume:]]) <= 0.01 + 1e-6)


class MarkedRampPolicy:
    """H=32 ramp like `RampPolicy`; joint 1 carries the call number, so each action names its chunk."""

    horizon = 32

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, obs, prefix):
        self.calls += 1
        start = np.asarray(obs["state"][-1], np.float32)
        chunk = np.repeat(start[None], self.horizon, axis=0)
        chunk[:, 0] += 0.01 * np.arange(1, self.horizon + 1)
        chunk[:, 1] = self.calls
        if prefix is not None:
            chunk[: len(prefix)] = prefix
        return chunk


class CutGate(PassGate):
    """Passes every plan but the `cut_call`-th, which it truncates to its first `cut_row` rows."""

    def __init__(self, cut_call: int, cut_row: int) -> None:
        super().__init__()
        self.cut_call, self.cut_row = cut_call, cut_row

    def __call__(self, q, qd, plan, command=None):
        self.plans.append(np.array(plan, copy=True))
        rows = plan[: self.cut_row] if len(self.plans) == self.cut_call else plan

        class D:
            actions, hold, reason = rows, False, "safe" if rows is plan else "contact_force (scripted)"

        return D()


def _drive(loop: ControlLoop, n: int) -> tuple[list, list]:
    """n periods with a robot that reaches its target every period; (step records, chunk records)."""
    state = np.zeros(DA, np.float32)
    with loop:
        loop.reset()
        for _ in range(n):
            state = loop.step({"state": state.copy(), "qvel": np.zeros(DA - 1, np.float32)}).action.copy()
        return loop.stats.steps, loop.stats.chunks


# (worker gates the chunk: the plan starts at the request step; control thread: at the take step)
@pytest.mark.parametrize("threaded, cut_row", [(True, 10), (False, 1), (False, 10)])
def test_a_cut_chunk_gives_way_to_a_longer_certified_plan(threaded: bool, cut_row: int) -> None:
    """A chunk the gate cuts in its own actions, short of where the queued (certified) plan ends,
    does not replace that plan: the robot runs on the plan certified before and the next chunk is
    asked for at once, instead of stopping early and missing periods while it is computed. A cut in
    the queued actions themselves (found unsafe from the state now) does replace it."""
    gate = CutGate(cut_call=3, cut_row=cut_row)
    cfg = RuntimeConfig(mode="async", smoothing="rtc", n_action_steps=8, margin_steps=2, threaded=threaded)
    loop = ControlLoop(MarkedRampPolicy(), cfg, SimulatedClock(PERIOD, 0.2), gate)
    steps, chunks = _drive(loop, 60)
    cut = chunks[2]  # the third gate call decides on the third chunk (the first is gated inline)
    # 0.2 s is 3 periods; the committed prefix is the estimate (3) + margin (2).
    assert (cut.request_step, cut.usable_step, cut.prefix_len) == (16, 19, 5), cut
    hand_over = cut.request_step + cut.prefix_len
    plan_start = cut.request_step if threaded else cut.usable_step
    old_plan = gate.plans[1]  # certified from the step chunk 1 was gated for
    old_step = chunks[1].request_step if threaded else chunks[1].installed_step
    if plan_start + cut_row >= hand_over:
        assert cut.outcome == "cut_short" and cut.installed_step == -1, cut
        assert MISS not in {s.status for s in steps}
        # The next chunk is asked for at once; until it goes in, every action is the previously
        # certified plan's, row by row.
        nxt = chunks[3]
        assert nxt.request_step == cut.usable_step and nxt.installed_step > 0, nxt
        for s in steps[cut.usable_step : nxt.installed_step]:
            np.testing.assert_array_equal(s.action, old_plan[s.step - old_step])
            assert s.chunk_id == 1
    else:
        assert cut.outcome == "gate_truncated" and cut.installed_step == cut.usable_step, cut
        # The queued plan was found unsafe from here: nothing past the cut runs, the arm holds.
        end = plan_start + cut_row
        assert all(s.chunk_id != 1 for s in steps[end:])
        held = [s for s in steps[end:] if s.status != OK]
        assert held and all(np.array_equal(s.action, steps[end - 1].action) for s in held)
        # The gate stopped the arm: those periods are holds with the cut's reason, not misses.
        assert {(s.status, s.reason) for s in held} == {(HOLD, "gate: contact_force (scripted)")}


def test_a_late_cut_chunk_is_dropped_without_a_regate() -> None:
    """The worker's decision on a chunk that came after its committed prefix no longer covers what
    runs; when that decision cut the chunk in its own actions and the queued plan lasts longer, the
    chunk is dropped for a fresh one at once instead of spending a re-gate (which would cut it at the
    same place again), and the robot runs on the plan certified before."""
    gate = CutGate(cut_call=3, cut_row=10)
    cfg = RuntimeConfig(mode="async", smoothing="rtc", n_action_steps=8, margin_steps=2)
    # The third chunk (gate call 3) takes 0.45 s = 8 periods: past its 5-step committed prefix.
    loop = ControlLoop(MarkedRampPolicy(), cfg, SimulatedClock(PERIOD, [0.2, 0.2, 0.45, 0.2]), gate)
    steps, chunks = _drive(loop, 60)
    cut, nxt = chunks[2], chunks[3]
    assert (cut.request_step, cut.usable_step, cut.prefix_len) == (16, 24, 5), cut
    assert cut.outcome == "cut_short" and cut.regates == 0 and "scripted" in cut.gate_reason, cut
    assert len(gate.plans) == 1 + sum(c.outcome != "pending" for c in chunks[1:]), "a re-gate ran"
    assert nxt.request_step == cut.usable_step and nxt.installed_step > 0, nxt
    assert MISS not in {s.status for s in steps}
    old_plan, old_step = gate.plans[1], chunks[1].request_step
    for s in steps[cut.request_step : nxt.installed_step]:
        np.testing.assert_array_equal(s.action, old_plan[s.step - old_step])
