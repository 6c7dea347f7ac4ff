"""What a check returns and how checks are registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from trainatlas.tools.answers import Issue
from trainatlas.tools.rundata import RunData

SEVERITY_WEIGHT: dict[str, int] = {"critical": 30, "warning": 10, "info": 2}
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class MissingData(Exception):
    """Raised by a check that lacks the data it needs: it is listed as skipped, never guessed."""


@dataclass(frozen=True)
class Check:
    code: str
    family: str
    fn: Callable[[RunData], Issue | list[Issue] | None]
    doc: str


CHECKS: dict[str, Check] = {}


def check(code: str, family: str) -> Callable[[Callable[[RunData], Any]], Callable[[RunData], Any]]:
    """Register ``fn`` as the check for ``code``; its docstring is its documentation."""

    def register(fn: Callable[[RunData], Any]) -> Callable[[RunData], Any]:
        if code in CHECKS:
            raise ValueError(f"two checks for {code}")
        CHECKS[code] = Check(code, family, fn, (fn.__doc__ or "").strip())
        return fn

    return register


def need(condition: bool, reason: str) -> None:
    if not condition:
        raise MissingData(reason)


def fmt(value: float) -> str:
    """A number as people write it: 0.0123, 1.2e-06, 4.5e+26."""
    if value != value:  # NaN
        return "NaN"
    return f"{value:.3g}"
