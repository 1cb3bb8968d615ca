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


@dataclass
class StepResult:
    """What one control period commands. `chunk_id`/`index` are -1 when the robot holds."""

    action: np.ndarray  # (Da,) float32, absolute
    status: str  # ok | miss | late | hold (see vla.runtime.stats)
    reason: str = ""
    chunk_id: int = -1
    index: int = -1


@dataclass
class _Request:
    record: ChunkRecord
    prefix: np.ndarray | None
    future: Future | None = None
    chunk: np.ndarray | None = None


class ControlLoop:
    """Runs a `ChunkPolicy` at a fixed control rate (see `RuntimeConfig` for the modes).

    Args:
        policy: observation history -> (H, Da) absolute actions (see `ChunkPolicy`).
        config: scheduling and blending options.
        clock: `SimulatedClock` (default, deterministic step accounting of latency) or `WallClock`.
        gate: optional world-model check applied to every chunk before it enters the queue;
            a hold or an empty accepted prefix makes the robot hold, with the gate's reason.
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
        if not self.clock.deterministic and c.mode == "async" and not c.threaded:
            raise ValueError(
                "RuntimeConfig.threaded=False with a WallClock would block the control loop during "
                "inference; use threaded=True for asynchronous real-time control"
            )
        self._executor: ThreadPoolExecutor | None = None
        self._buffer = ObservationBuffer(c.n_obs_steps)
        self._queue = ActionQueue(c.ensemble_decay if c.smoothing == "ensemble" else None)
        self._tracker = LatencyTracker(c.latency_window, c.latency_quantile, c.latency_ema)
        self.stats = RuntimeStats(period_s=self.clock.period_s, jerk_dims=c.jerk_dims)
        self._pending: _Request | None = None
        self._step = 0
        self._last_action: np.ndarray | None = None
        self._last_request_step = 0
        self._sync_exec_until = 0
        self._gate_reason: str | None = None
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

    def finish(self) -> None:
        """End the episode: wait for an in-flight chunk (its errors propagate) and mark it dropped."""
        req, self._pending = self._pending, None
        if req is None:
            return
        if req.future is not None:
            req.future.result()
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
        self._buffer.push(obs)
        if k == 0:
            self._startup()
        else:
            self._poll(k)
            if self._pending is None and self._due(k):
                self._request(k)
                self._poll(k)
        result = self._select(k)
        self._queue.prune(k + 1)
        self._step += 1
        return result

    def _startup(self) -> None:
        """The first chunk is computed before the episode clock starts (the robot is at rest)."""
        req = self._request(0, inline=True)
        self.stats.startup_latency_s = req.record.latency_s
        req.record.usable_step = 0
        self.clock.start()
        self._take(req, 0)

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
        req = _Request(rec, prefix)
        obs = self._buffer.snapshot(k, self._last_action)
        self._last_request_step = k
        if c.mode == "async" and c.threaded and not inline:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vla-chunk")
            req.future = self._executor.submit(self._infer, obs, prefix)
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
        if req.chunk is not None and rec.usable_step >= 0 and k >= rec.usable_step:
            self._take(req, k)

    def _take(self, req: _Request, k: int) -> None:
        """Install a usable chunk at step k (through the gate)."""
        self._pending = None
        c = self.config
        rec = req.record
        chunk = req.chunk
        assert chunk is not None
        self._tracker.add(rec.latency_s)
        prefix = req.prefix
        if prefix is not None:
            rec.prefix_error = float(np.max(np.abs(chunk[: len(prefix)] - prefix)))
        # sync: the robot held while the chunk was computed, so it runs from its first action.
        offset = k if c.mode == "sync" else rec.request_step
        first = k - offset  # actions whose time passed during inference are skipped
        start = k
        if prefix is not None:
            start = max(k, rec.request_step + len(prefix))  # committed steps stay the old chunk's
        if first >= len(chunk):
            rec.outcome = "stale"
            return
        part = chunk[first:]
        if self.gate is not None:
            latest = self._buffer.latest
            if "qvel" not in latest:
                raise ValueError(f"the safety gate needs observation key 'qvel'; got keys {sorted(latest)}")
            decision = self.gate(np.asarray(latest["state"]), np.asarray(latest["qvel"]), part)
            accepted = np.asarray(decision.actions, dtype=np.float32).reshape(-1, chunk.shape[1])
            if len(accepted) > len(part):
                raise ValueError(f"gate returned {len(accepted)} actions for a chunk of {len(part)}")
            if decision.hold or len(accepted) == 0:
                rec.outcome = "gate_hold"
                self._gate_reason = f"gate: {decision.reason or 'hold'}"
                self._queue.clear()  # hold now; do not keep executing an older chunk
                return
            rec.outcome = "gate_truncated" if len(accepted) < len(part) else "installed"
        else:
            accepted = part
            rec.outcome = "installed"
        rec.accepted = len(accepted)
        rec.installed_step = k
        self._gate_reason = None
        actions = np.concatenate([chunk[:first], accepted]).astype(np.float32)
        end = offset + len(actions)
        if c.mode == "sync":
            self._sync_exec_until = k + min(c.n_action_steps, len(accepted))
        if end > start:
            self._queue.install(QueuedChunk(rec.chunk_id, offset, actions, start, end))

    # ------------------------------------------------------------------ the action
    def _select(self, k: int) -> StepResult:
        req = self._pending
        got = None
        if not (self.config.mode == "sync" and req is not None):  # sync: nothing runs while inferring
            got = self._queue.action_at(k)
        if got is not None:
            action, cid, idx = got
            result = StepResult(action, OK, "", cid, idx)
        else:
            if self._gate_reason is not None:
                status, reason = HOLD, self._gate_reason
            elif req is not None:
                status, reason = MISS, "waiting for chunk (inference not finished)"
            else:
                status, reason = MISS, "queue empty"
            result = StepResult(self._hold_action(), status, reason)
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
        return result

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
