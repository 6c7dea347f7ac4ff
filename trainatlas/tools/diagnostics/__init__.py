"""The diagnostic checks: one registered function per code (see ``CHECKS``), run by ``run_checks``."""

from __future__ import annotations

import warnings

from trainatlas.tools.answers import Issue, Skipped
from trainatlas.tools.diagnostics import activations, gradients, loss, sustainability, system  # noqa: F401
from trainatlas.tools.diagnostics.base import (
    CHECKS,
    SEVERITY_ORDER,
    SEVERITY_WEIGHT,
    MissingData,
)
from trainatlas.tools.rundata import RunData

__all__ = ["CHECKS", "health_score", "run_checks"]


def run_checks(data: RunData, codes: list[str] | None = None) -> tuple[list[Issue], list[Skipped]]:
    """Run the chosen checks (all by default). A check without its data is skipped, never guessed;
    a check that fails is skipped with a warning, so one bug never hides the other findings."""
    unknown = sorted(set(codes or []) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown check code(s) {', '.join(unknown)}; known: {', '.join(sorted(CHECKS))}")
    issues: list[Issue] = []
    skipped: list[Skipped] = []
    for code in codes or list(CHECKS):
        try:
            found = CHECKS[code].fn(data)
        except MissingData as exc:
            skipped.append(Skipped(code=code, reason=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - report, do not crash the diagnosis
            warnings.warn(
                f"trainatlas: check {code} failed on run {data.run_id}: {exc!r}", RuntimeWarning, stacklevel=2
            )
            skipped.append(Skipped(code=code, reason=f"check failed: {type(exc).__name__}: {exc}"))
            continue
        if found is None:
            continue
        issues.extend(found if isinstance(found, list) else [found])
    issues.sort(key=lambda i: (SEVERITY_ORDER[i.severity], i.first_step if i.first_step is not None else 1 << 62))
    return issues, skipped


def health_score(issues: list[Issue]) -> int:
    """100 minus the severity weights (critical 30, warning 10, info 2), floored at 0."""
    return max(0, 100 - sum(SEVERITY_WEIGHT[i.severity] for i in issues))
