"""The action queue: installed chunks mapped onto control steps, with optional temporal ensembling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QueuedChunk:
    """A chunk placed on the control timeline.

    actions[i] is the action of step `offset + i`; the chunk serves steps [start, end).
    """

    chunk_id: int
    offset: int
    actions: np.ndarray  # (m, Da)
    start: int
    end: int

    def covers(self, step: int) -> bool:
        return self.start <= step < self.end


class ActionQueue:
    """Chunks on the timeline.

    Without ensembling (decay None) a newly installed chunk replaces older ones from its `start`
    on, so exactly one chunk serves each step. With ensembling every chunk that covers a step
    contributes, weighted exp(-decay * rank), rank 0 = oldest (ACT, Zhao et al. 2023).
    """

    def __init__(self, ensemble_decay: float | None = None) -> None:
        self.ensemble_decay = ensemble_decay
        self.chunks: list[QueuedChunk] = []

    def clear(self) -> None:
        self.chunks.clear()

    def install(self, chunk: QueuedChunk) -> None:
        if chunk.end <= chunk.start:
            raise ValueError(f"chunk {chunk.chunk_id}: empty step range [{chunk.start}, {chunk.end})")
        if self.ensemble_decay is None:
            for c in self.chunks:
                c.end = min(c.end, chunk.start)
        self.chunks = [c for c in self.chunks if c.end > c.start]
        self.chunks.append(chunk)

    def prune(self, step: int) -> None:
        """Drop chunks that serve no step >= `step`."""
        self.chunks = [c for c in self.chunks if c.end > step]

    def action_at(self, step: int) -> tuple[np.ndarray, int, int] | None:
        """(action (Da,), chunk id, index in that chunk) for `step`, or None when nothing covers it.

        With ensembling the id/index are those of the newest contributing chunk.
        """
        cover = [c for c in self.chunks if c.covers(step)]
        if not cover:
            return None
        newest = cover[-1]
        idx = step - newest.offset
        if self.ensemble_decay is None or len(cover) == 1:
            return newest.actions[idx].copy(), newest.chunk_id, idx
        w = np.exp(-self.ensemble_decay * np.arange(len(cover)))
        stacked = np.stack([c.actions[step - c.offset] for c in cover]).astype(np.float64)
        action = (w[:, None] * stacked).sum(0) / w.sum()
        return action.astype(newest.actions.dtype), newest.chunk_id, idx

    def remaining(self, step: int) -> int:
        """Number of consecutive steps from `step` on that some chunk covers."""
        n = 0
        while any(c.covers(step + n) for c in self.chunks):
            n += 1
        return n

    def committed(self, step: int, n: int) -> np.ndarray | None:
        """The actions of steps step .. step+n-1 (fewer if the queue ends earlier); None if none."""
        out = []
        for k in range(step, step + n):
            got = self.action_at(k)
            if got is None:
                break
            out.append(got[0])
        return np.stack(out) if out else None
