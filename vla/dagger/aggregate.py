"""DAgger's aggregation: a round's recorded episodes -> dataset episodes with their provenance.

Either recorder (`vla.dagger.branches.BranchRecorder` forks, `vla.dagger.labeler.LabelRecorder`
one-step labels) gives a list of ``(data, instruction, success, provenance)``; `append_episodes`
writes them to the dataset as ordinary episodes with ``info.source = "dagger"`` and
``info.dagger = {round, beta, policy, out_dir, labels, ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vla.dagger.rounds import DaggerConfig


# One dataset episode: (data {key: (T, ...)}, instruction, success, provenance for info.dagger); each
# recorder makes them with its `dataset_episodes(res)`.
DatasetEpisode = tuple[dict[str, np.ndarray], str, bool, dict[str, Any]]


def append_episodes(
    dataset: str,
    episodes: list[DatasetEpisode],
    r: int,
    beta: float,
    ckpt: Path,
    cfg: DaggerConfig,
) -> list[int]:
    """Append a recorder's `dataset_episodes` to the dataset; returns [first, end) of their indices."""
    from vla.data import ReplayBuffer

    rb = ReplayBuffer.open(dataset, mode="a")
    missing = sorted(set(rb.keys) - {*episodes[0][0]}) if episodes else []
    if missing:
        raise ValueError(
            f"{dataset}: holds keys {sorted(rb.keys)} but the rollouts record {sorted(episodes[0][0])} "
            f"(missing {missing}); give the dataset the policy was trained on"
        )
    first = rb.n_episodes
    for data, instruction, success, prov in episodes:
        info = {
            "task": cfg.task,
            "seed": prov["rollout_seed"],
            "success": success,
            "length": len(data["action"]),
            "source": "dagger",
            "dagger": {"round": r, "beta": beta, "policy": str(ckpt), "out_dir": cfg.out_dir, **prov},
        }
        rb.add_episode({k: v for k, v in data.items() if k in rb.keys}, instruction=instruction, info=info)
    return [first, rb.n_episodes]
