"""The task group's files (`configs/task/<name>.yaml`) read by entry points that handle several tasks
at once (`task=all`) or need a task's env outside their own composed config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from vla.paths import config_dir


def task_config(name: str, where: str = "task") -> dict[str, Any]:
    """configs/task/<name>.yaml resolved to a dict; ValueError naming `where` and the path when absent."""
    path = Path(config_dir()) / "task" / f"{name}.yaml"
    if not path.is_file():
        raise ValueError(f"{where}: no {path} for task {name!r}")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(cfg, dict)
    return cfg
