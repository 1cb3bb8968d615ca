"""Image/text pairs rendered by the simulator: each scene's camera frames with its instruction and
descriptions of the objects it shows (colour, kind and left-to-right order as seen by that camera)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

from vla.scene_workers import map_in_processes, render_workers, split_range

TEXT_KINDS = ("ordered", "instruction", "single")


@dataclass(frozen=True)
class PairConfig:
    """Which scenes to render.

    tasks: simulator tasks to draw scenes from (empty: every registered task).
    n_scenes: scenes rendered (each gives one frame per camera).
    image_size: rendered side [px] (the simulator default, so frames look like a dataset's).
    seed: first scene seed; scene i of task t uses seed + i.
    cameras: cameras rendered per scene.
    """

    tasks: tuple[str, ...] = ()
    n_scenes: int = 1000
    image_size: int = 96
    seed: int = 0
    cameras: tuple[str, ...] = ("front", "wrist")


@dataclass
class ScenePairs:
    """Rendered frames and their texts.

    images: camera -> uint8 (n_scenes, H, W, 3).
    texts: camera -> per scene {"ordered": str, "instruction": str, "single": list[str]}.
    """

    images: dict[str, np.ndarray]
    texts: dict[str, list[dict]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(next(iter(self.images.values())))

    def corpus(self) -> list[str]:
        out: list[str] = []
        for per_cam in self.texts.values():
            for t in per_cam:
                out += [t["ordered"], t["instruction"], *t["single"]]
        return out

    def sample_crop(
        self, camera: str, i: int, rng: random.Random, scale=(0.3, 0.7)
    ) -> tuple[np.ndarray, str]:
        """A random square crop around one visible object and a text true of the crop.

        Random-resized crops (as in CLIP training) make objects of a few pixels large enough for a
        small model to learn colours and kinds early; the text lists only the objects inside the crop.
        """
        img = self.images[camera][i]
        objs = self.texts[camera][i]["objects"]
        h, w = img.shape[:2]
        if not objs:
            return img, self.texts[camera][i]["ordered"]
        side = max(8, int(w * rng.uniform(*scale)))
        u, v, _ = rng.choice(objs)
        px, py = (u + 1) / 2 * w, (v + 1) / 2 * h
        x0 = int(np.clip(px - rng.uniform(0.2, 0.8) * side, 0, w - side))
        y0 = int(np.clip(py - rng.uniform(0.2, 0.8) * side, 0, h - side))
        inside = [
            o
            for (uu, vv, o) in objs
            if x0 <= (uu + 1) / 2 * w < x0 + side and y0 <= (vv + 1) / 2 * h < y0 + side
        ]
        text = ordered_phrase(inside) if rng.random() < 0.6 or not inside else _a(rng.choice(inside))
        return img[y0 : y0 + side, x0 : x0 + side], text

    def sample_text(self, camera: str, i: int, rng: random.Random, weights=(0.5, 0.25, 0.25)) -> str:
        t = self.texts[camera][i]
        kind = rng.choices(TEXT_KINDS, weights=weights)[0]
        if kind == "single":
            return rng.choice(t["single"]) if t["single"] else t["ordered"]
        return t[kind]


def _kind(name: str) -> str:
    return name.rstrip("0123456789") or "object"


def _position(m, d, name: str) -> np.ndarray:
    """World position of a task object: a body or geom named `<prefix>/<name>` (objects, pads, ...)."""
    for prefix in ("obj/", "pad/", ""):
        for table, pos in ((m.body, d.xpos), (m.geom, d.geom_xpos)):
            try:
                return pos[table(prefix + name).id]
            except KeyError:
                continue
    raise KeyError(
        f"simulator object {name!r} (from task.colours) has no body or geom named obj/, pad/ or bare"
    )


def _visible_left_to_right(task, camera: str) -> list[tuple[float, float, str]]:
    """(u, v, "colour kind") of each coloured object inside the camera's view, sorted left to right;
    u, v in [-1, 1] (image x to the right, y down)."""
    m, d = task.model, task.data
    cid = m.camera(camera).id
    pos, rot = d.cam_xpos[cid], d.cam_xmat[cid].reshape(3, 3)
    half = np.tan(np.deg2rad(m.cam_fovy[cid]) / 2)
    out = []
    for name, colour in task.colours.items():
        p = _position(m, d, name)
        x, y, z = rot.T @ (p - pos)  # camera frame: x right, y up, looking along -z
        if z >= 0:
            continue
        u, v = x / -z, y / -z
        # 5% margin: an object whose centre sits on the border is mostly out of the frame.
        if abs(u) <= 0.95 * half and abs(v) <= 0.95 * half:
            out.append((float(u / half), float(-v / half), f"{colour} {_kind(name)}"))
    return sorted(out)


def _a(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def ordered_phrase(objs: list[str]) -> str:
    """ "a, b and c from left to right" for objects already sorted left to right."""
    if not objs:
        return "no objects in view"
    if len(objs) == 1:
        return _a(objs[0])
    return ", ".join(objs[:-1]) + f" and {objs[-1]} from left to right"


def describe(task, camera: str) -> dict:
    """Texts of one camera frame, plus each visible object's image position (for crop descriptions)."""
    vis = _visible_left_to_right(task, camera)
    objs = [o for _, _, o in vis]
    return {
        "ordered": ordered_phrase(objs),
        "instruction": task.instruction,
        "single": [_a(o) for o in objs],
        "objects": [(u, v, o) for u, v, o in vis],
        # What the instruction was written with (any other template can be filled with them).
        "task": task.name,
        "fields": dict(task.instruction_fields),
    }


def render_pairs(cfg: PairConfig, workers: int | None = None) -> ScenePairs:
    """Reset each task's environment `n_scenes` times in total (scene i: task i mod the task count,
    seed `cfg.seed + i`) and record frames + texts.

    workers: render in this many spawned processes, each a contiguous range of scenes (None: the
    CPU's cores up to 4; fewer when there are under 256 scenes a worker: `vla.scene_workers`). A
    scene depends on its task and seed only, so the pairs are the same for any number of workers."""
    import sim

    tasks = tuple(cfg.tasks) or tuple(sim.task_names())
    unknown = sorted(set(tasks) - set(sim.task_names()))
    if unknown:
        raise ValueError(f"PairConfig.tasks: unknown task(s) {unknown}; registered: {sim.task_names()}")
    n_workers = render_workers(cfg.n_scenes, workers, "render_pairs")
    parts = map_in_processes(
        _render_range, [(cfg, tasks, lo, hi) for lo, hi in split_range(cfg.n_scenes, n_workers)]
    )
    images = {c: np.concatenate([p.images[c] for p in parts]) for c in cfg.cameras}
    return ScenePairs(images, {c: [t for p in parts for t in p.texts[c]] for c in cfg.cameras})


def _render_range(cfg: PairConfig, tasks: tuple[str, ...], lo: int, hi: int) -> ScenePairs:
    """Scenes lo..hi-1 of `render_pairs` (one process)."""
    import sim

    images = {c: np.zeros((hi - lo, cfg.image_size, cfg.image_size, 3), np.uint8) for c in cfg.cameras}
    texts: dict[str, list[dict]] = {c: [] for c in cfg.cameras}
    # Only the tasks this range draws from: a worker builds no scene it does not render.
    used = dict.fromkeys(tasks[i % len(tasks)] for i in range(lo, min(hi, lo + len(tasks))))
    envs = {t: sim.make(t, image_size=cfg.image_size, cameras=tuple(cfg.cameras)) for t in used}
    try:
        for i in range(lo, hi):
            env = envs[tasks[i % len(tasks)]]
            obs, _ = env.reset(seed=cfg.seed + i)
            for c in cfg.cameras:
                images[c][i - lo] = obs[f"image_{c}"]
                texts[c].append(describe(env.unwrapped.task, c))
    finally:
        for env in envs.values():
            env.close()
    return ScenePairs(images, texts)
