"""DAgger's aggregation: a round's recorded episodes -> dataset episodes with their provenance.

Either labelling (`vla.dagger.branches.BranchRecorder` forks, `vla.dagger.labeler.LabelRecorder`
one-step labels) becomes a list of ``(data, instruction, success, provenance)``; `append_episodes`
writes them to the dataset as ordinary episodes with ``info.source = "dagger"`` and
``info.dagger = {round, beta, policy, out_dir, labels, ...}``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from vla.dagger.rounds import DaggerConfig


def labelled_episodes(
    rec: Any, res: dict[str, Any]
) -> list[tuple[dict[str, np.ndarray], str, bool, dict[str, Any]]]:
    """The recorder's episodes as (data, instruction, success, provenance), either labelling."""
    from vla.dagger.branches import BranchRecorder

    eps = res["episodes"]
    if isinstance(rec, BranchRecorder):
        return [
            (
                b.data,
                b.instruction,
                b.success,  # the expert's, from the fork
                {
                    "labels": "branch",
                    **b.info,
                    "rollout_seed": int(eps[b.info["rollout_index"]]["seed"]),
                    "rollout_success": bool(eps[b.info["rollout_index"]]["success"]),
                },
            )
            for b in rec.branches
        ]
    return [
        (
            data,
            instruction,
            bool(ep["success"]),
            {"labels": "step", "rollout_seed": int(ep["seed"]), "replans": replans},
        )
        for (data, instruction, replans), ep in zip(rec.episodes, eps)
    ]


def append_episodes(
    dataset: str,
    episodes: list[tuple[dict[str, np.ndarray], str, bool, dict[str, Any]]],
    r: int,
    beta: float,
    ckpt: Path,
    cfg: DaggerConfig,
) -> list[int]:
    """Append the labelled episodes (`labelled_episodes`) to the dataset; returns [first, end) of their indices."""
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
