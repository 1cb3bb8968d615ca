"""Shared fixtures: a tiny pick_cube dataset (3 expert episodes, 32 px images), a tiny random SigLIP
checkpoint (the encoder tests' builder), and a debug-trained run of each head (built once)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parents[1]
IMAGE_SIZE = 32


def _tiny_encoders():
    spec = importlib.util.spec_from_file_location("tiny_encoders", TESTS / "encoders" / "tiny_encoders.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


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


def train_overrides(dataset: Path, encoder_dir: Path) -> list[str]:
    return [
        "experiment=debug",
        f"dataset={dataset}",
        f"encoder.model={encoder_dir}",
        f"task.env.image_size={IMAGE_SIZE}",
        "task.env.max_steps=12",
    ]


def compose(name: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vla.paths import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=overrides)


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
