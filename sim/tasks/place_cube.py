"""place_cube: "put the {colour} cube on the {colour} pad", with a distractor cube and pad."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.scene import PALETTE, add_pad
from sim.tasks.base import CUBE_HALF, CubeTask, TaskConfig, add_cubes

PAD_HALF = 0.04  # pads are 8 x 8 cm
PAD_HALF_Z = 0.003
TEMPLATES = (
    "put the {c} cube on the {p} pad",
    "place the {c} cube on the {p} pad",
    "move the {c} block onto the {p} pad",
    "set the {c} cube down on the {p} target",
)


@dataclass(frozen=True)
class PlaceCubeConfig(TaskConfig):
    """place_cube defaults: 8 s episodes, one distractor cube, two pads."""

    max_steps: int = 160
    n_distractors: int = 1
    min_object_distance: float = 0.1
    workspace_low: tuple[float, float] = (0.36, -0.18)
    workspace_high: tuple[float, float] = (0.6, 0.18)


class PlaceCube(CubeTask):
    name = "place_cube"
    instruction_placeholders = frozenset({"c", "p"})
    gym_id = "vla_sim/PlaceCube-v0"
    config_cls = PlaceCubeConfig
    cfg: PlaceCubeConfig

    def build(self, spec: mujoco.MjSpec) -> None:
        self.cube_names = add_cubes(spec, 1 + self.cfg.n_distractors)
        self.pad_names = ["pad0", "pad1"]
        for i, name in enumerate(self.pad_names):
            add_pad(spec, name, (PAD_HALF, PAD_HALF_Z), PALETTE.colours["blue"], pos=(0.55, -0.1 + 0.2 * i))

    @property
    def target(self) -> str:
        return self.cube_names[0]

    @property
    def target_pad(self) -> str:
        return self.pad_names[0]

    def pad_pos(self, name: str) -> np.ndarray:
        return self.body_pos(f"pad/{name}")

    def reset(self, rng: np.random.Generator) -> None:
        nc, npad = len(self.cube_names), len(self.pad_names)
        colours = self.sample_colours(rng, nc + npad)
        fixed = [(0.42, -0.1), (0.42, 0.1), (0.56, 0.1), (0.56, -0.1), (0.5, 0.0)]
        xy = self.sample_layout(rng, nc + npad, fixed=[fixed[i] for i in (0, 1, 2, 3, 4)])
        for name, colour, p in zip(self.cube_names, colours[:nc], xy[:nc]):
            self.colours[name] = colour
            self.set_geom_colour(f"obj/{name}", colour)
            self.place_cube(name, p, self.sample_yaw(rng))
        for name, colour, p in zip(self.pad_names, colours[nc:], xy[nc:]):
            self.colours[name] = colour
            self.set_geom_colour(f"pad/{name}", colour)
            self.model.body_pos[self.model.body(f"pad/{name}").id] = (p[0], p[1], PAD_HALF_Z)
        template = self.pick_template(rng, TEMPLATES)
        self.instruction_fields = {"c": colours[0], "p": colours[nc]}
        self.instruction = template.format(**self.instruction_fields)

    def goal_xy(self) -> np.ndarray:
        """The named pad's centre (x, y) [m]."""
        return np.asarray(self.pad_pos(self.target_pad), dtype=np.float64)[:2].copy()

    def decoy_goals_xy(self) -> list[np.ndarray]:
        """The other pads' centres."""
        return [self.pad_pos(p)[:2].copy() for p in self.pad_names if p != self.target_pad]

    def _offset(self) -> tuple[float, float]:
        cube = self.cube_pos(self.target)
        return float(np.linalg.norm(cube[:2] - self.goal_xy())), float(cube[2] - (2 * PAD_HALF_Z + CUBE_HALF))

    def is_success(self) -> bool:
        dxy, dz = self._offset()
        return dxy < PAD_HALF - 0.01 and abs(dz) < 0.01 and not self.gripper_touching(f"obj/{self.target}")

    def progress(self) -> float:
        dxy, dz = self._offset()
        reach = 1.0 - min(float(np.linalg.norm(self.pinch_pos() - self.cube_pos(self.target))) / 0.3, 1.0)
        grasp = 1.0 if self.grasped(self.target) else 0.0
        near = 1.0 - min(dxy / 0.3, 1.0)
        placed = 1.0 if self.is_success() else 0.0
        return (reach + grasp + 2.0 * near * (grasp or placed or (abs(dz) < 0.01)) + placed) / 5.0
