"""Grounding scenes: single rendered frames of fresh layouts, labelled with where the named cube is
and where it must go.

A policy learns from its demonstrations both *where* the instruction's cube is and *how* to get
there. The second is a smooth map that a thousand demos teach well; the first, read from frozen
encoder tokens, needs several thousand distinct layouts (`benchmarks/probe_grounding.py`: the
spatial-softmax front end finds the named cube in 80% of held-out scenes after 1000 layouts, 99.8%
after 4000). A demonstration costs an expert rollout and ~50 rendered and embedded frames per
layout; a grounding scene costs one reset and one frame. The heads' auxiliary grounding loss
(`PolicyConfig.aux_ground_weight`, `Policy.aux_ground_loss`) trains the front end on them:

    spec = GroundingSpec(tasks=("pick_cube",), n_scenes=4000)
    scenes = build_grounding_set(spec, encoder, cameras=("front", "wrist"), processor=data.processor)
    loader = GroundedLoader(loader, scenes, batch_size=64, seed=0)   # adds the ground_* keys

Every scene is a task's reset from seed `spec.seed + i` (its own instruction, colours and poses,
the arm at its start pose); the label is the table (x, y) of the task's `target` cube, then the
(x, y) where the instruction says it must end (`goal_xy`: the named pad, the bottom cube, the
pushed-to point; a pick's own position), normalized by the scenes' mean and standard deviation.

Rollout frames (`GroundingSpec.rollouts` > 0) add mid-episode views: the task's scripted expert runs
from reset seed `spec.seed + ROLLOUT_SEED_OFFSET + j` and `frames_per_rollout` frames are kept at
distinct random steps in [1, rollout_steps], labelled with where the cube and its goal are *then*
(rendering, both kinds: `vla.training.grounding_render`).
Why: reset frames show the arm parked away from the objects and the wrist camera looking at the
table from its start pose; a readout trained on them alone is a median 8-16 cm off once the arm
reaches in (place_cube, 6000-step checkpoint), exactly when the policy must find the cube to close on it.
The head regresses the first `PolicyConfig.aux_ground_dim` columns (2: the cube, 4: both).
Nothing of this reaches inference: the checkpoint keeps only the head (with its auxiliary MLP,
unused when acting).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vla.encoders import FrozenEncoder
from vla.processor import Processor
from vla.training.grounding_render import render_grounding_scenes

# Far from every other seed range the project uses (demos from 0, evaluation 100000+ and 200000+,
# the encoder's pretraining and its held-out scenes, the grounding probe's 1000000+).
DEFAULT_GROUNDING_SEED = 5_000_000


@dataclass(frozen=True)
class GroundingSpec:
    """Which scenes: `n_scenes` resets split evenly over simulator tasks `tasks` (task t with config
    overrides `env[t]`, e.g. its image size and instruction set), each task's from seeds seed,
    seed + 1, ..."""

    tasks: tuple[str, ...]
    n_scenes: int
    env: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = DEFAULT_GROUNDING_SEED
    rollouts: int = 0
    frames_per_rollout: int = 4
    rollout_steps: int = 60

    def __post_init__(self) -> None:
        if self.n_scenes < len(self.tasks) or not self.tasks:
            raise ValueError(
                f"GroundingSpec: need tasks and n_scenes >= len(tasks), got {self.tasks}, {self.n_scenes}"
            )
        if "all" in self.tasks:
            raise ValueError("GroundingSpec.tasks: name the simulator tasks, not 'all'")
        if self.rollouts < 0:
            raise ValueError(f"GroundingSpec.rollouts must be >= 0, got {self.rollouts}")
        if self.rollouts and not 1 <= self.frames_per_rollout <= self.rollout_steps:
            raise ValueError(
                "GroundingSpec: need 1 <= frames_per_rollout <= rollout_steps (distinct steps), got "
                f"frames_per_rollout={self.frames_per_rollout}, rollout_steps={self.rollout_steps}"
            )

    def at_image_size(self, size: int) -> GroundingSpec:
        """The same scenes rendered at `size` x `size` pixels (every task's env)."""
        env = {t: {**self.env.get(t, {}), "image_size": int(size)} for t in self.tasks}
        return dataclasses.replace(self, env=env)

    def scenes_per_task(self) -> list[int]:
        return self._per_task(self.n_scenes)

    def rollouts_per_task(self) -> list[int]:
        return self._per_task(self.rollouts)

    def _per_task(self, n: int) -> list[int]:
        """`n` split as evenly as possible over the tasks, the first ones taking the remainder."""
        k, r = divmod(n, len(self.tasks))
        return [k + (i < r) for i in range(len(self.tasks))]


@dataclass
class GroundingSet:
    """Encoded scenes in the training batches' token layout.

    tokens (S, N, D) float16, token_mask (S, N) bool, text_mask (S, N) bool, target (S, 4) float32
    normalized (the target cube's x, y, then its goal's x, y); target_mean / target_std (4,) the
    table-frame statistics [m] it was normalized with.
    """

    tokens: torch.Tensor
    token_mask: torch.Tensor
    text_mask: torch.Tensor
    target: torch.Tensor
    target_mean: np.ndarray
    target_std: np.ndarray
    seconds: float = 0.0
    cached: bool = False  # loaded from a cache file instead of rendered and encoded

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def grounding_cache_key(
    spec: GroundingSpec, cameras: Sequence[str], encoder_fingerprint: str, use_text: bool
) -> str:
    """Hex digest of everything that decides a grounding set's tokens: the scenes (tasks, counts,
    env overrides, seeds), the cameras' order, the encoder (its fingerprint covers weights and
    settings) and whether instruction tokens follow the image tokens."""
    spec_fields = dataclasses.asdict(spec)
    if not spec.rollouts:  # without rollouts, the key of the caches written before they existed
        for k in ("rollouts", "frames_per_rollout", "rollout_steps"):
            spec_fields.pop(k)
    ident = {
        "format": 2,  # 2: labels (S, 4) with the goal (format 1 caches held (S, 2))
        "spec": spec_fields,
        "cameras": list(cameras),
        "encoder": encoder_fingerprint,
        "use_text": bool(use_text),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()


def build_grounding_set(
    spec: GroundingSpec,
    encoder: FrozenEncoder,
    cameras: Sequence[str],
    processor: Processor,
    batch: int = 256,
    cache_dir: Path | None = None,
    workers: int | None = None,
) -> GroundingSet:
    """Render and encode `spec`'s scenes as the training batches lay tokens out (`processor`: its
    cameras order, `use_text` and text mask).

    cache_dir: keep the encoded scenes in `cache_dir/<key>.pt` (`grounding_cache_key`) and load them
    from there next time: DAgger's fine-tuning rounds and repeated runs on one recipe then skip the
    ~60 s of rendering and encoding. None: no cache.
    workers: processes that render the scenes (`render_grounding_scenes`; the same set for any).
    """
    t0 = time.perf_counter()
    path = None
    if cache_dir is not None:
        key = grounding_cache_key(spec, cameras, encoder.fingerprint, processor.use_text)
        path = Path(cache_dir) / f"grounding-{key[:24]}.pt"
        hit = _load_cached(path, key)
        if hit is not None:
            tokens, mask, xy = hit
            return _grounding_set(tokens, mask, xy, processor, time.perf_counter() - t0, cached=True)
    tokens, mask, xy = _render_and_encode(spec, encoder, cameras, processor, batch, workers)
    if path is not None:
        _save_cached(path, key, tokens, mask, xy)
    return _grounding_set(tokens, mask, xy, processor, time.perf_counter() - t0, cached=False)


def _render_and_encode(
    spec: GroundingSpec,
    encoder: FrozenEncoder,
    cameras: Sequence[str],
    processor: Processor,
    batch: int,
    workers: int | None,
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    frames, instructions, xy = render_grounding_scenes(spec, cameras, workers)
    toks, masks = [], []
    with torch.no_grad():
        for i in range(0, len(instructions), batch):
            part = {c: frames[c][i : i + batch] for c in cameras}
            # As vla.processor.encode_observation lays them out, with one instruction per scene.
            img = encoder.encode_images(part)
            t, m = img.tokens, img.mask
            if processor.use_text:
                txt = encoder.encode_text(instructions[i : i + batch])
                t, m = torch.cat([t, txt.tokens], 1), torch.cat([m, txt.mask], 1)
            toks.append(t.half())
            masks.append(m)
    return torch.cat(toks), torch.cat(masks), xy


def _grounding_set(
    tokens: torch.Tensor,
    mask: torch.Tensor,
    xy: np.ndarray,
    processor: Processor,
    seconds: float,
    cached: bool,
) -> GroundingSet:
    mean, std = xy.mean(0), xy.std(0) + 1e-6
    return GroundingSet(
        tokens=tokens,
        token_mask=mask,
        text_mask=processor.text_mask(mask),
        target=torch.from_numpy((xy - mean) / std),
        target_mean=mean,
        target_std=std,
        seconds=seconds,
        cached=cached,
    )


def _load_cached(path: Path, key: str) -> tuple[torch.Tensor, torch.Tensor, np.ndarray] | None:
    """The cached (tokens, mask, xy) of `key`, or None when there is no usable file (missing,
    unreadable or written for another key: it is then rebuilt and overwritten)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a truncated or foreign file is a miss, never a failed run
        return None
    if not isinstance(blob, dict) or blob.get("key") != key:
        return None
    return blob["tokens"], blob["token_mask"], blob["xy"].numpy()


def _save_cached(path: Path, key: str, tokens: torch.Tensor, mask: torch.Tensor, xy: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    blob = {"key": key, "tokens": tokens, "token_mask": mask, "xy": torch.from_numpy(np.asarray(xy))}
    torch.save(blob, tmp)
    os.replace(tmp, path)  # atomic: a reader sees no file or a whole one


class GroundedLoader:
    """A `StepIterable` (`vla.training.loader`) that adds a batch of grounding scenes to each batch.

    The scenes of step s are drawn with replacement by a generator seeded by (seed, s), so a resumed
    run sees the same ones; `part` is this process's slice of them under torchrun (as the loader's).
    Added keys: ground_tokens (S, N, D) float32, ground_token_mask, ground_text_mask (S, N) bool,
    ground_target (S, dims): the scenes' first `dims` label columns (2: the cube, 4: and its goal).
    """

    def __init__(
        self,
        loader: Any,
        scenes: GroundingSet,
        batch_size: int,
        seed: int = 0,
        part: slice = slice(None),
        dims: int = 2,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"GroundedLoader.batch_size must be >= 1, got {batch_size}")
        if not 1 <= dims <= scenes.target.shape[1]:
            raise ValueError(f"GroundedLoader.dims must be in [1, {scenes.target.shape[1]}], got {dims}")
        self.loader, self.scenes, self.batch_size = loader, scenes, int(batch_size)
        self.seed, self.part, self.dims = int(seed), part, int(dims)

    def __getattr__(self, name: str) -> Any:  # steps_per_epoch, dataset, ... of the wrapped loader
        return getattr(self.loader, name)

    def scene_indices(self, step: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 7_919 * int(step) + 17)
        return torch.randint(len(self.scenes), (self.batch_size,), generator=g)[self.part]

    def iter_from(self, step: int) -> Iterator[dict[str, Any]]:
        s = self.scenes
        for k, batch in enumerate(self.loader.iter_from(step)):
            idx = self.scene_indices(step + k)
            batch["ground_tokens"] = s.tokens[idx].float()
            batch["ground_token_mask"] = s.token_mask[idx]
            batch["ground_text_mask"] = s.text_mask[idx]
            batch["ground_target"] = s.target[idx, : self.dims]
            yield batch
