"""Name -> (config class, model class) registry. Configs and checkpoints pick heads by name.

Config classes are light and imported eagerly; the model module (which may import diffusers) is
imported only when a policy of that name is built.
"""

from __future__ import annotations

import importlib
from typing import Any

from policies.act.configuration import TransformerConfig
from policies.base import Policy
from policies.config import PolicyConfig
from policies.diffusion.configuration import DiffusionConfig

# name -> (config class, "module:Class" of the model)
_REGISTRY: dict[str, tuple[type[PolicyConfig], str]] = {
    DiffusionConfig.name: (DiffusionConfig, "policies.diffusion.modeling:DiffusionPolicy"),
    TransformerConfig.name: (TransformerConfig, "policies.act.modeling:TransformerPolicy"),
}


def policy_names() -> list[str]:
    """Registered head names, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> tuple[type[PolicyConfig], str]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown policy {name!r}; registered: {policy_names()}")
    return _REGISTRY[name]


def config_class(name: str) -> type[PolicyConfig]:
    """The config dataclass of head `name`."""
    return _entry(name)[0]


def make_config(name: str, values: dict[str, Any] | None = None, source: str = "config") -> PolicyConfig:
    """Build head `name`'s config from a plain dict (unknown keys raise, naming `source`)."""
    return config_class(name).from_dict(dict(values or {}), source=source)


def make_policy(name: str, config: PolicyConfig | None = None) -> Policy:
    """Build head `name` from its config (default config when None)."""
    cfg_cls, target = _entry(name)
    config = cfg_cls() if config is None else config
    if type(config) is not cfg_cls:
        raise TypeError(f"policy {name!r} needs a {cfg_cls.__name__}, got {type(config).__name__}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(config)
