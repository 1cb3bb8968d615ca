"""Progress that behaves in a terminal and in a log file.

`progress_bar(...)` takes tqdm's arguments. On a terminal it is a tqdm bar; when stderr is a file
or a pipe (CI logs, `nohup`, `| tee`) it prints one plain line every `VLA_PROGRESS_INTERVAL`
seconds (default 30) and a last one at the end, instead of thousands of `\\r` updates on one line.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm

DEFAULT_INTERVAL_S = 30.0


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("VLA_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S)))
    except ValueError:
        return DEFAULT_INTERVAL_S


class LineProgress(tqdm):
    """tqdm that writes a whole line per refresh (rate-limited by `mininterval`), no carriage returns."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        text = self.__str__() if msg is None else msg
        if text.strip():  # tqdm clears a bar with an empty message: nothing to clear in a log
            self._last_line = text.rstrip()
            self.fp.write(text.rstrip() + "\n")
            self.fp.flush()
        return True

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        # A postfix change is no reason for a line of its own: the next timed line shows it.
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)

    def close(self) -> None:
        if self.disable:
            return
        if self.__str__().rstrip() != getattr(self, "_last_line", None):
            self.display()  # the final count and postfix, once
        # tqdm's own close would add a blank line (it ends a terminal bar with a newline).
        self.disable = True


def is_terminal(stream: Any = None) -> bool:
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def progress_bar(*args: Any, **kwargs: Any) -> tqdm:
    """A tqdm bar on a terminal, periodic plain lines otherwise (same arguments as `tqdm`)."""
    if is_terminal(kwargs.get("file")):
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(*args, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs["mininterval"] = _interval()
    kwargs["maxinterval"] = max(kwargs["mininterval"], 1.0)
    kwargs.setdefault("file", sys.stderr)
    kwargs["leave"] = True  # the last line is the summary a log keeps
    kwargs.setdefault(
        "bar_format",
        "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%) [{elapsed} elapsed, {remaining} left, "
        "{rate_fmt}]{postfix}"
        if (kwargs.get("total") or _len(args)) is not None
        else "{desc}: {n_fmt} {unit} [{elapsed} elapsed, {rate_fmt}]{postfix}",
    )
    return LineProgress(*args, **kwargs)


def _len(args: tuple[Any, ...]) -> int | None:
    try:
        return len(args[0]) if args else None
    except TypeError:
        return None
