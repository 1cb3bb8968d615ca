"""Where importers put episodes: a native store (staged, then moved into place) or nowhere (dry run)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vla.convert.errors import ConvertError
from vla.data import DatasetError, DatasetMeta, ReplayBuffer
from vla.data.staging import check_destination, staged_output


class EpisodeSink:
    """Collects converted episodes: appends them to a `ReplayBuffer`, or (dry run) only checks them.

    Every episode must have the same keys, per-frame shapes and dtypes as the first; a mismatch raises
    ConvertError naming the episode's source (the dry run catches it too, not only the real run).
    """

    def __init__(self, path: Path | None, meta: DatasetMeta) -> None:
        self.meta = meta
        self.rb: ReplayBuffer | None = ReplayBuffer.create(path, meta) if path is not None else None
        self._first: dict[str, tuple[tuple[int, ...], np.dtype]] | None = None
        self._first_source = ""
        self.n_episodes = 0
        self.n_frames = 0

    def add(
        self, data: Mapping[str, np.ndarray], instruction: str, info: Mapping[str, Any], source: str
    ) -> None:
        """data: {key: (T, ...)} (``image_<cam>`` uint8 (T, H, W, 3)); `source` names the input for errors."""
        sig = {k: (tuple(np.shape(v)[1:]), np.asarray(v).dtype) for k, v in data.items()}
        if self._first is None:
            self._first, self._first_source = sig, source
        elif sig.keys() != self._first.keys():
            raise ConvertError(
                f"{source}: keys {sorted(sig)} differ from the first episode's {sorted(self._first)} "
                f"({self._first_source})"
            )
        else:
            for k, (shape, _) in sig.items():
                if shape != self._first[k][0]:
                    raise ConvertError(
                        f"{source}: {k}: per-frame shape {shape} differs from the first episode's "
                        f"{self._first[k][0]} ({self._first_source}); one dataset holds one shape per key"
                    )
        if self.rb is not None:
            self.rb.add_episode(data, instruction=instruction, info=dict(info))
        self.n_episodes += 1
        self.n_frames += len(next(iter(data.values())))


@contextlib.contextmanager
def destination(out: str | Path, overwrite: bool, dry_run: bool) -> Iterator[Path | None]:
    """Yield the path to create the store at (a staged temporary), or None for a dry run.

    The staged store is moved into place only when the project's validator accepts it
    (`vla.data.staging.check_staged`): an importer never writes a store `vla-dataset validate` or
    `info` would reject; it raises ConvertError with the validator's first problem instead.
    A dry run still refuses an existing `out` without `overwrite`, so it predicts the real run.
    """
    if dry_run:
        check_destination(out, overwrite)
        yield None
        return
    try:
        with staged_output(out, overwrite) as tmp:
            yield tmp
    except ConvertError:
        raise
    except DatasetError as e:  # the validator's refusal (and any dataset error of the writer)
        raise ConvertError(str(e)) from None
