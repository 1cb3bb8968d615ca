"""The safety gate: simulate each chunk in the world model, pass only its safe prefix, or hold.

    gate = SafetyGate(load_safety_config("configs/safety/ur5e_default.yaml"))
    decision = gate.filter(q, qd, chunk)           # q (7,), qd (6,), chunk (H, 7)
    robot.execute(decision.actions)                # (K, 7): safe prefix, or the 1-step hold command
    i, decision, verdicts = gate.select(q, qd, candidates)   # best-of-K, candidates (K, H, 7)

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
    """What to execute.

    Attributes:
        actions: ``(K, 7)`` float32, finite: the safe prefix (``K >= 1``), or when ``hold`` a single
            command holding the current joint positions and gripper.
        hold: the first step was unsafe; the robot should stay where it is.
        reason: ``"safe"``, or the first violation in words; when the rate limiter changed the chunk
            a note follows (``"...; targets rate-limited: ..."``).
        verdict: the full :class:`Verdict` of the (chosen, rate-limited) chunk.
        limited: the rate limiter (``gate.max_target_step``) changed the chunk before it was checked.
    """

    actions: np.ndarray
    hold: bool
    reason: str
    verdict: Verdict
    limited: bool = False

    @property
    def status(self) -> str:
        """``"pass"`` (whole chunk), ``"truncated"`` (a prefix) or ``"hold"``."""
        return "hold" if self.hold else ("pass" if self.verdict.safe else "truncated")


@dataclass
class GateStats:
    """Counters since the last :meth:`SafetyGate.reset_stats` (per episode in ``vla-eval``)."""

    chunks: int = 0
    passed: int = 0
    truncated: int = 0
    held: int = 0
    steps_proposed: int = 0
    steps_passed: int = 0
    limited: int = 0  # chunks the rate limiter changed before checking
    by_check: dict[str, int] = field(default_factory=dict)

    def record(self, decision: GateDecision) -> None:
        self.chunks += 1
        self.limited += int(decision.limited)
        self.steps_proposed += decision.verdict.horizon
        if decision.hold:
            self.held += 1
        else:
            self.steps_passed += len(decision.actions)
            if decision.verdict.safe:
                self.passed += 1
            else:
                self.truncated += 1
        if decision.verdict.check is not None:
            self.by_check[decision.verdict.check] = self.by_check.get(decision.verdict.check, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "passed": self.passed,
            "truncated": self.truncated,
            "held": self.held,
            "steps_proposed": self.steps_proposed,
            "steps_passed": self.steps_passed,
            "limited": self.limited,
            "by_check": dict(self.by_check),
        }


class SafetyGate:
    """World-model safety gate for one robot.

    Args:
        cfg: limits, margins, timing and thread count.
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
        self._buffers: dict[int, tuple[np.ndarray, np.ndarray]] = {}
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

    # -- core ------------------------------------------------------------------------------------
    def _initial_state(self, q: np.ndarray, qd: np.ndarray, full_state: np.ndarray | None) -> np.ndarray:
        if full_state is not None:
            return self.wm.state_from_full(full_state)
        return self.wm.state_from_joints(q, qd)

    def _simulate(self, init: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Roll out ``actions (K, H, 7)`` from ``init (nstate,)``: states/sensordata ``(K, H*n+1, .)``."""
        ctrl = np.ascontiguousarray(self.wm.controls(actions))
        k, nstep = ctrl.shape[:2]
        key = k * 100_000 + nstep
        if key not in self._buffers:
            m = self.wm.model
            self._buffers[key] = (np.empty((k, nstep, self.wm.nstate)), np.empty((k, nstep, m.nsensordata)))
        state, sens = self._buffers[key]
        init_k = np.ascontiguousarray(np.broadcast_to(np.asarray(init, np.float64), (k, self.wm.nstate)))
        # Shapes and dtypes are built right here, so the wrapper's checks and copies are skipped.
        self._rollout.rollout(
            [self.wm.model] * k, self._datas, init_k, ctrl, nstep=nstep, state=state, sensordata=sens,
            skip_checks=True,
        )  # fmt: skip
        return state, sens

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

    def _judge(
        self, init: np.ndarray, a: np.ndarray, pre: list, state: np.ndarray, sens: np.ndarray
    ) -> Verdict:
        horizon = len(a)
        traj = checks.Trajectory.from_rollout(self.wm, init, state, sens, horizon)
        found: list[Violation | None] = list(pre)
        found += [fn(self.cfg, self.wm, traj) for fn in checks.TRAJECTORY_CHECKS]
        if self.collision_method == "sensors":
            found.append(checks.check_collision_in_step(self.cfg, self.wm, traj))
        else:
            # Twin collision detection is the costly check: stop where an earlier violation ends the prefix.
            earliest = min((v.step for v in found if v is not None), default=horizon)
            stop = (earliest + 1) * self.cfg.n_substeps
            found.append(
                checks.check_collision(self.cfg, self.wm, traj, self.collision_stride, stop_before=stop)
            )
        return make_verdict(horizon, found)

    @staticmethod
    def _check_q(q: np.ndarray, qd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q, np.float64).reshape(-1)
        qd = np.asarray(qd, np.float64).reshape(-1)
        if q.shape != (7,) or not np.all(np.isfinite(q)):
            raise ValueError(f"q must be 7 finite numbers (6 joints [rad] + gripper closure), got {q}")
        if qd.shape != (6,) or not np.all(np.isfinite(qd)):
            raise ValueError(f"qd must be 6 finite joint velocities [rad/s], got {qd}")
        return q, qd

    def check(
        self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, full_state: np.ndarray | None = None
    ) -> Verdict:
        """Verdict on one chunk ``(H, 7)`` from the current ``q (7,)``, ``qd (6,)`` (no counters)."""
        q, qd = self._check_q(q, qd)
        return self._verdict(q, qd, chunk, full_state, limit=False)[1]

    def _verdict(
        self, q: np.ndarray, qd: np.ndarray, chunk: object, full_state: np.ndarray | None, limit: bool
    ) -> tuple[np.ndarray | None, Verdict]:
        """``(checked chunk (H, 7) or None when invalid, its verdict)``; ``limit``: rate-limit it first."""
        a, pre = self._pre_checks(q, chunk, qd=qd if limit else None)
        if a is None:
            return None, make_verdict(max(1, _rows(chunk)), pre)
        init = self._initial_state(q, qd, full_state)
        state, sens = self._simulate(init, a[None])
        return a, self._judge(init, a, pre, state[0], sens[0])

    def _decide(self, q: np.ndarray, chunk: object, verdict: Verdict, raw: object = None) -> GateDecision:
        """Safe prefix of the checked ``chunk`` or a hold; ``raw``: the policy's chunk before rate-limiting."""
        k = verdict.safe_steps
        note = _limit_note(raw, chunk, self.wm.joint_names) if raw is not None else ""
        reason = verdict.reason() + (f"; {note}" if note else "")
        if k == 0:
            hold = q.astype(np.float32)[None].copy()
            return GateDecision(hold, True, f"hold: {reason}", verdict, limited=bool(note))
        prefix = np.asarray(chunk, np.float32)[:k].copy()
        return GateDecision(prefix, False, reason, verdict, limited=bool(note))

    def filter(
        self, q: np.ndarray, qd: np.ndarray, chunk: np.ndarray, full_state: np.ndarray | None = None
    ) -> GateDecision:
        """Safe prefix of ``chunk (H, 7)`` (rate-limited when ``gate.max_target_step`` is set), or a hold
        command when its first step is unsafe. Counts it."""
        q, qd = self._check_q(q, qd)
        a, verdict = self._verdict(q, qd, chunk, full_state, limit=True)
        decision = self._decide(q, chunk if a is None else a, verdict, raw=None if a is None else chunk)
        self.stats.record(decision)
        return decision

    def select(
        self,
        q: np.ndarray,
        qd: np.ndarray,
        candidates: np.ndarray,
        score_fn: ScoreFn | None = None,
        full_state: np.ndarray | None = None,
    ) -> tuple[int, GateDecision, list[Verdict]]:
        """Best-of-K: simulate ``candidates (K, H, 7)`` in parallel, return the chosen index, its decision
        and every candidate's verdict.

        Each candidate is rate-limited first (``gate.max_target_step``); verdicts, scores and the
        returned actions are those of the limited candidates.

        Choice: among fully safe candidates the best ``score_fn`` score (default: closest to the
        reference candidate, see ``GateOptions.reference``); if none is fully safe, the longest safe
        prefix (ties: best score); if every candidate's first step is unsafe, hold.
        """
        q, qd = self._check_q(q, qd)
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
        if valid:
            state, sens = self._simulate(init, cand[valid])
            for j, i in enumerate(valid):
                verdicts[i] = self._judge(init, cand[i], pres[i][1], state[j], sens[j])
                k = verdicts[i].safe_steps
                if k > 0:
                    finals[i] = state[j, k * self.cfg.n_substeps - 1]
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
        best = max(range(kk), key=lambda i: (safe_len[i], scores[i], -i))
        decision = self._decide(q, cand[best], verdicts[best], raw=raw[best])
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
            out = d.verdict.to_dict()
            out["hold"] = d.hold
            out["status"] = d.status
            out["limited"] = d.limited
            return d.actions, d.reason, out

        return check_chunk


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
