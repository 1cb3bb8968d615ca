"""Tiny saved checkpoints of every family, shared by the encoder tests (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_encoders import make_tiny

from vla.encoders import FAMILIES


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_encoders")
    return {f: make_tiny(f, root) for f in FAMILIES}
