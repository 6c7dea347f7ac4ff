"""Channels that switch themselves off on their first internal error, so recording never breaks
or slows the training it watches."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

T = TypeVar("T")


class Channels:
    """The set of recording channels still on. A failing channel warns once and is switched off."""

    def __init__(self, names: Iterable[str]) -> None:
        self.enabled: set[str] = set(names)
        self.failures: dict[str, str] = {}

    def __contains__(self, name: str) -> bool:
        return name in self.enabled

    def disable(self, name: str, exc: BaseException) -> None:
        if name not in self.enabled:
            return
        self.enabled.discard(name)
        self.failures[name] = repr(exc)
        warnings.warn(
            f"trainatlas: the {name!r} channel hit an internal error and is switched off "
            f"({exc!r}); training continues unaffected",
            RuntimeWarning,
            stacklevel=3,
        )

    def run(self, name: str, fn: Callable[..., T], *args: Any) -> T | None:
        """Call ``fn`` if the channel is on; on an exception switch the channel off."""
        if name not in self.enabled:
            return None
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - any failure of ours must not reach the training
            self.disable(name, exc)
            return None
