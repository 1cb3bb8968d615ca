"""Batches whose order is a function of (seed, step), so a resumed run sees the same data.

`ResumableLoader(dataset, batch_size, seed).iter_from(step)` yields the batches of steps
step, step + 1, ... forever: epoch e visits the dataset in the permutation seeded by (seed, e).
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


@runtime_checkable
class StepIterable(Protocol):
    """A data source the trainer can resume: iter_from(step) yields the batches of step, step+1, ..."""

    def iter_from(self, step: int) -> Iterator[dict[str, Any]]: ...


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The visiting order of epoch `epoch` (independent of any global RNG)."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


class _StepBatchSampler(Sampler[list[int]]):
    """Infinite sampler of index lists starting at a given step."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start_step: int,
        shuffle: bool,
        drop_last: bool,
        part: slice = slice(None),
    ) -> None:
        self.n, self.bs, self.seed, self.start = n, batch_size, seed, start_step
        self.shuffle, self.drop_last, self.part = shuffle, drop_last, part
        self.per_epoch = n // batch_size if drop_last else -(-n // batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        step = self.start
        epoch, pos = divmod(step, self.per_epoch)
        while True:
            order = epoch_permutation(self.n, self.seed, epoch) if self.shuffle else torch.arange(self.n)
            for k in range(pos, self.per_epoch):
                yield order[k * self.bs : (k + 1) * self.bs][self.part].tolist()
            epoch, pos = epoch + 1, 0


def _ignore_sigint(worker_id: int) -> None:
    """Worker processes ignore Ctrl-C (the terminal sends it to the whole process group): the
    trainer finishes its step and checkpoints; a worker that died of it would fail the next batch."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ResumableLoader:
    """Wraps a map-style dataset in a DataLoader whose batch order depends only on (seed, step).

    Exact resume also needs the dataset's `__getitem__` to be deterministic per index (random
    augmentation inside worker processes is seeded per iterator, not per step).

    part: distributed training: this process's slice of each global batch of `batch_size` indices
        (`DistContext.shard_slice`); every rank draws the same global batch and keeps its part.
    """

    def __init__(
        self,
        dataset: Dataset | Sequence,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        part: slice = slice(None),
    ) -> None:
        n = len(dataset)  # type: ignore[arg-type]
        if batch_size < 1:
            raise ValueError(f"ResumableLoader.batch_size must be >= 1, got {batch_size}")
        if n == 0 or (drop_last and n < batch_size):
            raise ValueError(
                f"ResumableLoader: dataset has {n} samples, fewer than batch_size={batch_size} with drop_last"
            )
        self.dataset, self.batch_size, self.seed = dataset, batch_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.num_workers, self.collate_fn, self.pin_memory = num_workers, collate_fn, pin_memory
        self.part = part

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.dataset)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def iter_from(self, step: int) -> Iterator[dict[str, Any]]:
        sampler = _StepBatchSampler(
            len(self.dataset),
            self.batch_size,
            self.seed,
            step,
            self.shuffle,
            self.drop_last,  # type: ignore[arg-type]
            self.part,
        )
        loader = DataLoader(
            self.dataset,  # type: ignore[arg-type]
            batch_sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            worker_init_fn=_ignore_sigint if self.num_workers > 0 else None,
            # Own generator: creating the iterator must not consume the global RNG (exact resume).
            generator=torch.Generator().manual_seed(self.seed),
        )
        return iter(loader)
