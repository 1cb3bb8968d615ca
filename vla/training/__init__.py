"""Training library: one loop for every policy head, LR schedule, resumable data order, checkpoints.

`load_policy` (checkpoint.py) rebuilds a trained policy without importing the loop.
"""

from vla.training.checkpoint import (
    CheckpointError,
    CheckpointFileMissingError,
    CheckpointInfo,
    latest_checkpoint,
    load_policy,
    save_checkpoint,
)
from vla.training.config import TrainConfig
from vla.training.loader import ResumableLoader, StepIterable
from vla.training.loop import TrainResult, train
from vla.training.optim import make_optimizer, seed_everything
from vla.training.schedule import lr_at

__all__ = [
    "CheckpointError",
    "CheckpointFileMissingError",
    "CheckpointInfo",
    "ResumableLoader",
    "StepIterable",
    "TrainConfig",
    "TrainResult",
    "latest_checkpoint",
    "load_policy",
    "lr_at",
    "make_optimizer",
    "save_checkpoint",
    "seed_everything",
    "train",
]
