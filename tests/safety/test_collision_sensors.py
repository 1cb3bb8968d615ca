"""In-step collision sensors agree with the reference detection twin at every substep, and leave physics alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import mujoco
import numpy as np
import pytest
from safety_chunks import Q0, QD0, joint_ramp, pinch_line

import sim
from sim.safety import SafetyGate, load_safety_config
from sim.safety.checks import Trajectory
from sim.safety.collision_sensors import candidate_pairs
from sim.safety.config import KeepOutBox

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
BOX = KeepOutBox("fixture", center=(0.45, 0.2, 0.25), half_size=(0.05, 0.05, 0.05))
CFG = dataclasses.replace(
    DEFAULT, collision=dataclasses.replace(DEFAULT.collision, keepout=(*DEFAULT.collision.keepout, BOX))
)


@pytest.fixture(scope="module")
def gate():
    with SafetyGate(CFG) as g:
        yield g


CHUNKS = {
    "into_table": lambda g: pinch_line(g, [0.45, 0.0, -0.03]),
    "above_table": lambda g: pinch_line(g, [0.45, 0.0, 0.03]),
    "into_own_base": lambda g: pinch_line(g, [0.05, 0.12, 0.05], steps=30, hold=15),
    "into_keepout": lambda g: pinch_line(g, [0.45, 0.3, 0.25]),
    "elbow_fold": lambda g: joint_ramp([0, 0, 2.6, 0, 0, 0], 20),
    "wrist_into_arm": lambda g: joint_ramp([0, 0, 0, 2.5, 1.5, 0], 20),
}


@pytest.mark.parametrize("name", list(CHUNKS))
def test_sensors_match_twin_at_every_substep(gate, name: str) -> None:
    """Per substep: sensor distance < margin  <=>  the twin finds a forbidden contact (all substeps)."""
    chunk = CHUNKS[name](gate).astype(np.float64)
    init = gate.wm.state_from_joints(Q0, QD0)
    state, sens = gate._simulate(init, gate.wm.controls(chunk[None]))
    traj = Trajectory.from_rollout(gate.wm, init, state[0], sens[0], len(chunk))
    margin = CFG.collision.margin
    sensor_hit = traj.collision_dist < margin
    twin = [gate.wm.forbidden_contacts(s) for s in traj.states]
    twin_hit = np.array([bool(t) for t in twin])
    # Keep-out distances come from GJK (distance sensor) vs the box collider (twin): they agree to
    # ~10 um, so a distance that close to the margin may fall either way.
    twin_d = np.array([t[0][2] if t else np.inf for t in twin])
    borderline = np.abs(np.minimum(twin_d, traj.collision_dist) - margin) < 2e-5
    np.testing.assert_array_equal(sensor_hit[~borderline], twin_hit[~borderline])
    both = sensor_hit & twin_hit
    assert both.any() == (name != "above_table")
    # Distance sensors clip at -cutoff (= -margin): compare in that range.
    np.testing.assert_allclose(traj.collision_dist[both], np.maximum(twin_d[both], -margin), atol=2e-5)


def test_table_and_keepout_cases_are_exercised(gate) -> None:
    """The cross-check above is not vacuous: robot-table, robot-robot and keep-out contacts occur."""
    seen = set()
    for name in ("into_table", "into_own_base", "into_keepout", "elbow_fold", "wrist_into_arm"):
        v = gate.check(Q0, QD0, CHUNKS[name](gate))
        hits = [x for x in v.violations if x.check == "collision"]
        assert hits, (name, v.reason())
        seen.update(hits[0].names)
    assert "table" in seen and "keepout/fixture" in seen
    assert gate.check(Q0, QD0, CHUNKS["above_table"](gate)).safe


@pytest.mark.parametrize("name", list(CHUNKS))
def test_same_verdict_as_reference_twin(gate, name: str) -> None:
    chunk = CHUNKS[name](gate)
    with SafetyGate(CFG, collision_method="twin") as ref:
        v_ref = ref.check(Q0, QD0, chunk)
    v = gate.check(Q0, QD0, chunk)
    assert (v.check, v.first_unsafe_step) == (v_ref.check, v_ref.first_unsafe_step), (
        v.reason(),
        v_ref.reason(),
    )
    if v.check == "collision":
        assert v.first.substep == v_ref.first.substep
        assert set(v.first.names) == set(v_ref.first.names)


def test_sensors_cover_exactly_the_forbidden_pairs(gate) -> None:
    """Every forbidden candidate pair is covered by a sensor; no sensor plan lists an allowed pair."""
    wm = gate.wm
    pairs = candidate_pairs(wm.model)
    allowed = wm.allowed[pairs[:, 0], pairs[:, 1]]
    covered = {p for plan in wm.collision_sensors.contact for p in plan.pairs}
    assert {(int(a), int(b)) for a, b in pairs[~allowed]} == covered
    assert not covered & {(int(a), int(b)) for a, b in pairs[allowed]}
    keep = {wm.geom_names[p.geom1] for p in wm.collision_sensors.distance}
    assert keep == {"keepout/robot_base", "keepout/fixture"}
    # The shoulder is declared allowed to touch the base box: no distance sensor for it.
    assert not any(
        wm.geom_names[p.geom2].startswith("shoulder_link/") and wm.geom_names[p.geom1] == "keepout/robot_base"
        for p in wm.collision_sensors.distance
    )


def test_allowed_contact_in_margin_does_not_fire(gate) -> None:
    """At home the shoulder sits 3 mm above the table (allowed): inside the margin, yet no violation."""
    init = gate.wm.state_from_joints(Q0, QD0)
    m, d = gate.wm.model, gate.wm.data
    mujoco.mj_setState(m, d, init, mujoco.mjtState.mjSTATE_FULLPHYSICS)
    mujoco.mj_forward(m, d)
    names = {(gate.wm.geom_names[c.geom1], gate.wm.geom_names[c.geom2]) for c in d.contact}
    assert ("shoulder_link/collision0", "table") in names or ("table", "shoulder_link/collision0") in names
    assert np.isinf(gate.wm.collision_sensors.min_distance(d.sensordata))


def test_physics_is_unchanged_by_the_gaps() -> None:
    """Gaps only add inactive contacts: rollouts are bit-identical to a model without them (objects too)."""
    env = sim.make("pick_cube", render_images=False)
    try:
        obs, _ = env.reset(seed=1)
        expert = sim.make_expert(env)
        expert.reset()
        with (
            SafetyGate.for_env(env, DEFAULT) as g,
            SafetyGate.for_env(env, DEFAULT, collision_method="twin") as ref,
        ):
            assert g.wm.collision_sensors is not None and ref.wm.collision_sensors is None
            assert (g.wm.model.geom_gap > 0).any() and not (ref.wm.model.geom_gap > 0).any()
            for _ in range(30):  # approach and grasp: gripper, cube and table in contact
                obs, *_ = env.step(expert.act(obs))
            state = g.env_state(env)
            chunk = np.stack([expert.act(obs) for _ in range(10)]).astype(np.float64)
            s1, _ = g._simulate(state, chunk[None])
            s0, _ = ref._simulate(state, chunk[None])
            np.testing.assert_array_equal(s1, s0)
    finally:
        env.close()


def test_bad_collision_method_raises() -> None:
    with pytest.raises(ValueError, match="collision_method"):
        SafetyGate(DEFAULT, collision_method="fast")
