"""Errors of the dataset layer. Each names the file (store path + array) and the field at fault."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset store (or an episode handed to a writer) is malformed.

    The message always starts with the file or array it concerns, e.g.
    ``/data/demo.zarr/meta/episode_ends: episode 2 ends at 40, not after episode 1 (ends at 60)``.
    """


class MissingStatsError(KeyError):
    """Normalization was asked for a key that has no statistics (never pass data through silently)."""

    def __str__(self) -> str:
        # KeyError quotes its argument; show the message as written.
        return str(self.args[0]) if self.args else ""
