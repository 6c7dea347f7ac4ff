"""When did a run stop getting better? Shared by the sustainability check, the report and the
early-stop advice."""

from __future__ import annotations

import numpy as np

from trainatlas.tools.robust import buckets, rolling_median
from trainatlas.tools.rundata import RunData

CONVERGED_WITHIN = 0.02  # within 2% of the total improvement from the final best level
MIN_IMPROVEMENT = 0.05  # a metric that improved less than 5% never converged to anything


def main_metric(data: RunData) -> tuple[str, bool] | None:
    """The metric that says how the run is doing: a validation loss/accuracy if present, else the
    training loss. Returns (key, lower_is_better)."""
    for key in ("val/loss", "eval/loss", "valid/loss", "val_loss", "eval_loss", "test/loss"):
        if data.has(key) and len(data.series(key).finite()) >= 3:
            return key, True
    for key in ("val/acc", "val/accuracy", "eval/accuracy", "val_acc", "eval_accuracy"):
        if data.has(key) and len(data.series(key).finite()) >= 3:
            return key, False
    key = data.loss_key
    return (key, True) if key else None


def convergence_step(data: RunData) -> int | None:
    """The first step after which the main metric got no more than 2% closer to its final best."""
    found = main_metric(data)
    if found is None:
        return None
    key, lower = found
    raw = data.series(key)
    loss = data.series(data.loss_key) if data.loss_key else raw
    if not len(raw) or not np.isfinite(raw.values[-1]) or (len(loss) and not np.isfinite(loss.values[-1])):
        return None  # it ended broken: it never converged
    s = raw.finite()
    if len(s) < 5:
        return None
    b = buckets(s, 300)
    smooth = rolling_median(b.values, 5) if len(b) >= 20 else b.values
    if not lower:
        smooth = -smooth
    best = float(np.min(smooth))
    span = float(smooth[0] - best)
    if span <= MIN_IMPROVEMENT * max(abs(float(smooth[0])), 1e-12):
        return None  # it never really improved: nothing converged
    close = np.flatnonzero(smooth <= best + CONVERGED_WITHIN * span)
    return int(b.steps[close[0]])
