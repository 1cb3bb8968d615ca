"""Shared settings of the pipeline tests (imported by their conftest and tests; unique module name)."""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 32


def train_overrides(dataset: Path, encoder_dir: Path) -> list[str]:
    """vla-train overrides for a seconds-long debug run on the tiny dataset and encoder."""
    return [
        "experiment=debug",
        f"dataset={dataset}",
        f"encoder.model={encoder_dir}",
        f"task.env.image_size={IMAGE_SIZE}",
        "task.env.max_steps=12",
    ]
