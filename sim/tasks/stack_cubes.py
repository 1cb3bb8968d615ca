"""stack_cubes: "stack the {colour} cube on the {colour} cube", with a distractor cube."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.tasks.base import CUBE_HALF, CubeTask, TaskConfig, add_cubes

TEMPLATES = (
    "stack the {a} cube on the {b} cube",
    "put the {a} cube on top of the {b} cube",
    "place the {a} block onto the {b} block",
)


@dataclass(frozen=True)
class StackCubesConfig(TaskConfig):
    """stack_cubes defaults: 8 s episodes, one distractor."""

    max_steps: int = 160
    n_distractors: int = 1
    min_object_distance: float = 0.09


class StackCubes(CubeTask):
    name = "stack_cubes"
    instruction_placeholders = frozenset({"a", "b"})
    gym_id = "vla_sim/StackCubes-v0"
    config_cls = StackCubesConfig
    cfg: StackCubesConfig

    def build(self, spec: mujoco.MjSpec) -> None:
        self.cube_names = add_cubes(spec, 2 + self.cfg.n_distractors)

    @property
    def target(self) -> str:
        """The cube to pick up."""
        return self.cube_names[0]

    @property
    def base(self) -> str:
        """The cube to stack onto."""
        return self.cube_names[1]

    def reset(self, rng: np.random.Generator) -> None:
        k = len(self.cube_names)
        colours = self.sample_colours(rng, k)
        xy = self.sample_layout(rng, k, fixed=[(0.44, -0.1), (0.5, 0.08), (0.56, -0.05), (0.4, 0.12)])
        for name, colour, p in zip(self.cube_names, colours, xy):
            self.colours[name] = colour
            self.set_geom_colour(f"obj/{name}", colour)
            self.place_cube(name, p, self.sample_yaw(rng))
        template = self.pick_template(rng, TEMPLATES)
        self.instruction_fields = {"a": colours[0], "b": colours[1]}
        self.instruction = template.format(**self.instruction_fields)

    def goal_xy(self) -> np.ndarray:
        """The bottom cube's (x, y) [m] (the top one is stacked centred on it)."""
        return np.asarray(self.cube_pos(self.base), dtype=np.float64)[:2].copy()

    def decoy_goals_xy(self) -> list[np.ndarray]:
        """The other cubes (the distractors) to stack on."""
        return [self.cube_pos(c)[:2].copy() for c in self.cube_names if c not in (self.target, self.base)]

    def _offset(self) -> tuple[float, float]:
        top, bottom = self.cube_pos(self.target), self.cube_pos(self.base)
        return float(np.linalg.norm(top[:2] - self.goal_xy())), float(top[2] - bottom[2] - 2 * CUBE_HALF)

    def is_success(self) -> bool:
        dxy, dz = self._offset()
        return dxy < 0.015 and abs(dz) < 0.006 and not self.gripper_touching(f"obj/{self.target}")

    def progress(self) -> float:
        dxy, _ = self._offset()
        reach = 1.0 - min(float(np.linalg.norm(self.pinch_pos() - self.cube_pos(self.target))) / 0.3, 1.0)
        grasp = 1.0 if self.grasped(self.target) else 0.0
        near = 1.0 - min(dxy / 0.3, 1.0)
        done = 1.0 if self.is_success() else 0.0
        return (reach + grasp + 2.0 * near * max(grasp, done) + done) / 5.0
