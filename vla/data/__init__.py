"""Datasets: the native zarr v3 episode store, training windows and normalization.

Format specification: `docs/dataset_format.md`. Modules: `format` (names, metadata, storage choices),
`replay_buffer` (writer/reader), `validate` (structure and chunk checks), `sampler` (training
windows), `normalize` (statistics, `Normalizer`). Importers of other formats live in `vla.convert`.
"""

from vla.data.errors import DatasetError, MissingStatsError
from vla.data.format import FORMAT_NAME, FORMAT_VERSION, DatasetMeta, KeySpec
from vla.data.normalize import Normalizer, compute_stats
from vla.data.replay_buffer import ReplayBuffer
from vla.data.sampler import SequenceDataset, pad_history, split_episodes, window_frames, window_indices
from vla.data.validate import Problem, validate_store

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "DatasetError",
    "DatasetMeta",
    "KeySpec",
    "MissingStatsError",
    "Normalizer",
    "Problem",
    "ReplayBuffer",
    "SequenceDataset",
    "compute_stats",
    "pad_history",
    "split_episodes",
    "validate_store",
    "window_frames",
    "window_indices",
]
