"""An independent test oracle for the safety gate: replay a chunk on a private copy of the env's model.

The oracle deliberately shares no code with ``sim/safety`` (nor ``vla/runtime``): it builds its own
MuJoCo model from the env's spec, maps actions to controls itself, steps the physics and checks raw
hardware/cell limits (no margins) at every physics state. Its verdict is the ground truth that tests
compare the gate's verdict with, so it favours being obviously right over being clever.

    env = sim.make("pick_cube", render_images=False)
    env.reset(seed=0)
    oracle = Oracle(env)
    report = oracle.execute(full_state, actions)      # actions: (K, 7) joint targets + gripper
    assert report.safe, str(report)

Which states are checked: every physics state from the start state (t = 0) through the final state.
MuJoCo computes contacts, contact forces and site positions for the state at the *start* of each
``mj_step`` (then integrates), so after step k the contact data describe state k - 1 while qpos/qvel
already describe state k; the oracle keeps the two apart, times each finding with the state it
describes, and runs one ``mj_forward`` after the last step so the final state's contacts are checked
too. Times in the report are seconds since the start state.

Rules (names follow the conventions documented in ``sim/scene.py``):

- ``joint_position``: an arm joint outside [lower, upper].
- ``joint_velocity``: any arm |qd| > joint_speed.
- ``joint_acceleration``: |qd(t) - qd(t - 10 ms)| / 10 ms above the joint's limit; before t = 0 the
  history is the start state's qd.
- ``workspace``: the pinch site ``gripper/pinch`` outside the workspace box.
- ``collision``: a contact with ``dist < 0`` between a robot geom and anything not allowed. Robot
  geoms are the geoms of bodies in the subtree of body ``base``. Allowed: gripper-gripper, gripper
  with objects (``obj/...``), finger pads (``gripper/*_pad1|2``) with ``table``, ``shoulder_link``
  geoms with ``table``. Also a collision: a colliding robot geom other than those of ``base`` /
  ``shoulder_link`` penetrating the base keep-out box (``mj_geomDistance < 0``).
- ``contact_force``: one contact involving a robot geom with |f[:3]| > contact_force.
- ``body_force``: the robot's total force on one other body: the norm of the net world-frame force
  vector for a movable body (any body but the world body), the sum of contact force norms for each
  static world geom, and the sum of norms over all robot-robot contacts; quasi-static, i.e. averaged
  over the last ``body_force_window_s`` (10 ms: a finger closing onto a cube gives a 2-4 ms impact
  spike that a force sensor filtering at ~100 Hz, and ISO/TS 15066's transient-contact allowance,
  would not count, while pressing or crushing lasts).
- ``not_at_rest``: after the hold, some arm joint speed >= rest_speed at the final state.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Any

import mujoco
import numpy as np

# Names the oracle relies on (the conventions documented in sim/scene.py, spelled out here on purpose
# so that a renamed constant in the code under test cannot silently change what the oracle checks).
ARM_JOINTS = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
ARM_ACTUATORS = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
GRIPPER_ACTUATOR = "gripper/fingers_actuator"
GRIPPER_CTRL_MAX = 255.0  # the 2F-85 actuator's ctrl range is 0..255 for a [0, 1] command
PINCH_SITE = "gripper/pinch"
ROBOT_ROOT = "base"
TABLE = "table"
BASE_BOX_GEOM = "oracle/base_keepout"
PAD_PATTERNS = ("gripper/*_pad1", "gripper/*_pad2")
BASE_BOX_EXEMPT_BODIES = ("base", "shoulder_link")  # the base itself and the link that sits on it
ACCEL_WINDOW_S = 0.01  # velocity is finite-differenced over 10 ms
_FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


@dataclass(frozen=True)
class OracleLimits:
    """Raw hardware/cell limits (no safety margins). Angles in rad, lengths in m, forces in N."""

    joint_lower: tuple[float, ...] = (-6.2832, -6.2832, -3.1416, -6.2832, -6.2832, -6.2832)
    joint_upper: tuple[float, ...] = (6.2832, 6.2832, 3.1416, 6.2832, 6.2832, 6.2832)
    joint_speed: float = 3.1416  # rad/s, every arm joint
    joint_accel: tuple[float, ...] = (50.0, 50.0, 50.0, 100.0, 100.0, 100.0)  # rad/s^2
    contact_force: float = 150.0  # any single contact involving a robot geom
    body_force: float = 150.0  # total force of the robot on any one other body
    body_force_window_s: float = 0.01  # ... averaged over this window (quasi-static force)
    workspace_low: tuple[float, float, float] = (0.15, -0.55, 0.0)  # pinch site box, world frame
    workspace_high: tuple[float, float, float] = (0.85, 0.55, 0.7)
    base_box_center: tuple[float, float, float] = (0.0, 0.0, 0.045)  # the base has no collision geom
    base_box_half: tuple[float, float, float] = (0.08, 0.08, 0.045)
    rest_speed: float = 0.1  # rad/s: every arm joint must be slower at the end of the hold


@dataclass
class OracleReport:
    """What one :meth:`Oracle.execute` found.

    Attributes:
        safe: no violation of any kind.
        violations: kind -> (time [s] since the start state, one-line detail), first of each kind.
        max_contact_force: largest single robot contact force norm seen [N].
        max_body_force: largest total robot force on one other body seen [N] (see module docstring).
        final_speed: largest arm joint speed at the final state [rad/s].
        steps: physics steps run.
    """

    safe: bool
    violations: dict[str, tuple[float, str]] = field(default_factory=dict)
    max_contact_force: float = 0.0
    max_body_force: float = 0.0
    final_speed: float = 0.0
    steps: int = 0

    def __str__(self) -> str:
        head = (
            f"{'SAFE' if self.safe else 'UNSAFE'} ({self.steps} steps, max contact "
            f"{self.max_contact_force:.1f} N, max body {self.max_body_force:.1f} N, "
            f"final speed {self.final_speed:.3f} rad/s)"
        )
        # In time order (execute() fills the dict that way): the first finding is usually the cause.
        rows = [f"  {kind} @ {t:.3f} s: {detail}" for kind, (t, detail) in self.violations.items()]
        return "\n".join([head, *rows])


class Oracle:
    """Replays (K, 7) action chunks from a full physics state on a private model and checks limits."""

    def __init__(self, env: Any, limits: OracleLimits = OracleLimits()) -> None:
        self.env = env.unwrapped
        self.limits = lim = limits
        cfg = self.env.cfg
        self.n_substeps = int(cfg.n_substeps)
        self.control_rate_hz = float(cfg.control_rate_hz)

        # Own model: the env's spec plus a detection-only box for the base keep-out. contype and
        # conaffinity 0 keep it out of collision detection, so the physics is the env's physics.
        spec = self.env.spec_.copy()
        if any(g.name == BASE_BOX_GEOM for g in spec.geoms):
            raise ValueError(f"the env's spec already has a geom named {BASE_BOX_GEOM!r}")
        spec.worldbody.add_geom(
            name=BASE_BOX_GEOM, type=mujoco.mjtGeom.mjGEOM_BOX, size=list(lim.base_box_half),
            pos=list(lim.base_box_center), contype=0, conaffinity=0, group=5, rgba=[1.0, 0.0, 0.0, 0.0],
        )  # fmt: skip
        self.model = m = spec.compile()
        self.data = mujoco.MjData(m)
        env_m = self.env.model
        if m.nbody != env_m.nbody or mujoco.mj_stateSize(m, _FULL) != mujoco.mj_stateSize(env_m, _FULL):
            raise ValueError("the oracle's model does not match the env's model (bodies or state size)")
        self.dt = float(m.opt.timestep)
        if abs(self.n_substeps * self.dt * self.control_rate_hz - 1.0) > 1e-6:
            raise ValueError("cfg.n_substeps * timestep must be one control period")

        # Arm indices and the action -> ctrl mapping (what TabletopEnv.step does).
        self._qadr = np.array([m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS])
        self._dadr = np.array([m.jnt_dofadr[m.joint(j).id] for j in ARM_JOINTS])
        self._arm_act = np.array([m.actuator(a).id for a in ARM_ACTUATORS])
        self._grip_act = m.actuator(GRIPPER_ACTUATOR).id
        # The env clips with float32 bounds; use the very same numbers.
        lo = np.append(m.actuator_ctrlrange[self._arm_act, 0], 0.0).astype(np.float32)
        hi = np.append(m.actuator_ctrlrange[self._arm_act, 1], 1.0).astype(np.float32)
        self._act_lo, self._act_hi = lo.astype(np.float64), hi.astype(np.float64)
        self._pinch = m.site(PINCH_SITE).id

        # Robot geoms: the subtree of body `base`, computed from body_parentid (world is its own parent).
        root = m.body(ROBOT_ROOT).id
        in_robot = np.zeros(m.nbody, bool)
        for b in range(m.nbody):
            p = b
            while p != root and p != 0:
                p = int(m.body_parentid[p])
            in_robot[b] = p == root
        self._geom_body = m.geom_bodyid.copy()
        self._is_robot = in_robot[self._geom_body]
        names = [m.geom(g).name for g in range(m.ngeom)]
        self._geom_names = names
        self._allowed = self._allowed_pairs(m, names)

        # Base keep-out candidates: robot geoms that can collide at all, except base / shoulder_link.
        self._box = m.geom(BASE_BOX_GEOM).id
        exempt = {m.body(b).id for b in BASE_BOX_EXEMPT_BODIES}
        collidable = (m.geom_contype != 0) | (m.geom_conaffinity != 0)
        not_exempt = ~np.isin(self._geom_body, list(exempt))
        self._box_cand = np.flatnonzero(self._is_robot & collidable & not_exempt)
        # Bounding-sphere prefilter: a geom can only reach the box if its sphere reaches the box's.
        self._box_reach = m.geom_rbound[self._box_cand] + float(np.linalg.norm(lim.base_box_half))
        self._box_center = np.asarray(lim.base_box_center, np.float64)

        self._lower = np.asarray(lim.joint_lower, np.float64)
        self._upper = np.asarray(lim.joint_upper, np.float64)
        self._accel = np.asarray(lim.joint_accel, np.float64)
        self._ws_lo = np.asarray(lim.workspace_low, np.float64)
        self._ws_hi = np.asarray(lim.workspace_high, np.float64)
        self._f6 = np.zeros(6)
        self._fromto = np.zeros(6)
        # Per-call results, filled by the checks during execute().
        self._found: dict[str, tuple[float, str]] = {}
        self._max_cf = 0.0
        self._max_bf = 0.0

    # -- setup helpers -----------------------------------------------------------------------------
    def _allowed_pairs(self, m: mujoco.MjModel, names: list[str]) -> np.ndarray:
        """(ngeom, ngeom) symmetric table of geom pairs a robot geom may touch (dist < 0) without harm."""
        gripper = np.array([n.startswith("gripper/") for n in names])
        obj = np.array([n.startswith("obj/") for n in names])
        pad = np.array([any(fnmatch.fnmatchcase(n, p) for p in PAD_PATTERNS) for n in names])
        table = np.array([n == TABLE for n in names])
        shoulder = self._geom_body == m.body("shoulder_link").id
        if not (pad.sum() == 4 and table.sum() == 1 and shoulder.any()):
            raise ValueError(
                "unexpected model: need 4 finger pad geoms, one 'table' geom, shoulder_link geoms"
            )
        ok = np.outer(gripper, gripper) | np.outer(gripper, obj) | np.outer(pad, table)
        ok |= np.outer(shoulder, table)
        return ok | ok.T

    def _sync_layout(self) -> None:
        """Copy the per-episode static layout (tasks move target pads at reset) from the env's model."""
        env_m = self.env.model
        self.model.body_pos[:] = env_m.body_pos
        self.model.body_quat[:] = env_m.body_quat

    def _schedule(
        self,
        actions: np.ndarray,
        hold_s: float,
        execution: str,
        command: np.ndarray | None,
        command_rate_hz: float,
    ) -> tuple[np.ndarray, int]:
        """Controller targets (U, 7) in action units and the physics steps each one is held."""
        a = np.asarray(actions, np.float64)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != 7 or not np.all(np.isfinite(a)):
            raise ValueError(f"actions must be a finite (K >= 1, 7) array, got shape {a.shape}")
        if not (math.isfinite(hold_s) and hold_s >= 0.0):
            raise ValueError(f"hold_s must be finite and >= 0, got {hold_s}")
        rows = np.clip(a, self._act_lo, self._act_hi)
        # The hold is whole control periods of the last action (round off float noise before ceil).
        n_hold = math.ceil(round(hold_s * self.control_rate_hz, 9))
        rows = np.vstack([rows, np.repeat(rows[-1:], n_hold, axis=0)])
        if execution == "step":
            return rows, self.n_substeps
        if execution != "linear":
            raise ValueError(f"execution must be 'step' or 'linear', got {execution!r}")
        ratio = command_rate_hz / self.control_rate_hz
        updates = round(ratio)
        if updates < 1 or abs(ratio - updates) > 1e-6 or self.n_substeps % updates:
            raise ValueError(
                f"command_rate_hz / control_rate_hz must be a whole number of updates dividing "
                f"{self.n_substeps} substeps, got {command_rate_hz} / {self.control_rate_hz}"
            )
        if command is None:
            prev0 = rows[0]
        else:
            c = np.asarray(command, np.float64).reshape(-1)
            if c.shape == (6,):  # arm only: the gripper starts where the first row wants it
                c = np.append(c, rows[0, 6])
            if c.shape != (7,) or not np.all(np.isfinite(c)):
                raise ValueError(f"command must be 6 or 7 finite numbers, got {command!r}")
            prev0 = np.clip(c, self._act_lo, self._act_hi)
        # Target at update j of a period: prev + (j / updates) * (row - prev), j = 0..updates-1.
        prevs = np.vstack([prev0[None], rows[:-1]])
        frac = np.arange(updates, dtype=np.float64) / updates
        targets = prevs[:, None, :] + frac[None, :, None] * (rows - prevs)[:, None, :]
        return targets.reshape(-1, 7), self.n_substeps // updates

    # -- per-state checks --------------------------------------------------------------------------
    def _check_contacts(self, k: int) -> None:
        """Contacts/forces of state k (whatever MuJoCo last computed contacts for) and the base box."""
        m, d, lim, found = self.model, self.data, self.limits, self._found
        t = k * self.dt
        n = d.ncon
        if n:
            con = d.contact
            geom = con.geom
            rob = self._is_robot[geom]
            sel = np.flatnonzero(rob[:, 0] | rob[:, 1])
            if sel.size:
                g = geom[sel]
                r1, r2 = rob[sel, 0], rob[sel, 1]
                f = np.empty((sel.size, 3))
                for j, i in enumerate(sel):
                    mujoco.mj_contactForce(m, d, int(i), self._f6)
                    f[j] = self._f6[:3]
                norms = np.sqrt(np.einsum("ij,ij->i", f, f))
                jmax = int(np.argmax(norms))
                if norms[jmax] > self._max_cf:
                    self._max_cf = float(norms[jmax])
                if "contact_force" not in found and norms[jmax] > lim.contact_force:
                    a, b = (self._geom_names[x] for x in g[jmax])
                    found["contact_force"] = (t, f"{a} / {b}: {norms[jmax]:.1f} N > {lim.contact_force:g} N")
                if "collision" not in found:
                    bad = (con.dist[sel] < 0.0) & ~self._allowed[g[:, 0], g[:, 1]]
                    if bad.any():
                        j = int(np.flatnonzero(bad)[0])
                        a, b = (self._geom_names[x] for x in g[j])
                        found["collision"] = (t, f"{a} touches {b} (dist {con.dist[sel[j]] * 1e3:.1f} mm)")
                self._body_forces(t, con, sel, g, r1, r2, f, norms)
        if "collision" not in found and self._box_cand.size:
            pos = d.geom_xpos[self._box_cand]
            diff = pos - self._box_center
            near = self._box_cand[np.einsum("ij,ij->i", diff, diff) < self._box_reach**2]
            for gid in near:
                dist = mujoco.mj_geomDistance(m, d, int(gid), self._box, 0.01, self._fromto)
                if dist < 0.0:
                    name = self._geom_names[gid]
                    found["collision"] = (t, f"{name} penetrates the base keep-out box ({dist * 1e3:.1f} mm)")
                    break

    def _body_forces(
        self,
        t: float,
        con: Any,
        sel: np.ndarray,
        g: np.ndarray,
        r1: np.ndarray,
        r2: np.ndarray,
        f: np.ndarray,
        norms: np.ndarray,
    ) -> None:
        """Total robot force per other body; see the module docstring for what "total" means."""
        both = r1 & r2
        totals: list[tuple[float, str]] = []
        if both.any():
            totals.append((float(norms[both].sum()), "robot on itself (sum over robot-robot contacts)"))
        other = np.where(r1, g[:, 1], g[:, 0])
        obody = self._geom_body[other]
        static = ~both & (obody == 0)
        if static.any():
            sums = np.bincount(other[static], weights=norms[static])
            gid = int(np.argmax(sums))
            totals.append((float(sums[gid]), f"robot on {self._geom_names[gid]} (sum of contact norms)"))
        movable = ~both & (obody != 0)
        if movable.any():
            # World-frame force on the other body: MuJoCo's contact normal points from geom1 to
            # geom2 and a positive force pushes geom2 along it, so the force on geom2 is
            # frame^T f and on geom1 its negative.
            frames = con.frame[sel[movable]].reshape(-1, 3, 3)
            fw = np.einsum("nij,ni->nj", frames, f[movable])
            fw *= np.where(r1[movable], 1.0, -1.0)[:, None]
            bodies = obody[movable]
            net = np.zeros((self.model.nbody, 3))
            np.add.at(net, bodies, fw)
            mag = np.sqrt(np.einsum("ij,ij->i", net, net))
            bid = int(np.argmax(mag))
            totals.append((float(mag[bid]), f"robot on body {self.model.body(bid).name} (net force)"))
        for total, what in totals:
            self._bf_now[what] = max(self._bf_now.get(what, 0.0), total)

    def _window_body_forces(self, k: int) -> None:
        """Fold state k's totals into the per-body histories; check their mean over the window."""
        t, w = k * self.dt, self._bf_window
        for what in set(self._bf_hist) | set(self._bf_now):
            hist = self._bf_hist.setdefault(what, [0.0] * w)
            hist.append(self._bf_now.get(what, 0.0))
            del hist[0]
            total = sum(hist) / w
            if total > self._max_bf:
                self._max_bf = total
            if "body_force" not in self._found and total > self.limits.body_force:
                self._found["body_force"] = (
                    t,
                    f"{what}: {total:.1f} N (mean over {w * self.dt * 1e3:.0f} ms) > {self.limits.body_force:g} N",
                )
        self._bf_now = {}

    def _check_joints(self, q: np.ndarray, qd: np.ndarray) -> None:
        """Vectorized joint checks over all states (rows of q/qd are states 0..N)."""
        lim, found, dt = self.limits, self._found, self.dt

        def first(mask: np.ndarray) -> tuple[int, int] | None:
            rows = np.flatnonzero(mask.any(axis=1))
            if not rows.size:
                return None
            k = int(rows[0])
            return k, int(np.flatnonzero(mask[k])[0])

        hit = first((q < self._lower) | (q > self._upper))
        if hit:
            k, j = hit
            found["joint_position"] = (
                k * dt,
                f"{ARM_JOINTS[j]} q={q[k, j]:.4f} rad outside [{self._lower[j]:g}, {self._upper[j]:g}]",
            )
        hit = first(np.abs(qd) > lim.joint_speed)
        if hit:
            k, j = hit
            found["joint_velocity"] = (
                k * dt,
                f"{ARM_JOINTS[j]} |qd|={abs(qd[k, j]):.3f} rad/s > {lim.joint_speed:g}",
            )
        lag = max(1, round(ACCEL_WINDOW_S / dt))
        # qd(t - 10 ms), with the start state's qd standing in for the time before t = 0.
        past = np.vstack([np.repeat(qd[:1], lag, axis=0), qd[:-lag]]) if len(qd) > lag else qd[:1]
        acc = np.abs(qd - past) / (lag * dt)
        hit = first(acc > self._accel)
        if hit:
            k, j = hit
            found["joint_acceleration"] = (
                k * dt,
                f"{ARM_JOINTS[j]} |dqd|/{lag * dt * 1e3:.0f}ms={acc[k, j]:.1f} rad/s^2 > {self._accel[j]:g}",
            )

    def _check_workspace(self, p: np.ndarray) -> None:
        """Pinch site positions (rows are states 0..N) against the workspace box."""
        out = np.flatnonzero(((p < self._ws_lo) | (p > self._ws_hi)).any(axis=1))
        if out.size:
            k = int(out[0])
            x, y, z = p[k]
            lo, hi = self._ws_lo, self._ws_hi
            box = " x ".join(f"[{a:g}, {b:g}]" for a, b in zip(lo, hi))
            self._found["workspace"] = (k * self.dt, f"pinch ({x:.3f}, {y:.3f}, {z:.3f}) m outside {box}")

    # -- public API --------------------------------------------------------------------------------
    def execute(
        self,
        full_state: np.ndarray,
        actions: np.ndarray,
        hold_s: float = 1.5,
        execution: str = "step",
        command: np.ndarray | None = None,
        command_rate_hz: float = 100.0,
    ) -> OracleReport:
        """Run ``actions`` (K, 7) from ``full_state`` (mjSTATE_FULLPHYSICS), then hold the last one.

        ``execution="step"`` holds each row one control period (like ``TabletopEnv.step``);
        ``"linear"`` ramps the target from the previous row (``command`` before the first) to the row
        over each period in ``command_rate_hz / control_rate_hz`` updates.
        """
        m, d = self.model, self.data
        state = np.asarray(full_state, np.float64).reshape(-1)
        if state.size != mujoco.mj_stateSize(m, _FULL):
            need = mujoco.mj_stateSize(m, _FULL)
            raise ValueError(f"full_state has {state.size} numbers, the FULLPHYSICS state needs {need}")
        targets, steps_per = self._schedule(actions, hold_s, execution, command, command_rate_hz)
        self._sync_layout()
        mujoco.mj_resetData(m, d)  # nothing from the previous call may leak in (e.g. ctrl, contacts)
        mujoco.mj_setState(m, d, state, _FULL)
        mujoco.mj_forward(m, d)

        n = len(targets) * steps_per
        q = np.empty((n + 1, 6))
        qd = np.empty((n + 1, 6))
        pinch = np.empty((n + 1, 3))
        q[0], qd[0] = d.qpos[self._qadr], d.qvel[self._dadr]
        self._found = {}
        self._max_cf = 0.0
        self._max_bf = 0.0
        self._bf_window = max(1, round(self.limits.body_force_window_s / self.dt))
        self._bf_hist: dict[str, list[float]] = {}
        self._bf_now: dict[str, float] = {}
        qpos, qvel, site_xpos = d.qpos, d.qvel, d.site_xpos
        qadr, dadr, pid = self._qadr, self._dadr, self._pinch
        arm_act, grip_act = self._arm_act, self._grip_act
        k = 0
        for tgt in targets:
            d.ctrl[arm_act] = tgt[:6]
            d.ctrl[grip_act] = tgt[6] * GRIPPER_CTRL_MAX
            for _ in range(steps_per):
                mujoco.mj_step(m, d)
                # Kinematics and contacts now describe state k (before this step), qpos/qvel state k+1.
                pinch[k] = site_xpos[pid]
                self._check_contacts(k)
                self._window_body_forces(k)
                k += 1
                q[k] = qpos[qadr]
                qd[k] = qvel[dadr]
        mujoco.mj_forward(m, d)  # contacts and kinematics of the final state
        pinch[k] = site_xpos[pid]
        self._check_contacts(k)
        self._window_body_forces(k)

        self._check_joints(q, qd)
        self._check_workspace(pinch)
        final_speed = float(np.abs(qd[-1]).max())
        if final_speed >= self.limits.rest_speed:
            j = int(np.argmax(np.abs(qd[-1])))
            self._found["not_at_rest"] = (
                k * self.dt,
                f"{ARM_JOINTS[j]} |qd|={final_speed:.3f} rad/s >= {self.limits.rest_speed:g} after the hold",
            )
        found = dict(sorted(self._found.items(), key=lambda kv: kv[1][0]))
        return OracleReport(
            safe=not found,
            violations=found,
            max_contact_force=self._max_cf,
            max_body_force=self._max_bf,
            final_speed=final_speed,
            steps=k,
        )
