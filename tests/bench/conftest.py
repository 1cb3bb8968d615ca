"""vla-bench fixtures: a tiny random SigLIP checkpoint on disk (the encoder tests' builder)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from module_loader import load_helper


@pytest.fixture(scope="session")
def tiny_siglip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_helper("tiny_encoders", "encoders/tiny_encoders.py").make_tiny(
        "siglip", tmp_path_factory.mktemp("bench_encoder")
    )


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)
