"""Runtime test fixtures: a fast simulator environment."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

import sim


@pytest.fixture
def make_env() -> Iterator[Callable[..., Any]]:
    """pick_cube without camera rendering (the runtime never looks at pixels)."""
    envs = []

    def make(**overrides: Any) -> Any:
        env = sim.make("pick_cube", render_images=False, **overrides)
        envs.append(env)
        return env

    yield make
    for env in envs:
        env.close()


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny heads are fastest on one thread, and the control loop's worker thread must not fight
    intra-op threads for the 2 shared cores (that costs seconds per chunk under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
