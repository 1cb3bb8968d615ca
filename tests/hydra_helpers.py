"""Compose an entry point's Hydra config in process (tests import this; it is not a conftest)."""

from __future__ import annotations


def compose(name: str, overrides: list[str]):
    """`configs/<name>.yaml` with `overrides`, as the entry point would see it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from vla.paths import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return hydra_compose(config_name=name, overrides=overrides)
