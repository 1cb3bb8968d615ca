"""Table-driven: every check catches its unsafe chunk and lets its near-miss pass.

Each case runs with only the check under test enabled (so a case proves that check, not whichever
check happens to fire first); ``test_gate.py`` runs the full default config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from safety_chunks import HOME, Q0, QD0, joint_ramp, pinch_line

import sim
from sim.safety import SafetyConfig, SafetyGate, load_safety_config
from sim.safety.config import KeepOutBox

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = load_safety_config(ROOT / "configs/safety/ur5e_default.yaml")
TOGGLED = (
    "joint_position",
    "joint_velocity",
    "joint_acceleration",
    "jump",
    "collision",
    "workspace",
    "contact_force",
)


def only(cfg: SafetyConfig, check: str, **collision) -> SafetyConfig:
    """``cfg`` with every check but ``check`` disabled (``collision`` fields replaced if given)."""
    out = {name: dataclasses.replace(getattr(cfg, name), enabled=(name == check)) for name in TOGGLED}
    if collision:
        out["collision"] = dataclasses.replace(out["collision"], **collision)
    return dataclasses.replace(cfg, **out)


_GATES: dict[str, SafetyGate] = {}


def gate_for(check: str) -> SafetyGate:
    if check not in _GATES:
        _GATES[check] = SafetyGate(only(DEFAULT, check))
    return _GATES[check]


def _wrist_q() -> np.ndarray:
    q = Q0.copy()
    q[5] = 6.0  # wrist 3 near its +2 pi limit
    return q


def _ramp_steps(step: float, n: int = 10) -> np.ndarray:
    """Repeated identical targets ``step`` rad away on the shoulder pan (a step input the servo must chase)."""
    return np.concatenate([joint_ramp([step, 0, 0, 0, 0, 0], steps=1)] * n)


# (name, check, q, chunk builder(gate) -> (H, 7), expected names subset or None)
CAUGHT = [
    (
        "past_joint_limit",
        "joint_position",
        _wrist_q(),
        lambda g: joint_ramp([0, 0, 0, 0, 0, 0.3], 10, q_start=_wrist_q()[:6]),
        {"wrist_3_joint"},
    ),
    (
        "too_fast",
        "joint_velocity",
        Q0,
        lambda g: joint_ramp([3.0, 0, 0, 0, 0, 0], 20),
        {"shoulder_pan_joint"},
    ),
    ("step_input_accel", "joint_acceleration", Q0, lambda g: _ramp_steps(0.45), {"shoulder_pan_joint"}),
    ("jump", "jump", Q0, lambda g: joint_ramp([0.8, 0, 0, 0, 0, 0], 1), {"shoulder_pan_joint"}),
    ("leave_workspace", "workspace", Q0, lambda g: pinch_line(g, [0.9, 0.0, 0.25], 30), {"pinch.x"}),
    ("gripper_into_table", "collision", Q0, lambda g: pinch_line(g, [0.45, 0.0, -0.03]), {"table"}),
]
NEAR_MISS = [
    (
        "below_joint_limit",
        "joint_position",
        _wrist_q(),
        lambda g: joint_ramp([0, 0, 0, 0, 0, 0.15], 10, q_start=_wrist_q()[:6]),
    ),
    ("brisk_but_legal", "joint_velocity", Q0, lambda g: joint_ramp([1.6, 0, 0, 0, 0, 0], 20)),
    ("smooth_ramp", "joint_acceleration", Q0, lambda g: joint_ramp([1.0, 0, 0, 0, 0, 0], 20)),
    ("small_first_step", "jump", Q0, lambda g: joint_ramp([0.4, 0, 0, 0, 0, 0], 1)),
    ("inside_workspace", "workspace", Q0, lambda g: pinch_line(g, [0.75, 0.0, 0.25], 30)),
    ("gripper_above_table", "collision", Q0, lambda g: pinch_line(g, [0.45, 0.0, 0.03])),
]


@pytest.mark.parametrize(("name", "check", "q", "build", "names"), CAUGHT, ids=[c[0] for c in CAUGHT])
def test_unsafe_chunk_is_caught(name, check, q, build, names) -> None:
    gate = gate_for(check)
    chunk = build(gate)
    v = gate.check(q, QD0, chunk)
    assert not v.safe, f"{name}: not caught"
    assert v.check == check, v.reason()
    assert names <= set(v.first.names), v.first
    assert 0 <= v.first_unsafe_step < len(chunk)
    assert v.first.value != v.first.limit
    d = v.to_dict()
    assert d["check"] == check and d["first_unsafe_step"] == v.first_unsafe_step


@pytest.mark.parametrize(("name", "check", "q", "build"), NEAR_MISS, ids=[c[0] for c in NEAR_MISS])
def test_near_miss_passes(name, check, q, build) -> None:
    gate = gate_for(check)
    v = gate.check(q, QD0, build(gate))
    assert v.safe, f"{name}: false alarm: {v.reason()}"


def test_gripper_into_own_base_is_caught() -> None:
    gate = gate_for("collision")
    chunk = pinch_line(gate, [0.05, 0.12, 0.05], steps=30, hold=15)
    v = gate.check(Q0, QD0, chunk)
    assert v.check == "collision", v.reason()
    assert any(
        "robot_base" in n or n.split("/")[0] in ("shoulder_link", "upper_arm_link") for n in v.first.names
    )


@pytest.mark.parametrize(("box_y", "caught"), [(0.2, True), (0.45, False)])
def test_keepout_box(box_y: float, caught: bool) -> None:
    box = KeepOutBox("fixture", center=(0.45, box_y, 0.25), half_size=(0.05, 0.05, 0.05))
    cfg = only(DEFAULT, "collision", keepout=(*DEFAULT.collision.keepout, box))
    with SafetyGate(cfg) as gate:
        v = gate.check(Q0, QD0, pinch_line(gate, [0.45, 0.3, 0.25]))
    if caught:
        assert v.check == "collision" and "keepout/fixture" in v.first.names, v.reason()
    else:
        assert v.safe, v.reason()


@pytest.fixture(scope="module")
def cube_env():
    env = sim.make("pick_cube", render_images=False, n_distractors=0, randomize_object_poses=False)
    env.reset(seed=0)
    yield env
    env.close()


@pytest.mark.parametrize(("z", "caught"), [(-0.02, True), (0.075, False)])
def test_contact_force_pressing_a_cube(cube_env, z: float, caught: bool) -> None:
    """Closed gripper pushed down onto a cube on the table (full simulator state, objects included)."""
    gate = SafetyGate.for_env(cube_env, only(DEFAULT, "contact_force"))
    cube = cube_env.task.cube_pos(cube_env.task.target)
    state = gate.env_state(cube_env)
    q = cube_env.robot_state()
    chunk = pinch_line(gate, [cube[0], cube[1], z], steps=20, grip=1.0, q_start=q[:6], hold=15)
    v = gate.check(q, np.zeros(6), chunk, full_state=state)
    if caught:
        assert v.check == "contact_force", v.reason()
        assert any(n.startswith("obj/") or n.startswith("gripper/") for n in v.first.names)
        assert v.first.value > v.first.limit
    else:
        assert v.safe, v.reason()


@pytest.mark.parametrize(
    "chunk",
    [
        np.full((5, 7), np.nan),
        np.where(np.arange(7) == 3, np.inf, np.append(HOME, 0.0))[None].repeat(4, 0),
        np.zeros((5, 6)),
        np.append(HOME, 0.0),
        np.zeros((2, 5, 7)),
        np.zeros((0, 7)),
        [["a"] * 7],
    ],
    ids=["nan", "inf", "six_columns", "one_dim", "three_dim", "empty", "strings"],
)
def test_invalid_actions_rejected_before_simulating(chunk) -> None:
    gate = gate_for("jump")
    d = gate.filter(Q0, QD0, chunk)
    assert d.hold and d.verdict.check == "action_invalid" and d.verdict.first_unsafe_step == 0
    np.testing.assert_array_equal(d.actions, Q0[None].astype(np.float32))
    assert np.all(np.isfinite(d.actions))


# -- fingertip pads and the table ----------------------------------------------------------------
PADS = tuple(f"gripper/{side}_pad{k}" for side in ("left", "right") for k in (1, 2))


def _closest_pad_to_table(gate: SafetyGate, chunk: np.ndarray) -> float:
    """Smallest pad-table distance [m] while the world model executes ``chunk`` from home (plain MuJoCo)."""
    import mujoco

    m = gate.wm.model
    d = mujoco.MjData(m)
    mujoco.mj_setState(m, d, gate.wm.state_from_joints(Q0, QD0), mujoco.mjtState.mjSTATE_FULLPHYSICS)
    table, pads = m.geom("table").id, [m.geom(n).id for n in PADS]
    closest = np.inf
    for ctrl in gate.wm.controls(chunk[None])[0]:
        d.ctrl[:] = ctrl
        mujoco.mj_step(m, d)
        closest = min(closest, *(mujoco.mj_geomDistance(m, d, p, table, 0.05, None) for p in pads))
    return closest


def test_pads_may_come_close_to_the_table() -> None:
    """Open gripper lowered until its pads are about 3 mm above the table: not a collision (it was)."""
    gate = gate_for("collision")
    chunk = pinch_line(gate, [0.45, 0.0, 0.0063], steps=20, hold=15)
    assert 0.002 < _closest_pad_to_table(gate, chunk) < DEFAULT.collision.margin
    v = gate.check(Q0, QD0, chunk)
    assert v.safe, v.reason()
    # Without the pad rule the same chunk is a collision of a pad with the table.
    pairs = tuple(p for p in DEFAULT.collision.allowed_pairs if p[1] != "table" or "pad" not in p[0])
    assert len(pairs) == len(DEFAULT.collision.allowed_pairs) - 1
    with SafetyGate(only(DEFAULT, "collision", allowed_pairs=pairs)) as old:
        v = old.check(Q0, QD0, chunk)
    assert v.check == "collision" and "table" in v.first.names, v.reason()
    assert any(n in PADS for n in v.first.names), v.first


def test_pads_pressed_into_the_table_are_caught_by_force() -> None:
    chunk = pinch_line(gate_for("contact_force"), [0.45, 0.0, -0.01], steps=20, grip=1.0, hold=15)
    v = gate_for("contact_force").check(Q0, QD0, chunk)
    assert v.check == "contact_force", v.reason()
    assert "table" in v.first.names and any(n in PADS for n in v.first.names), v.first
    with SafetyGate(DEFAULT) as full:  # and the default config as a whole rejects it
        assert not full.check(Q0, QD0, chunk).safe


def test_other_gripper_and_arm_geoms_keep_the_table_margin() -> None:
    gate = gate_for("collision")
    v = gate.check(Q0, QD0, pinch_line(gate, [0.45, 0.0, -0.03]))
    assert v.check == "collision" and "table" in v.first.names, v.reason()
    assert not any(n in PADS for n in v.first.names), v.first  # the finger links get there first
    # Only the pads (and the shoulder on its mount) may touch the table; the wrist and every
    # other robot geom may not.
    wm = gate.wm
    table = wm.geom_names.index("table")
    free = {wm.geom_names[g] for g in wm.robot_geoms if wm.allowed[g, table]}
    assert {n for n in free if not n.startswith("shoulder_link/")} == set(PADS)
    assert any(wm.geom_names[g].startswith("wrist_3_link/") for g in wm.robot_geoms)
