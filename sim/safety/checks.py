"""The individual checks. Each takes the config and what it needs and returns its first :class:`Violation`.

Two kinds:

- on the chunk itself, before simulating: :func:`check_action_shape` (NaN/Inf/shape),
  :func:`check_target_limits` (targets past a joint limit), :func:`check_jump` (first target far from
  the current position);
- on the simulated :class:`Trajectory`, at **every physics substep** (2 ms): joint position,
  velocity and acceleration, pinch-site workspace, contact force (per contact and in total on each
  body) and collision (all vectorized over substeps; collisions from the in-step collision sensors,
  :func:`check_collision_in_step`). The reference :func:`check_collision` evaluates the detection
  twin in Python at every ``collision_stride``-th substep and wherever the robot touches something.
  A trajectory covers the chunk's rows *and* the stop after them (the last row held for
  ``stop.horizon_s``); :func:`check_stop` requires the arm to be at rest at its end.

The state before the first substep (the robot as it is now) is not judged: a chunk cannot change it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.safety.config import SafetyConfig
from sim.safety.verdict import Violation
from sim.safety.world_model import WorldModel

ACTION_DIM = 7


@dataclass
class Trajectory:
    """One simulated chunk, sampled after every physics substep ``s = 1 .. H * n_substeps``.

    Attributes:
        states: ``(N, nstate)`` full physics states.
        q / qd: ``(N, 6)`` arm joint positions [rad] / velocities [rad/s].
        q0 / qd0: ``(6,)`` arm positions / velocities at the chunk start.
        pinch: ``(N, 3)`` pinch-site position [m] (in-step sensor).
        touching: ``(N,)`` number of robot contacts in ``mjData.contact`` (in-step contact sensor;
            with in-step collision sensors this includes inactive near-contacts in the gap).
        max_force: ``(N,)`` largest robot contact force [N].
        n_substeps: physics steps per control step; ``dt``: physics step [s].
        collision_dist: ``(N,)`` closest forbidden distance [m] seen by the in-step collision
            sensors (``inf``: nothing within the margin), ``None`` without them.
        body_force: ``(N, B)`` total force [N] the robot exerts on each body of
            ``WorldModel.force_names`` (``None``: not measured).
        rows: control steps that execute chunk rows; the samples after them are the stop (the
            last row held). ``None``: all of them are rows.
    """

    states: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    q0: np.ndarray
    qd0: np.ndarray
    pinch: np.ndarray
    touching: np.ndarray
    max_force: np.ndarray
    n_substeps: int
    dt: float
    collision_dist: np.ndarray | None = None
    body_force: np.ndarray | None = None
    rows: int | None = None

    def step_of(self, index: int) -> int:
        """Control step of sample ``index`` (0-based; sample i is after substep i + 1)."""
        return index // self.n_substeps

    @classmethod
    def from_rollout(
        cls,
        wm: WorldModel,
        init_state: np.ndarray,
        states: np.ndarray,
        sensordata: np.ndarray,
        horizon: int,
        rows: int | None = None,
    ) -> Trajectory:
        """From one ``mujoco.rollout`` of ``H * n + 1`` steps (see :meth:`WorldModel.controls`);
        ``horizon`` = H counts every simulated control period, ``rows`` those that run chunk rows.

        ``states[i]`` is the state after step ``i + 1``; ``sensordata[i]`` was computed inside step
        ``i``, i.e. on the state after ``i`` steps. Sample ``i`` pairs ``states[i]`` with
        ``sensordata[i + 1]``; the extra last step exists only to sense the final state.
        """
        n = horizon * wm.cfg.n_substeps
        st = states[:n]
        sd = sensordata[1 : n + 1]
        force = np.linalg.norm(sd[:, wm.contact_force_slice], axis=1)
        return cls(
            states=st,
            q=wm.arm_q(st),
            qd=wm.arm_qd(st),
            q0=wm.arm_q(init_state),
            qd0=wm.arm_qd(init_state),
            pinch=sd[:, wm.pinch_slice],
            touching=sd[:, wm.contact_count_index],
            max_force=force,
            n_substeps=wm.cfg.n_substeps,
            dt=wm.cfg.timestep,
            collision_dist=None if wm.collision_sensors is None else wm.collision_sensors.min_distance(sd),
            body_force=wm.body_forces(sd),
            rows=rows,
        )


# -- on the chunk ------------------------------------------------------------------------------
def check_action_shape(chunk: object, horizon: int | None = None) -> Violation | None:
    """A chunk must be a finite float array ``(H, 7)`` with ``H >= 1`` (and ``H == horizon`` if given)."""
    try:
        a = np.asarray(chunk, dtype=np.float64)
    except (TypeError, ValueError) as err:
        return Violation("action_invalid", 0, None, float("nan"), float("nan"), (), f"not numeric: {err}")
    if (
        a.ndim != 2
        or a.shape[1] != ACTION_DIM
        or a.shape[0] < 1
        or (horizon is not None and a.shape[0] != horizon)
    ):
        want = f"({horizon}, {ACTION_DIM})" if horizon is not None else f"(H >= 1, {ACTION_DIM})"
        return Violation(
            "action_invalid", 0, None, float("nan"), float("nan"), (), f"shape {a.shape}, expected {want}"
        )
    bad = ~np.isfinite(a)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        # The whole chunk is rejected (step 0): a policy that emits NaN anywhere is not trusted.
        return Violation(
            "action_invalid", 0, None, float(a[row, col]), float("nan"), (f"action[{row}, {col}]",),
            f"non-finite value {a[row, col]} at row {row}, column {col}",
        )  # fmt: skip
    return None


def check_target_limits(cfg: SafetyConfig, wm: WorldModel, chunk: np.ndarray) -> Violation | None:
    """Joint targets outside ``[lower + margin, upper - margin]`` (the servo would drive there)."""
    c = cfg.joint_position
    if not c.enabled:
        return None
    lo, hi = (np.asarray(v) for v in c.effective())
    return _first_outside(chunk[:, :6], lo, hi, wm.joint_names, "joint_position", "target", lambda i: i)


def check_jump(cfg: SafetyConfig, wm: WorldModel, q: np.ndarray, chunk: np.ndarray) -> Violation | None:
    """``|chunk[0, :6] - q|`` per joint must stay within ``jump.limit - margin``."""
    c = cfg.jump
    if not c.enabled:
        return None
    d = np.abs(chunk[0, :6] - q[:6])
    j = int(np.argmax(d))
    if d[j] <= c.effective():
        return None
    return Violation(
        "jump", 0, None, float(d[j]), c.effective(), (wm.joint_names[j],),
        f"first target {d[j]:.3f} rad from the current position of {wm.joint_names[j]} (limit {c.effective():.3f})",
    )  # fmt: skip


# -- on the simulated trajectory ----------------------------------------------------------------
def _first_outside(values, lo, hi, names, check, what, step_of, substep_of=None) -> Violation | None:
    """First row (then column) where ``values (T, J)`` leaves ``[lo, hi]``."""
    below = values < lo
    above = values > hi
    bad = below | above
    if not bad.any():
        return None
    i, j = (int(x) for x in np.argwhere(bad)[0])
    v = float(values[i, j])
    limit = float(lo[j] if below[i, j] else hi[j])
    return Violation(
        check, step_of(i), substep_of(i) if substep_of else None, v, limit, (names[j],),
        f"{what} {names[j]} = {v:.4f} beyond {limit:.4f}",
    )  # fmt: skip


def _first_above(values, limit, names, check, what, traj: Trajectory) -> Violation | None:
    """First sample where ``|values (T, J)| > limit (J,)``."""
    bad = np.abs(values) > limit
    if not bad.any():
        return None
    i, j = (int(x) for x in np.argwhere(bad)[0])
    v = float(values[i, j])
    return Violation(
        check, traj.step_of(i), i + 1, v, float(limit[j]), (names[j],),
        f"{what} of {names[j]} reaches {abs(v):.3f} (limit {limit[j]:.3f}) at substep {i + 1}",
    )  # fmt: skip


def check_joint_position(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    c = cfg.joint_position
    if not c.enabled:
        return None
    lo, hi = (np.asarray(v) for v in c.effective())
    return _first_outside(
        traj.q, lo, hi, wm.joint_names, "joint_position", "position of", traj.step_of, lambda i: i + 1
    )


def check_joint_velocity(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    c = cfg.joint_velocity
    if not c.enabled:
        return None
    return _first_above(
        traj.qd, np.asarray(c.effective()), wm.joint_names, "joint_velocity", "velocity", traj
    )


def check_joint_acceleration(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    """Velocity finite difference over ``window_s`` (at every substep; the window starts at the chunk start)."""
    c = cfg.joint_acceleration
    if not c.enabled:
        return None
    w = max(1, round(c.window_s / traj.dt))
    qd = np.concatenate([np.repeat(traj.qd0[None], w, axis=0), traj.qd])
    acc = (qd[w:] - qd[:-w]) / (w * traj.dt)
    return _first_above(
        acc, np.asarray(c.effective()), wm.joint_names, "joint_acceleration", "acceleration", traj
    )


def check_workspace(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    c = cfg.workspace
    if not c.enabled:
        return None
    lo, hi = (np.asarray(v) for v in c.effective())
    v = _first_outside(
        traj.pinch, lo, hi, ("pinch.x", "pinch.y", "pinch.z"), "workspace", "", traj.step_of, lambda i: i + 1
    )
    if v is None:
        return None
    axis = v.names[0]
    return Violation(
        "workspace", v.step, v.substep, v.value, v.limit, ("gripper/pinch", axis),
        f"pinch site {axis} = {v.value:.3f} m leaves the workspace (bound {v.limit:.3f} m)",
    )  # fmt: skip


def _causal_mean(values: np.ndarray, w: int) -> np.ndarray:
    """Mean of each column over the last ``w`` samples (zeros before the first): ``(N, J)``."""
    if w <= 1:
        return values
    cs = np.concatenate([np.zeros((w, values.shape[1])), np.cumsum(values, axis=0)])
    return (cs[w:] - cs[:-w]) / w


def check_contact_force(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    """Largest robot contact force against ``contact_force.limit - margin``, and the total force on
    each body (``WorldModel.force_names``) against ``body_limit - margin``; the earlier one counts."""
    c = cfg.contact_force
    if not c.enabled:
        return None
    bad = traj.max_force > c.effective()
    total = None
    if traj.body_force is not None and traj.body_force.size:
        quasi = _causal_mean(traj.body_force, max(1, round(c.body_window_s / traj.dt)))
        over = quasi > c.effective_body()
        if over.any():
            i_b = int(np.argmax(over.any(axis=1)))
            if not bad.any() or i_b < int(np.argmax(bad)):
                j = int(np.argmax(quasi[i_b] * over[i_b]))
                total = (i_b, j)
    if total is not None:
        i, j = total
        f = float(quasi[i, j])
        what = wm.force_names[j].split(":", 1)[-1]  # the body / geom name, or "self"
        return Violation(
            "contact_force", traj.step_of(i), i + 1, f, c.effective_body(), (what,),
            f"total force {f:.1f} N of the robot on {'itself' if what == 'self' else what} over "
            f"{1e3 * c.body_window_s:.0f} ms (limit {c.effective_body():.1f} N)",
        )  # fmt: skip
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    # Name the contact: full dynamics on that one state.
    forces = wm.contact_forces(traj.states[i])
    names = (wm.geom_names[forces[0][0]], wm.geom_names[forces[0][1]]) if forces else ()
    f = float(traj.max_force[i])
    return Violation(
        "contact_force", traj.step_of(i), i + 1, f, c.effective(), names,
        f"contact force {f:.1f} N between {' and '.join(names) or 'robot geoms'} (limit {c.effective():.1f} N)",
    )  # fmt: skip


def _collision_violation(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory, i: int, bad) -> Violation:
    g1, g2, dist = bad
    n1, n2 = wm.geom_names[g1], wm.geom_names[g2]
    b1, b2 = wm.body_of_geom[g1], wm.body_of_geom[g2]
    return Violation(
        "collision", traj.step_of(i), i + 1, dist, cfg.collision.margin, (n1, n2, b1, b2),
        f"{n1} ({b1}) within {dist * 1000:.1f} mm of {n2} ({b2}) (margin {cfg.collision.margin * 1000:.0f} mm)",
    )  # fmt: skip


def check_collision_in_step(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    """Forbidden contacts at **every** substep, from the in-step collision sensors (no Python per substep).

    The sensors give the closest forbidden distance per substep; the first substep under the margin
    is then re-run once through the same collision pipeline to name the geoms.
    """
    c = cfg.collision
    if not c.enabled:
        return None
    if traj.collision_dist is None:
        raise ValueError(
            "the world model has no in-step collision sensors (WorldModel(in_step_collision=True))"
        )
    hit = traj.collision_dist < c.margin
    if not hit.any():
        return None
    i = int(np.argmax(hit))
    bad = wm.forbidden_contacts_in_step(traj.states[i])
    if not bad:  # cannot happen (same pipeline); never drop a violation over a naming problem
        return Violation(
            "collision", traj.step_of(i), i + 1, float(traj.collision_dist[i]), c.margin, (),
            f"forbidden contact within {traj.collision_dist[i] * 1000:.1f} mm (margin {c.margin * 1000:.0f} mm)",
        )  # fmt: skip
    return _collision_violation(cfg, wm, traj, i, bad[0])


def check_collision(
    cfg: SafetyConfig, wm: WorldModel, traj: Trajectory, stride: int = 1, stop_before: int | None = None
) -> Violation | None:
    """Reference implementation (one Python call per evaluated substep): forbidden contacts (closer than ``collision.margin``, not declared allowed, keep-out boxes included).

    Evaluated on the detection twin (kinematics + collision detection) at every ``stride``-th substep,
    at the last one, and at every substep where the in-step sensor saw the robot actually touch
    something (so a touch is never missed, whatever the stride). ``stop_before``: samples from this
    index on need not be evaluated (an earlier check already ends the safe prefix there).
    """
    c = cfg.collision
    if not c.enabled:
        return None
    n = len(traj.states)
    mask = np.zeros(n, bool)
    mask[stride - 1 :: stride] = True
    mask[-1] = True
    mask |= traj.touching > 0
    idx = np.flatnonzero(mask)
    if stop_before is not None:
        idx = idx[idx < stop_before]
    for i in idx:
        bad = wm.forbidden_contacts(traj.states[i])
        if bad:
            return _collision_violation(cfg, wm, traj, int(i), bad[0])
    return None


def check_stop(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    """The stop must end at rest: every arm joint slower than ``stop.rest_speed`` at the last sample.

    Only for trajectories that include a stop (``traj.rows`` set and shorter than the trajectory):
    holding the last row from a resting state is then safe however long it lasts.
    """
    if traj.rows is None or len(traj.qd) <= traj.rows * traj.n_substeps:
        return None
    speed = np.abs(traj.qd[-1])
    j = int(np.argmax(speed))
    if speed[j] < cfg.stop.rest_speed:
        return None
    i = len(traj.qd) - 1
    return Violation(
        "stop", traj.step_of(i), i + 1, float(speed[j]), cfg.stop.rest_speed, (wm.joint_names[j],),
        f"the arm is not at rest {cfg.stop.horizon_s:.1f} s into the stop ({wm.joint_names[j]} at "
        f"{speed[j]:.3f} rad/s, rest below {cfg.stop.rest_speed:.3f})",
    )  # fmt: skip


def check_stable(cfg: SafetyConfig, wm: WorldModel, traj: Trajectory) -> Violation | None:
    """The simulation itself must be trustworthy: no NaN/Inf state (a diverging rollout is blanked)."""
    bad = ~np.all(np.isfinite(traj.q), axis=1) | ~np.all(np.isfinite(traj.qd), axis=1)
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return Violation(
        "unstable", traj.step_of(i), i + 1, float("nan"), float("nan"), (),
        "the world model's simulation diverged (MuJoCo reported an unstable state): nothing is certified",
    )  # fmt: skip


TRAJECTORY_CHECKS = (
    check_stable,
    check_joint_position,
    check_joint_velocity,
    check_joint_acceleration,
    check_workspace,
    check_contact_force,
    check_stop,
)
