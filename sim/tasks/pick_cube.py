"""pick_cube: "pick up the {colour} cube" among distractor cubes of other colours."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.tasks.base import CUBE_HALF, CubeTask, TaskConfig, add_cubes

TEMPLATES = (
    "pick up the {c} cube",
    "lift the {c} cube",
    "grab the {c} block",
    "pick the {c} block up",
)


@dataclass(frozen=True)
class PickCubeConfig(TaskConfig):
    """pick_cube defaults: 5 s episodes, two distractors. ``lift_height``: success height [m]."""

    max_steps: int = 100
    lift_height: float = 0.05


class PickCube(CubeTask):
    name = "pick_cube"
    instruction_placeholders = frozenset({"c"})
    gym_id = "vla_sim/PickCube-v0"
    config_cls = PickCubeConfig
    cfg: PickCubeConfig

    def build(self, spec: mujoco.MjSpec) -> None:
        self.cube_names = add_cubes(spec, 1 + self.cfg.n_distractors)

    @property
    def target(self) -> str:
        return self.cube_names[0]

    def reset(self, rng: np.random.Generator) -> None:
        k = len(self.cube_names)
        colours = self.sample_colours(rng, k)
        xy = self.sample_layout(rng, k, fixed=[(0.47, 0.0), (0.45, -0.12), (0.45, 0.12), (0.55, 0.1)])
        for name, colour, p in zip(self.cube_names, colours, xy):
            self.colours[name] = colour
            self.set_geom_colour(f"obj/{name}", colour)
            self.place_cube(name, p, self.sample_yaw(rng))
        template = self.pick_template(rng, TEMPLATES)
        self.instruction_fields = {"c": colours[0]}
        self.instruction = template.format(**self.instruction_fields)

    def lift(self) -> float:
        return float(self.cube_pos(self.target)[2] - CUBE_HALF)

    def is_success(self) -> bool:
        return self.lift() >= self.cfg.lift_height and self.grasped(self.target)

    def progress(self) -> float:
        reach = 1.0 - min(float(np.linalg.norm(self.pinch_pos() - self.cube_pos(self.target))) / 0.3, 1.0)
        grasp = 1.0 if self.grasped(self.target) else 0.0
        lift = float(np.clip(self.lift() / self.cfg.lift_height, 0.0, 1.0))
        return (reach + grasp + 2.0 * lift * grasp) / 4.0
