"""Torch CPU threads that follow the cores other processes leave free (training on a shared CPU).

With 2 intra-op threads on a 2-core machine, one competing process made training 3x slower here
(`python -m benchmarks.bench_threads`; ~50x in an earlier measurement): OpenMP's workers spin at
every barrier, and a worker that lost its core holds up every step. One thread is unaffected by a
single competitor but ~30% slower on an idle machine. So neither fixed setting is right.

`ThreadGovernor` measures. It times the training steps in windows; after a window with the
current setting it compares with the latest window of the other setting and keeps the faster one,
probing the other setting for one window every `probe_every` steps (the machine's load changes)
and at once when the current setting's steps get `slowdown` times slower than its last window.
Probing costs one window in `probe_every` steps (5% by default) when nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


class ThreadGovernor:
    """Chooses between `max_threads` and 1 torch thread from measured step times.

    Args:
        max_threads: the configured thread count (the governor is a no-op when it is 1).
        window: steps per measurement (their median is the window's step time).
        probe_every: steps between probes of the setting not in use.
        slowdown: a window this many times slower than the last one of the same setting triggers
            a probe at once (another process started).
        set_threads: how to apply a thread count (default `torch.set_num_threads`).
        log: where a switch is reported.
    """

    def __init__(
        self,
        max_threads: int,
        window: int = 20,
        probe_every: int = 400,
        slowdown: float = 1.5,
        set_threads: Callable[[int], None] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if window < 2 or probe_every < 2 * window:
            raise ValueError(
                f"ThreadGovernor: need window >= 2 and probe_every >= 2 * window, got {window}, {probe_every}"
            )
        if set_threads is None:
            import torch

            set_threads = torch.set_num_threads
        self.max_threads = int(max_threads)
        self.window, self.probe_every, self.slowdown = int(window), int(probe_every), float(slowdown)
        self._set, self._log = set_threads, log or (lambda m: None)
        self.threads = self.max_threads
        self.chosen = self.max_threads  # the setting to return to after a probe
        self.last: dict[int, float] = {}  # threads -> median step time [s] of its latest window
        self._times: list[float] = []
        self._since_probe = 0
        self._probing = False
        self.switches = 0

    @property
    def active(self) -> bool:
        return self.max_threads > 1

    def _apply(self, n: int) -> None:
        if n != self.threads:
            self.threads = n
            self._set(n)

    def tick(self, seconds: float) -> None:
        """Report one training step's duration [s]."""
        if not self.active:
            return
        self._times.append(float(seconds))
        self._since_probe += 1
        if len(self._times) < self.window:
            return
        median = float(np.median(self._times))
        self._times = []
        n, other = self.threads, (1 if self.threads == self.max_threads else self.max_threads)
        previous = self.last.get(n)
        self.last[n] = median
        if self._probing:
            self._probing = False
            best = min(self.last, key=self.last.get)  # type: ignore[arg-type]
            if best != self.chosen:
                self.switches += 1
                self._log(
                    f"torch threads {self.chosen} -> {best}: {self.last[best] * 1e3:.0f} vs "
                    f"{self.last[self.chosen] * 1e3:.0f} ms per step"
                )
            self.chosen = best
            self._apply(best)
            return
        slower = previous is not None and median > self.slowdown * previous
        if other not in self.last or slower or self._since_probe >= self.probe_every:
            self._probing = True
            self._since_probe = 0
            self._apply(other)
