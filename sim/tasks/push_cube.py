"""push_cube: "push the {colour} cube to the {side}" (left = +y, the robot's left), with a distractor."""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from sim.tasks.base import CUBE_HALF, CubeTask, TaskConfig, add_cubes

SIDES = {"left": 1.0, "right": -1.0}
TEMPLATES = (
    "push the {c} cube to the {s}",
    "slide the {c} cube to the {s}",
    "push the {c} block {s}",
)


@dataclass(frozen=True)
class PushCubeConfig(TaskConfig):
    """push_cube defaults: 6 s episodes; success when the cube moved ``push_distance`` m to the side."""

    max_steps: int = 120
    n_distractors: int = 1
    push_distance: float = 0.08
    target_y_range: float = 0.05  # the target starts within +-this of y = 0 so both sides fit


class PushCube(CubeTask):
    name = "push_cube"
    instruction_placeholders = frozenset({"c", "s"})
    gym_id = "vla_sim/PushCube-v0"
    config_cls = PushCubeConfig
    cfg: PushCubeConfig

    def build(self, spec: mujoco.MjSpec) -> None:
        self.cube_names = add_cubes(spec, 1 + self.cfg.n_distractors)
        self.side = "left"
        self.start = np.zeros(3)

    @property
    def target(self) -> str:
        return self.cube_names[0]

    @property
    def direction(self) -> float:
        """+1 to push toward +y (left), -1 toward -y (right)."""
        return SIDES[self.side]

    def reset(self, rng: np.random.Generator) -> None:
        cfg = self.cfg
        k = len(self.cube_names)
        colours = self.sample_colours(rng, k)
        self.side = (
            str(rng.choice(list(SIDES))) if cfg.randomize_object_poses or cfg.randomize_colours else "left"
        )
        lo, hi = np.asarray(cfg.workspace_low), np.asarray(cfg.workspace_high)
        if cfg.randomize_object_poses:
            target = np.array(
                [rng.uniform(lo[0] + 0.03, hi[0] - 0.03), rng.uniform(-1, 1) * cfg.target_y_range]
            )
            others: list[np.ndarray] = []
            for _ in range(k - 1):
                for _ in range(1000):
                    p = rng.uniform(lo, hi)
                    # Distractors stay out of the pushing lane (|dx| >= 0.1) and apart from each other.
                    if abs(p[0] - target[0]) >= 0.1 and all(np.linalg.norm(p - o) >= 0.08 for o in others):
                        others.append(p)
                        break
                else:
                    raise RuntimeError(
                        f"{type(self).__name__}: could not place distractors outside the push lane"
                    )
            xy = [target, *others]
        else:
            xy = [np.array(p) for p in [(0.47, 0.0), (0.36, 0.1), (0.58, -0.1), (0.58, 0.1)][:k]]
        for name, colour, p in zip(self.cube_names, colours, xy):
            self.colours[name] = colour
            self.set_geom_colour(f"obj/{name}", colour)
            self.place_cube(name, p, self.sample_yaw(rng))
        self.start = np.array([xy[0][0], xy[0][1], CUBE_HALF])
        template = self.pick_template(rng, TEMPLATES)
        self.instruction_fields = {"c": colours[0], "s": self.side}
        self.instruction = template.format(**self.instruction_fields)

    def goal_xy(self) -> np.ndarray:
        """The cube's start (x, y) moved `push_distance` toward the instructed side [m]: the nearest
        point that counts as pushed far enough."""
        return np.array([self.start[0], self.start[1] + self.direction * self.cfg.push_distance])

    def decoy_goals_xy(self) -> list[np.ndarray]:
        """The same push toward the other side."""
        return [np.array([self.start[0], self.start[1] - self.direction * self.cfg.push_distance])]

    def displacement(self) -> float:
        """How far the target cube moved toward the instructed side [m]."""
        return float((self.cube_pos(self.target)[1] - self.start[1]) * self.direction)

    def is_success(self) -> bool:
        on_table = abs(self.cube_pos(self.target)[2] - CUBE_HALF) < 0.01
        return self.displacement() >= self.cfg.push_distance and on_table

    def progress(self) -> float:
        behind = self.cube_pos(self.target) - np.array([0.0, 0.06 * self.direction, 0.0])
        reach = 1.0 - min(float(np.linalg.norm(self.pinch_pos() - behind)) / 0.3, 1.0)
        moved = float(np.clip(self.displacement() / self.cfg.push_distance, 0.0, 1.0))
        return (reach + 3.0 * moved) / 4.0
