"""Joining stores: `vla-dataset merge a.zarr b.zarr out=c.zarr` and the merge of `vla-collect` shards.

The episodes of the sources are appended in the order given, each with its instruction and info;
the output is written atomically (`staged_output`: validated, then moved into place), so an
interrupted or refused merge leaves `out` as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vla.data.errors import DatasetError
from vla.data.format import DatasetMeta
from vla.data.replay_buffer import ReplayBuffer
from vla.data.staging import staged_output

# Store-level fields every source must share (the episodes of one dataset).
_SAME = ("fps", "robot", "joint_names", "camera_names")


def check_compatible(sources: Sequence[ReplayBuffer]) -> None:
    """Raise DatasetError naming the store and the field when the sources cannot be one dataset."""
    if not sources:
        raise DatasetError("merge: no source stores given")
    first = sources[0]
    for rb in sources[1:]:
        for f in _SAME:
            a, b = getattr(first.meta, f), getattr(rb.meta, f)
            if a != b:
                raise DatasetError(f"{rb.path}: {f} {b!r} differs from {first.path}'s {a!r}; cannot merge")
        if first.n_episodes and rb.n_episodes and sorted(first.keys) != sorted(rb.keys):
            raise DatasetError(
                f"{rb.path}: keys {rb.keys} differ from {first.path}'s {first.keys}; cannot merge"
            )


def append_episodes(dest: ReplayBuffer, source: ReplayBuffer) -> int:
    """Append every episode of `source` to `dest` (data, instruction, info); returns how many."""
    texts = source.instructions
    for i in range(source.n_episodes):
        dest.add_episode(source.episode(i), instruction=texts[i], info=source.episode_info(i))
    return source.n_episodes


def merge_stores(
    sources: Sequence[str | Path],
    out: str | Path,
    overwrite: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write the episodes of `sources`, in order, to a new store at `out` (atomically).

    The output's metadata is the first source's, with `extra` merged into its `extra` and the
    sources recorded under `extra["merged_from"]`.
    """
    rbs = [ReplayBuffer.open(p) for p in sources]
    check_compatible(rbs)
    m = rbs[0].meta
    meta_extra = {**m.extra, **(extra or {}), "merged_from": [str(p) for p in sources]}
    meta = DatasetMeta(
        fps=m.fps, robot=m.robot, joint_names=list(m.joint_names), camera_names=list(m.camera_names),
        keys=dict(m.keys), extra=meta_extra,
    )  # fmt: skip
    with staged_output(out, overwrite=overwrite) as tmp:
        dest = ReplayBuffer.create(tmp, meta)
        for rb in rbs:
            append_episodes(dest, rb)
    return Path(out)
