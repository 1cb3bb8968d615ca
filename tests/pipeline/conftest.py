"""Shared fixtures: a tiny pick_cube dataset (3 expert episodes, 32 px images), a tiny random SigLIP
checkpoint (the encoder tests' builder), and a debug-trained run of each head (built once)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra_helpers import compose
from module_loader import load_helper
from pipeline_helpers import IMAGE_SIZE, train_overrides


def _tiny_encoders():
    return load_helper("tiny_encoders", "encoders/tiny_encoders.py")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_encoders().make_tiny("siglip", tmp_path_factory.mktemp("pipeline_encoder"))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vla.collect import CollectConfig, collect

    out = tmp_path_factory.mktemp("pipeline_data") / "pick_cube.zarr"
    collect(
        CollectConfig(
            task="pick_cube",
            n_episodes=3,
            out=str(out),
            env_overrides={"image_size": IMAGE_SIZE},
            progress=False,
        )
    )
    return out


@pytest.fixture(scope="session")
def debug_runs(tmp_path_factory, tiny_dataset: Path, tiny_encoder_dir: Path) -> dict[str, Path]:
    """vla-train experiment=debug for each head (in process, through Hydra's compose API)."""
    from vla.cli import train as train_cli

    runs = {}
    for policy in ("diffusion", "transformer"):
        run_dir = tmp_path_factory.mktemp(f"run_{policy}")
        cfg = compose("train", [*train_overrides(tiny_dataset, tiny_encoder_dir), f"policy={policy}"])
        train_cli.run(cfg, run_dir)
        runs[policy] = run_dir
    return runs
