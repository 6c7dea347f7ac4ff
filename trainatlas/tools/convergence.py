"""When did a run stop getting better? Shared by the sustainability check, the report and the
early-stop advice."""

from __future__ import annotations

import re

import numpy as np

from trainatlas.tools.robust import buckets, rolling_median
from trainatlas.tools.rundata import RunData

CONVERGED_WITHIN = 0.02  # within 2% of the total improvement from the final best level
MIN_IMPROVEMENT = 0.05  # a metric that improved less than 5% never converged to anything


# Metric names whose direction is known: a lower-is-better token wins ("FID score" is lower).
LOWER_TOKENS = (
    "loss",
    "fid",
    "kid",
    "wer",
    "cer",
    "error",
    "err",
    "perplexity",
    "ppl",
    "mae",
    "mse",
    "rmse",
    "mape",
    "smape",
    "nme",
)
HIGHER_TOKENS = (
    "map",
    "ap",
    "miou",
    "iou",
    "dice",
    "f1",
    "auc",
    "acc",
    "accuracy",
    "top1",
    "bleu",
    "rouge",
    "pck",
    "reward",
    "score",
    "return",
)
EVAL_PREFIXES = ("val/", "eval/", "test/", "valid/")
_SKIP_TOKENS = {"best", "std", "lr"}
# Metrics only ever computed on held-out data (a GAN's FID has no training-set twin).
EVAL_TOKENS = {"fid", "kid", "wer", "cer", "map", "ap", "miou", "iou", "bleu", "rouge", "pck", "nme"}
# Which named metric is the headline one: task metrics before error measures, component losses last
# (a GAN's generator loss says nothing about progress; its FID does).
_RANK = (
    "fid",
    "map",
    "ap",
    "miou",
    "iou",
    "dice",
    "acc",
    "accuracy",
    "top1",
    "f1",
    "auc",
    "wer",
    "cer",
    "bleu",
    "rouge",
    "pck",
    "nme",
    "reward",
    "return",
    "score",
    "perplexity",
    "ppl",
    "error",
    "err",
    "mae",
    "rmse",
    "mse",
    "mape",
    "smape",
    "kid",
    "loss",
)


def metric_direction(key: str) -> bool | None:
    """True if the metric named ``key`` is lower-is-better, False if higher-is-better, None if the
    name does not say. Read from its words, so FID/WER count as lower-is-better like losses."""
    if key.startswith(("orig/", "summary/")):
        return None
    tokens = _tokens(key)
    if tokens & _SKIP_TOKENS:
        return None  # a running best, a spread or a learning rate is not how the run is doing
    if tokens & set(LOWER_TOKENS):
        return True
    if tokens & set(HIGHER_TOKENS):
        return False
    return None


def _tokens(key: str) -> set[str]:
    return {t.rstrip("0123456789") for t in re.split(r"[^a-z0-9]+", key.lower()) if t}


def is_eval_metric(key: str) -> bool:
    """Whether ``key`` is measured on held-out data: named so (val/, eval/, test/) or by nature (FID, mAP)."""
    return key.lower().startswith(EVAL_PREFIXES) or bool(_tokens(key) & EVAL_TOKENS)


def _named_metric(data: RunData, eval_only: bool) -> tuple[str, bool] | None:
    """The best-known named metric: by family (the order of the token lists), then the shortest name."""
    order = {t: i for i, t in enumerate(_RANK)}
    found = []
    for key in data.keys:
        lower = metric_direction(key)
        if lower is None or (eval_only and not key.lower().startswith(EVAL_PREFIXES)):
            continue
        if len(data.series(key).finite()) < 3:
            continue
        rank = min(order.get(t, len(order)) for t in _tokens(key))
        found.append((rank, len(key), key, lower))
    if not found:
        return None
    _, _, key, lower = min(found)
    return key, lower


def main_metric(data: RunData) -> tuple[str, bool] | None:
    """The metric that says how the run is doing: a validation loss/accuracy if present, else another
    evaluation metric whose name gives its direction (mAP, FID, reward), else the training loss, else
    any such named metric (a GAN's FID, an agent's score). Returns (key, lower_is_better)."""
    for key in ("val/loss", "eval/loss", "valid/loss", "val_loss", "eval_loss", "test/loss"):
        if data.has(key) and len(data.series(key).finite()) >= 3:
            return key, True
    for key in ("val/acc", "val/accuracy", "eval/accuracy", "val_acc", "eval_accuracy"):
        if data.has(key) and len(data.series(key).finite()) >= 3:
            return key, False
    found = _named_metric(data, eval_only=True)
    if found:
        return found
    key = data.loss_key
    return (key, True) if key else _named_metric(data, eval_only=False)


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
