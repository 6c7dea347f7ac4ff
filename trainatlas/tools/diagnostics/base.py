"""What a check returns and how checks are registered."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from trainatlas.tools.rundata import RunData

Severity = Literal["critical", "warning", "info"]
SEVERITY_WEIGHT: dict[str, int] = {"critical": 30, "warning": 10, "info": 2}
SEVERITY_ORDER: dict[str, int] = {"critical": 0, "warning": 1, "info": 2}


class Issue(BaseModel):
    """One problem found in a run, with the figures it rests on and what to do about it."""

    code: str = Field(description="stable snake_case id, e.g. loss_divergence")
    severity: Severity
    title: str
    message: str = Field(description="plain words with the numbers")
    evidence: dict[str, Any] = Field(default_factory=dict, description="the figures and steps it rests on")
    first_step: int | None = Field(default=None, description="step where the problem began")
    fix_prompt: str = Field(description="an instruction an agent can act on")


class Skipped(BaseModel):
    code: str
    reason: str


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
