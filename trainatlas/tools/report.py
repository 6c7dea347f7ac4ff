"""The answers the CLI and the MCP server give about one run: ``diagnose`` and ``status``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from trainatlas.tools.advice import loss_not_recognised, one_learning_rate_advice
from trainatlas.tools.answers import Diagnosis, MetricForecast, RunRef, Status
from trainatlas.tools.diagnostics import health_score, run_checks
from trainatlas.tools.phases import phase_history
from trainatlas.tools.rundata import RunData
from trainatlas.tools.status import advise, eta, forecast

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog


def diagnose(catalog: Catalog, ref: str, codes: list[str] | None = None) -> Diagnosis:
    """Every check (or the chosen ones) on one run, with its health score, phase and advice."""
    data = RunData.load(catalog, ref)
    issues, skipped = run_checks(data, codes)
    unjudged = loss_not_recognised(data, codes)
    issues = one_learning_rate_advice(issues) + ([unjudged] if unjudged else [])
    phase = phase_history(data).phase
    remaining = eta(data)
    advice = advise(data, issues, phase, remaining, forecast(data))
    return Diagnosis(run=RunRef.of(data), health_score=health_score(issues), phase=phase, issues=issues,
                     skipped=skipped, eta=remaining, recommendation=advice)  # fmt: skip


def status(catalog: Catalog, ref: str) -> Status:
    """Phase history, ETA, forecast and early-stop advice for one run."""
    data = RunData.load(catalog, ref)
    tracker = phase_history(data)
    issues, _ = run_checks(data, ["nonfinite_loss", "loss_divergence", "no_learning", "stale_gradients"])
    remaining = eta(data)
    predicted = forecast(data)
    advice = advise(data, issues, tracker.phase, remaining, predicted)
    metric = (
        MetricForecast(metric=predicted[0], lower_is_better=predicted[1], forecast=predicted[2]) if predicted else None
    )
    return Status(run=RunRef.of(data), phase=tracker.phase, transitions=[t.as_event() for t in tracker.transitions],
                  eta=remaining, forecast=metric, recommendation=advice)  # fmt: skip
