"""The safety gate: simulate each chunk in the world model and pass only what ends in a safe stop.

    gate = SafetyGate(load_safety_config("configs/safety/ur5e_default.yaml"))
    decision = gate.filter(q, qd, chunk, command=last_command)   # q (7,), qd (6,), chunk (H, 7)
    robot.execute(decision.actions)   # (K, 7), then hold decision.actions[-1] until the next decision
    i, decision, verdicts = gate.select(q, qd, candidates)   # best-of-K, candidates (K, H, 7)

The contract of every decision: executing ``decision.actions`` and then holding its last row
indefinitely is safe. The world model simulates exactly that: the rows, applied the way the
executor applies them (``gate.execution``), then the last row held for ``stop.horizon_s``, every
physics substep checked, and the arm must be at rest at the end (:func:`sim.safety.checks.check_stop`).

- The whole chunk ends in a safe stop: it passes (``status`` "pass", or "limited" when the rate
  limiter changed it).
- Otherwise the longest prefix whose own stop is safe is returned ("truncated"): first holding its
  last row, else with one braking row appended (``decision.braking``; see :mod:`sim.safety.stop`).
- No row can run (invalid chunk, jump, or no prefix stops safely): a braking row planned from the
  current state is returned ("hold"). If even no stop from here is safe (the arm is already on a
  collision course), the least-bad stop is returned with ``decision.stop_safe = False``: executors
  must report it and engage their e-stop.

With ``gate.max_target_step`` set, ``filter``, ``select`` and ``as_checker`` first rate-limit the arm
targets (:func:`limit_target_steps`, like ros2_control's ``JointSaturationLimiter``): the limited chunk
is what is simulated, checked and returned. ``check`` judges the chunk exactly as given.

In simulation build it from the environment (``SafetyGate.for_env(env, cfg)``) and pass
``full_state=gate.env_state(env)`` so objects are simulated too; score candidates with
:func:`sim.safety.scoring.task_progress_score`.

Simulation uses ``mujoco.rollout`` (native threads, GIL released) with one persistent rollout
object and per-thread ``MjData``; every physics substep is checked (see :mod:`sim.safety.checks`),
collisions included: MuJoCo evaluates them inside each step (:mod:`sim.safety.collision_sensors`),
so judging a chunk is a scan of numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np
from mujoco import rollout

from sim.safety import checks
from sim.safety.config import SafetyConfig
from sim.safety.stop import badness, brake_targets
from sim.safety.verdict import Verdict, Violation, make_verdict
from sim.safety.world_model import STATE_SPEC, WorldModel

COLLISION_METHODS = ("sensors", "twin")

# score_fn(final_states (K, nstate), candidates (K, H, 7)) -> scores (K,), higher is better.
ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def limit_target_steps(q: np.ndarray, chunk: np.ndarray, max_step: float | np.ndarray) -> np.ndarray:
    """Rate-limit the arm targets of a chunk: ``a'_k = a'_{k-1} + clip(a_k - a'_{k-1}, -s, +s)``.

    Args:
        q: ``(6,)`` or ``(7,)``: where the arm's targets start, ``a'_{-1}`` (only the 6 arm joints are
            used; the gate passes the target the servo is tracking now, see
            :meth:`SafetyGate.limit_targets`).
        chunk: ``(H, 7)`` joint targets [rad] + gripper command, finite.
        max_step: largest target change per control step [rad], a number or ``(6,)`` per arm joint.
    Returns:
        ``(H, 7)`` float64, a new array: the limited arm targets and the gripper column unchanged.
        Targets already within ``max_step`` of their predecessor come out bit-identical.
    """
    a = np.array(chunk, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != 7:
        raise ValueError(f"chunk must be (H, 7), got {a.shape}")
    s = np.broadcast_to(np.asarray(max_step, np.float64), (6,))
    if not np.all(s > 0):
        raise ValueError(f"max_step must be > 0, got {max_step}")
    prev = np.asarray(q, np.float64).reshape(-1)[:6]
    for k in range(len(a)):
        d = a[k, :6] - prev
        over = np.abs(d) > s
        if over.any():  # only clipped joints change, so an in-limit chunk is returned exactly
            a[k, :6] = np.where(over, prev + np.clip(d, -s, s), a[k, :6])
        prev = a[k, :6]
    return a


@dataclass(frozen=True)
class GateDecision:
    """What to execute: run ``actions``, then hold ``actions[-1]`` until the next decision.

    Attributes:
        actions: ``(K, 7)`` float32, finite, ``K >= 1``: the chunk's rows that may run (all of them, or
            a prefix), followed by ``braking`` braking rows planned by the gate; when ``hold``, only
            braking rows from the current state.
        hold: no row of the chunk may run; the robot brakes to a stop where it is.
        reason: ``"safe"``, or why the chunk was cut / held; a note follows when the rate limiter
            changed the chunk (``"...; targets rate-limited: ..."``).
        verdict: the full :class:`Verdict` of the chunk as proposed (rate-limited), its stop included.
        limited: the rate limiter (``gate.max_target_step``) changed the chunk before it was checked.
        braking: how many rows at the end of ``actions`` the gate added to stop (0 or 1).
        stop_safe: the returned actions and their hold were simulated and found safe. ``False`` only
            when no stop from the current state is safe: ``actions`` is then the least-bad stop, and
            the executor must report it and engage its e-stop.
        stop_verdict: the verdict of what is returned (``actions`` + the hold), ``None`` if not simulated.
    """

    actions: np.ndarray
    hold: bool
    reason: str
    verdict: Verdict
    limited: bool = False
    braking: int = 0
    stop_safe: bool = True
    stop_verdict: Verdict | None = None

    @property
    def status(self) -> str:
        """``"pass"`` (whole chunk, unchanged), ``"limited"`` (whole chunk, rate-limited),
        ``"truncated"`` (a prefix, maybe with a braking row) or ``"hold"``."""
        if self.hold:
            return "hold"
        if not self.verdict.safe:
            return "truncated"
        return "limited" if self.limited else "pass"

    @property
    def rows(self) -> int:
        """Rows of the policy's chunk in ``actions`` (0 for a hold)."""
        return 0 if self.hold else len(self.actions) - self.braking


@dataclass
class GateStats:
    """Counters since the last :meth:`SafetyGate.reset_stats` (per episode in ``vla-eval``).

    ``passed + limited + truncated + held == chunks``; ``rate_limited`` counts every chunk the limiter
    changed (whatever the outcome), ``braking`` the decisions with a gate-planned braking row and
    ``unsafe_stops`` those with no safe stop at all.
    """

    chunks: int = 0
    passed: int = 0
    limited: int = 0
    truncated: int = 0
    held: int = 0
    steps_proposed: int = 0
    steps_passed: int = 0
    rate_limited: int = 0
    braking: int = 0
    unsafe_stops: int = 0
    by_check: dict[str, int] = field(default_factory=dict)

    def record(self, decision: GateDecision) -> None:
        self.chunks += 1
        status = decision.status
        if status == "pass":
            self.passed += 1
        elif status == "limited":
            self.limited += 1
        elif status == "truncated":
            self.truncated += 1
        else:
            self.held += 1
        self.rate_limited += int(decision.limited)
        self.braking += int(decision.braking > 0)
        self.unsafe_stops += int(not decision.stop_safe)
        self.steps_proposed += decision.verdict.horizon
        self.steps_passed += decision.rows
        if decision.verdict.check is not None:
            self.by_check[decision.verdict.check] = self.by_check.get(decision.verdict.check, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "passed": self.passed,
            "limited": self.limited,
            "truncated": self.truncated,
            "held": self.held,
            "steps_proposed": self.steps_proposed,
            "steps_passed": self.steps_passed,
            "rate_limited": self.rate_limited,
            "braking": self.braking,
            "unsafe_stops": self.unsafe_stops,
            "by_check": dict(self.by_check),
        }


class SafetyGate:
    """World-model safety gate for one robot.

    Args:
        cfg: limits, margins, the stop, timing, how targets are executed and the thread count.
        spec: scene to simulate (``None``: robot + table from :func:`sim.scene.build_scene`).
        collision_method: ``"sensors"`` (default): collisions are evaluated inside every physics
            step of the rollout by MuJoCo sensors (:mod:`sim.safety.collision_sensors`), every
            substep, no Python per substep. ``"twin"``: the reference implementation, one Python
            collision-detection call on the detection twin per evaluated substep.
        collision_stride: ``"twin"`` only: evaluate near-contacts every this many physics substeps
            (1 = all); actual touches are evaluated at every substep whatever the stride. The
            sensors always check every substep.
    """

    def __init__(
        self,
        cfg: SafetyConfig,
        spec: mujoco.MjSpec | None = None,
        collision_stride: int = 1,
        collision_method: str = "sensors",
    ) -> None:
        if collision_stride < 1:
            raise ValueError(f"collision_stride must be >= 1, got {collision_stride}")
        if collision_method not in COLLISION_METHODS:
            raise ValueError(f"collision_method must be one of {COLLISION_METHODS}, got {collision_method!r}")
        self.cfg = cfg
        self.wm = WorldModel(cfg, spec, in_step_collision=collision_method == "sensors")
        self.collision_method = collision_method
        self.collision_stride = collision_stride
        self.stats = GateStats()
        nthread = cfg.gate.nthread
        self._rollout = rollout.Rollout(nthread=nthread)
        self._datas = [mujoco.MjData(self.wm.model) for _ in range(max(1, nthread))]
        self._buffers: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        s = cfg.gate.max_target_step
        self._max_step = None if s is None else np.asarray(s, np.float64)

    @classmethod
    def for_env(
        cls, env: Any, cfg: SafetyConfig, collision_stride: int = 1, collision_method: str = "sensors"
    ) -> SafetyGate:
        """A gate whose world model is ``env``'s own scene (task objects included)."""
        base = env.unwrapped
        if abs(cfg.control_rate_hz - base.cfg.control_rate_hz) > 1e-9:
            raise ValueError(
                f"SafetyConfig.control_rate_hz ({cfg.control_rate_hz}) != the env's ({base.cfg.control_rate_hz})"
            )
        return cls(cfg, spec=base.spec_, collision_stride=collision_stride, collision_method=collision_method)

    def env_state(self, env: Any) -> np.ndarray:
        """The env's full physics state for ``full_state=`` (also syncs per-episode static layout)."""
        base = env.unwrapped
        self.wm.sync_static(base.model)
        state = np.empty(mujoco.mj_stateSize(base.model, STATE_SPEC))
        mujoco.mj_getState(base.model, base.data, state, STATE_SPEC)
        return state

    def close(self) -> None:
        self._rollout.close()

    def __enter__(self) -> SafetyGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_stats(self) -> GateStats:
        """Return the counters so far and start new ones (call at each episode start)."""
        old, self.stats = self.stats, GateStats()
        return old

    @property
    def stop_periods(self) -> int:
        """Control periods of the simulated stop after every chunk."""
        return self.cfg.stop_periods

    # -- simulation ------------------------------------------------------------------------------
    def _initial_state(self, q: np.ndarray, qd: np.ndarray, full_state: np.ndarray | None) -> np.ndarray:
        if full_state is not None:
            return self.wm.state_from_full(full_state)
        return self.wm.state_from_joints(q, qd)

    def _simulate(self, init: np.ndarray, ctrl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Roll ``ctrl (K, nstep, nu)`` out from ``init`` ``(nstate,)`` or ``(K, nstate)``.

        Returns states / sensordata ``(K, nstep, .)`` (views into reused buffers: copy to keep).
        """
        ctrl = np.ascontiguousarray(ctrl)
        k, nstep = ctrl.shape[:2]
        key = (k, nstep)
        if key not in self._buffers:
            m = self.wm.model
            self._buffers[key] = (np.empty((k, nstep, self.wm.nstate)), np.empty((k, nstep, m.nsensordata)))
        state, sens = self._buffers[key]
        init_k = np.ascontiguousarray(np.broadcast_to(np.asarray(init, np.float64), (k, self.wm.nstate)))
        before = self._instabilities()
        # Shapes and dtypes are built right here, so the wrapper's checks and copies are skipped.
        self._rollout.rollout(
            [self.wm.model] * k, self._datas, init_k, ctrl, nstep=nstep, state=state, sensordata=sens,
            skip_checks=True,
        )  # fmt: skip
        if self._instabilities() != before:
            # MuJoCo reset a diverging simulation mid-rollout (the state jumps back to the model's
            # defaults): nothing it shows can be trusted, and which sample it was is not recorded.
            state[:] = np.nan
        return state, sens

    def _instabilities(self) -> int:
        """Diverging-simulation warnings so far on the rollout's per-thread data (MuJoCo counts them)."""
        return sum(
            int(d.warning[w].number)
            for d in self._datas
            for w in (
                mujoco.mjtWarning.mjWARN_BADQACC,
                mujoco.mjtWarning.mjWARN_BADQPOS,
                mujoco.mjtWarning.mjWARN_BADQVEL,
            )
        )

    def _judge(
        self,
        init: np.ndarray,
        rows: int,
        pre: list,
        state: np.ndarray,
        sens: np.ndarray,
        periods: int | None = None,
    ) -> Verdict:
        """Verdict on ``rows`` chunk rows from a rollout of ``periods`` control periods (rows + stop)."""
        periods = rows if periods is None else periods
        traj = checks.Trajectory.from_rollout(
            self.wm, init, state, sens, periods, rows=rows if periods > rows else None
        )
        found: list[Violation | None] = list(pre)
        found += [fn(self.cfg, self.wm, traj) for fn in checks.TRAJECTORY_CHECKS]
        if self.collision_method == "sensors":
            found.append(checks.check_collision_in_step(self.cfg, self.wm, traj))
        else:
            # Twin collision detection is the costly check: stop where an earlier violation ends the prefix.
            earliest = min((v.step for v in found if v is not None), default=periods)
            stop = (earliest + 1) * self.cfg.n_substeps
            found.append(
                checks.check_collision(self.cfg, self.wm, traj, self.collision_stride, stop_before=stop)
            )
        return make_verdict(rows, found)

    def _with_stop(
        self, init: np.ndarray, plan: np.ndarray, start: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Roll out plans ``(K, R, 7)`` followed by the stop (last row held), from ``init``."""
        return self._simulate(init, self.wm.controls(plan, self.stop_periods, start))

    # -- checks on the targets -------------------------------------------------------------------
    def _pre_checks(
        self, q: np.ndarray, chunk: object, horizon: int | None = None, qd: np.ndarray | None = None
    ) -> tuple[np.ndarray | None, list]:
        """Checks on the targets; with ``qd`` given (and the limiter on) the returned chunk is rate-limited.

        The jump check judges the policy's own first target (a chunk that does not start near the
        robot means the policy lost track of it; the limiter must not hide that), the target limits
        judge what will be executed.
        """
        bad = checks.check_action_shape(chunk, horizon)
        if bad is not None:
            return None, [bad]
        raw = np.asarray(chunk, np.float64)
        a = raw if qd is None else self.limit_targets(q, qd, raw)
        return a, [
            checks.check_target_limits(self.cfg, self.wm, a),
            checks.check_jump(self.cfg, self.wm, q, raw),
        ]

    def limit_targets(self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> np.ndarray:
        """``chunk (H, 7)`` rate-limited by ``gate.max_target_step`` (unchanged when it is off), float64.

        The first target is limited relative to the target the servo is tracking now, estimated as
        ``q + servo_lag * qd``: a position servo trails a moving target by ``(kv / kp) * velocity``
        (0.2 s for the UR5e servos), so at rest this is ``q`` and a moving arm is not braked. The
        world-model check that follows judges the result either way.
        """
        a = np.asarray(chunk, np.float64)
        if self._max_step is None:
            return a
        anchor = np.asarray(q, np.float64)[:6] + self.wm.servo_lag_s * np.asarray(qd, np.float64)[:6]
        return limit_target_steps(anchor, a, self._max_step)

    @staticmethod
    def _check_q(q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, np.float64).reshape(-1)
        qd = np.asarray(qd, np.float64).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q must be 7 finite numbers (6 joints [rad] + gripper closure), got {q}")
        if qd.shape != (6,) or not np.all(np.isfinite(qd)):
            raise ValueError(f"qd must be 6 finite joint velocities [rad/s], got {qd}")
        return q, qd

    @staticmethod
    def _check_command(command: np.ndarray | None) -> np.ndarray | None:
        if command is None:
            return None
        c = np.asarray(command, np.float64).reshape(-1)
        if c.shape != (7,) or not np.all(np.isfinite(c)):
            raise ValueError(f"command must be 7 finite numbers (the targets in force now), got {command}")
        return c

    def _inputs(
        self, q: np.ndarray, qd: np.ndarray, full_state: np.ndarray | None, command: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """Validated ``(q (7,), qd (6,), command (7,) or None, initial physics state)``."""
        q, qd = self._check_q(q, qd)
        return q, qd, self._check_command(command), self._initial_state(q, qd, full_state)

    def _start(self, q: np.ndarray, qd: np.ndarray, command: np.ndarray | None, grip: float) -> np.ndarray:
        """The command in force before the first row (``"linear"`` execution interpolates from it)."""
        if command is not None:
            return command
        return np.append(q[:6] + self.wm.servo_lag_s * qd, grip)

    # -- public API ------------------------------------------------------------------------------
    def check(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        chunk: np.ndarray,
        full_state: np.ndarray | None = None,
        command: np.ndarray | None = None,
    ) -> Verdict:
        """Verdict on executing ``chunk (H, 7)`` exactly as given and then holding its last row, from
        the current ``q (7,)``, ``qd (6,)`` (no rate limiter, no counters)."""
        q, qd, cmd, init = self._inputs(q, qd, full_state, command)
        a, pre = self._pre_checks(q, chunk)
        if a is None:
            return make_verdict(max(1, _rows(chunk)), pre)
        state, sens = self._with_stop(init, a[None], self._start(q, qd, cmd, a[0, 6]))
        return self._judge(init, len(a), pre, state[0], sens[0], len(a) + self.stop_periods)

    def filter(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        chunk: np.ndarray,
        full_state: np.ndarray | None = None,
        command: np.ndarray | None = None,
    ) -> GateDecision:
        """What of ``chunk (H, 7)`` may run from ``q (7,)``, ``qd (6,)``, ending in a certified stop.

        Args:
            full_state: the simulator's ``mjSTATE_FULLPHYSICS`` vector (objects simulated too).
            command: ``(7,)`` the targets in force now (the last command sent). ``"linear"`` execution
                interpolates from it, and a hold keeps its gripper value and tries holding it first.
                ``None``: estimated as ``q + lag * qd`` with the chunk's first gripper value (or the
                measured closure when the chunk is invalid).
        Returns:
            A :class:`GateDecision` (counted in :attr:`stats`).
        """
        q, qd, cmd, init = self._inputs(q, qd, full_state, command)
        a, pre = self._pre_checks(q, chunk, qd=qd)
        if a is None:
            verdict = make_verdict(max(1, _rows(chunk)), pre)
            decision = self._hold(q, qd, init, cmd, None, verdict, "")
        else:
            note = _limit_note(chunk, a, self.wm.joint_names)
            decision = self._certify(q, qd, init, cmd, a, pre, note)
        self.stats.record(decision)
        return decision

    def stop(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        full_state: np.ndarray | None = None,
        command: np.ndarray | None = None,
        reason: str = "stop requested",
    ) -> GateDecision:
        """A certified stop from the current state with no chunk to run (e-stop input, lost inputs).

        Same braking plan as a hold of :meth:`filter`; counted as a hold.
        """
        q, qd, cmd, init = self._inputs(q, qd, full_state, command)
        verdict = Verdict(horizon=1)
        decision = self._hold(q, qd, init, cmd, None, verdict, "", why=reason)
        self.stats.record(decision)
        return decision

    # -- decisions -------------------------------------------------------------------------------
    def _certify(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        init: np.ndarray,
        cmd: np.ndarray | None,
        a: np.ndarray,
        pre: list,
        note: str,
    ) -> GateDecision:
        """The whole (checked) chunk ``a (H, 7)`` with its stop, else the longest prefix with a safe
        stop, else a hold."""
        horizon = len(a)
        state, sens = self._with_stop(init, a[None], self._start(q, qd, cmd, a[0, 6]))
        states, sens = state[0].copy(), sens[0].copy()  # the buffers are reused by the search
        verdict = self._judge(init, horizon, pre, states, sens, horizon + self.stop_periods)
        suffix = f"; {note}" if note else ""
        if verdict.safe:
            return GateDecision(
                a.astype(np.float32),
                False,
                "safe" + suffix,
                verdict,
                limited=bool(note),
                stop_verdict=verdict,
            )
        # Rows before the first violation run the same motion as the whole chunk; a violation in
        # the stop after the last row leaves every shorter prefix to try.
        kmax = verdict.safe_steps if not verdict.in_stop else horizon - 1
        found = self._search_prefix(a, states, sens, kmax, init)
        if found is None:
            return self._hold(q, qd, init, cmd, a, verdict, note)
        k, brake, stop_verdict = found
        actions = a[:k] if brake is None else np.concatenate([a[:k], brake[None]])
        cut = f"{verdict.reason()}; running {k} of {horizon} rows"
        if brake is not None:
            cut += ", then braking"
        return GateDecision(
            actions.astype(np.float32),
            False,
            cut + suffix,
            verdict,
            limited=bool(note),
            braking=0 if brake is None else 1,
            stop_verdict=stop_verdict,
        )

    def _prefix_verdicts(
        self,
        a: np.ndarray,
        states: np.ndarray,
        sens: np.ndarray,
        ks: list[int],
        stops: list[np.ndarray],
        init: np.ndarray,
    ) -> list[Verdict]:
        """Verdicts of ``a[:k]`` + ``stop`` row held, for each (k, stop) pair: the prefix's motion is
        taken from the chunk's rollout, the stop is simulated from the state at its end."""
        n, periods = self.cfg.n_substeps, self.stop_periods
        inits = np.stack([states[k * n - 1] for k in ks])
        plans = np.stack([s[None] for s in stops])  # (S, 1, 7): held for the whole stop
        ctrl = self.wm.controls(plans, periods - 1, np.stack([a[k - 1] for k in ks]))
        t_state, t_sens = self._simulate(inits, ctrl)
        out = []
        for i, k in enumerate(ks):
            cat_state = np.concatenate([states[: k * n], t_state[i, : periods * n]])
            cat_sens = np.concatenate([sens[: k * n], t_sens[i, : periods * n + 1]])
            out.append(self._judge(init, k, [], cat_state, cat_sens, k + periods))
        return out

    def _search_prefix(
        self, a: np.ndarray, states: np.ndarray, sens: np.ndarray, kmax: int, init: np.ndarray
    ) -> tuple[int, np.ndarray | None, Verdict] | None:
        """Longest ``k <= kmax`` whose stop is safe: ``(k, braking row or None, verdict)`` or None.

        Pass 1 holds each prefix's own last row. Prefix lengths are probed ``stop.search_batch`` at a
        time (simulated in parallel), first at growing distances below ``kmax`` (kmax, kmax - 1,
        kmax - 3, kmax - 7, ...) and then in the gap above the longest safe one found, so a cut costs
        two or three batches instead of one per row (a stop after a shorter prefix is usually safe
        when a longer one is: the arm is further from what the chunk runs into). Pass 2 tries the
        braking rows (``stop.brake_gains`` except the hardest) for the prefixes just above that one:
        a brake stops sooner than the chunk's own last row, which buys up to a servo lag of rows.
        """
        if kmax < 1:
            return None
        batch, n = self.cfg.stop.search_batch, self.cfg.n_substeps
        tried: dict[int, Verdict] = {}

        def probe(ks: list[int]) -> None:
            ks = [k for k in ks if k not in tried]
            if ks:
                for k, v in zip(ks, self._prefix_verdicts(a, states, sens, ks, [a[k - 1] for k in ks], init)):
                    tried[k] = v

        def longest_safe() -> int:
            return max((k for k, v in tried.items() if v.safe), default=0)

        step = 1
        while longest_safe() == 0 and min(tried, default=kmax + 1) > 1:
            below = min(tried, default=kmax + 1)
            ks = []
            while len(ks) < batch and below - step >= 1:
                below -= step
                ks.append(below)
                step *= 2
            if not ks:
                ks = [1]
            probe(ks)
        floor = longest_safe()
        # Refine the gap between the longest safe and the next probed length above it.
        while True:
            above = min((k for k in tried if k > floor), default=floor + 1)
            gap = [k for k in range(above - 1, floor, -1) if k not in tried][:batch]
            if not gap:
                break
            probe(gap)
            if longest_safe() == floor:
                break
            floor = longest_safe()
        best = None if floor == 0 else (floor, None, tried[floor])
        gains = self.cfg.stop.brake_gains
        gains = gains[:-1] if len(gains) > 1 else gains
        ks = [k for k in range(min(kmax, floor + max(1, batch // len(gains))), floor, -1)]
        if ks:
            pairs = []
            for k in ks:
                s_k = states[k * n - 1]
                rows = brake_targets(
                    self.wm.arm_q(s_k), self.wm.arm_qd(s_k), self.wm.servo_lag_s, gains, float(a[k - 1, 6])
                )
                pairs += [(k, r) for r in rows]
            verdicts = self._prefix_verdicts(
                a, states, sens, [k for k, _ in pairs], [r for _, r in pairs], init
            )
            for (k, row), v in zip(pairs, verdicts):
                if v.safe:
                    best = (k, row, v)
                    break  # pairs are longest-first, gentlest brake first
        return best

    def _hold(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        init: np.ndarray,
        cmd: np.ndarray | None,
        a: np.ndarray | None,
        verdict: Verdict,
        note: str,
        why: str | None = None,
    ) -> GateDecision:
        """Brake to a stop from the current state: the first safe braking row, else the least bad."""
        if cmd is not None:
            grip = float(cmd[6])
        elif a is not None:
            grip = float(a[0, 6])
        else:
            grip = float(q[6])
        extra = [cmd] if cmd is not None else []
        # Brake from the arm the simulation starts from (a full state may be newer or older than the
        # joint reading by a few ms: targets behind a fast arm would brake harder than planned).
        q_sim, qd_sim = self.wm.arm_q(init), self.wm.arm_qd(init)
        rows = brake_targets(q_sim, qd_sim, self.wm.servo_lag_s, self.cfg.stop.brake_gains, grip, extra)
        start = self._start(np.append(q_sim, grip), qd_sim, cmd, grip)
        state, sens = self._simulate(init, self.wm.controls(rows[:, None], self.stop_periods - 1, start))
        stops = [self._judge(init, 1, [], state[i], sens[i], self.stop_periods) for i in range(len(rows))]
        best = min(range(len(rows)), key=lambda i: (badness(stops[i]), i))
        safe = stops[best].safe
        head = why if why is not None else verdict.reason()
        reason = f"hold: {head}" + (f"; {note}" if note else "")
        if not safe:
            reason += f"; NO SAFE STOP: least-bad stop has {stops[best].reason()}"
        return GateDecision(
            rows[best][None].astype(np.float32),
            True,
            reason,
            verdict,
            limited=bool(note),
            braking=1,
            stop_safe=safe,
            stop_verdict=stops[best],
        )

    def select(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        candidates: np.ndarray,
        score_fn: ScoreFn | None = None,
        full_state: np.ndarray | None = None,
        command: np.ndarray | None = None,
    ) -> tuple[int, GateDecision, list[Verdict]]:
        """Best-of-K: simulate ``candidates (K, H, 7)`` in parallel, return the chosen index, its decision
        and every candidate's verdict (on its rows; the stop is certified for the chosen one only,
        see ``decision.stop_verdict``).

        Each candidate is rate-limited first (``gate.max_target_step``); verdicts, scores and the
        returned actions are those of the limited candidates.

        Choice: the fully safe candidates by ``score_fn`` (default: closest to the reference
        candidate, see ``GateOptions.reference``), the first whose stop is safe too (up to
        ``stop.search_batch`` tried); otherwise the candidate with the longest safe prefix (ties:
        best score) goes through :meth:`filter`'s prefix search; if no row can run, a hold.
        """
        q, qd = self._check_q(q, qd)
        cmd = self._check_command(command)
        cand = np.asarray(candidates, dtype=np.float64) if _is_numeric(candidates) else None
        if cand is None or cand.ndim != 3 or cand.shape[0] < 1:
            raise ValueError(
                f"candidates must be a (K, H, 7) array, got {getattr(cand, 'shape', type(candidates))}"
            )
        kk, horizon = cand.shape[:2]
        raw = cand
        pres = [self._pre_checks(q, cand[i], horizon, qd=qd) for i in range(kk)]
        # From here on every candidate is the chunk that would execute (rate-limited if valid).
        cand = np.stack([cand[i] if pres[i][0] is None else pres[i][0] for i in range(kk)])
        valid = [i for i in range(kk) if pres[i][0] is not None]
        verdicts: list[Verdict] = [make_verdict(horizon, pres[i][1]) for i in range(kk)]
        init = self._initial_state(q, qd, full_state)
        finals = np.tile(init, (kk, 1))
        n = self.cfg.n_substeps
        kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if valid:
            starts = np.stack([self._start(q, qd, cmd, cand[i, 0, 6]) for i in valid])
            state, sens = self._simulate(init, self.wm.controls(cand[valid], 0, starts))
            for j, i in enumerate(valid):
                verdicts[i] = self._judge(init, horizon, pres[i][1], state[j], sens[j])
                k = verdicts[i].safe_steps
                if k > 0:
                    finals[i] = state[j, k * n - 1]
                if verdicts[i].safe:
                    kept[i] = (state[j].copy(), sens[j].copy())
        safe_len = np.array([v.safe_steps for v in verdicts])
        scores = np.full(kk, -np.inf)
        ok = [i for i in range(kk) if safe_len[i] > 0]
        if ok:
            if score_fn is None:
                scores[ok] = self._deviation_score(cand, ok)
            else:
                s = np.asarray(score_fn(finals[ok], cand[ok]), np.float64).reshape(-1)
                if s.shape != (len(ok),):
                    raise ValueError(f"score_fn must return {len(ok)} scores, got shape {s.shape}")
                scores[ok] = np.where(np.isfinite(s), s, -np.inf)
        # Lexicographic: longest safe prefix first (full chunks win), then score, then lowest index.
        order = sorted(range(kk), key=lambda i: (-safe_len[i], -scores[i], i))
        # Certify the stops of the fully safe candidates in rank order (usually the first is safe):
        # only the hold after the rows is simulated, from the state the rows end in.
        for i in [i for i in order if verdicts[i].safe][: self.cfg.stop.search_batch]:
            states, sens = kept[i]
            v = self._prefix_verdicts(cand[i], states, sens, [horizon], [cand[i, -1]], init)[0]
            if v.safe:
                note = _limit_note(raw[i], cand[i], self.wm.joint_names)
                decision = GateDecision(
                    cand[i].astype(np.float32), False, "safe" + (f"; {note}" if note else ""), v,
                    limited=bool(note), stop_verdict=v,
                )  # fmt: skip
                self.stats.record(decision)
                return i, decision, verdicts
        best = order[0]
        if pres[best][0] is None:
            decision = self._hold(q, qd, init, cmd, None, verdicts[best], "")
        else:
            note = _limit_note(raw[best], cand[best], self.wm.joint_names)
            decision = self._certify(q, qd, init, cmd, cand[best], pres[best][1], note)
        self.stats.record(decision)
        return best, decision, verdicts

    def _deviation_score(self, cand: np.ndarray, ok: list[int]) -> np.ndarray:
        """Negative mean |arm target - reference| (reference: first candidate or the mean of all finite ones)."""
        finite = np.all(np.isfinite(cand), axis=(1, 2))
        if self.cfg.gate.reference == "first" and finite[0]:
            ref = cand[0]
        else:
            ref = cand[finite].mean(axis=0)
        return -np.abs(cand[ok, :, :6] - ref[None, :, :6]).mean(axis=(1, 2))

    # -- plain-function interface (ROS node) ------------------------------------------------------
    def as_checker(self) -> Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, str, dict]]:
        """``(q (7,), qd (6,), chunk (H, 7)) -> (actions (K, 7) float32, reason, verdict dict)`` (JSON-able)."""

        def check_chunk(q: np.ndarray, qd: np.ndarray, chunk: np.ndarray) -> tuple[np.ndarray, str, dict]:
            d = self.filter(q, qd, chunk)
            return d.actions, d.reason, decision_dict(d)

        return check_chunk


def decision_dict(d: GateDecision) -> dict[str, Any]:
    """JSON-able summary of a decision: the chunk's verdict plus status, hold, limited, braking, stop."""
    out = d.verdict.to_dict()
    out.update(
        hold=d.hold,
        status=d.status,
        limited=d.limited,
        braking=d.braking,
        rows=d.rows,
        stop_safe=d.stop_safe,
        stop=None if d.stop_verdict is None else d.stop_verdict.reason(),
    )
    return out


def _limit_note(raw: object, limited: object, joint_names: tuple[str, ...]) -> str:
    """``""`` when the limiter left the arm targets alone, else where it changed them most."""
    r = np.asarray(raw, np.float64)[:, :6]
    a = np.asarray(limited, np.float64)[:, :6]
    if r.shape != a.shape or np.array_equal(r, a):
        return ""
    diff = np.abs(r - a)
    k, j = (int(x) for x in np.unravel_index(int(np.argmax(diff)), diff.shape))
    return (
        f"targets rate-limited in {int(np.any(diff > 0, axis=1).sum())}/{len(a)} steps "
        f"(largest cut {diff[k, j]:.3f} rad, {joint_names[j]} at step {k})"
    )


def _rows(chunk: object) -> int:
    shape = np.shape(chunk) if _is_numeric(chunk) else ()
    return int(shape[0]) if len(shape) >= 1 else 1


def _is_numeric(x: object) -> bool:
    try:
        np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return True
