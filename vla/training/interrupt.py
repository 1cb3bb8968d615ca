"""Ctrl-C during training: finish the step in progress, checkpoint it, then stop (`StopRequest`)."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class StopRequest:
    """SIGINT -> a flag the loop reads between steps, so a step is never cut in half (a checkpoint
    of a half-applied optimizer step would not resume to the uninterrupted run). A second SIGINT
    raises KeyboardInterrupt at once. Installed for the duration of the `with` only on the main
    thread (signal handlers live there), and not where SIGINT is ignored or handled outside Python.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            previous = signal.getsignal(signal.SIGINT)
            if previous not in (signal.SIG_IGN, None):
                self._previous = previous
                signal.signal(signal.SIGINT, self._handle)
                self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt("interrupted twice: stopped without saving the step in progress")
        self.requested = True
        # os.write: a signal handler must not re-enter a buffered stream (tqdm may be writing).
        os.write(
            2,
            b"\n[train] interrupt: finishing the current step and saving a checkpoint "
            b"(Ctrl-C again to stop at once, without it)\n",
        )
