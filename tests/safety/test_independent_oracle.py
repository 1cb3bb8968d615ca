"""Self-tests of the independent safety oracle: it replays the env's physics, and flags real crashes.

Everything starts from ``env.reset(seed=0)`` of pick_cube (deterministic layout), so the chunks
below are worked out once against that layout.
"""

from __future__ import annotations

from collections.abc import Iterator

import mujoco
import numpy as np
import pytest
from independent_oracle import Oracle, OracleReport

import sim
from sim.env import TabletopEnv
from sim.scene import ARM_ACTUATORS, ARM_JOINTS, GRIPPER_ACTUATOR, GRIPPER_CTRL_MAX, PINCH_SITE, TABLE_GEOM

FULL = mujoco.mjtState.mjSTATE_FULLPHYSICS


@pytest.fixture(scope="module")
def env() -> Iterator[TabletopEnv]:
    e = sim.make("pick_cube", render_images=False)
    yield e
    e.close()


@pytest.fixture(scope="module")
def oracle(env: TabletopEnv) -> Oracle:
    env.reset(seed=0)
    return Oracle(env)


def _start(env: TabletopEnv) -> tuple[np.ndarray, np.ndarray]:
    """Reset to seed 0; the full physics state and the robot's current targets (7,) in action units."""
    env.reset(seed=0)
    m, d = env.unwrapped.model, env.unwrapped.data
    state = np.empty(mujoco.mj_stateSize(m, FULL))
    mujoco.mj_getState(m, d, state, FULL)
    arm = [m.actuator(a).id for a in ARM_ACTUATORS]
    grip = d.ctrl[m.actuator(GRIPPER_ACTUATOR).id] / GRIPPER_CTRL_MAX
    return state, np.append(d.ctrl[arm], grip)


def test_holding_home_is_safe(env: TabletopEnv, oracle: Oracle) -> None:
    state, targets = _start(env)
    report = oracle.execute(state, np.repeat(targets[None], 5, axis=0))
    assert isinstance(report, OracleReport)
    assert report.safe, str(report)
    n_sub = env.unwrapped.cfg.n_substeps
    assert report.steps == (5 + 30) * n_sub  # 5 rows + 1.5 s hold at 20 Hz
    assert report.final_speed < 0.01 and report.max_contact_force < 1.0
    assert str(report).startswith("SAFE")


def test_step_execution_replays_the_env_exactly(env: TabletopEnv, oracle: Oracle) -> None:
    """The oracle's model (with its extra detection-only geom) and ctrl mapping reproduce env.step."""
    state, targets = _start(env)
    rows = np.repeat(targets[None], 6, axis=0)
    rows[:, 0] += np.linspace(0.02, 0.12, 6)
    rows[:, 6] = np.linspace(0.2, 1.0, 6)  # the gripper closes too: exercises the * 255 mapping
    oracle.execute(state, rows, hold_s=0.0)
    for a in rows:
        env.step(a)
    np.testing.assert_allclose(oracle.data.qpos, env.unwrapped.data.qpos, atol=1e-8)
    np.testing.assert_allclose(oracle.data.qvel, env.unwrapped.data.qvel, atol=1e-6)


def test_driving_the_gripper_into_the_table_is_flagged(env: TabletopEnv, oracle: Oracle) -> None:
    state, targets = _start(env)
    m, d = env.unwrapped.model, env.unwrapped.data
    q0 = env.unwrapped.robot_state()[:6].astype(np.float64)
    pinch = m.site(PINCH_SITE).id
    z0 = d.site_xpos[pinch, 2]
    # Pinch height sensitivity: d(z)/d(shoulder_lift) < 0, so raising shoulder_lift lowers the gripper.
    jac = np.zeros((3, m.nv))
    mujoco.mj_jacSite(m, d, jac, None, pinch)
    dz = jac[2, m.jnt_dofadr[m.joint(ARM_JOINTS[1]).id]]
    assert dz < -0.2
    # Pan 0.8 rad to the robot's left first (clear of the seed-0 cubes at |y| <= 0.16), and push the
    # pinch site ~0.4 m down (well below the table top at z = 0) over 10 rows.
    lift = -0.4 / dz
    rows = np.repeat(targets[None], 10, axis=0)
    rows[:, 0] = q0[0] + np.linspace(0.08, 0.8, 10)
    rows[:, 1] = q0[1] + np.linspace(lift / 10, lift, 10)
    assert z0 + dz * lift < -0.1
    report = oracle.execute(state, rows, hold_s=0.5)
    assert not report.safe
    assert {"collision", "workspace"} & set(report.violations), str(report)
    # It really hits: the env itself, stepped with the same rows (+ the hold), puts the pinch site
    # below the table top with a robot geom in contact with the table.
    table = m.geom(TABLE_GEOM).id
    lowest, touched = np.inf, False
    for a in np.vstack([rows, np.repeat(rows[-1:], 10, axis=0)]):
        env.step(a)
        lowest = min(lowest, d.site_xpos[pinch, 2])
        for c in d.contact[: d.ncon]:
            other = int(c.geom[1] if c.geom[0] == table else c.geom[0])
            touched |= (
                table in c.geom and c.dist < 0 and m.body(m.geom_bodyid[other]).name.startswith("gripper/")
            )
    assert lowest < 0.0 and touched


def test_big_first_jump_is_flagged(env: TabletopEnv, oracle: Oracle) -> None:
    state, targets = _start(env)
    rows = np.repeat(targets[None], 3, axis=0)
    rows[:, 0] += 1.0  # shoulder pan target jumps 1 rad at once
    report = oracle.execute(state, rows)
    assert {"joint_acceleration", "joint_velocity"} <= set(report.violations), str(report)
    for kind in ("joint_acceleration", "joint_velocity"):
        t, detail = report.violations[kind]
        assert t < 0.05 and ARM_JOINTS[0] in detail
    # A 0.3 rad jump stays under the speed limit: only the acceleration check can catch it.
    rows[:, 0] = targets[0] + 0.3
    report = oracle.execute(state, rows)
    assert set(report.violations) == {"joint_acceleration"}, str(report)


def test_linear_execution_is_safe_and_differs_from_step(env: TabletopEnv, oracle: Oracle) -> None:
    state, targets = _start(env)
    row = targets.copy()
    row[0] += 0.02
    report = oracle.execute(state, row[None], execution="linear", command=targets)
    assert report.safe, str(report)
    pan0 = float(env.unwrapped.robot_state()[0])
    finals = {}
    for execution in ("step", "linear"):
        report = oracle.execute(state, row[None], hold_s=0.0, execution=execution, command=targets)
        assert report.steps == env.unwrapped.cfg.n_substeps
        finals[execution] = oracle.data.qpos[oracle.model.joint(ARM_JOINTS[0]).qposadr[0]]
    # The linear ramp starts at the old target, so after one period the arm has moved less.
    assert abs(finals["step"] - finals["linear"]) > 1e-3
    assert 0.0 < finals["linear"] - pan0 < finals["step"] - pan0


def test_arm_link_touching_an_object_is_a_collision(env: TabletopEnv, oracle: Oracle) -> None:
    """Only gripper geoms may touch objects: lowering the arm with wrist_1 bent hits the seed-0 cube1."""
    state, targets = _start(env)
    rows = np.repeat(targets[None], 10, axis=0)
    rows[:, :6] += np.linspace(0.1, 1.0, 10)[:, None] * np.array([0.0, 0.9, 0.0, 1.2, 0.0, 0.0])
    report = oracle.execute(state, rows, hold_s=0.5)
    _, detail = report.violations["collision"]
    assert "wrist_2_link/" in detail and "obj/" in detail, str(report)
    assert report.max_contact_force > 0.0


def test_base_keep_out_box_is_a_collision(env: TabletopEnv, oracle: Oracle) -> None:
    """A folded pose with the gripper's coupler inside the base box (and no forbidden contact)."""
    env.reset(seed=0)
    m = env.unwrapped.model
    d = mujoco.MjData(m)
    state = np.empty(mujoco.mj_stateSize(m, FULL))
    mujoco.mj_getState(m, env.unwrapped.data, state, FULL)
    mujoco.mj_setState(m, d, state, FULL)
    q = np.array([-0.296, -1.856, 2.866, -2.268, -2.585, -1.107])
    qadr = [m.jnt_qposadr[m.joint(j).id] for j in ARM_JOINTS]
    d.qpos[qadr] = q
    d.qvel[:] = 0.0
    mujoco.mj_getState(m, d, state, FULL)
    report = oracle.execute(state, np.append(q, 0.0)[None], hold_s=0.1)
    t, detail = report.violations["collision"]
    assert t == 0.0 and "base keep-out" in detail, str(report)


def test_bad_inputs_raise(env: TabletopEnv, oracle: Oracle) -> None:
    state, targets = _start(env)
    with pytest.raises(ValueError, match="actions"):
        oracle.execute(state, targets[None, :6])
    with pytest.raises(ValueError, match="execution"):
        oracle.execute(state, targets[None], execution="spline")
    with pytest.raises(ValueError, match="command_rate_hz"):
        oracle.execute(state, targets[None], execution="linear", command_rate_hz=30.0)
    with pytest.raises(ValueError, match="full_state"):
        oracle.execute(state[:-1], targets[None])
