"""A simple rule set in the style of the W&B MCP server's `diagnose_run`, the baseline trainatlas is
compared with: NaN, divergence, overfitting and a flat loss, judged on the loss curves alone."""

from __future__ import annotations

import numpy as np

from trainatlas.tools.rundata import RunData


def _tenth(values: np.ndarray, last: bool) -> float:
    n = max(1, len(values) // 10)
    return float(np.mean(values[-n:] if last else values[:n]))


def baseline_issues(data: RunData) -> dict[str, str]:
    """code -> severity, with the codes trainatlas uses for the same findings."""
    found: dict[str, str] = {}
    key = data.loss_key
    if key is None:
        return found
    loss = data.series(key).values
    if len(loss) < 10:
        return found
    if not np.all(np.isfinite(loss)):
        found["nonfinite_loss"] = "critical"
    finite = loss[np.isfinite(loss)]
    if len(finite) < 10:
        return found
    first, last, low = _tenth(finite, False), _tenth(finite, True), float(np.min(finite))
    if last > 1.5 * max(low, 1e-12) and last > first:  # ended well above its best and its start
        found["loss_divergence"] = "warning"
    elif abs(last - first) < 0.05 * abs(first):  # moved less than 5% over the run
        found["no_learning"] = "warning"
    val_key = data.val_loss_key
    if val_key is not None:
        val = data.series(val_key).finite()
        if len(val) >= 5:
            best = int(np.argmin(val.values))
            if val.values[-1] > 1.1 * val.values[best] and best < len(val) - 1:
                train_at_best = data.series(key).finite()
                early = train_at_best.values[train_at_best.steps <= val.steps[best]]
                if len(early) and _tenth(finite, True) < float(np.mean(early[-max(1, len(early) // 10) :])):
                    found["overfitting"] = "warning"  # val loss up 10% from its best while train loss fell
    return found
