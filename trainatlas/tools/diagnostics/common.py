"""Data preparation shared by several checks (cached on the run)."""

from __future__ import annotations

import numpy as np

from trainatlas.tools.diagnostics.base import fmt, need
from trainatlas.tools.rundata import RunData, Series

MIN_CURVE_POINTS = 20  # a loss curve shorter than this says nothing about trends
UNTRAINED_POINTS = 5  # the untrained loss is the median of the first 5 recorded values
# A run that learned well ended (median of its last 10%) at or below half the untrained loss: a
# transient it went through on the way (units saturating, weights growing under a high learning
# rate) did not stop it. Healthy tiny runs end at 2-30% of their start; runs that a problem holds
# back end near it.
LEARNED_WELL = 0.5


def train_loss(data: RunData) -> Series:
    """The training loss with every value (NaN included)."""
    key = data.loss_key
    need(key is not None, "no training loss recorded")
    return data.series(key)


def finite_prefix(series: Series) -> Series:
    """The curve before it first went non-finite (what the loss did on the way there)."""
    bad = ~np.isfinite(series.values)
    if not bad.any():
        return series
    cut = int(np.argmax(bad))
    return Series(series.steps[:cut], series.values[:cut])


def loss_curve(data: RunData, min_points: int = MIN_CURVE_POINTS) -> Series:
    curve = finite_prefix(train_loss(data))
    need(len(curve) >= min_points, f"only {len(curve)} finite loss values (need {min_points})")
    return curve


def untrained_loss(curve: Series) -> float:
    """The loss of the untrained model: the median of the first few recorded steps, or the very
    first value when the loss blew up within them (then the median is already part of the blow-up)."""
    values = curve.values[:UNTRAINED_POINTS]
    start = float(np.median(values))
    first = float(values[0])
    return first if 0 < first * 1.05 < start else start


def learned_well(data: RunData) -> bool | None:
    """Whether the training loss ended at or below half the untrained model's (None: no loss to tell)."""

    def compute() -> bool | None:
        if data.loss_key is None:
            return None
        series = data.series(data.loss_key)
        curve = finite_prefix(series)
        if len(curve) < len(series):
            return False  # it went non-finite
        if len(curve) < MIN_CURVE_POINTS or float(np.min(curve.values)) < 0:
            return None  # too short, or a loss unbounded below: no "half" to compare with
        start = untrained_loss(curve)
        return bool(start > 0 and np.median(curve.values[int(0.9 * len(curve)) :]) <= LEARNED_WELL * start)

    return data.memo("learned_well", compute)


def value_at(series: Series, step: int) -> float | None:
    """The last value at or before ``step``."""
    i = int(np.searchsorted(series.steps, step, side="right")) - 1
    return float(series.values[i]) if i >= 0 else None


def lr_at(data: RunData, step: int | None = None) -> float | None:
    """The learning rate of param group 0 at ``step`` (the last one when not given)."""
    lr = data.series("lr")
    if not len(lr):
        return None
    value = value_at(lr, step) if step is not None else float(lr.values[-1])
    return float(lr.values[0]) if value is None else value


def change_lr(data: RunData, factor: float, step: int | None = None) -> str:
    """An instruction such as 'lower the learning rate of param group 0 from 1 to 0.1'."""
    lr = lr_at(data, step)
    verb = "lower" if factor < 1 else "raise"
    if lr is None:
        return f"{verb} the learning rate {max(factor, 1 / factor):g}x"
    return f"{verb} the learning rate of param group 0 from {fmt(lr)} to {fmt(lr * factor)}"


def last_good_step(curve: Series, trouble_step: int) -> int | None:
    """The step of the lowest loss before ``trouble_step``: where the run stood before it went wrong."""
    finite = curve.finite()
    earlier = finite.steps < trouble_step
    if not earlier.any():
        return None
    return int(finite.steps[earlier][np.argmin(finite.values[earlier])])


def restart(data: RunData, good_step: int | None) -> str:
    """How to go on after a blow-up: from the last checkpoint saved by ``good_step`` when the run declares
    its checkpoints (``RunData.checkpoint_steps``), else from the start; never from the step that blew up."""
    saved = data.checkpoint_at_or_before(good_step) if good_step is not None else None
    if saved is None:
        return "restart training"
    unit = step_unit(data)
    return (
        f"resume from the checkpoint saved at {unit} {saved} (the last save by {unit} {good_step}, where the loss "
        "was lowest before it went wrong)"
    )


def keep_best(data: RunData, best_step: int, key: str) -> str:
    """How to keep the best weights: the last declared checkpoint by ``best_step``, else early stopping
    that saves them (naming a checkpoint the run may never have written would send the user looking)."""
    saved, unit = data.checkpoint_at_or_before(best_step), step_unit(data)
    if saved is None:
        return (
            f"Stop training at {unit} {best_step}, where {key} was best (early stopping on {key}, with a checkpoint "
            "saved at each evaluation to keep the best weights)"
        )
    return f"Keep the checkpoint saved at {unit} {saved} (the last save by {unit} {best_step}, where {key} was best)"


def step_unit(data: RunData) -> str:
    """What the run's step counter counts: ``epoch`` for an epoch-level log, else ``step``."""
    return "epoch" if steps_are_epochs(data) else "step"


# A warm-up: the learning rate climbs at least 3x from its first value to its peak.
WARMUP_RISE = 3.0


def warmup_end(data: RunData) -> int | None:
    """The step where the learning-rate warm-up ends (the rate's peak), or None without a warm-up.
    Transients while the rate ramps up (a loss bump, a spike, units saturating) are what warm-up
    is for, not a pathology."""

    def compute() -> int | None:
        lr = data.series("lr").finite()
        if len(lr) < 3 or not lr.values[0] > 0:
            return None
        peak = int(np.argmax(lr.values))
        if lr.values[peak] < WARMUP_RISE * lr.values[0]:
            return None
        return int(lr.steps[peak])

    return data.memo("warmup_end", compute)


def steps_are_epochs(data: RunData) -> bool:
    """Whether the run's step counter counts epochs (an epoch-level log: Keras CSV, DETR log.txt,
    YOLO results.csv): its ``epoch`` series equals the step at every row."""

    def compute() -> bool:
        epoch = data.series("epoch").finite()
        return len(epoch) >= 2 and bool(np.all(epoch.values == epoch.steps))

    return data.memo("steps_are_epochs", compute)


def span(data: RunData, first_step: int, last_step: int) -> str:
    """How long a stretch of the run is, in the units it counts: ``66 steps``, ``70 epochs``, or
    ``5000 steps (9.1 epochs)`` when the log records epochs beside steps. Logged rows are not steps:
    a loss logged every 50 steps over 11,000 steps is 220 rows."""
    count = last_step - first_step + 1
    if steps_are_epochs(data):
        return f"{count} epoch{'s' if count != 1 else ''}"
    text = f"{count} step{'s' if count != 1 else ''}"
    epoch = data.series("epoch").finite()
    if len(epoch) >= 2:
        a, b = value_at(epoch, first_step), value_at(epoch, last_step)
        if a is not None and b is not None and b - a >= 1:
            text += f" ({b - a:.2g} epochs)" if b - a < 10 else f" ({b - a:.0f} epochs)"
    return text
