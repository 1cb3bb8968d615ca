"""Task base: config dataclass, object layout sampling, domain randomization, success/progress.

A task owns its objects (added to the scene spec in :meth:`Task.build`), samples an episode
(layout, colours, instruction) in :meth:`Task.reset`, and judges it from simulator state
(:meth:`Task.is_success`, :meth:`Task.progress`). The expert reads the same task attributes.

Diagnostics (why an episode failed, for evaluation reports): whoever executes the actions calls
:meth:`Task.on_gripper_command` with each command (the control step, 1-based, and whether the
gripper is commanded closed) before it runs; :meth:`Task.diagnostics` then gives the episode's
JSON-ready entries (merged into its evaluation record) and the class's
:meth:`Task.summarize_diagnostics` turns the records of many episodes into summary entries.
``TabletopEnv.reset`` clears them (:meth:`Task.clear_diagnostics`). The cube tasks
(:class:`CubeTask`) report where the gripper was first commanded closed (``grasp``,
``grasp_summary``).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import mujoco
import numpy as np

from sim.scene import PAD_GEOMS, PALETTE, PINCH_SITE, TABLE_GEOM, SceneConfig, add_box_object
from sim.tasks.episode_summary import failure_summary, grasp_summary, offset_toward_goal

CUBE_HALF = 0.02  # 4 cm cubes: well inside the 2F-85's 85 mm stroke
INSTRUCTION_CHARSET = string.ascii_letters + string.digits + " ,.'-"
GRIPPER_CLOSED = 0.5  # a gripper command (action[6] in [0 open, 1 closed]) above this closes it


@dataclass(frozen=True)
class TaskConfig:
    """Options shared by every task (each task subclasses it with its own defaults).

    Attributes:
        image_size: policy camera images are ``(image_size, image_size, 3)`` uint8 (16..224).
        render_images: when False the observation has no ``image_*`` keys (fast, for experts/tests).
        cameras: policy cameras, a subset of ``("front", "wrist")``.
        render_size: side of the image returned by ``env.render()``.
        control_rate_hz: actions per second; physics runs ``1 / (rate * timestep)`` substeps each.
        max_steps: episode length limit in control steps (then ``truncated``).
        terminate_on_success: end the episode (``terminated``) at the first successful step.
        n_distractors: cubes besides the ones the instruction names.
        workspace_low / workspace_high: (x, y) box where objects are placed [m].
        min_object_distance: minimum centre distance between sampled objects [m].
        randomize_object_poses: sample positions and yaw; else a fixed layout.
        max_object_yaw: yaw range (+-) when randomizing poses [rad].
        randomize_colours: sample which palette colours objects get; else fixed colours.
        randomize_table: table material (plain/checker/grid) and tint.
        randomize_lighting: light positions and intensities.
        randomize_camera: front camera pose jitter (``camera_jitter_pos`` m, ``camera_jitter_rot`` rad).
        robot_init_noise: uniform noise on the initial arm joints [rad].
        fast_meshes / lod_max_faces / timestep: passed to :class:`sim.scene.SceneConfig`.
    """

    image_size: int = 96
    render_images: bool = True
    cameras: tuple[str, ...] = ("front", "wrist")
    render_size: int = 256
    control_rate_hz: float = 20.0
    max_steps: int = 120
    terminate_on_success: bool = True
    n_distractors: int = 2
    workspace_low: tuple[float, float] = (0.36, -0.16)
    workspace_high: tuple[float, float] = (0.58, 0.16)
    min_object_distance: float = 0.08
    randomize_object_poses: bool = True
    max_object_yaw: float = 0.6
    randomize_colours: bool = True
    # "templates": the task's few fixed templates; "paraphrase": sim.phrasing's grammar (verbs x
    # nouns x patterns, ~50-70 per task) for instruction variety in training data.
    instructions: str = "templates"
    randomize_table: bool = False
    randomize_lighting: bool = False
    randomize_camera: bool = False
    camera_jitter_pos: float = 0.03
    camera_jitter_rot: float = 0.04
    robot_init_noise: float = 0.02
    fast_meshes: bool = True
    lod_max_faces: int = 800
    timestep: float = 0.002

    def __post_init__(self) -> None:
        name = type(self).__name__
        if not 16 <= self.image_size <= 224:
            raise ValueError(f"{name}.image_size must be in [16, 224], got {self.image_size}")
        if self.instructions not in ("templates", "paraphrase"):
            raise ValueError(
                f"{name}.instructions must be 'templates' or 'paraphrase', got {self.instructions!r}"
            )
        bad = [c for c in self.cameras if c not in ("front", "wrist")]
        if bad or not self.cameras:
            raise ValueError(
                f"{name}.cameras must be a non-empty subset of ('front', 'wrist'), got {self.cameras}"
            )
        if not 1.0 <= self.control_rate_hz <= 500.0:
            raise ValueError(f"{name}.control_rate_hz must be in [1, 500], got {self.control_rate_hz}")
        if self.max_steps < 1:
            raise ValueError(f"{name}.max_steps must be >= 1, got {self.max_steps}")
        if self.n_distractors < 0 or self.n_distractors > 3:
            raise ValueError(f"{name}.n_distractors must be in [0, 3], got {self.n_distractors}")
        lo, hi = np.asarray(self.workspace_low), np.asarray(self.workspace_high)
        if lo.shape != (2,) or hi.shape != (2,) or np.any(hi <= lo):
            raise ValueError(f"{name}.workspace_low/high must be (x, y) with high > low, got {lo}, {hi}")
        substeps = 1.0 / (self.control_rate_hz * self.timestep)
        if abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(
                f"{name}: 1 / (control_rate_hz * timestep) must be an integer number of substeps, "
                f"got {substeps:.3f} (control_rate_hz={self.control_rate_hz}, timestep={self.timestep})"
            )

    @property
    def n_substeps(self) -> int:
        return round(1.0 / (self.control_rate_hz * self.timestep))

    def scene_config(self) -> SceneConfig:
        return SceneConfig(
            timestep=self.timestep,
            fast_meshes=self.fast_meshes,
            lod_max_faces=self.lod_max_faces,
            offscreen_size=max(self.image_size, self.render_size, 16),
        )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def add_cubes(spec: mujoco.MjSpec, n: int) -> list[str]:
    """Add `n` free cubes ``cube0..`` in a row (reset() places and colours them); returns their names."""
    names = [f"cube{i}" for i in range(n)]
    for i, name in enumerate(names):
        add_box_object(spec, name, CUBE_HALF, PALETTE.colours["red"], pos=(0.45, -0.1 + 0.1 * i, CUBE_HALF))
    return names


class Task:
    """One language-conditioned task. Subclasses set ``name``, ``config_cls`` and the hooks."""

    name: ClassVar[str]
    gym_id: ClassVar[str]
    config_cls: ClassVar[type[TaskConfig]] = TaskConfig
    # The placeholders this task's instruction templates may use (the keys of `instruction_fields`).
    instruction_placeholders: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        self.instruction = ""
        # This episode's placeholder values of the instruction templates: {c} target colour, {p} pad
        # colour, {s} side, {a}/{b} top/bottom cube colours (each task sets the ones it uses).
        self.instruction_fields: dict[str, str] = {}
        self.model: mujoco.MjModel | None = None
        self.data: mujoco.MjData | None = None
        self.cube_names: list[str] = []
        self.colours: dict[str, str] = {}  # object name -> colour name, this episode
        self.clear_diagnostics()

    # -- scene -------------------------------------------------------------------------------
    def build(self, spec: mujoco.MjSpec) -> None:
        """Add this task's objects to the scene spec."""
        raise NotImplementedError

    def bind(self, model: mujoco.MjModel, data: mujoco.MjData) -> None:
        """Remember model/data and look up ids once (called after compiling)."""
        self.model, self.data = model, data
        self._pinch = model.site(PINCH_SITE).id
        self._pad_geoms = {model.geom(g).id for g in PAD_GEOMS}
        self._table_geom = model.geom(TABLE_GEOM).id
        self._table_mats = [model.material(f"table/{m}").id for m in ("plain", "checker", "grid")]
        self._mat_rgba0 = model.mat_rgba.copy()
        self._light_pos0 = model.light_pos.copy()
        self._light_diffuse0 = model.light_diffuse.copy()
        front = model.camera("front").id
        self._front_cam = front
        self._cam_pos0 = model.cam_pos[front].copy()
        self._cam_quat0 = model.cam_quat[front].copy()

    # -- episode -----------------------------------------------------------------------------
    def reset(self, rng: np.random.Generator) -> None:
        """Sample layout, colours and instruction; write object poses into ``data``."""
        raise NotImplementedError

    def is_success(self) -> bool:
        raise NotImplementedError

    def pick_template(self, rng: np.random.Generator, templates: tuple[str, ...]) -> str:
        """One template for this episode: from the task's own `templates`, or from its paraphrase
        set with `instructions="paraphrase"` (one draw of `rng` either way)."""
        if self.cfg.instructions == "paraphrase":
            from sim.phrasing import paraphrase_templates

            templates = paraphrase_templates(self.name)
        return templates[int(rng.integers(len(templates)))]

    def format_instruction(self, template: str) -> str:
        """`template` filled with this episode's `instruction_fields` (e.g. "lift the {c} block").

        Raises ValueError naming the placeholder when the template uses one this task has not."""
        try:
            return template.format(**self.instruction_fields)
        except (KeyError, IndexError) as e:
            raise ValueError(
                f"instruction template {template!r} uses {{{e.args[0]}}}, but task {self.name} fills "
                f"{sorted('{' + k + '}' for k in self.instruction_fields)}"
            ) from None

    def progress(self) -> float:
        """Task-progress score from simulator state in [0, 1], higher is better (dense shaping)."""
        raise NotImplementedError

    # -- diagnostics (see the module docstring) ------------------------------------------------
    def clear_diagnostics(self) -> None:
        """Forget the episode's diagnostics (``TabletopEnv.reset`` calls it before :meth:`reset`)."""

    def on_gripper_command(self, step: int, closed: bool) -> None:
        """The command of control step ``step`` (1-based) is about to run; ``closed``: its gripper
        command is above :data:`GRIPPER_CLOSED`. Called with the simulator state before it runs."""

    def diagnostics(self) -> dict[str, Any]:
        """This episode's diagnostics: JSON-ready entries for its evaluation record (none here)."""
        return {}

    @classmethod
    def summarize_diagnostics(cls, episodes: list[dict[str, Any]]) -> dict[str, Any]:
        """Summary entries over episode records holding :meth:`diagnostics`' entries (none here)."""
        return {}

    # -- helpers for subclasses --------------------------------------------------------------
    def pinch_pos(self) -> np.ndarray:
        return self.data.site_xpos[self._pinch].copy()

    def body_pos(self, body: str) -> np.ndarray:
        return self.data.xpos[self.model.body(body).id].copy()

    def cube_pos(self, name: str) -> np.ndarray:
        return self.body_pos(f"obj/{name}")

    def cube_yaw(self, name: str) -> float:
        mat = self.data.xmat[self.model.body(f"obj/{name}").id].reshape(3, 3)
        return float(np.arctan2(mat[1, 0], mat[0, 0]))

    def gripper_touching(self, geom: str) -> bool:
        """Whether any finger pad touches ``geom``."""
        gid = self.model.geom(geom).id
        for c in self.data.contact[: self.data.ncon]:
            pair = {int(c.geom1), int(c.geom2)}
            if gid in pair and pair & self._pad_geoms:
                return True
        return False

    def grasped(self, name: str) -> bool:
        """Both fingers (a left and a right pad) touch cube ``name``."""
        gid = self.model.geom(f"obj/{name}").id
        sides: set[str] = set()
        for c in self.data.contact[: self.data.ncon]:
            g1, g2 = int(c.geom1), int(c.geom2)
            other = g2 if g1 == gid else g1 if g2 == gid else None
            if other is not None and other in self._pad_geoms:
                sides.add(self.model.geom(other).name.split("/")[1][:4])
        return sides == {"left", "righ"}

    def sample_colours(self, rng: np.random.Generator, k: int) -> list[str]:
        names = list(PALETTE.colours)
        if not self.cfg.randomize_colours:
            return names[:k]
        return [names[i] for i in rng.choice(len(names), size=k, replace=False)]

    def set_geom_colour(self, geom: str, colour: str) -> None:
        self.model.geom_rgba[self.model.geom(geom).id] = PALETTE.colours[colour]

    def sample_layout(
        self,
        rng: np.random.Generator,
        k: int,
        fixed: list[tuple[float, float]],
        min_dist: float | None = None,
    ) -> np.ndarray:
        """``k`` object (x, y) positions in the workspace, pairwise >= ``min_dist`` apart (rejection sampling)."""
        if not self.cfg.randomize_object_poses:
            return np.asarray(fixed[:k], np.float64)
        min_dist = self.cfg.min_object_distance if min_dist is None else min_dist
        lo, hi = np.asarray(self.cfg.workspace_low), np.asarray(self.cfg.workspace_high)
        for _ in range(1000):
            pts = rng.uniform(lo, hi, size=(k, 2))
            d = np.linalg.norm(pts[:, None] - pts[None], axis=-1) + np.eye(k) * 1e9
            if d.min() >= min_dist:
                return pts
        raise RuntimeError(
            f"{type(self).__name__}: could not place {k} objects {min_dist} m apart in the workspace "
            f"{lo}..{hi}; widen the workspace or lower min_object_distance/n_distractors"
        )

    def place_cube(self, name: str, xy: np.ndarray, yaw: float, z: float = CUBE_HALF) -> None:
        jid = self.model.joint(f"obj/{name}/free").id
        adr = self.model.jnt_qposadr[jid]
        self.data.qpos[adr : adr + 3] = (xy[0], xy[1], z)
        self.data.qpos[adr + 3 : adr + 7] = (np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2))
        dadr = self.model.jnt_dofadr[jid]
        self.data.qvel[dadr : dadr + 6] = 0.0

    def sample_yaw(self, rng: np.random.Generator) -> float:
        if not self.cfg.randomize_object_poses:
            return 0.0
        return float(rng.uniform(-self.cfg.max_object_yaw, self.cfg.max_object_yaw))

    def randomize_appearance(self, rng: np.random.Generator) -> None:
        """Table material/tint, lighting and front camera jitter, each behind its config switch."""
        m, cfg = self.model, self.cfg
        m.mat_rgba[:] = self._mat_rgba0
        m.geom_matid[self._table_geom] = self._table_mats[0]
        if cfg.randomize_table:
            mat = self._table_mats[int(rng.integers(len(self._table_mats)))]
            m.geom_matid[self._table_geom] = mat
            tint = rng.uniform(0.55, 1.0, size=3)
            m.mat_rgba[mat, :3] = self._mat_rgba0[mat, :3] * tint / tint.max()
        m.light_pos[:] = self._light_pos0
        m.light_diffuse[:] = self._light_diffuse0
        if cfg.randomize_lighting:
            m.light_pos[:] += rng.uniform(-0.3, 0.3, size=m.light_pos.shape)
            m.light_diffuse[:] *= rng.uniform(0.6, 1.4, size=(m.nlight, 1))
        m.cam_pos[self._front_cam] = self._cam_pos0
        m.cam_quat[self._front_cam] = self._cam_quat0
        if cfg.randomize_camera:
            m.cam_pos[self._front_cam] += rng.uniform(-cfg.camera_jitter_pos, cfg.camera_jitter_pos, 3)
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            dq = np.zeros(4)
            mujoco.mju_axisAngle2Quat(dq, axis, rng.uniform(-cfg.camera_jitter_rot, cfg.camera_jitter_rot))
            q = np.zeros(4)
            mujoco.mju_mulQuat(q, dq, self._cam_quat0)
            m.cam_quat[self._front_cam] = q


class CubeTask(Task):
    """A task over the cubes of :func:`add_cubes` whose instruction names one (``target``).

    Diagnostics: where the gripper was when first commanded closed (``grasp``), which separates
    "closed on the wrong cube", "closed a few cm off the right one" and "never closed" (the failures
    need different fixes); ``grasp_summary`` counts them over episodes.
    """

    def clear_diagnostics(self) -> None:
        self._grasp: dict[str, Any] = {}
        self._close_xy: np.ndarray | None = None

    def on_gripper_command(self, step: int, closed: bool) -> None:
        if closed and not self._grasp:
            self._grasp = self._grasp_report(step)

    def _grasp_report(self, step: int) -> dict[str, Any]:
        out: dict[str, Any] = {"close_step": int(step)}
        target, names = getattr(self, "target", None), list(self.cube_names)
        if target is None or target not in names:
            return out
        pinch = self.pinch_pos()
        dist = {n: float(np.linalg.norm(pinch[:2] - self.cube_pos(n)[:2])) for n in names}
        out["close_xy_to_target_m"] = dist[target]
        out["close_height_above_target_m"] = float(pinch[2] - self.cube_pos(target)[2])
        out["close_nearest_is_target"] = min(dist, key=dist.get) == target
        self._close_xy = self.cube_pos(target)[:2].copy()  # where the cube was when the grasp began
        out.update(offset_toward_goal(pinch[:2], self._close_xy, self.goal_xy()))  # {} for a pick
        return out

    def goal_xy(self) -> np.ndarray:
        """Where the target cube must end, on the table plane: (2,) float [m]. Here (a pick) its own
        (x, y): it is lifted straight up. Tasks that move the cube elsewhere override this."""
        return np.asarray(self.cube_pos(self.target), dtype=np.float64)[:2].copy()

    def decoy_goals_xy(self) -> list[np.ndarray]:
        """Where the target would end with the goal misread (other pads, cubes, side): (2,) each [m]."""
        return []

    def diagnostics(self) -> dict[str, Any]:
        """``grasp``: ``{}`` when the gripper was never commanded closed, else ``close_step`` and,
        with a target cube, ``close_xy_to_target_m``, ``close_height_above_target_m`` and
        ``close_nearest_is_target``. ``goal`` (with a target cube; as of the call, so the episode's
        end in records): ``target_xy_to_goal_m`` (the cube's xy distance from `goal_xy`),
        ``target_held``, ``target_moved_since_close_m`` (xy, from where it was at the first close;
        once closed), ``nearer_a_decoy_goal`` (closer to one of `decoy_goals_xy`: goal misread)."""
        out: dict[str, Any] = {"grasp": dict(self._grasp)}
        if getattr(self, "target", None) in self.cube_names:
            xy = self.cube_pos(self.target)[:2]
            to_goal = float(np.linalg.norm(xy - self.goal_xy()))
            held = bool(self.grasped(self.target))
            goal: dict[str, Any] = {"target_xy_to_goal_m": to_goal, "target_held": held}
            if self._close_xy is not None:
                goal["target_moved_since_close_m"] = float(np.linalg.norm(xy - self._close_xy))
            goal["nearer_a_decoy_goal"] = any(
                float(np.linalg.norm(xy - d)) < to_goal for d in self.decoy_goals_xy()
            )
            out["goal"] = goal
        return out

    @classmethod
    def summarize_diagnostics(cls, episodes: list[dict[str, Any]]) -> dict[str, Any]:
        """``grasp_summary`` and ``failure_summary`` (`sim.tasks.episode_summary`)."""
        return {"failure_summary": failure_summary(episodes), "grasp_summary": grasp_summary(episodes)}
