"""Resampling of irregularly stamped streams onto the control-rate clock, with the error it costs.

Two methods:

- ``nearest``: each frame takes the message whose stamp is closest to the frame time (ties: earlier);
- ``zoh`` (zero-order hold): each frame takes the latest message at or before the frame time, so a
  frame never sees the future (what a controller running at that instant would have seen).

`align` returns, per frame, the index of the chosen message and the signed error ``t_frame - t_msg``;
`AlignmentStats` summarises it for the report (messages used, dropped, repeated, error mean/max).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

AlignMethod = Literal["nearest", "zoh"]
ALIGN_METHODS: tuple[str, ...] = ("nearest", "zoh")


# A frame this close after the end time (as a fraction of the frame period) still belongs to the
# recording. Stamps are rounded or truncated to integer nanoseconds (float seconds, ``int(t * 1e9)``,
# 30 Hz periods), so a stream whose last message is "at" the last frame time can be a few ns to us
# early; without the slack that whole frame was dropped (0-5.95 s at 20 Hz gave 119 frames, not 120).
CLOCK_END_TOLERANCE = 0.01


def frame_clock(t_start_ns: int, t_end_ns: int, fps: float) -> np.ndarray:
    """int64 (T,) frame times every 1/fps seconds from `t_start_ns` through `t_end_ns`.

    Both ends are included: a recording whose streams all have messages at 0 and 5.95 s gives 120
    frames at 20 Hz. A frame up to `CLOCK_END_TOLERANCE` of a period after `t_end_ns` still counts (its
    messages are at most that far away: stamp rounding, not missing data).
    """
    if t_end_ns < t_start_ns:
        return np.zeros(0, np.int64)
    period = 1e9 / fps
    n = int(np.floor((int(t_end_ns) - int(t_start_ns)) / period + CLOCK_END_TOLERANCE)) + 1
    # Round each time from the start (not by accumulating a rounded period), so no drift builds up.
    return int(t_start_ns) + np.rint(np.arange(n) * period).astype(np.int64)


def align(stamps_ns: np.ndarray, grid_ns: np.ndarray, method: AlignMethod) -> tuple[np.ndarray, np.ndarray]:
    """Pick one message per frame.

    stamps_ns: int64 (M,) non-decreasing message stamps (M >= 1).
    grid_ns: int64 (T,) frame times.
    Returns (idx int64 (T,), err_ns int64 (T,)) with ``err = grid - stamps[idx]``. With ``zoh`` a frame
    before the first message takes message 0 (the caller chooses the clock so this does not happen).
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    grid = np.asarray(grid_ns, dtype=np.int64)
    if stamps.size == 0:
        raise ValueError("align: no messages")
    if method == "zoh":
        idx = np.searchsorted(stamps, grid, side="right") - 1
        idx = np.clip(idx, 0, stamps.size - 1)
    elif method == "nearest":
        right = np.clip(np.searchsorted(stamps, grid, side="left"), 0, stamps.size - 1)
        left = np.clip(right - 1, 0, stamps.size - 1)
        take_left = np.abs(grid - stamps[left]) <= np.abs(stamps[right] - grid)
        idx = np.where(take_left, left, right)
    else:
        raise ValueError(f"align: method must be one of {ALIGN_METHODS}, got {method!r}")
    return idx.astype(np.int64), grid - stamps[idx]


@dataclass
class AlignmentStats:
    """What resampling one stream onto the frame clock did (one row of the conversion report).

    n_messages: messages of the stream inside the episode's time range (all of them for fixed-rate sources).
    rate_hz: measured message rate (messages - 1) / (last - first stamp); 0 with one message.
    n_used: distinct messages that some frame took.
    n_dropped: messages no frame took (down-sampling, or outside the common time range).
    n_repeated: frames that re-used a message an earlier frame already took (up-sampling / gaps).
    err_mean_ms / err_max_ms: mean and max of |t_frame - t_msg| in milliseconds.
    """

    name: str
    source: str
    msgtype: str
    n_messages: int
    rate_hz: float
    n_used: int
    n_dropped: int
    n_repeated: int
    err_mean_ms: float
    err_max_ms: float
    time_source: str = ""

    @classmethod
    def from_alignment(
        cls,
        name: str,
        source: str,
        msgtype: str,
        stamps_ns: np.ndarray,
        idx: np.ndarray,
        err_ns: np.ndarray,
        time_source: str = "",
    ) -> AlignmentStats:
        n = len(stamps_ns)
        span = (int(stamps_ns[-1]) - int(stamps_ns[0])) / 1e9 if n > 1 else 0.0
        used = int(np.unique(idx).size)
        abs_ms = np.abs(np.asarray(err_ns, dtype=np.float64)) / 1e6
        return cls(
            name=name,
            source=source,
            msgtype=msgtype,
            n_messages=n,
            rate_hz=(n - 1) / span if span > 0 else 0.0,
            n_used=used,
            n_dropped=n - used,
            n_repeated=len(idx) - used,
            err_mean_ms=float(abs_ms.mean()) if abs_ms.size else 0.0,
            err_max_ms=float(abs_ms.max()) if abs_ms.size else 0.0,
            time_source=time_source,
        )

    @classmethod
    def identity(cls, name: str, source: str, msgtype: str, n: int, fps: float) -> AlignmentStats:
        """A stream already on the frame clock (HDF5, LeRobot low-dim columns): nothing resampled."""
        return cls(name, source, msgtype, n, float(fps), n, 0, 0, 0.0, 0.0, "frame index")

    def to_json(self) -> dict[str, object]:
        return dict(self.__dict__)
