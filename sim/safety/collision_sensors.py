"""Collision checking inside the physics step: MuJoCo sensors for every forbidden geom pair.

The gate used to re-run collision detection in Python on a twin model at every simulated substep
(one ``mj_kinematics`` + ``mj_collision`` call per substep). Here the rollout does it in C:

- Near-contacts: robot collision geoms get ``gap = collision.margin``. MuJoCo then reports every
  pair closer than the margin in ``mjData.contact`` as an *inactive* contact (``efc_address = -1``, no
  force: the dynamics are those of the scene), and ``contact`` sensors (``data="found dist"``,
  ``reduce="mindist"``) read the closest one per sensor into ``sensordata``.
- Which pairs: every geom pair the collision pipeline can produce (contype/conaffinity, explicit
  pairs, body excludes, weld filtering) that the config does **not** declare allowed. A greedy set
  cover groups them into few sensors whose matching criteria (geom / body / subtree on either side)
  cover forbidden pairs only, so an allowed touch (pads on an object) can never fire a sensor.
- Keep-out boxes: they must not push back, so they never enter the contact pipeline; ``distance``
  sensors (``cutoff = collision.margin``, independent of collision filtering) measure each box
  against each robot collision geom that may not enter it.

:meth:`CollisionSensors.min_distance` turns ``sensordata (..., nsensordata)`` into the smallest
forbidden distance per sample; ``< collision.margin`` is a violation.
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

SENSOR_PREFIX = "safety/collision/"
_FOUND_DIST_BITS = (1 << int(mujoco.mjtConDataField.mjCONDATA_FOUND)) | (
    1 << int(mujoco.mjtConDataField.mjCONDATA_DIST)
)
_REDUCE_MINDIST = 1


@dataclass(frozen=True)
class Side:
    """One side of a contact sensor's matching criterion: a geom, a body or a subtree (or anything)."""

    kind: str  # "geom" | "body" | "subtree" | "any"
    name: str
    mask: np.ndarray  # (ngeom,) bool: the geoms this side matches

    @property
    def objtype(self) -> mujoco.mjtObj:
        return {
            "geom": mujoco.mjtObj.mjOBJ_GEOM,
            "body": mujoco.mjtObj.mjOBJ_BODY,
            "subtree": mujoco.mjtObj.mjOBJ_XBODY,
            "any": mujoco.mjtObj.mjOBJ_UNKNOWN,
        }[self.kind]

    def describe(self) -> str:
        return "*" if self.kind == "any" else f"{self.kind} {self.name}"


@dataclass(frozen=True)
class ContactSensorPlan:
    """A contact sensor over forbidden pairs: ``side1 x side2`` (either order)."""

    name: str
    side1: Side
    side2: Side
    pairs: tuple[tuple[int, int], ...]  # the forbidden geom pairs it was chosen to cover


@dataclass(frozen=True)
class DistanceSensorPlan:
    """A distance sensor between a keep-out box and one robot collision geom."""

    name: str
    geom1: int
    geom2: int


def candidate_pairs(model: mujoco.MjModel) -> np.ndarray:
    """``(P, 2)`` geom pairs (g1 < g2) the collision pipeline can ever report, as MuJoCo filters them.

    contype/conaffinity compatible, on bodies with different weld bodies (same body, static vs static)
    and not in a body exclude; plus explicit ``<pair>`` elements, which bypass all filters.
    The parent/child filter is deliberately not applied: a superset only makes the cover stricter.
    """
    ct, ca = model.geom_contype.astype(np.int64), model.geom_conaffinity.astype(np.int64)
    compat = ((ct[:, None] & ca[None, :]) != 0) | ((ca[:, None] & ct[None, :]) != 0)
    weld = model.body_weldid[model.geom_bodyid]
    ok = compat & (weld[:, None] != weld[None, :])
    body = model.geom_bodyid
    for sig in model.exclude_signature:
        b1, b2 = int(sig) >> 16, int(sig) & 0xFFFF
        ok &= ~(
            ((body[:, None] == b1) & (body[None, :] == b2)) | ((body[:, None] == b2) & (body[None, :] == b1))
        )
    for g1, g2 in zip(model.pair_geom1, model.pair_geom2):
        ok[g1, g2] = ok[g2, g1] = True
    i, j = np.nonzero(np.triu(ok, 1))
    return np.stack([i, j], axis=1)


def gap_geoms(
    model: mujoco.MjModel, pairs: np.ndarray, forbidden: np.ndarray, is_robot: np.ndarray
) -> np.ndarray:
    """Geoms that get ``gap = margin`` so every forbidden pair involving the robot is reported from
    ``margin`` on (a weighted vertex cover of those pairs, chosen greedily).

    A gap makes MuJoCo run narrow-phase tests on every pair within reach of it, allowed ones included
    (the 2F-85 linkage meshes sit millimetres apart): the cover therefore prefers geoms with few
    allowed partners, e.g. the table instead of every gripper geom. Only robot geoms, and scene geoms
    whose forbidden partners are all robot geoms, are eligible, so a pair without the robot is judged
    on actual touches exactly as before.

    Args:
        pairs: ``(P, 2)`` candidate pairs (:func:`candidate_pairs`); forbidden: ``(P,)`` bool.
        is_robot: ``(ngeom,)`` bool.
    Returns:
        sorted geom ids.
    """
    a, b = pairs[:, 0], pairs[:, 1]
    robot_pair = is_robot[a] | is_robot[b]
    need = forbidden & robot_pair
    eligible = is_robot.copy()
    nonrobot_forbidden = forbidden & ~robot_pair
    scene = ~is_robot
    scene[a[nonrobot_forbidden]] = False
    scene[b[nonrobot_forbidden]] = False
    eligible |= scene
    mesh = model.geom_type == mujoco.mjtGeom.mjGEOM_MESH
    allowed = ~forbidden
    pair_cost = np.where(mesh[a] & mesh[b], 4.0, 1.0)  # mesh-mesh narrow phase is the costly kind
    has_gap = np.zeros(model.ngeom, bool)
    uncovered = need.copy()
    while uncovered.any():
        gain = np.bincount(a[uncovered], minlength=model.ngeom) + np.bincount(
            b[uncovered], minlength=model.ngeom
        )
        fresh = allowed & ~has_gap[a] & ~has_gap[b]  # allowed pairs a new gap would start testing
        cost = np.bincount(a[fresh], pair_cost[fresh], model.ngeom) + np.bincount(
            b[fresh], pair_cost[fresh], model.ngeom
        )
        score = np.where(eligible & ~has_gap & (gain > 0), gain / (1.0 + cost), -1.0)
        g = int(np.argmax(score))
        if score[g] <= 0:
            raise RuntimeError("gap cover failed: a forbidden robot pair has no eligible geom")
        has_gap[g] = True
        uncovered &= ~((a == g) | (b == g))
    return np.flatnonzero(has_gap)


def _sides(model: mujoco.MjModel, relevant: np.ndarray) -> list[Side]:
    """Candidate sensor sides: subtrees, bodies and geoms that contain at least one relevant geom."""
    nb = model.nbody
    geom_body = model.geom_bodyid
    sides: list[Side] = []
    seen: set[bytes] = set()

    def add(kind: str, name: str, mask: np.ndarray) -> None:
        if not (mask & relevant).any() or name == "":
            return
        key = (mask & relevant).tobytes()
        if key in seen:  # same geoms as a broader-named side already listed: keep the first
            return
        seen.add(key)
        sides.append(Side(kind, name, mask))

    # Subtree membership: in_sub[b, c] = body c is in the subtree of b.
    in_sub = np.eye(nb, dtype=bool)
    for c in range(1, nb):
        p = int(model.body_parentid[c])
        while True:
            in_sub[p, c] = True
            if p == 0:
                break
            p = int(model.body_parentid[p])
    for b in range(1, nb):  # body 0's subtree is everything ("any" covers it)
        add("subtree", model.body(b).name, in_sub[b][geom_body])
    for b in range(nb):
        add("body", model.body(b).name, geom_body == b)
    for g in np.flatnonzero(relevant):
        add("geom", model.geom(int(g)).name, np.arange(model.ngeom) == g)
    return sides


def plan_contact_sensors(
    model: mujoco.MjModel, forbidden: np.ndarray, allowed: np.ndarray
) -> list[ContactSensorPlan]:
    """Greedy set cover of ``forbidden (F, 2)`` geom pairs by contact sensors matching no ``allowed (A, 2)`` pair.

    Each chosen sensor covers the most still-uncovered forbidden pairs among all valid
    ``(side1, side2)`` choices (disjoint sides, or one side and "anything").
    """
    if len(forbidden) == 0:
        return []
    relevant = np.zeros(model.ngeom, bool)
    relevant[forbidden.reshape(-1)] = True
    sides = _sides(model, relevant)
    anyside = Side("any", "", np.ones(model.ngeom, bool))
    masks = np.stack([s.mask for s in sides])  # (S, ngeom)

    def matches(pairs: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        """``(S1, S2, P)``: side pair matches geom pair (either order)."""
        a, b = pairs[:, 0], pairs[:, 1]
        return (s1[:, None, a] & s2[None, :, b]) | (s2[None, :, a] & s1[:, None, b])

    side2_masks = np.concatenate([anyside.mask[None], masks])
    side2_list = [anyside, *sides]
    disjoint = ~(masks.astype(np.int8) @ side2_masks.T.astype(np.int8)).astype(bool)
    disjoint[:, 0] = True  # "anything" on the other side
    hit_f = matches(forbidden, masks, side2_masks)  # (S, S+1, F)
    valid = disjoint.copy()
    if len(allowed):
        valid &= ~matches(allowed, masks, side2_masks).any(axis=2)
    uncovered = np.ones(len(forbidden), bool)
    plans: list[ContactSensorPlan] = []
    while uncovered.any():
        gain = np.where(valid, (hit_f & uncovered).sum(axis=2), -1)
        i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
        if gain[i, j] <= 0:
            # A forbidden pair no valid sensor covers cannot exist (its own geom x geom sensor is valid).
            raise RuntimeError("collision sensor cover failed: a forbidden pair has no valid sensor")
        covered = hit_f[i, j] & uncovered
        pairs = tuple((int(a), int(b)) for a, b in forbidden[covered])
        plans.append(ContactSensorPlan(f"{SENSOR_PREFIX}contact{len(plans)}", sides[i], side2_list[j], pairs))
        uncovered &= ~hit_f[i, j]
    return plans


class CollisionSensors:
    """The sensors added to the physics spec and how to read them.

    Args:
        probe: the physics model compiled with gaps and keep-out boxes, before these sensors.
        allowed: ``(ngeom, ngeom)`` bool, the config's allowed pairs.
        keepout: ids of keep-out box geoms (never in the contact pipeline).
        robot_geoms: ids of the robot's geoms.
        margin: ``collision.margin`` [m] (also the distance sensors' cutoff).
    """

    def __init__(
        self,
        probe: mujoco.MjModel,
        allowed: np.ndarray,
        keepout: np.ndarray,
        robot_geoms: np.ndarray,
        margin: float,
    ) -> None:
        self.margin = margin
        pairs = candidate_pairs(probe)
        is_allowed = allowed[pairs[:, 0], pairs[:, 1]]
        self.contact = plan_contact_sensors(probe, pairs[~is_allowed], pairs[is_allowed])
        self.distance: list[DistanceSensorPlan] = []
        collides = (probe.geom_contype != 0) | (probe.geom_conaffinity != 0)
        for k in keepout:
            for r in robot_geoms:
                # The old twin collided keep-out boxes with robot geoms that have a contype.
                if probe.geom_contype[r] != 0 and collides[r] and not allowed[k, r]:
                    name = f"{SENSOR_PREFIX}{probe.geom(int(k)).name}|{probe.geom(int(r)).name}"
                    self.distance.append(DistanceSensorPlan(name, int(k), int(r)))
        self._names = {i: probe.geom(i).name for i in range(probe.ngeom)}
        self._found_idx = np.zeros(0, int)
        self._dist_idx = np.zeros(0, int)
        self._keepout_idx = np.zeros(0, int)

    def add_to(self, spec: mujoco.MjSpec) -> None:
        """Add the sensors to ``spec`` (the physics model's own spec)."""
        for p in self.contact:
            kw: dict = {}
            if p.side1.kind != "any":
                kw.update(objtype=p.side1.objtype, objname=p.side1.name)
            if p.side2.kind != "any":
                kw.update(reftype=p.side2.objtype, refname=p.side2.name)
            spec.add_sensor(
                name=p.name,
                type=mujoco.mjtSensor.mjSENS_CONTACT,
                intprm=[_FOUND_DIST_BITS, _REDUCE_MINDIST, 1],
                **kw,
            )
        for p in self.distance:
            spec.add_sensor(
                name=p.name,
                type=mujoco.mjtSensor.mjSENS_GEOMDIST,
                objtype=mujoco.mjtObj.mjOBJ_GEOM,
                objname=self._names[p.geom1],
                reftype=mujoco.mjtObj.mjOBJ_GEOM,
                refname=self._names[p.geom2],
                cutoff=self.margin,
            )

    def bind(self, model: mujoco.MjModel) -> None:
        """Remember the sensordata addresses in the compiled ``model``."""
        adr = [int(model.sensor(p.name).adr[0]) for p in self.contact]
        self._found_idx = np.asarray(adr, int)
        self._dist_idx = self._found_idx + 1
        self._keepout_idx = np.asarray([int(model.sensor(p.name).adr[0]) for p in self.distance], int)

    @property
    def n_sensors(self) -> int:
        return len(self.contact) + len(self.distance)

    def distances(self, sensordata: np.ndarray) -> np.ndarray:
        """``(..., n_sensors)``: closest forbidden distance per sensor [m] (``inf`` if none nearby)."""
        found = sensordata[..., self._found_idx] > 0
        d_contact = np.where(found, sensordata[..., self._dist_idx], np.inf)
        d_keep = sensordata[..., self._keepout_idx]
        d_keep = np.where(d_keep < self.margin, d_keep, np.inf)  # the cutoff value means "nothing closer"
        return np.concatenate([d_contact, d_keep], axis=-1)

    def min_distance(self, sensordata: np.ndarray) -> np.ndarray:
        """``(...,)``: closest forbidden distance [m] over all sensors (``inf`` if none nearby)."""
        d = self.distances(sensordata)
        return d.min(axis=-1) if d.shape[-1] else np.full(d.shape[:-1], np.inf)

    def describe(self, index: int) -> str:
        """Sensor ``index`` (of :meth:`distances`) in words."""
        if index < len(self.contact):
            p = self.contact[index]
            return f"{p.side1.describe()} x {p.side2.describe()}"
        p = self.distance[index - len(self.contact)]
        return f"geom {self._names[p.geom1]} x geom {self._names[p.geom2]}"
