"""The control loop shared by simulator evaluation and the ROS node.

Each control period the caller hands the latest observation to `ControlLoop.step` and applies
the action it returns. The loop owns the observation history, the action queue, the inference
schedule (synchronous or on a background worker), chunk blending (temporal ensembling or
real-time chunking), the safety-gate call on every chunk, and the deadline monitor.

    loop = ControlLoop(policy, RuntimeConfig(mode="async", smoothing="rtc"),
                       clock=SimulatedClock(0.05, latency_s=0.12), gate=safety_gate.filter)
    loop.reset()                       # new episode: policy.reset(), empty queue, fresh stats
    for k in range(max_steps):
        action = loop.step(obs).action  # (Da,)
        obs = env.step(action)[0]
    loop.finish(); print(loop.stats.summary())
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import numpy as np

from vla.runtime.action_queue import ActionQueue, QueuedChunk
from vla.runtime.clock import Clock, SimulatedClock, WallClock, delay_steps
from vla.runtime.config import RuntimeConfig
from vla.runtime.obs_buffer import ObservationBuffer
from vla.runtime.protocol import ChunkGate, ChunkPolicy
from vla.runtime.stats import HOLD, LATE, MISS, OK, ChunkRecord, LatencyTracker, RuntimeStats, StepRecord

_PLAN_MAX = 1000  # steps of queued plan reported with each step (far more than a chunk)
_MAX_REGATES = 3  # re-gates of one chunk on the worker before it is gated on the control thread


@dataclass
class StepResult:
    """What one control period commands. `chunk_id`/`index` are -1 when the robot holds."""

    action: np.ndarray  # (Da,) float32, absolute
    status: str  # ok | miss | late | hold (see vla.runtime.stats)
    reason: str = ""
    chunk_id: int = -1
    index: int = -1
    # The gate found no safe stop from here: the action is its least-bad stop, and whoever drives
    # the robot must engage its e-stop (the ROS node publishes on its e-stop output).
    estop: bool = False
    # (n, Da): this action and the queued ones after it, as far as the queue reaches: the plan a
    # robot runs out (then holds its last row) if nothing more arrives. None before it is known.
    plan: np.ndarray | None = None


@dataclass
class _Pregate:
    """What the worker needs to gate a chunk right after computing it, certified from the state at
    the request (step `step`): the robot state, the command in force, the queue and the gate's own
    snapshot of the world then. Filled by the worker with the plan it gated and the decision."""

    step: int
    q: np.ndarray
    qd: np.ndarray
    command: np.ndarray | None
    queue: ActionQueue
    context: Any = None
    start: int = -1  # the step from which the gated plan runs the new chunk
    queue_end: int = -1  # the first step the queue did not cover at the request
    plan: np.ndarray | None = None
    decision: Any = None
    compute_s: float = float("nan")
    gate_s: float = float("nan")


@dataclass
class _Request:
    record: ChunkRecord
    prefix: np.ndarray | None
    future: Future | None = None
    chunk: np.ndarray | None = None
    pregate: _Pregate | None = None
    regate: Future | None = None  # the worker re-gating the chunk from a later state
    regates: int = 0
    # async: nothing was queued at the request, so the robot holds until this chunk goes in and the
    # observation is still the robot's state then: the chunk runs from its first action (as in sync
    # mode) instead of skipping the actions "whose time passed" while the arm stood still.
    dry: bool = False

    def wait(self) -> None:
        """Block until nothing of this request runs on the worker any more (errors propagate)."""
        for fut in (self.future, self.regate):
            if fut is not None:
                fut.result()


class ControlLoop:
    """Runs a `ChunkPolicy` at a fixed control rate (see `RuntimeConfig` for the modes).

    Args:
        policy: observation history -> (H, Da) absolute actions (see `ChunkPolicy`).
        config: scheduling and blending options.
        clock: `SimulatedClock` (default, deterministic step accounting of latency) or `WallClock`.
        gate: optional world-model check: `gate(q (7,), qd (6,), plan (n, Da), command=(Da,) | None)`
            (`sim.safety.SafetyGate.filter` with the full state bound in) applied to what would run
            once a chunk is installed; what it returns runs, then its last action is held (the
            certified stop) until the next chunk. A hold runs the gate's braking plan and reports
            HOLD with the gate's reason.
    """

    def __init__(
        self,
        policy: ChunkPolicy,
        config: RuntimeConfig | None = None,
        clock: Clock | None = None,
        gate: ChunkGate | None = None,
    ) -> None:
        self.policy = policy
        self.config = config or RuntimeConfig()
        self.clock: Clock = clock or SimulatedClock()
        self.gate = gate
        c = self.config
        if gate is not None and c.hold != "last_action":
            raise ValueError(
                "RuntimeConfig.hold must be 'last_action' with a safety gate: the gate certified holding "
                "the last action it passed, not a jump to the measured joints"
            )
        if not self.clock.deterministic and c.mode == "async" and not c.threaded:
            raise ValueError(
                "RuntimeConfig.threaded=False with a WallClock would block the control loop during "
                "inference; use threaded=True for asynchronous real-time control"
            )
        self._executor: ThreadPoolExecutor | None = None
        self._buffer = ObservationBuffer(c.n_obs_steps)
        self._queue = ActionQueue(c.ensemble_decay if c.smoothing == "ensemble" else None)
        self._tracker = LatencyTracker(c.latency_window, c.latency_quantile, c.latency_ema)
        # The gate's time on the worker (the median of the recent ones, or the last if longer: slow
        # gates come in runs), to tell whether a chunk came out of the policy too late to be gated by
        # its planned hand-over. Not the worst of the window: a grasp's search for a safe cut takes
        # 200-300 ms instead of 40-90 on 2 CPU cores, and planning every hand-over for that runs
        # staler actions all episode (measured: 16/20 instead of 20/20). Kept across episodes.
        self._gate_time = LatencyTracker(c.latency_window, 0.5, 1.0)
        self.stats = RuntimeStats(period_s=self.clock.period_s, jerk_dims=c.jerk_dims)
        self._pending: _Request | None = None
        self._dropped: _Request | None = None
        self.last_step_ms: dict[str, float] = {}
        self._step = 0
        self._last_action: np.ndarray | None = None
        self._last_request_step = 0
        self._sync_exec_until = 0
        self._gate_reason: str | None = None
        # (chunk id, reason) of the last chunk the gate cut (async): until a later chunk's action
        # runs, periods with nothing queued are held at the cut's stop because of the gate, and
        # report HOLD with its reason (as a refused chunk's do), not MISS. (sync: the robot waits for
        # every chunk anyway; those waits stay misses.)
        self._cut: tuple[int, str] | None = None
        self._gate_estop = False
        self._stopped = False
        self._action_dim: int | None = None
        self._horizon: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def reset(self) -> None:
        """Start a new episode: reset the policy (drops its cached instruction embedding), empty
        the observation history and the queue, and start fresh statistics."""
        self.finish()
        if callable(getattr(self.policy, "reset", None)):
            self.policy.reset()
        self._buffer.reset()
        self._queue.clear()
        self._tracker.reset()
        self.stats = RuntimeStats(period_s=self.clock.period_s, jerk_dims=self.config.jerk_dims)
        self._step = 0
        self._last_action = None
        self._last_request_step = 0
        self._sync_exec_until = 0
        self._gate_reason = None
        self._cut = None
        self._gate_estop = False
        self._stopped = False

    def finish(self) -> None:
        """End the episode: wait for an in-flight chunk (its errors propagate) and mark it dropped.

        A chunk dropped by `stop` is waited for too (its errors are not raised: it was abandoned):
        the policy must never run on two threads at once (the next episode's first chunk is
        computed on this one).
        """
        dropped, self._dropped = self._dropped, None
        if dropped is not None:
            with contextlib.suppress(Exception):
                dropped.wait()
        req, self._pending = self._pending, None
        if req is None:
            return
        req.wait()
        req.record.outcome = "dropped"

    def close(self) -> None:
        self.finish()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    def __enter__(self) -> ControlLoop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def step_index(self) -> int:
        """The control step the next `step()` call serves."""
        return self._step

    def delay_estimate(self) -> int:
        """Estimated inference delay in control steps, from measured (or injected) latencies."""
        return delay_steps(self._tracker.estimate(), self.clock.period_s, self.clock.deadline_fraction)

    # ------------------------------------------------------------------ the period
    def step(self, obs: dict[str, Any]) -> StepResult:
        """Serve one control period: take observation `obs`, return the action to command now."""
        k = self._step
        t0 = time.perf_counter()
        self._buffer.push(obs)
        t_take = t_req = 0.0
        if self._stopped:
            pass  # stopped (see `stop`): the queued plan plays out, nothing new is asked for
        elif k == 0:
            self._startup()
        else:
            self._poll(k)
            t_take = time.perf_counter()
            if self._pending is None and self._due(k):
                self._request(k)
                t_req = time.perf_counter()
                self._poll(k)
        result = self._select(k)
        self._queue.prune(k + 1)
        self._step += 1
        t1 = time.perf_counter()
        # Where this period's time went on the caller's thread (diagnostics for real-time runs).
        self.last_step_ms = {
            "total": 1e3 * (t1 - t0),
            "poll_take": 1e3 * ((t_take or t1) - t0),
            "request": 1e3 * ((t_req or t_take or t1) - (t_take or t1)),
        }
        return result

    def _startup(self) -> None:
        """The first chunk is computed before the episode clock starts (the robot is at rest)."""
        req = self._request(0, inline=True)
        self.stats.startup_latency_s = req.record.latency_s
        req.record.usable_step = 0
        t0 = self.clock.now()
        self._take(req, 0)  # gated here too: the clock starts once the first action is certified
        if self.gate is not None and self.config.pregate and not self.clock.deterministic:
            # Later chunks are gated on the worker: their delay includes the gate's time, so the
            # first estimate (and the first RTC prefix) must too.
            self._tracker.add(req.record.latency_s + (self.clock.now() - t0))
        self.clock.start()

    # ------------------------------------------------------------------ scheduling
    def _due(self, k: int) -> bool:
        c = self.config
        remaining = self._queue.remaining(k)
        if remaining == 0:
            return True
        if c.mode == "sync":
            return k >= self._sync_exec_until
        if k >= self._last_request_step + c.n_action_steps:
            return True
        # Request early when the queue would run dry before an estimated-latency chunk arrives.
        return remaining <= self.delay_estimate() + c.margin_steps

    def _request(self, k: int, inline: bool = False) -> _Request:
        c = self.config
        prefix = None
        if c.smoothing == "rtc":
            n = self.delay_estimate() + c.margin_steps
            if self._horizon is not None:
                n = min(n, self._horizon - 1)  # leave the policy at least one new action
            if n > 0:
                prefix = self._queue.committed(k, n)
        rec = ChunkRecord(
            chunk_id=len(self.stats.chunks),
            request_step=k,
            prefix_len=0 if prefix is None else len(prefix),
        )
        self.stats.chunks.append(rec)
        req = _Request(rec, prefix, dry=c.mode == "async" and k > 0 and self._queue.remaining(k) == 0)
        obs = self._buffer.snapshot(k, self._last_action)
        self._last_request_step = k
        if c.mode == "async" and c.threaded and not inline:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-chunk")
            if self.gate is not None and c.pregate:
                req.pregate = self._pregate_context(k)
            req.future = self._executor.submit(self._infer_and_gate, obs, req)
            if self.clock.injects_latency:
                # Injected latency: the usable step is known now; the worker runs meanwhile.
                self._account(req, float("nan"))
        else:
            req.chunk, compute_s, done_at = self._infer(obs, prefix)
            self._account(req, compute_s, done_at)
        self._pending = req
        return req

    def _account(self, req: _Request, compute_s: float, done_at: float | None = None) -> None:
        """Charge the request its latency and decide from which step its chunk is usable."""
        rec = req.record
        if np.isfinite(compute_s):
            rec.compute_s = compute_s
        if not np.isfinite(rec.latency_s):
            rec.latency_s = self.clock.accounted_latency(compute_s, rec.chunk_id)
        if rec.usable_step >= 0:
            return
        if self.clock.deterministic:
            d = delay_steps(rec.latency_s, self.clock.period_s, self.clock.deadline_fraction)
            rec.usable_step = rec.request_step + d
        elif done_at is not None and isinstance(self.clock, WallClock) and self.clock.t0 is not None:
            rec.usable_step = self.clock.usable_step(done_at, rec.request_step)

    def _pregate_context(self, k: int) -> _Pregate:
        latest = self._buffer.latest
        if "qvel" not in latest:
            raise ValueError(f"the safety gate needs observation key 'qvel'; got keys {sorted(latest)}")
        queue = ActionQueue(self._queue.ensemble_decay)
        queue.chunks = list(self._queue.chunks)  # QueuedChunks are never modified in place
        snapshot = getattr(self.gate, "snapshot", None)
        # The planned hand-over: once the chunk is likely ready, but never after the queued plan ends.
        # Planning it later leaves a step with nothing queued, a certain miss even when the chunk is in
        # time (measured at 300 ms injected: estimate + margin one step past the queue's end, a planned
        # miss every chunk, then an empty RTC prefix and a re-gate).
        lead = self.delay_estimate() + self.config.margin_steps
        remaining = self._queue.remaining(k)
        return _Pregate(
            step=k,
            q=np.asarray(latest["state"], np.float64).copy(),
            qd=np.asarray(latest["qvel"], np.float64).copy(),
            command=None if self._last_action is None else self._last_action.copy(),
            queue=queue,
            context=snapshot() if callable(snapshot) else None,
            start=k + (min(lead, remaining) if remaining > 0 else lead),
            queue_end=k + remaining,
        )

    def _infer_and_gate(self, obs: dict[str, Any], req: _Request) -> tuple[np.ndarray, float, float]:
        """Worker: the chunk, then (with a pregate context) the gate's decision on what would run
        from the request step if the chunk takes over where the committed prefix ends. The gate's
        time counts into the latency, so the delay estimate (and the RTC prefix) covers it."""
        chunk, compute_s, t1 = self._infer(obs, req.prefix)
        p = req.pregate
        if p is None:
            return chunk, compute_s, t1
        s = p.step
        # The chunk hands over after the committed prefix, and not before it is likely ready (a
        # queue that runs dry first holds its last action meanwhile: `_future` plans that too).
        start = s + max(0 if req.prefix is None else len(req.prefix), p.start - s, 0)
        wall = isinstance(self.clock, WallClock) and self.clock.t0 is not None
        # Computed too late for the gate to be done by the planned hand-over: hand over where the
        # queued plan ends instead. Otherwise the decision would be stale on arrival, and the re-gate
        # (another gate's time) leaves the queue dry (measured: 5-11 missed periods per grasp at 0
        # and 100 ms injected).
        late = wall and self.clock.now() + self._gate_time.estimate() > self.clock.tick(start)  # type: ignore[union-attr]
        if late and p.queue_end > start:
            start = p.queue_end
        if req.dry:
            # Holding: hand over as soon as the gate is likely done (the estimate made at the request
            # may hold the robot longer than needed after a slow chunk).
            if wall:
                start = self.clock.usable_step(self.clock.now() + self._gate_time.estimate(), s)  # type: ignore[union-attr]
            elif req.record.usable_step >= 0:
                start = max(s, req.record.usable_step)  # injected latency: known at the request
        p.start = start
        offset = start if req.dry else s
        self._gate_on_worker(p, QueuedChunk(req.record.chunk_id, offset, chunk, start, offset + len(chunk)))
        p.compute_s = compute_s
        return chunk, compute_s + p.gate_s, self.clock.now()

    def _infer(self, obs: dict[str, Any], prefix: np.ndarray | None) -> tuple[np.ndarray, float, float]:
        """Call the policy; returns the validated chunk (H, Da) float32, compute seconds, end time."""
        t0 = self.clock.now()
        chunk = np.asarray(self.policy(obs, prefix), dtype=np.float32)
        t1 = self.clock.now()
        if chunk.ndim != 2 or chunk.shape[0] < 1:
            raise ValueError(f"policy returned an action chunk of shape {chunk.shape}, expected (H, Da)")
        da = self._action_dim or chunk.shape[1]
        if chunk.shape[1] != da:
            raise ValueError(f"policy returned action dim {chunk.shape[1]}, earlier chunks had {da}")
        if prefix is not None and chunk.shape[0] < len(prefix):
            raise ValueError(f"policy returned {chunk.shape[0]} actions for a prefix of {len(prefix)}")
        if not np.all(np.isfinite(chunk)):
            raise ValueError(f"policy returned non-finite actions at step {obs['step']}")
        self._action_dim = da
        self._horizon = chunk.shape[0]
        return chunk, t1 - t0, t1

    def _poll(self, k: int) -> None:
        """Take the pending chunk if it is usable at step k."""
        req = self._pending
        if req is None:
            return
        rec = req.record
        if req.regate is not None:
            if not req.regate.done():
                return  # the queue keeps running its certified plan meanwhile
            req.regate.result()  # errors propagate
            req.regate = None
        if req.future is not None and req.chunk is None:
            if self.clock.deterministic:
                if rec.usable_step < 0 or k >= rec.usable_step:
                    req.chunk, compute_s, _ = req.future.result()
                    self._account(req, compute_s)
            else:
                fut = req.future
                if not fut.done() and self._queue.action_at(k) is None:
                    # Nothing else to command: wait for the worker until this period's deadline.
                    timeout = max(0.0, self.clock.deadline(k) - self.clock.now())  # type: ignore[attr-defined]
                    with contextlib.suppress(FutureTimeout):
                        fut.result(timeout=timeout)
                if fut.done():
                    req.chunk, compute_s, _ = fut.result()
                    rec.usable_step = k
                    self._account(req, compute_s)
                    if req.pregate is not None:
                        rec.compute_s, rec.gate_s = req.pregate.compute_s, req.pregate.gate_s
        if req.chunk is not None and rec.usable_step >= 0 and k >= rec.usable_step:
            self._take(req, k)

    def _take(self, req: _Request, k: int) -> None:
        """Install a usable chunk at step k, through the gate.

        The gate certifies what will run: the actions of steps k, k+1, ... if this chunk goes in and
        nothing else arrives (older committed actions and ensemble blends included; in sync mode
        only the Ta actions that run before the next request), then holding the last one. What the
        gate returns is what runs: the chunk itself when it passes unchanged, else the gate's plan
        (cut, rate-limited, braking) queued alone from step k.
        """
        self._pending = None
        c = self.config
        rec = req.record
        chunk = req.chunk
        assert chunk is not None
        prefix = req.prefix
        if prefix is not None:
            rec.prefix_error = float(np.max(np.abs(chunk[: len(prefix)] - prefix)))
        # sync: the robot held while the chunk was computed, so it runs from its first action.
        offset = k if c.mode == "sync" else rec.request_step
        start = k
        if prefix is not None:
            start = max(k, rec.request_step + len(prefix))  # committed steps stay the old chunk's
        if req.pregate is not None and k <= req.pregate.start:
            start = max(start, req.pregate.start)  # where the worker's gated plan hands over
        if req.dry:
            offset = start  # the robot held since the request: from the chunk's first action
        first = max(0, k - offset)  # actions whose time passed during inference are skipped
        if first >= len(chunk) or offset + len(chunk) <= start:
            self._track_delay(req)
            rec.outcome = "stale"
            return
        queued = QueuedChunk(rec.chunk_id, offset, chunk.astype(np.float32), start, offset + len(chunk))
        if self.gate is None:
            rec.outcome, rec.accepted = "installed", len(chunk) - first
            plan = None
        else:
            pre = self._use_pregate(req, k, queued)
            if pre is not None:
                rec.outcome, rec.accepted, plan = pre
            elif self._stale_cut_gives_way(req, k):
                self._give_way(req, k)
                return
            elif req.pregate is not None and req.regates < _MAX_REGATES:
                # The worker's decision no longer covers what would run (the chunk came later than
                # the committed prefix, or the robot held meanwhile): have the worker gate it again
                # from now, while the queue keeps running its certified plan (or the robot holds its
                # certified stop). Never the world model's simulation on the control period.
                self._regate(req, k, queued)
                return
            else:
                preview = self._queue.preview(k, queued)
                if c.mode == "sync":
                    # sync runs Ta actions, then holds the last one while the next chunk is computed.
                    preview = preview[: c.n_action_steps]
                rec.outcome, rec.accepted, plan = self._gate(preview, rec.chunk_id)
            cut = plan is not None and rec.outcome == "gate_truncated" and plan.chunk_id >= 0
            if cut and self._queued_plan_outlasts(k, k + rec.accepted, plan.end, queued.start):  # type: ignore[union-attr]
                self._give_way(req, k)
                return
        self._track_delay(req)
        if rec.outcome != "gate_hold":
            rec.installed_step = k
        if plan is None:
            self._gate_reason, self._gate_estop = None, False
            self._queue.install(queued)
            run = min(c.n_action_steps, len(chunk) - first)
        else:
            self._queue.clear()  # the gate's plan runs alone: exactly what it certified
            self._queue.install(plan)
            run = plan.end - k
            if rec.outcome == "gate_truncated" and c.mode == "async":
                self._cut = (rec.chunk_id, f"gate: {rec.gate_reason}")
        if c.mode == "sync":
            self._sync_exec_until = k + run

    def _queued_plan_outlasts(self, k: int, cut: int, end: int, hand_over: int) -> bool:
        """Whether the queued plan runs on instead of the gate's cut of a new chunk.

        `cut` is the step of the first action the gate did not pass, `end` where its cut plan
        (with the braking rows) ends, `hand_over` where the chunk would have taken over. The queued
        plan runs on when the cut is in the chunk's own actions (at or after the hand-over, so no
        queued action was found unsafe) and the queued plan lasts longer than the cut plan. The queued
        plan is the last one the gate certified, ending in its certified hold: exactly what runs when
        a chunk comes late. Running the shorter cut instead stops the arm early and leaves the next
        chunk less time (measured: a grasp's contact-force cut left 2 steps before the stop, then 6
        missed periods at 300 ms).
        """
        if self.config.mode != "async" or cut < hand_over:
            return False  # a cut in the queued actions: the queued plan is not safe from this state
        return k + self._queue.remaining(k) > end

    def _stale_cut_gives_way(self, req: _Request, k: int) -> bool:
        """A worker's decision that no longer covers what runs, and that cut the chunk in its own
        actions: re-gating the same chunk from later would cut it at the same place again, so when
        the queued plan lasts longer the chunk is dropped for a fresh one (no re-gate's time)."""
        p = req.pregate
        if p is None or p.decision is None or p.plan is None:
            return False
        d = p.decision
        if d.hold or not bool(getattr(d, "stop_safe", True)):
            return False
        n, braking = len(np.atleast_2d(np.asarray(d.actions))), int(getattr(d, "braking", 0))
        if n - braking >= len(p.plan) and not braking:
            return False  # passed whole (maybe rate-limited): not a cut
        return self._queued_plan_outlasts(k, p.step + n - braking, p.step + n, p.start)

    def _give_way(self, req: _Request, k: int) -> None:
        """Drop a cut chunk for the longer queued plan and ask for the next chunk at once."""
        self._track_delay(req)
        req.record.outcome, req.record.accepted = "cut_short", 0
        req.record.gate_reason = (
            str(req.pregate.decision.reason)
            if req.pregate and req.pregate.decision
            else req.record.gate_reason
        )
        self._cut = (req.record.chunk_id, f"gate: {req.record.gate_reason}")
        self._last_request_step = k - self.config.n_action_steps  # due now (see `_due`)

    def _track_delay(self, req: _Request) -> None:
        """Feed the delay estimate with the chunk's latency (inference + the gate on the worker).

        Not the steps until it went in: counting a re-gate or a wait for the tick makes the RTC
        prefix longer, each chunk adds fewer new actions and, with a latency near half the horizon,
        the single worker no longer keeps the queue full (measured: 352 instead of 11 missed
        periods in 8 episodes with 300 ms injected).
        """
        if np.isfinite(req.record.latency_s):
            self._tracker.add(req.record.latency_s)

    def _regate(self, req: _Request, k: int, queued: QueuedChunk) -> None:
        """Gate `queued` again on the worker from the state now; it hands over once the gate is
        likely done (its last time, in steps), the robot holding its last action meanwhile if the
        queued plan ends first."""
        assert self._executor is not None
        p = self._pregate_context(k)
        last = req.pregate.gate_s if req.pregate is not None and np.isfinite(req.pregate.gate_s) else 0.1
        d = max(1, delay_steps(last, self.clock.period_s, self.clock.deadline_fraction) + 1)
        # The chunk takes over once the gate is likely done; if the queued plan ends before that,
        # the robot holds its last action meanwhile (`_future` plans exactly that).
        p.start = max(queued.start, k + d)
        end = k + self._queue.remaining(k)
        window = self._gate_time.window
        typical = delay_steps(float(np.median(window)) if window else last, self.clock.period_s,
                              self.clock.deadline_fraction) + 1  # fmt: skip
        if not req.dry and p.start > end >= k + typical:
            # The last gate was slow (they come in runs, but mostly one is): planning from it would
            # leave the steps between the queue's end and the hand-over with nothing queued, certain
            # misses (measured: a 466 ms gate planned a hand-over 2 steps past the queue's end; the
            # re-gate took 150 ms). Hand over where the queue ends if a usual gate is done by then.
            p.start = max(queued.start, end)
        if req.dry:
            # Still holding: the chunk starts from its first action whenever it goes in.
            n = len(queued.actions)
            queued = QueuedChunk(queued.chunk_id, p.start, queued.actions, p.start, p.start + n)
        elif p.start >= queued.end:
            # Nothing of the chunk would be left by the time the gate is done: it is stale.
            self._track_delay(req)
            req.record.outcome = "stale"
            return
        else:
            queued = QueuedChunk(queued.chunk_id, queued.offset, queued.actions, p.start, queued.end)
        req.pregate = p
        req.regates += 1
        req.record.regates = req.regates
        self._pending = req
        req.regate = self._executor.submit(self._gate_on_worker, p, queued)

    def _future(self, queue: ActionQueue, k: int, queued: QueuedChunk) -> np.ndarray:
        """What runs from step k if `queued` goes in: `queue.preview`, with the steps between the end
        of the queued plan and `queued.start` (if any) filled with the hold of the last action, which
        is what the loop commands there (a dry queue holds its last, certified action)."""
        plan = queue.preview(k, queued)
        gap = queued.start - (k + len(plan))
        if gap <= 0 or len(plan) >= queued.end - k:
            return plan
        last = plan[-1] if len(plan) else self._last_action
        if last is None:
            return plan
        hold = QueuedChunk(-1, k + len(plan), np.repeat(np.asarray(last, np.float32)[None], gap, axis=0),
                           k + len(plan), queued.start, exclusive=True)  # fmt: skip
        filled = ActionQueue(queue.ensemble_decay)
        filled.chunks = [*queue.chunks, hold]
        return filled.preview(k, queued)

    def _gate_on_worker(self, p: _Pregate, queued: QueuedChunk) -> None:
        """Worker: the gate's decision on what runs from step `p.step` if `queued` goes in there."""
        t0 = self.clock.now()
        p.plan = self._future(p.queue, p.step, queued)
        kwargs = {} if p.context is None else {"snapshot": p.context}
        p.decision = self.gate(p.q, p.qd, p.plan, command=p.command, **kwargs)  # type: ignore[misc]
        p.gate_s = self.clock.now() - t0
        self._gate_time.add(p.gate_s)

    def _use_pregate(
        self, req: _Request, k: int, queued: QueuedChunk
    ) -> tuple[str, int, QueuedChunk | None] | None:
        """The worker's decision, if it still certifies what runs from step k; None to gate now.

        It does when the robot ran exactly the gated plan's first actions since the request (steps
        s .. k-1) and the plan from k is what runs if the chunk goes in now. The part of the gate's
        output from k on is then what the decision certified (from the state at s).
        """
        p = req.pregate
        if p is None or p.decision is None or p.plan is None:
            return None
        s, d = p.step, p.decision
        j = k - s
        ran = [r.action for r in self.stats.steps[s:k]]
        if len(p.plan) <= j or any(not np.array_equal(a, b) for a, b in zip(ran, p.plan[:j])):
            return None
        live = self._future(self._queue, k, queued)
        if len(live) < queued.end - k:
            return None  # a gap before the chunk takes over: its actions after it were not gated
        if live.shape != p.plan[j:].shape or not np.array_equal(live, p.plan[j:]):
            return None
        self.stats.chunks[req.record.chunk_id].gate_reason = str(d.reason)
        accepted = np.asarray(d.actions, dtype=np.float32).reshape(-1, p.plan.shape[1])
        stop_safe = bool(getattr(d, "stop_safe", True))
        if not d.hold and stop_safe and accepted.shape == p.plan.shape and np.array_equal(accepted, p.plan):
            return "installed", len(live), None
        braking = int(getattr(d, "braking", 0))
        if d.hold or not stop_safe or len(accepted) - braking <= j:
            return None  # the cut falls in what already ran, or a stop: decide from the state now
        self._gate_reason, self._gate_estop = None, False
        outcome = "gate_truncated" if (len(accepted) - braking < len(p.plan) or braking) else "gate_limited"
        rest = accepted[j:]
        return (
            outcome,
            len(accepted) - braking - j,
            QueuedChunk(req.record.chunk_id, k, rest, k, k + len(rest), True),
        )

    def _gate(self, plan: np.ndarray, chunk_id: int) -> tuple[str, int, QueuedChunk | None]:
        """Ask the gate about `plan (n, Da)`, the actions that would run from this step on.

        Returns (outcome, accepted rows of the chunk, None) when the plan passes unchanged (the chunk
        goes in as it is), else (outcome, rows, the gate's own plan to queue in its place). A hold
        or an uncertifiable stop sets the reason the held periods report (and the e-stop flag).
        """
        assert self.gate is not None
        k = self._step
        latest = self._buffer.latest
        if "qvel" not in latest:
            raise ValueError(f"the safety gate needs observation key 'qvel'; got keys {sorted(latest)}")
        d = self.gate(
            np.asarray(latest["state"]), np.asarray(latest["qvel"]), plan, command=self._last_action
        )
        self.stats.chunks[chunk_id].gate_reason = str(d.reason)
        accepted = np.asarray(d.actions, dtype=np.float32).reshape(-1, plan.shape[1])
        if len(accepted) == 0:
            raise ValueError("the gate returned no actions: every decision must end in a stop to hold")
        stop_safe = bool(getattr(d, "stop_safe", True))
        if not d.hold and stop_safe and accepted.shape == plan.shape and np.array_equal(accepted, plan):
            return "installed", len(plan), None
        braking = int(getattr(d, "braking", 0))
        rows = 0 if d.hold else len(accepted) - braking
        if d.hold:
            outcome = "gate_hold"
        elif len(accepted) - braking < len(plan) or braking:
            outcome = "gate_truncated"
        else:
            outcome = "gate_limited"  # the whole plan runs, changed by the rate limiter
        self._gate_reason, self._gate_estop = None, False
        if d.hold or not stop_safe:
            self._gate_reason = f"gate: {d.reason or 'hold'}"
            self._gate_estop = not stop_safe
            self.stats.unsafe_stops += int(not stop_safe)
        # A hold is the robot stopping, not a chunk: its periods report HOLD (chunk id -1).
        cid = -1 if d.hold else chunk_id
        return outcome, rows, QueuedChunk(cid, k, accepted, k, k + len(accepted), exclusive=True)

    # ------------------------------------------------------------------ the action
    def _select(self, k: int) -> StepResult:
        req = self._pending
        got = None
        if not (self.config.mode == "sync" and req is not None):  # sync: nothing runs while inferring
            got = self._queue.action_at(k)
        if got is not None:
            action, cid, idx = got
            if cid < 0:  # the gate's braking plan
                result = StepResult(action, HOLD, self._gate_reason or "gate: hold", -1, -1, self._gate_estop)
            else:
                result = StepResult(action, OK, "", cid, idx)
                if self._cut is not None and cid > self._cut[0]:
                    self._cut = None  # a chunk after the cut runs: the gate's stop is over
        else:
            estop = False
            if self._gate_reason is not None:
                status, reason, estop = HOLD, self._gate_reason, self._gate_estop
            elif self._cut is not None:
                status, reason = HOLD, self._cut[1]
            elif req is not None:
                status, reason = MISS, "waiting for chunk (inference not finished)"
            else:
                status, reason = MISS, "queue empty"
            result = StepResult(self._hold_action(), status, reason, estop=estop)
        if (
            isinstance(self.clock, WallClock)
            and result.status == OK
            and self.clock.now() > self.clock.deadline(k)
        ):
            result.status, result.reason = LATE, "action produced after the period's deadline"
        self.stats.record(
            StepRecord(k, result.status, result.action.copy(), result.chunk_id, result.index, result.reason)
        )
        self._last_action = result.action.copy()
        ahead = None if got is None else self._queue.committed(k + 1, _PLAN_MAX)
        result.plan = result.action[None] if ahead is None else np.concatenate([result.action[None], ahead])
        return result

    # ------------------------------------------------------------------ stopping
    def stop(self, obs: dict[str, Any] | None, reason: str) -> StepResult | None:
        """Stop asking the policy and brake (e-stop input, lost inputs, end of an episode).

        The in-flight chunk is dropped (not waited for). With `obs` (the current state) the gate
        plans a certified stop from it (`gate.stop`, when the gate has one; else the last command is
        held) and it replaces the queue; the returned result carries it as `plan`. Without `obs` the
        state is unknown: nothing new is commanded and the queued plan, which ends in the stop the
        gate certified, plays out (returns None). `step` still serves the queued plan (then holds its
        last action) but asks the policy for nothing until `reset()`.
        """
        self._stopped = True
        req, self._pending = self._pending, None
        if req is not None:
            req.record.outcome = "dropped"
            self._dropped = req  # still running on the worker: `finish` waits for it
        self._gate_reason = f"stop: {reason}"
        self._gate_estop = False
        if obs is None:
            return None
        k = self._step
        state = np.asarray(obs["state"], np.float64)
        stop = getattr(self.gate, "stop", None)
        if callable(stop):
            if "qvel" not in obs:
                raise ValueError(f"the safety gate needs observation key 'qvel'; got keys {sorted(obs)}")
            d = stop(state, np.asarray(obs["qvel"], np.float64), command=self._last_action, reason=reason)
            plan = np.atleast_2d(np.asarray(d.actions, np.float32))
            stop_safe = bool(getattr(d, "stop_safe", True))
            self._gate_estop = not stop_safe
            self.stats.unsafe_stops += int(not stop_safe)
            if not stop_safe:
                self._gate_reason += f"; {d.reason}"
        else:
            last = self._last_action if self._last_action is not None else state.astype(np.float32)
            plan = np.asarray(last, np.float32)[None].copy()
        self._queue.clear()
        self._queue.install(QueuedChunk(-1, k, plan, k, k + len(plan), exclusive=True))
        return StepResult(plan[0].copy(), HOLD, self._gate_reason, estop=self._gate_estop, plan=plan.copy())

    def _hold_action(self) -> np.ndarray:
        """Hold position: the last command, or the measured joints with the last gripper command."""
        state = np.asarray(self._buffer.latest["state"], dtype=np.float32)
        if self._last_action is None:
            if self._action_dim is not None and state.shape != (self._action_dim,):
                raise ValueError(
                    f"cannot hold before any action: state shape {state.shape} is not an action "
                    f"({self._action_dim},)"
                )
            return state.copy()
        action = self._last_action.copy()
        if self.config.hold == "state":
            n = min(self.config.jerk_dims, len(state), len(action))
            action[:n] = state[:n]
        return action
