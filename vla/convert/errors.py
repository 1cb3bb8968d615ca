"""The error every importer raises for bad input: it names the file, the topic/field and the timestamp."""

from __future__ import annotations

from vla.data.errors import DatasetError


class ConvertError(DatasetError):
    """A source dataset (bag, HDF5 file, LeRobot shard) cannot be converted as configured.

    The message starts with the file at fault, then the topic or field, then (where there is one) the
    timestamp, e.g. ``bags/ep0 (ep0_0.mcap): topic /joint_states: header stamp 12.350 s (message 41)
    is earlier than the previous one 12.360 s``.
    """


def fmt_stamp(ns: int) -> str:
    """Nanoseconds since the epoch -> ``"1700000000.123456789 s"`` (exact, for error messages)."""
    ns = int(ns)
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    return f"{sign}{ns // 1_000_000_000}.{ns % 1_000_000_000:09d} s"
