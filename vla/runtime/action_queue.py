"""The action queue: installed chunks mapped onto control steps, with optional temporal ensembling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class QueuedChunk:
    """A chunk placed on the control timeline.

    actions[i] is the action of step `offset + i`; the chunk serves steps [start, end).
    `exclusive`: a plan the safety gate certified as it is (a cut chunk, a braking plan): it
    replaces everything queued and is never blended with other chunks.
    """

    chunk_id: int
    offset: int
    actions: np.ndarray  # (m, Da)
    start: int
    end: int
    exclusive: bool = False

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
        self.chunks = self._installed(self.chunks, chunk)

    def _installed(self, chunks: list[QueuedChunk], chunk: QueuedChunk) -> list[QueuedChunk]:
        """`chunks` with `chunk` installed (the given QueuedChunks are not modified)."""
        if chunk.end <= chunk.start:
            raise ValueError(f"chunk {chunk.chunk_id}: empty step range [{chunk.start}, {chunk.end})")
        out = []
        for c in chunks:
            if chunk.exclusive or self.ensemble_decay is None or c.exclusive:
                if c.start >= chunk.start:
                    continue
                c = QueuedChunk(
                    c.chunk_id, c.offset, c.actions, c.start, min(c.end, chunk.start), c.exclusive
                )
            if c.end > c.start:
                out.append(c)
        out.append(chunk)
        return out

    def preview(self, step: int, chunk: QueuedChunk) -> np.ndarray:
        """The actions that would run at steps `step`, `step + 1`, ... if `chunk` were installed and
        nothing else arrived: `(n, Da)` until the first step nothing covers (the queue is unchanged).

        This is what the safety gate must certify before `chunk` goes in (steps before `chunk.start`
        still run older chunks, e.g. the committed prefix of real-time chunking; with temporal
        ensembling every step is a blend).
        """
        saved = self.chunks
        self.chunks = self._installed(saved, chunk)
        try:
            out = []
            k = step
            while (got := self.action_at(k)) is not None:
                out.append(got[0])
                k += 1
        finally:
            self.chunks = saved
        return np.stack(out) if out else np.zeros((0, chunk.actions.shape[1]), chunk.actions.dtype)

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
