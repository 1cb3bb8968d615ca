"""`ReplaceableNetworks`: the public seam an accelerator uses to swap a module's per-call networks.

A class lists its networks in `network_names` (methods called through instance lookups); an
accelerator (`vla.fastpath`: CUDA graphs, torch.compile) gives replacements with the same signature
and results through `replace_networks` and takes them back with `restore_networks`, without touching
private names. Used by the policy heads and by `vla.encoders.FrozenEncoder`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


class ReplaceableNetworks:
    network_names: tuple[str, ...] = ()

    def networks(self) -> dict[str, Callable[..., Any]]:
        """The object's own networks by name (bound methods, never a replacement)."""
        return {n: getattr(type(self), n).__get__(self, type(self)) for n in self.network_names}

    def replace_networks(self, fns: Mapping[str, Callable[..., Any]]) -> None:
        """Call `fns[name]` (same signature and result) instead of the network `name` until
        `restore_networks`; names outside `network_names` raise ValueError."""
        unknown = sorted(set(fns) - set(self.network_names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__}: no networks {unknown} to replace; it has {list(self.network_names)}"
            )
        for n, fn in fns.items():
            self.__dict__[n] = fn  # an instance attribute shadows the method

    def restore_networks(self, names: Iterable[str] | None = None) -> None:
        """Undo `replace_networks` (for `names`, default all): the object's own networks run again."""
        for n in self.network_names if names is None else names:
            self.__dict__.pop(n, None)

    def replaced_networks(self) -> list[str]:
        """Names of the networks currently replaced."""
        return [n for n in self.network_names if n in self.__dict__]
