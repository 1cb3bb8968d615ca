"""The world model: a MuJoCo copy of the robot and its static surroundings that the gate simulates.

Built from :func:`sim.scene.build_scene` (robot + table, no task objects) for a real robot, or from a
task environment's own spec (objects included) in simulation, then extended for checking:

- keep-out boxes from the config: world geoms ``keepout/<name>`` that collide with nothing in the
  physics model (they never push back) and only with robot geoms in a twin *detection* model;
- the physics model is otherwise the scene itself (same gains, substeps, contacts): the predicted
  motion is the simulator's motion;
- sensors evaluated by MuJoCo inside every physics step (so inside ``mujoco.rollout``, in C): the
  pinch-site position, a contact sensor over the robot subtree (number of robot contacts and the
  largest contact force) and the collision sensors of :mod:`sim.safety.collision_sensors`
  (forbidden near-contacts and keep-out distances; their ``gap`` on a few geoms adds inactive
  contacts only, so the motion is the scene's own);
- the detection twin (same state layout, never stepped): keep-out boxes on, ``gap = collision.margin``
  on robot geoms (MuJoCo >= 4 then reports contacts from that distance on, inactive until touch), and
  body pairs whose every geom pair is declared allowed excluded (e.g. the gripper's own linkage), so
  :meth:`WorldModel.forbidden_contacts` runs only the collision tests that can matter.

Synchronization: :meth:`WorldModel.state_from_joints` makes a full physics state from what a robot
reports (arm q, qd and the gripper closure); in simulation :meth:`WorldModel.state_from_full` takes
the environment's own ``mj_getState(..., mjSTATE_FULLPHYSICS)`` vector (objects included).
"""

from __future__ import annotations

from fnmatch import fnmatch

import mujoco
import numpy as np

from sim.safety.collision_sensors import CollisionSensors, candidate_pairs, gap_geoms
from sim.safety.config import SafetyConfig
from sim.scene import (
    ARM_ACTUATORS,
    ARM_JOINTS,
    GRIPPER_ACTUATOR,
    GRIPPER_CTRL_MAX,
    HOME_QPOS,
    PINCH_SITE,
    ROBOT_ROOT_BODY,
    SceneConfig,
    arm_dof_ids,
    arm_qpos_ids,
    build_scene,
    robot_geom_ids,
    servo_lag_s,
)

STATE_SPEC = mujoco.mjtState.mjSTATE_FULLPHYSICS
KEEPOUT_PREFIX = "keepout/"
PINCH_SENSOR = "safety/pinch"
CONTACT_SENSOR = "safety/robot_contacts"
FORCE_PREFIX = "safety/force/"
# Contact sensor settings (intprm = [data fields, reduce, slots]): found + force, per MuJoCo's enums.
_FOUND_FORCE_BITS = (1 << int(mujoco.mjtConDataField.mjCONDATA_FOUND)) | (
    1 << int(mujoco.mjtConDataField.mjCONDATA_FORCE)
)
_REDUCE_MAXFORCE = 2
_REDUCE_NETFORCE = 3
# Strongest contacts summed per static geom / for self-contact (4 pads x 4 box contacts).
_STATIC_SLOTS = 16
# contype bit used only between robot geoms and keep-out boxes in the detection model (scene: bit 0).
_KEEPOUT_BIT = 2
# Closure samples for the gripper linkage lookup (a real gripper reports one number).
_GRIPPER_SAMPLES = 11


def _collides(model: mujoco.MjModel, g: int) -> bool:
    return bool(model.geom_contype[g] or model.geom_conaffinity[g])


def _can_collide(model: mujoco.MjModel, a: int, b: int) -> bool:
    ta, ca = model.geom_contype[a], model.geom_conaffinity[a]
    tb, cb = model.geom_contype[b], model.geom_conaffinity[b]
    return bool((ta & cb) or (tb & ca))


def action_to_ctrl(actions: np.ndarray, arm_act: np.ndarray, grip_act: int, nu: int) -> np.ndarray:
    """Map actions ``(..., 7)`` to MuJoCo ``ctrl`` ``(..., nu)`` exactly as ``TabletopEnv.step`` does.

    Arm targets go to the 6 position servos as they are (MuJoCo clamps them to ``ctrlrange``), the
    gripper command is clipped to [0, 1] and scaled to the 2F-85's 0..255 input.
    """
    ctrl = np.zeros((*actions.shape[:-1], nu), np.float64)
    ctrl[..., arm_act] = actions[..., :6]
    ctrl[..., grip_act] = np.clip(actions[..., 6], 0.0, 1.0) * GRIPPER_CTRL_MAX
    return ctrl


class WorldModel:
    """A compiled MuJoCo model for checking plus the ids and state layout the checks need.

    Args:
        cfg: limits and timing (``cfg.timestep`` must match the spec's).
        spec: the scene to check in; ``None`` builds :func:`sim.scene.build_scene` (robot + table).
            The spec is copied, never modified.
        in_step_collision: evaluate collisions inside every physics step with sensors (see
            :mod:`sim.safety.collision_sensors`); ``False`` leaves only the detection twin (the
            reference implementation, one Python call per evaluated substep).

    Attributes:
        model: the physics model rolled out (dynamics identical to the scene's).
        detect_model: the same model with keep-out boxes switched on for collision detection only;
            it shares the state layout, and only kinematics + collision detection ever run on it.
    """

    def __init__(
        self, cfg: SafetyConfig, spec: mujoco.MjSpec | None = None, in_step_collision: bool = True
    ) -> None:
        self.cfg = cfg
        if spec is None:
            spec = build_scene(SceneConfig(timestep=cfg.timestep))
        else:
            spec = spec.copy()
            if abs(spec.option.timestep - cfg.timestep) > 1e-12:
                raise ValueError(
                    f"SafetyConfig.timestep ({cfg.timestep}) differs from the scene's ({spec.option.timestep}); "
                    "the gate must simulate with the robot's own physics step"
                )
        self._add_keepout(spec)
        self._add_sensors(spec)
        self.force_names = self._add_force_sensors(spec)
        self.collision_sensors: CollisionSensors | None = None
        if cfg.collision.enabled and in_step_collision:
            self.collision_sensors = self._add_collision_sensors(spec)
        self.model = model = spec.compile()
        if self.collision_sensors is not None:
            self.collision_sensors.bind(model)
        self.robot_geoms = robot_geom_ids(model)
        self.data = mujoco.MjData(model)  # scratch data (sync, contact forces)
        self.detect_model = self._detection_twin(spec)
        self.detect_data = mujoco.MjData(self.detect_model)

        self.qadr = arm_qpos_ids(model)
        self.dadr = arm_dof_ids(model)
        self.arm_act = np.array([model.actuator(a).id for a in ARM_ACTUATORS])
        self.grip_act = model.actuator(GRIPPER_ACTUATOR).id
        # Position servos trail a target moving at speed v by (kv / kp) * v: (6,) [s].
        self.servo_lag_s = servo_lag_s(model)
        self.pinch_site = model.site(PINCH_SITE).id
        self.joint_names = ARM_JOINTS
        self.geom_names = tuple(model.geom(i).name for i in range(model.ngeom))
        self.body_of_geom = tuple(model.body(model.geom_bodyid[i]).name for i in range(model.ngeom))
        self.keepout_geoms = np.array(
            [i for i, n in enumerate(self.geom_names) if n.startswith(KEEPOUT_PREFIX)], dtype=int
        )
        self.allowed = self._allowed_matrix()
        self._is_robot = np.zeros(model.ngeom, bool)
        self._is_robot[self.robot_geoms] = True

        # State vector layout (mjSTATE_FULLPHYSICS): time, qpos, qvel, ... in this order.
        self.nstate = mujoco.mj_stateSize(model, STATE_SPEC)
        self.qpos_offset = mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_TIME)
        self.qvel_offset = self.qpos_offset + model.nq
        pinch = model.sensor(PINCH_SENSOR)
        contact = model.sensor(CONTACT_SENSOR)
        self.pinch_slice = slice(int(pinch.adr[0]), int(pinch.adr[0]) + 3)
        self.contact_count_index = int(contact.adr[0])
        self.contact_force_slice = slice(int(contact.adr[0]) + 1, int(contact.adr[0]) + 4)
        # Per-body total force sensors: (adr, slots) each; slots of [found, fx, fy, fz].
        self._force_sensors = [
            (
                int(model.sensor(f"{FORCE_PREFIX}{n}").adr[0]),
                int(model.sensor(f"{FORCE_PREFIX}{n}").dim[0]) // 4,
            )
            for n in self.force_names
        ]

        # The gripper's closed-chain linkage: joint positions as a function of closure in [0, 1].
        self._grip_qadr = np.array(
            [
                model.jnt_qposadr[j]
                for j in range(model.njnt)
                if model.joint(j).name.startswith("gripper/")
                and int(model.jnt_type[j])
                in (int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE))
            ],
            dtype=int,
        )
        self._grip_table = self._gripper_table()
        self._home = self.state_from_joints(np.asarray(HOME_QPOS), np.zeros(6))

    # -- model building ------------------------------------------------------------------------
    def _add_keepout(self, spec: mujoco.MjSpec) -> None:
        for box in self.cfg.collision.keepout:
            spec.worldbody.add_geom(
                name=f"{KEEPOUT_PREFIX}{box.name}",
                type=mujoco.mjtGeom.mjGEOM_BOX,
                pos=list(box.center),
                size=list(box.half_size),
                contype=0,
                conaffinity=0,  # switched on in the detection twin only
                rgba=[1.0, 0.2, 0.2, 0.15],
                group=4,  # hidden by default in viewers
            )

    def _add_sensors(self, spec: mujoco.MjSpec) -> None:
        spec.add_sensor(
            name=PINCH_SENSOR,
            type=mujoco.mjtSensor.mjSENS_FRAMEPOS,
            objtype=mujoco.mjtObj.mjOBJ_SITE,
            objname=PINCH_SITE,
        )
        # Contact sensor over the robot subtree (objtype XBODY = subtree): data = found | force (bits
        # 1 | 2), reduce = maxforce (2), num = 1 -> [count, fx, fy, fz] of the strongest robot contact.
        spec.add_sensor(
            name=CONTACT_SENSOR,
            type=mujoco.mjtSensor.mjSENS_CONTACT,
            objtype=mujoco.mjtObj.mjOBJ_XBODY,
            objname=ROBOT_ROOT_BODY,
            intprm=[1 | 2, 2, 1],
        )

    def _add_force_sensors(self, spec: mujoco.MjSpec) -> tuple[str, ...]:
        """Contact sensors for the total force the robot exerts on each other body and on itself.

        - each body other than the world that can touch the robot (objects, pads): the *net* force
          (``reduce = netforce``: the vector sum, so a grasp's opposing pads do not add up, while
          pressing an object down or sideways does);
        - each static geom of the world body (table, floor): the *sum* of the strongest
          ``_STATIC_SLOTS`` contact forces (pressing with several contacts adds up);
        - the robot against itself: the sum of its ``_STATIC_SLOTS`` strongest self-contacts.

        Returns the sensor names (without prefix): ``body:<name>``, ``geom:<name>``, ``self``.
        """
        probe = spec.compile()
        is_robot = np.zeros(probe.ngeom, bool)
        is_robot[robot_geom_ids(probe)] = True
        robot_any = np.flatnonzero(is_robot)
        names: list[str] = []

        def touches_robot(g: int) -> bool:
            return any(_can_collide(probe, g, int(r)) for r in robot_any)

        bodies: set[int] = set()
        for g in range(probe.ngeom):
            if is_robot[g] or not _collides(probe, g) or not touches_robot(g):
                continue
            b = int(probe.geom_bodyid[g])
            if b == 0:
                gname = probe.geom(g).name
                if not gname:
                    raise ValueError("every static geom that can touch the robot needs a name")
                names.append(f"geom:{gname}")
                ref = (mujoco.mjtObj.mjOBJ_GEOM, gname, _REDUCE_MAXFORCE, _STATIC_SLOTS)
                self._add_force_sensor(spec, names[-1], ref)
            elif b not in bodies:
                bodies.add(b)
        for b in sorted(bodies):
            bname = probe.body(b).name
            if not bname:
                raise ValueError("every body that can touch the robot needs a name")
            names.append(f"body:{bname}")
            self._add_force_sensor(spec, names[-1], (mujoco.mjtObj.mjOBJ_BODY, bname, _REDUCE_NETFORCE, 1))
        names.append("self")
        self._add_force_sensor(
            spec, "self", (mujoco.mjtObj.mjOBJ_XBODY, ROBOT_ROOT_BODY, _REDUCE_MAXFORCE, _STATIC_SLOTS)
        )
        return tuple(names)

    @staticmethod
    def _add_force_sensor(spec: mujoco.MjSpec, name: str, ref: tuple) -> None:
        reftype, refname, reduce, slots = ref
        spec.add_sensor(
            name=f"{FORCE_PREFIX}{name}",
            type=mujoco.mjtSensor.mjSENS_CONTACT,
            objtype=mujoco.mjtObj.mjOBJ_XBODY,
            objname=ROBOT_ROOT_BODY,
            reftype=reftype,
            refname=refname,
            intprm=[_FOUND_FORCE_BITS, reduce, slots],
        )

    def _add_collision_sensors(self, spec: mujoco.MjSpec) -> CollisionSensors:
        """Gaps on robot geoms (inactive near-contacts, no force) + sensors over forbidden pairs."""
        margin = self.cfg.collision.margin
        probe = spec.compile()
        pairs = candidate_pairs(probe)
        allowed = self._allowed_for(probe)
        is_robot = np.zeros(probe.ngeom, bool)
        is_robot[robot_geom_ids(probe)] = True
        names = {
            probe.geom(int(g)).name
            for g in gap_geoms(probe, pairs, ~allowed[pairs[:, 0], pairs[:, 1]], is_robot)
        }
        if "" in names:
            raise ValueError("every geom that can collide with the robot needs a name (sim.scene names them)")
        for g in spec.geoms:
            if g.name in names:
                g.gap = max(g.gap, margin)
        probe = spec.compile()
        keepout = np.array(
            [i for i in range(probe.ngeom) if probe.geom(i).name.startswith(KEEPOUT_PREFIX)], int
        )
        sensors = CollisionSensors(probe, self._allowed_for(probe), keepout, robot_geom_ids(probe), margin)
        sensors.add_to(spec)
        return sensors

    def _detection_twin(self, spec: mujoco.MjSpec) -> mujoco.MjModel:
        twin = spec.copy()
        margin = self.cfg.collision.margin
        robot = {self.model.geom(int(g)).name for g in self.robot_geoms}
        if "" in robot:
            raise ValueError("every robot geom needs a name (sim.scene names them)")
        for g in twin.geoms:
            if g.name.startswith(KEEPOUT_PREFIX):
                g.conaffinity = _KEEPOUT_BIT
                g.gap = margin
            elif g.name in robot and (g.contype or g.conaffinity):
                g.gap = margin
                if g.contype:
                    g.contype = g.contype | _KEEPOUT_BIT
        probe = twin.compile()
        allowed = self._allowed_for(probe)
        # Exclude body pairs whose every geom pair that could collide is allowed anyway.
        body_geoms: dict[int, list[int]] = {}
        for g in range(probe.ngeom):
            if _collides(probe, g):
                body_geoms.setdefault(int(probe.geom_bodyid[g]), []).append(g)
        bodies = sorted(body_geoms)
        for a_i, a in enumerate(bodies):
            for b in bodies[a_i + 1 :]:
                if a == 0 or b == 0:
                    continue  # the world body cannot be excluded; static geoms stay checked
                pairs = [(x, y) for x in body_geoms[a] for y in body_geoms[b] if _can_collide(probe, x, y)]
                if pairs and all(allowed[x, y] for x, y in pairs):
                    twin.add_exclude(bodyname1=probe.body(a).name, bodyname2=probe.body(b).name)
        return twin.compile()

    def _allowed_matrix(self) -> np.ndarray:
        return self._allowed_for(self.model)

    def _allowed_for(self, model: mujoco.MjModel) -> np.ndarray:
        """``allowed[g1, g2]``: the config declares that geoms g1 and g2 may touch."""
        n = model.ngeom
        allowed = np.zeros((n, n), bool)
        names = [model.geom(i).name for i in range(n)]
        for a, b in self.cfg.collision.allowed_pairs:
            ma = np.array([fnmatch(x, a) for x in names])
            mb = np.array([fnmatch(x, b) for x in names])
            allowed |= ma[:, None] & mb[None, :]
            allowed |= mb[:, None] & ma[None, :]
        return allowed

    def _gripper_table(self) -> np.ndarray:
        """``(_GRIPPER_SAMPLES, n_gripper_joints)``: settled linkage positions for closure 0..1 (free air)."""
        m, d = self.model, self.data
        table = np.zeros((_GRIPPER_SAMPLES, len(self._grip_qadr)))
        for i, c in enumerate(np.linspace(0.0, 1.0, _GRIPPER_SAMPLES)):
            mujoco.mj_resetData(m, d)
            d.qpos[self.qadr] = HOME_QPOS
            d.ctrl[:] = action_to_ctrl(np.append(HOME_QPOS, c), self.arm_act, self.grip_act, m.nu)
            mujoco.mj_step(m, d, nstep=400)  # 0.8 s: the linkage settles well within
            table[i] = d.qpos[self._grip_qadr]
        mujoco.mj_resetData(m, d)
        return table

    # -- synchronization -----------------------------------------------------------------------
    def state_from_joints(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """Full physics state ``(nstate,)`` from arm positions ``q`` (6,) or (7,) (+ gripper closure)
        and arm velocities ``qd`` (6,). Objects (if the model has any) keep their model defaults."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[self.qadr] = q[:6]
        d.qvel[self.dadr] = qd[:6]
        closure = float(np.clip(q[6], 0.0, 1.0)) if len(q) > 6 else 0.0
        x = closure * (_GRIPPER_SAMPLES - 1)
        i = min(int(x), _GRIPPER_SAMPLES - 2)
        w = x - i
        d.qpos[self._grip_qadr] = (1 - w) * self._grip_table[i] + w * self._grip_table[i + 1]
        state = np.empty(self.nstate)
        mujoco.mj_getState(m, d, state, STATE_SPEC)
        return state

    def state_from_full(self, full_state: np.ndarray) -> np.ndarray:
        """Validate a simulator's ``mjSTATE_FULLPHYSICS`` vector for this model and return it as float64."""
        s = np.asarray(full_state, np.float64).reshape(-1)
        if s.shape != (self.nstate,):
            raise ValueError(
                f"full_state has {s.size} numbers, the world model's mjSTATE_FULLPHYSICS has {self.nstate}: "
                "build the gate from the environment's own spec (SafetyGate.for_env)"
            )
        if not np.all(np.isfinite(s)):
            raise ValueError("full_state contains NaN/Inf")
        return s

    def sync_static(self, model: mujoco.MjModel) -> None:
        """Copy per-episode static layout (body poses, e.g. target pads moved at reset) from a simulator model."""
        if model.nbody != self.model.nbody:
            raise ValueError(f"model has {model.nbody} bodies, the world model {self.model.nbody}")
        self.model.body_pos[:] = model.body_pos
        self.model.body_quat[:] = model.body_quat
        self.sync_static_twin()

    def arm_q(self, state: np.ndarray) -> np.ndarray:
        """Arm joint positions ``(..., 6)`` from states ``(..., nstate)``."""
        return state[..., self.qpos_offset + self.qadr]

    def arm_qd(self, state: np.ndarray) -> np.ndarray:
        """Arm joint velocities ``(..., 6)`` from states ``(..., nstate)``."""
        return state[..., self.qvel_offset + self.dadr]

    def controls(
        self, actions: np.ndarray, hold_periods: int = 0, start: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-physics-step controls ``(K, (H + hold_periods) * n_substeps + 1, nu)`` for actions ``(K, H, 7)``.

        The rows are applied the way the executor applies them (``cfg.gate.execution``): ``"step"``
        holds each for ``n_substeps`` physics steps; ``"linear"`` moves the target linearly from the
        previous row (``start`` (K, 7) or (7,) before row 0: the command in force now) to each row
        over one period, updated ``cfg.command_ticks`` times per period. Then the last row is held
        for ``hold_periods`` periods (the stop), and one extra step repeats the last control so the
        in-step sensors also see the final state (see :class:`sim.safety.checks.Trajectory`).
        """
        a = np.asarray(actions, np.float64)
        if hold_periods:
            a = np.concatenate([a, np.repeat(a[:, -1:], hold_periods, axis=1)], axis=1)
        n = self.cfg.n_substeps
        ticks = self.cfg.command_ticks
        if self.cfg.gate.execution == "linear":
            first = (
                a[:, :1]
                if start is None
                else np.broadcast_to(np.asarray(start, np.float64), a[:, 0].shape)[:, None]
            )
            prev = np.concatenate([first, a[:, :-1]], axis=1)  # (K, P, 7)
            w = np.arange(ticks) / ticks  # the controller samples the segment at its tick times
            seg = prev[:, :, None] + w[None, None, :, None] * (a - prev)[:, :, None]  # (K, P, ticks, 7)
            ctrl = action_to_ctrl(seg, self.arm_act, self.grip_act, self.model.nu)
            ctrl = np.repeat(ctrl, n // ticks, axis=2).reshape(a.shape[0], -1, self.model.nu)
        else:
            ctrl = action_to_ctrl(a, self.arm_act, self.grip_act, self.model.nu)
            ctrl = np.repeat(ctrl, n, axis=1)
        return np.concatenate([ctrl, ctrl[:, -1:]], axis=1)

    def body_forces(self, sensordata: np.ndarray) -> np.ndarray:
        """Total robot force on each body of :attr:`force_names`: ``(..., n_bodies)`` [N]."""
        out = np.empty((*sensordata.shape[:-1], len(self._force_sensors)))
        for i, (adr, slots) in enumerate(self._force_sensors):
            v = sensordata[..., adr : adr + 4 * slots].reshape(*sensordata.shape[:-1], slots, 4)
            out[..., i] = np.linalg.norm(v[..., 1:], axis=-1).sum(axis=-1)
        return out

    # -- contacts --------------------------------------------------------------------------------
    def forbidden_contacts(self, state: np.ndarray) -> list[tuple[int, int, float]]:
        """Contacts closer than ``collision.margin`` in ``state`` that the config does not allow.

        Includes keep-out boxes. Returns ``[(geom1, geom2, distance)]``, deepest first. Runs
        kinematics and collision detection only (no dynamics) on the detection twin.
        """
        m, d = self.detect_model, self.detect_data
        mujoco.mj_setState(m, d, state, STATE_SPEC)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_collision(m, d)
        n = d.ncon
        if n == 0:
            return []
        g1 = d.contact.geom1[:n]
        g2 = d.contact.geom2[:n]
        dist = d.contact.dist[:n]
        bad = (dist < self.cfg.collision.margin) & ~self.allowed[g1, g2]
        if not bad.any():
            return []
        g1, g2, dist = g1[bad], g2[bad], dist[bad]
        order = np.argsort(dist)
        return [(int(g1[i]), int(g2[i]), float(dist[i])) for i in order]

    def forbidden_contacts_in_step(self, state: np.ndarray) -> list[tuple[int, int, float]]:
        """What the in-step collision sensors saw in ``state``: ``[(geom1, geom2, distance)]``, closest first.

        Same collision pipeline as the sensors (the physics model's contacts, gaps included, plus
        keep-out distances), run once in Python to name the geoms of a violation.
        """
        sensors = self.collision_sensors
        if sensors is None:
            return self.forbidden_contacts(state)
        m, d = self.model, self.data
        margin = self.cfg.collision.margin
        mujoco.mj_setState(m, d, state, STATE_SPEC)
        mujoco.mj_kinematics(m, d)
        mujoco.mj_collision(m, d)
        out = []
        n = d.ncon
        if n:
            g1, g2, dist = d.contact.geom1[:n], d.contact.geom2[:n], d.contact.dist[:n]
            bad = (dist < margin) & ~self.allowed[g1, g2]
            out += [(int(a), int(b), float(c)) for a, b, c in zip(g1[bad], g2[bad], dist[bad])]
        for p in sensors.distance:
            dist = mujoco.mj_geomDistance(m, d, p.geom1, p.geom2, margin, None)
            if dist < margin:
                out.append((p.geom1, p.geom2, float(dist)))
        return sorted(out, key=lambda t: t[2])

    def sync_static_twin(self) -> None:
        """Copy the physics model's static layout into the detection twin (same bodies)."""
        self.detect_model.body_pos[:] = self.model.body_pos
        self.detect_model.body_quat[:] = self.model.body_quat

    def contact_forces(self, state: np.ndarray) -> list[tuple[int, int, float]]:
        """Robot contacts and their force norms [N] in ``state`` (full forward dynamics), strongest first."""
        m, d = self.model, self.data
        mujoco.mj_setState(m, d, state, STATE_SPEC)
        mujoco.mj_forward(m, d)
        out = []
        f6 = np.zeros(6)
        for i in range(d.ncon):
            c = d.contact[i]
            if not (self._is_robot[c.geom1] or self._is_robot[c.geom2]) or c.efc_address < 0:
                continue
            mujoco.mj_contactForce(m, d, i, f6)
            out.append((int(c.geom1), int(c.geom2), float(np.linalg.norm(f6[:3]))))
        return sorted(out, key=lambda t: -t[2])

    @property
    def home_state(self) -> np.ndarray:
        return self._home.copy()
