"""Checks on the loss curves: blow-ups, spikes, oscillation, plateaus, no or slow learning,
overfitting. All work on loss-only runs (imported logs) too."""

from __future__ import annotations

import numpy as np

from trainatlas.fmt import change
from trainatlas.tools.convergence import is_eval_metric, main_metric
from trainatlas.tools.diagnostics.base import Issue, MissingData, check, fmt, need
from trainatlas.tools.diagnostics.common import (
    MIN_CURVE_POINTS,
    change_lr,
    finite_prefix,
    keep_best,
    last_good_step,
    loss_curve,
    lr_at,
    restart,
    span,
    train_loss,
    untrained_loss,
    value_at,
    warmup_end,
)
from trainatlas.tools.robust import buckets, find_spikes, mad, median, rolling_median, spearman, window
from trainatlas.tools.rundata import RunData, Series

# loss_divergence: the tail gave back more than half of what was learned and sits at least twice
# above the best level, while rising or above where it started; or any |loss| 1000x the start
# (AUTOTRAINER flags loss >= 1e3); or |loss| growing steadily by two orders of magnitude, which a
# loss bounded below cannot do downwards (an objective running away to -inf, e.g. a loss/label
# mismatch) and no healthy run does upwards.
DIVERGE_GIVEBACK = 0.5
DIVERGE_FACTOR = 2.0
EXPLODE_FACTOR = 1e3
RUNAWAY_FACTOR = 1e2
RUNAWAY_TREND = 0.9
# ... or, in the first 30% of the run, the smoothed loss rises 15% above the untrained model's
# loss (smoothing leaves a few % of noise) or a burst of steps reaches twice it (a few steps that
# bucket medians hide; per-batch noise of a model that learns nothing stays well below 2x), and
# the loss never gets 5% below that start afterwards: SGD at a learning rate so high that the
# first steps throw the weights where nothing is learned (dead units, saturated logits).
JUMP_FACTOR = 1.15
JUMP_BURST = 2.0
JUMP_WITHIN = 0.3
JUMP_RECOVERY = 0.05
# ... and it stays stuck: the last tenth after the jump is not below 70% of the first tenth after it.
# A loss that starts artificially low (quality focal loss, whose IoU targets start at 0) rises in the
# first epochs and then falls steadily (RTMDet: 0.1 -> 1.6 -> 0.56 while mAP climbs): not divergence.
JUMP_STUCK = 0.7
# loss_spikes: a point 6 robust sigmas (in log space) and at least 2x above the local median.
SPIKE_Z = 6.0
SPIKE_RATIO = 2.0
SPIKES_FOR_WARNING = 3
# ... a warning only for spikes after the learning-rate warm-up (a transient while the rate ramps up
# is the warm-up doing its job) that stand out of the batch-to-batch noise, 3x the 99th percentile
# of every point's ratio to its local level (small batches have a long upper tail of single-sample
# mistakes; a corrupt batch or an unstable step is far beyond it), and that give back at least
# half of what training had gained by then (a blip on a converged loss costs nothing).
SPIKE_STANDOUT = 3.0
SPIKE_GIVEBACK = 0.5
# loss_oscillation: the smoothed loss (200 bucket medians, rolling median of 3) turns at least 6
# times (3 full cycles), half of them in the second half of the run, each move at least 25% of the
# progress the run made (of its level, when it made none) and 4 robust sigmas of its step-to-step
# noise. A zigzag filter counts only moves that large, so small-batch noise (many small wiggles), a
# warm-up bump (one cycle) or a plateau that later improves (no cycle) are not oscillation; an LR
# so high or a cyclic LR so wide that the loss goes up and back down every tens to hundreds of
# steps is.
OSC_SWING = 0.25
OSC_NOISE = 4.0
OSC_LEVEL = 0.1  # ... and 10% of the loss's level: a run stuck at chance wiggles, it does not oscillate
OSC_TURNS = 6
# A full evaluation does not see the batch-to-batch noise of the training loss, but it does see the
# model itself swinging. With >= 8 evaluations the validation loss must swing too (>= 2 turns at its
# own threshold), else the swings are the batches' (a noisy data set, small batches); so confirmed,
# 2 cycles (4 turns) are enough.
OSC_VAL_MIN_EVALS = 8
OSC_VAL_TURNS = 2
OSC_CONFIRMED_TURNS = 4
# loss_plateau: < 1% relative improvement over the last 30% of the run (ReduceLROnPlateau uses a
# 1e-4 relative threshold per epoch with patience 10).
PLATEAU_WINDOW = 0.3
PLATEAU_REL = 0.01
# no_learning: the last 10% of the run is < 2% below the untrained model's loss (the median of the
# first few steps, not of the first 10%: a run that learned in its first 5% and then lost it all
# has learned nothing either); or, with the number of classes in the config, the loss ends within
# 5% of ln C and held-out accuracy within 10% of the way from chance (1/C) to perfect: labels
# unrelated to the inputs (a broken join) give exactly that, whatever the first steps did.
# slow_convergence: relative improvement first 10% -> last 10% of the run.
NO_LEARNING_REL = 0.02
CHANCE_MARGIN = 0.05
CHANCE_ACC_MARGIN = 0.10
CLASS_COUNT_KEYS = ("num_classes", "n_classes", "num_labels", "classes", "nb_classes")
VAL_ACC_KEYS = ("val/acc", "val/accuracy", "eval/accuracy", "eval_accuracy", "val_acc", "val_accuracy", "test/acc")
VAL_MIN_POINTS = 5  # ... and a validation loss that never improved 2% over >= 5 evaluations
LATE_EVAL_PROGRESS = 0.5  # ... first evaluated before training made half its progress (else unknown)
SLOW_REL = 0.15
# ... and still falling at the end: over the last fifth of the run (its first and last 30%, whose
# centres are 0.14 of the run apart), at >= 25% of the run's average pace, else it has levelled off.
# Relative to the pace, not a fixed 0.5%: a run falling 3% at a steady pace falls only 0.4% there.
SLOW_STILL_PACE = 0.25
SLOW_TAIL_SPAN = 0.14
# overfitting, judged against the validation series' own noise (the robust spread of its
# evaluation-to-evaluation changes), so that a validation loss that moves by noise-level amounts is
# never a finding whatever its scale: validation is worse than its best level by more than 3 noise sd
# at each of the last 2 evaluations (one bad evaluation is noise) while training improved. The best
# level is a rolling median over ~10% of the evaluations (at least 3 from 8 evaluations on, at most
# 11), not the minimum, which noise puts below the level.
# The rise must also give back >= 3% of what validation gained from its first evaluations to its
# best: a converged run drifts by about 1% of that (0.04-1.2% on healthy step-decay MLP runs under
# six seeds), a turn that gives back more is a trend worth stopping for. A validation loss that only
# stops improving while the training loss keeps falling is not enough: every converged run on a
# small data set does that (generalization_gap reports the gap).
OVERFIT_NOISE = 3.0
OVERFIT_PATIENCE = 2
OVERFIT_GIVEBACK = 0.03
# ... or a slow creep, two pieces of evidence each too weak alone: the tail is > 2 noise sd above the
# best level and the >= 5 evaluations since the best trend upwards (rank correlation >= 0.5; noise
# alone gets there 18% of the time at 5 points, 7% at 10).
# Measured on simulated runs that converge, then sit at a level with Gaussian noise (8-60
# evaluations, 1500 each): the issue is raised in 0.1-4% of them at 10% relative noise and 2-10% at
# 25% (short series are the hard case); the former rule (5% above the minimum) in 61-94%.
CREEP_NOISE = 2.0
CREEP_POINTS = 5
CREEP_TREND = 0.5
LEVEL_SHARE, LEVEL_MAX_HALF, LEVEL_MIN_POINTS = 0.05, 5, 8
# generalization_gap: validation loss above training loss by this ratio (and absolute margin), and by
# more than 3 sd of the validation series' own noise (as overfitting); the validation level is the
# median of the last 3 evaluations, since one evaluation on a small or sampled set is noisy.
GAP_INFO = (1.5, 0.05)
GAP_WARNING = (5.0, 0.5)
GAP_LAST = 3


def _jumped_and_stuck(curve: Series, b: Series, smooth: np.ndarray) -> tuple[float, float, int] | None:
    """A learning rate far too high: in the first part of the run the smoothed loss rises well above
    the untrained model's loss and training never gets back below that start (the weights were
    thrown somewhere flat: dead units, saturated logits). Positive losses only."""
    untrained = untrained_loss(curve)
    if not untrained > 0 or float(np.min(curve.values)) <= 0:
        return None
    head = smooth[: max(2, int(JUMP_WITHIN * len(smooth)))]
    raw = curve.values[: max(2, int(JUMP_WITHIN * len(curve)))]
    peak_i, raw_i = int(np.argmax(head)), int(np.argmax(raw))
    if raw[raw_i] >= JUMP_BURST * untrained:
        level, step = float(raw[raw_i]), int(curve.steps[raw_i])
    elif head[peak_i] >= JUMP_FACTOR * untrained:
        level, step = float(head[peak_i]), int(b.steps[peak_i])
    else:
        return None
    after = smooth[int(np.searchsorted(b.steps, step)) :]
    if not len(after) or float(np.min(after)) < (1 - JUMP_RECOVERY) * untrained:
        return None  # it came back down and learned: a transient (see loss_spikes)
    tenth = max(1, len(after) // 10)
    if median(after[-tenth:]) < JUMP_STUCK * median(after[:tenth]):
        return None  # it rose, then learns steadily from there: a loss whose start is not its baseline
    return untrained, level, step


def _level(curve: Series, start: float, end: float) -> float:
    return median(window(curve, start, end).values)


@check("nonfinite_loss", "loss")
def nonfinite_loss(data: RunData) -> Issue | None:
    """The loss became NaN or infinite. Any occurrence is critical (SageMaker ExplodingTensor)."""
    loss = train_loss(data)
    need(len(loss) > 0, "no loss values")
    bad = ~np.isfinite(loss.values)
    if not bad.any():
        return None
    first = int(loss.steps[np.argmax(bad)])
    before = finite_prefix(loss)
    last_good = float(before.values[-1]) if len(before) else None
    lr = lr_at(data, first)
    good = last_good_step(loss, first)
    return Issue(
        code="nonfinite_loss",
        severity="critical",
        title="The loss became NaN/Inf",
        message=(
            f"The loss is non-finite at {int(bad.sum())} of {len(loss)} recorded steps, first at step {first}"
            + (f" (last finite value {fmt(last_good)})" if last_good is not None else "")
            + ". Everything trained after that point is lost."
        ),
        evidence={
            "first_step": first,
            "nonfinite_count": int(bad.sum()),
            "recorded": len(loss),
            "last_finite_value": last_good,
            "lr_at_first": lr,
        },  # fmt: skip
        first_step=first,
        fix_prompt=(
            f"{change_lr(data, 0.1, first).capitalize()}, clip gradients with "
            "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) before optimizer.step(), check the loss "
            f"for log(0) or division by zero, and with fp16 use a GradScaler or bf16; then {restart(data, good)}."
        ),
    )


@check("loss_divergence", "loss")
def loss_divergence(data: RunData) -> Issue | None:
    """The loss rises far above its best level, or explodes by orders of magnitude."""
    curve = loss_curve(data, 8)
    b = buckets(curve, 200)
    n = len(b)
    early = _level(b, 0.0, 0.1)
    warm = max(1, int(0.05 * n))
    smooth = rolling_median(b.values, 5)
    best_i = warm + int(np.argmin(smooth[warm:])) if n > warm else int(np.argmin(smooth))
    best = float(smooth[best_i])
    tail = window(b, 0.8, 1.0)
    tail_level = median(tail.values)
    scale = max(abs(early), 1e-8)
    peak_i = int(np.argmax(np.abs(curve.values)))
    exploded = abs(float(curve.values[peak_i])) > EXPLODE_FACTOR * scale
    magnitude = np.abs(b.values)
    runaway = median(np.abs(tail.values)) > RUNAWAY_FACTOR * scale and spearman(b.steps, magnitude) > RUNAWAY_TREND
    exploded = exploded or runaway
    learned = early - best
    gave_back = (tail_level - best) / learned if learned > 0 else (np.inf if tail_level > best else 0.0)
    rising = spearman(tail.steps, tail.values) > 0.3 or tail_level > early
    diverged = gave_back > DIVERGE_GIVEBACK and tail_level > best + (DIVERGE_FACTOR - 1) * abs(best) and rising
    jump = None if exploded or diverged else _jumped_and_stuck(curve, b, smooth)
    if not (exploded or diverged or jump):
        return None
    first = int(curve.steps[peak_i]) if exploded and not diverged else int(b.steps[best_i])
    peak = float(curve.values[peak_i])
    if jump:
        untrained, jump_level, first = jump
        what = (
            f"the loss jumped from its starting level {fmt(untrained)} to {fmt(jump_level)} by step {first} and "
            f"never came back below where it started (now {fmt(tail_level)})"
        )
    elif exploded:
        what = f"the loss went from its early level {fmt(early)} to {fmt(peak)} at step {int(curve.steps[peak_i])}"
        what += "" if change(early, peak).startswith("went") else f" ({change(early, peak)})"
    else:
        what = f"the loss rose from its best {fmt(best)} (step {int(b.steps[best_i])}) to {fmt(tail_level)}"
    lr = lr_at(data, first)
    good = last_good_step(curve, first)
    return Issue(
        code="loss_divergence",
        severity="critical",
        title="The loss is diverging",
        message=f"Training is diverging: {what}. The optimizer is stepping too far.",
        evidence={
            "early_level": early,
            "best_level": best,
            "best_step": int(b.steps[best_i]),
            "tail_level": tail_level,
            "peak_abs_loss": abs(float(curve.values[peak_i])),
            "peak_step": int(curve.steps[peak_i]),
            "lr": lr,
        },  # fmt: skip
        first_step=first,
        fix_prompt=(
            f"{change_lr(data, 0.1, first).capitalize()}"
            + f", add a learning-rate warm-up and gradient clipping (max_norm=1.0), then {restart(data, good)}."
        ),
    )


@check("loss_spikes", "loss")
def loss_spikes(data: RunData) -> Issue | None:
    """Isolated jumps far above the local level (6 robust sigmas in log space and >= 2x)."""
    curve = loss_curve(data, 50)
    starts, ratio, base = find_spikes(curve, SPIKE_Z, SPIKE_RATIO)
    if not len(starts):
        return None
    worst = starts[np.argmax(ratio[starts])]
    steps = [int(curve.steps[i]) for i in starts[:20]]
    warm_end = warmup_end(data)
    after_warmup = starts[curve.steps[starts] > warm_end] if warm_end is not None else starts
    # per-batch noise of small batches has a long upper tail; a harmful spike stands far out of it
    # and gives back at least half of what training had gained (see SPIKE_STANDOUT)
    tail = float(np.quantile(ratio, 0.99))
    untrained = untrained_loss(curve)
    harmful = [
        i
        for i in after_warmup
        if ratio[i] >= SPIKE_STANDOUT * tail
        and curve.values[i] - base[i] >= SPIKE_GIVEBACK * max(untrained - base[i], 0.0)
    ]
    severity = "info"
    if harmful and (len(after_warmup) >= SPIKES_FOR_WARNING or ratio[worst] >= 10):
        severity = "warning"
    during = len(starts) - len(after_warmup)
    return Issue(
        code="loss_spikes",
        severity=severity,
        title=f"{len(starts)} loss spike(s)",
        message=(
            f"The loss spiked {len(starts)} time(s) above its local level"
            + (f" ({during} during the learning-rate warm-up, up to step {warm_end})" if during else "")
            + f"; the worst, at step {int(curve.steps[worst])}, was {fmt(float(ratio[worst]))}x the local median "
            f"({fmt(float(curve.values[worst]))} vs {fmt(float(base[worst]))})"
            + ("." if harmful else "; no spike stands out of the batch-to-batch noise or undoes the training.")
        ),
        evidence={
            "spike_steps": steps,
            "worst_step": int(curve.steps[worst]),
            "worst_ratio": float(ratio[worst]),
            "count": len(starts),
            "during_warmup": during,
            "noise_p99_ratio": tail,
        },  # fmt: skip
        first_step=steps[0],
        fix_prompt=(
            "Add gradient clipping (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)), lower the "
            "peak learning rate or lengthen warm-up, and inspect the batches at steps "
            + ", ".join(map(str, steps[:5]))
            + " for corrupt or outlier samples."
        ),
    )


def _reversals(values: np.ndarray, threshold: float) -> list[int]:
    """Indices where the curve turns after moving at least ``threshold`` each way (a zigzag filter):
    wiggles smaller than the threshold are ignored, however many there are."""
    pivots: list[int] = []
    direction, extreme, low, high = 0, 0, 0, 0
    for i in range(1, len(values)):
        v = values[i]
        if direction == 0:  # no move of the threshold's size yet
            low, high = (i if v < values[low] else low), (i if v > values[high] else high)
            if v - values[low] >= threshold or values[high] - v >= threshold:
                direction, extreme = (1 if v - values[low] >= threshold else -1), i
        elif direction * (v - values[extreme]) >= 0:
            extreme = i  # the move goes on
        elif abs(v - values[extreme]) >= threshold:
            pivots.append(extreme)
            direction, extreme = -direction, i
    return pivots


def _validation_turns(data: RunData) -> int | None:
    """How often the validation loss turns by a swing of its own size; None with too few evaluations."""
    key = data.val_loss_key
    val = data.series(key).finite() if key else None
    if val is None or len(val) < OSC_VAL_MIN_EVALS:
        return None
    level = median(np.abs(val.values))
    drop = float(val.values[0] - np.min(val.values))
    scale = drop if drop > 0.05 * level else level
    return len(_reversals(val.values, max(OSC_SWING * scale, OSC_LEVEL * level)))


@check("loss_oscillation", "loss")
def loss_oscillation(data: RunData) -> Issue | None:
    """The smoothed loss keeps swinging up and down instead of descending."""
    curve = loss_curve(data, 60)
    b = buckets(curve, 200)
    need(len(b) >= 40, "too few points to judge oscillation")
    smooth = rolling_median(b.values, 3)
    noise = mad(b.values - rolling_median(b.values, 9))
    level = median(np.abs(b.values))
    drop = _level(b, 0, 0.1) - float(np.min(smooth))
    scale = drop if drop > 0.05 * level else level
    threshold = max(OSC_SWING * scale, OSC_NOISE * noise, OSC_LEVEL * level)
    turns = _reversals(smooth, threshold)
    late = [i for i in turns if i >= len(b) // 2]
    val_turns = _validation_turns(data)
    needed = OSC_TURNS if val_turns is None else OSC_CONFIRMED_TURNS
    if (val_turns is not None and val_turns < OSC_VAL_TURNS) or len(turns) < needed or len(late) < needed // 2:
        return None
    swings = np.abs(np.diff(smooth[turns]))
    period = float(np.median(np.diff(b.steps[turns]))) * 2 if len(turns) > 1 else float("nan")
    lr = lr_at(data)
    return Issue(
        code="loss_oscillation",
        severity="warning",
        title="The loss oscillates",
        message=(
            f"The smoothed loss swung up and down {len(turns) // 2} times (typical swing {fmt(median(swings))}, "
            f"{median(swings) / scale:.0%} of the progress made; a cycle about every {period:.0f} steps), "
            f"{len(late)} of its {len(turns)} turns in the second half of the run"
            + (f"; the validation loss swings with it ({val_turns} turns)." if val_turns else ".")
        ),
        evidence={
            "reversals": len(turns),
            "reversal_steps": [int(b.steps[i]) for i in turns[:40]],
            "typical_swing": median(swings),
            "relative_swing": median(swings) / scale,
            "period_steps": period,
            "lr": lr,
        },  # fmt: skip
        first_step=int(b.steps[turns[0]]),
        fix_prompt=(
            f"{change_lr(data, 0.3).capitalize()} (with a cyclic schedule, lower its maximum), or increase the "
            "batch size; with SGD add momentum 0.9 or switch to Adam."
        ),
    )


@check("loss_plateau", "loss")
def loss_plateau(data: RunData) -> Issue | None:
    """The loss stopped improving (< 1% over the last 30% of the run) after having learned."""
    curve = loss_curve(data, 50)
    b = buckets(curve, 300)
    tail = window(b, 1 - PLATEAU_WINDOW, 1.0)
    need(len(tail) >= 10, "too few points in the last part of the run")
    start, end = _level(tail, 0, 0.33), _level(tail, 0.67, 1.0)
    early = _level(b, 0, 0.1)
    if abs(early) < 1e-12 or (early - start) / abs(early) < NO_LEARNING_REL:
        return None  # it never learned: that is no_learning, not a plateau
    rel = (start - end) / max(abs(start), 1e-12)
    if rel >= PLATEAU_REL:
        return None
    lr = lr_at(data)
    return Issue(
        code="loss_plateau",
        severity="info",
        title="The loss has plateaued",
        message=(
            f"The loss {change(start, end)} over the last {PLATEAU_WINDOW:.0%} of the run "
            f"(steps {int(tail.steps[0])}-{int(tail.steps[-1])}), level {fmt(end)}."
        ),
        evidence={
            "window_start_step": int(tail.steps[0]),
            "relative_improvement": rel,
            "level": end,
            "lr": lr,
        },  # fmt: skip
        first_step=int(tail.steps[0]),
        fix_prompt=(
            f"If the validation metric has also stopped improving, stop here and keep the best checkpoint; "
            f"otherwise {change_lr(data, 0.1)} (e.g. ReduceLROnPlateau(factor=0.1, patience=10))."
        ),
    )


def _improvement(curve: Series) -> tuple[float, float, float, Series]:
    b = buckets(curve, 100)
    first, last = _level(b, 0, 0.1), _level(b, 0.9, 1.0)
    rel = (first - last) / max(abs(first), 1e-12)
    return rel, first, last, b


def _judged_by_loss(data: RunData) -> bool:
    """Whether the training loss measures progress: it exists, and it keeps one sign. A loss that
    takes both signs (a policy-gradient surrogate, an adversarial loss) has no floor to approach,
    so its level says nothing about learning."""
    if data.loss_key is None:
        return False
    values = finite_prefix(data.series(data.loss_key)).values
    return not (len(values) and values.min() < 0 < values.max())


def _chance_loss(data: RunData) -> tuple[int, float] | None:
    """(classes, ln C) when the config names the number of classes: the cross-entropy of a model
    that predicts nothing better than uniform (the level a run with broken labels sits at)."""
    for key in CLASS_COUNT_KEYS:
        value = data.config.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 2 and value == int(value):
            return int(value), float(np.log(value))
    return None


def _diverged(data: RunData) -> bool:
    """Whether loss_divergence finds the run diverging (no_learning then has the same cause)."""

    def compute() -> bool:
        try:
            return loss_divergence(data) is not None
        except MissingData:
            return False

    return data.memo("loss_diverged", compute)


@check("no_learning", "loss")
def no_learning(data: RunData) -> Issue | None:
    """The loss did not go down at all over the run (< 2% below the untrained model's loss), or it
    sits at chance level (ln C for C classes); without a loss that measures progress, the same on
    the run's main metric (FID, a score, a reward)."""
    if not _judged_by_loss(data):
        return _metric_not_learning(data)
    curve = loss_curve(data, 50)
    b = buckets(curve, 100)
    # the untrained loss, or the early level when the loss first rises (a loss whose start is not its
    # baseline, such as quality focal loss); not lower: learning then losing it all is no learning
    untrained, last = max(untrained_loss(curve), _level(b, 0.0, 0.1)), _level(b, 0.9, 1.0)
    if abs(untrained) < 1e-3:
        return None  # started at (near) zero: nothing to learn, or a loss with another meaning
    rel = (untrained - last) / abs(untrained)
    trend = spearman(b.steps, b.values)
    chance = _chance_loss(data)
    at_chance = chance is not None and last >= (1 - CHANCE_MARGIN) * chance[1] and _val_at_chance(data, chance)
    if rel >= NO_LEARNING_REL and not at_chance:
        return _no_generalization(data, untrained)
    if _diverged(data):
        return None  # the loss went up: loss_divergence says why, with the same cause
    lr = lr_at(data)
    steps = span(data, int(curve.steps[0]), int(curve.steps[-1]))
    if at_chance:
        classes, level = chance
        said = (
            f"After {steps} the loss is {fmt(last)}, at chance level for {classes} classes "
            f"(ln {classes} = {fmt(level)}): the model predicts no better than a uniform guess"
        )
        acc = _best_val_acc(data)
        if acc is not None:
            said += f", and its best validation accuracy is {acc:.1%} (chance {1 / classes:.1%})"
        said += "."
    else:
        said = (
            f"After {steps} the loss is {fmt(last)}, no lower than the untrained model's {fmt(untrained)} "
            f"({change(untrained, last)}); there is no downward trend (rank correlation with step {trend:+.2f})."
        )
    return Issue(
        code="no_learning",
        severity="critical",
        title="The model is not learning",
        message=said,
        evidence={
            "first_level": untrained,
            "last_level": last,
            "relative_improvement": rel,
            "trend": trend,
            "chance_level": chance[1] if chance else None,
            "lr": lr,
        },  # fmt: skip
        first_step=int(curve.steps[0]),
        fix_prompt=(
            "Check that optimizer.step() and loss.backward() run every step and that the optimizer holds the "
            "model's parameters; look for dead ReLUs (negative bias init) or saturated activations; verify "
            "that labels match inputs (a shuffled or mis-joined label column gives exactly chance level); then "
            "check the model can overfit a single batch."
        ),
    )


def _best_val_acc(data: RunData) -> float | None:
    key = data.first_key(VAL_ACC_KEYS)
    if key is None:
        return None
    values = data.series(key).finite().values
    if not len(values):
        return None
    best = float(np.max(values))
    return best / 100 if best > 1 else best  # some logs write percent


def _val_at_chance(data: RunData, chance: tuple[int, float]) -> bool:
    """Held-out data agree that nothing was learned (true when nothing held-out was logged): the
    best validation accuracy is within 10% of the way from chance to perfect, and the best
    validation loss within 5% of ln C."""
    classes, level = chance
    acc = _best_val_acc(data)
    if acc is not None and acc > 1 / classes + CHANCE_ACC_MARGIN * (1 - 1 / classes):
        return False
    key = data.val_loss_key
    if key is not None:
        val = data.series(key).finite().values
        if len(val) and float(np.min(val)) < (1 - CHANCE_MARGIN) * level:
            return False
    return True


def _metric_not_learning(data: RunData) -> Issue | None:
    """no_learning on the main metric when the loss cannot tell (see ``_judged_by_loss``)."""
    found = main_metric(data)
    need(found is not None and found[0] != data.loss_key, "no loss that measures progress and no main metric")
    key, lower = found
    series = data.series(key).finite()
    need(len(series) >= MIN_CURVE_POINTS, f"only {len(series)} values of {key}")
    sign = 1.0 if lower else -1.0
    rel, first, last, b = _improvement(Series(series.steps, sign * series.values))
    trend = spearman(b.steps, b.values)
    best = float(np.min(rolling_median(window(b, 0.1, 1.0).values, 5)))  # after the level it started from
    if abs(first) < 1e-12 or (first - best) / abs(first) >= NO_LEARNING_REL or trend < -0.3:
        return None  # it got better at some point: a later decline is divergence or overfitting
    return Issue(
        code="no_learning",
        severity="critical",
        title="The model is not learning",
        message=(
            f"Over {span(data, int(series.steps[0]), int(series.steps[-1]))} {key} went from {fmt(sign * first)} "
            f"to {fmt(sign * last)} ({change(sign * first, sign * last)}), never better than where it started; "
            f"there is no trend towards better values (rank correlation {-trend:+.2f})."
        ),
        evidence={
            "metric": key,
            "first_level": sign * first,
            "last_level": sign * last,
            "relative_improvement": rel,
            "trend": -trend,
        },  # fmt: skip
        first_step=int(series.steps[0]),
        fix_prompt=(
            "Check that optimizer.step() runs for every model being trained and that the losses reach the "
            "parameters (no detached outputs); try a lower learning rate and verify the model can fit a "
            "single batch."
        ),
    )


def _no_generalization(data: RunData, untrained: float) -> Issue | None:
    """Training improves but the validation loss never beats the untrained model's loss: nothing
    learned transfers (labels shuffled apart from their inputs, say)."""
    key = data.val_loss_key
    if key is None:
        return None
    val = data.series(key).finite()
    if len(val) < VAL_MIN_POINTS:
        return None
    first, best = untrained, float(np.min(val.values))
    gain = (first - best) / max(abs(first), 1e-12)
    if gain >= NO_LEARNING_REL:
        return None
    train = finite_prefix(data.series(data.loss_key))
    at_first_eval = value_at(train, int(val.steps[0]))
    learned = first - float(np.min(train.values))
    if at_first_eval is not None and learned > 0 and (first - at_first_eval) > LATE_EVAL_PROGRESS * learned:
        return None  # first evaluated after most of the training progress: its untrained level is unknown
    return Issue(
        code="no_learning",
        severity="critical",
        title="Nothing learned generalizes",
        message=(
            f"The training loss falls but {key} never beat the untrained model: best {fmt(best)} vs a starting "
            f"training loss of {fmt(first)} ({change(first, best)}, over {len(val)} evaluations). The model "
            "memorizes without learning anything that transfers."
        ),
        evidence={"metric": key, "first_value": first, "best_value": best, "relative_improvement": gain},
        first_step=int(val.steps[0]),
        fix_prompt=(
            "Check that labels are aligned with their inputs (no shuffling of one without the other, correct "
            "label mapping) and that validation data are preprocessed exactly like training data."
        ),
    )


@check("slow_convergence", "loss")
def slow_convergence(data: RunData) -> Issue | None:
    """The loss falls steadily but slowly (2-15% over the run, still falling at the end)."""
    curve = loss_curve(data, 100)
    rel, first, last, b = _improvement(curve)
    trend = spearman(b.steps, b.values)
    tail = window(b, 0.8, 1.0)
    still = (_level(tail, 0, 0.3) - _level(tail, 0.7, 1.0)) / max(abs(first), 1e-12)
    if not (NO_LEARNING_REL <= rel < SLOW_REL and trend < -0.6 and still > SLOW_STILL_PACE * SLOW_TAIL_SPAN * rel):
        return None
    lr = lr_at(data)
    return Issue(
        code="slow_convergence",
        severity="warning",
        title="Slow convergence",
        message=(
            f"The loss fell only {rel:.1%} over {span(data, int(curve.steps[0]), int(curve.steps[-1]))} "
            f"({fmt(first)} -> {fmt(last)}) and is "
            f"still falling steadily: the learning rate is likely too low."
        ),
        evidence={"relative_improvement": rel, "trend": trend, "tail_improvement": still, "lr": lr},
        first_step=int(curve.steps[0]),
        fix_prompt=(f"{change_lr(data, 10).capitalize()} (or run a learning-rate range test), or switch SGD to Adam."),
    )


def _val(data: RunData) -> tuple[str, Series, bool] | None:
    """The validation loss, else the run's main metric if measured on held-out data (mAP, FID)."""
    key = data.val_loss_key
    if key:
        return key, data.series(key).finite(), True
    found = main_metric(data)
    if found is None or not is_eval_metric(found[0]):
        return None
    return found[0], data.series(found[0]).finite(), found[1]


def noise_sd(values: np.ndarray) -> float:
    """The noise of an evaluation series: the robust spread of its step-to-step changes around their
    typical change (so a steady trend is not noise), over the later half where training has slowed,
    divided by sqrt(2) because each change carries the noise of two evaluations."""
    d = np.diff(values)
    d = d[len(d) // 2 :] if len(d) >= 6 else d
    return float(mad(d) / np.sqrt(2)) if len(d) else 0.0


def _levels_half(n: int) -> int:
    return min(LEVEL_MAX_HALF, max(int(n >= LEVEL_MIN_POINTS), int(n * LEVEL_SHARE)))


def _levels(values: np.ndarray) -> np.ndarray:
    half = _levels_half(len(values))
    return rolling_median(values, 2 * half + 1) if half else values


def _train_end(train: Series) -> float:
    return float(np.median(train.values[-max(5, len(train) // 50) :]))


def _rise(values: np.ndarray, best_i: int, best: float, noise: float) -> str | None:
    """How validation got worse than its best level beyond noise, in words, or None: at each of the
    last evaluations (and in their median) by 3 noise sd, or creeping up since the best; either way by
    a rise that gives back a real share of what validation had gained."""
    last, tail, after = values[-OVERFIT_PATIENCE:], median(values[-3:]), values[best_i:]
    bar = best + OVERFIT_NOISE * noise
    trend = spearman(np.arange(len(after)), after) if len(after) >= CREEP_POINTS else float("nan")
    if (last > bar).all() and tail > bar:
        how = (f"worse than that at each of the last {OVERFIT_PATIENCE} evaluations by more than "
               f"{OVERFIT_NOISE:g}x its evaluation noise (sd {fmt(noise)})")  # fmt: skip
    elif (last > best).all() and tail > best + CREEP_NOISE * noise and trend >= CREEP_TREND:
        how = (f"rising since then (rank correlation with the step {trend:.2f}), now more than {CREEP_NOISE:g}x "
               f"its evaluation noise (sd {fmt(noise)}) above its best level")  # fmt: skip
    else:
        return None
    start = median(values[:3]) if best_i >= 3 else float(values[0])  # one evaluation is noisy
    gained = start - best
    return how if gained <= 0 or tail - best >= OVERFIT_GIVEBACK * gained else None


def _best_evaluation(values: np.ndarray, at: int) -> int:
    """The best single evaluation within the rolling window of the best level: the checkpoint to keep."""
    half = _levels_half(len(values))
    lo = max(0, at - half)
    return lo + int(np.argmin(values[lo : at + half + 1]))


@check("overfitting", "loss")
def overfitting(data: RunData) -> Issue | None:
    """Validation got worse beyond its noise after its best while training kept improving."""
    val = _val(data)
    need(val is not None, "no validation metric recorded")
    key, series, lower_better = val
    need(len(series) >= OVERFIT_PATIENCE + 2, f"only {len(series)} validation points")
    values = series.values if lower_better else -series.values
    levels = _levels(values)
    best_i = int(np.argmin(levels))
    best, noise = float(levels[best_i]), noise_sd(values)
    how = _rise(values, best_i, best, noise) if len(values) - 1 - best_i >= OVERFIT_PATIENCE else None
    if how is None:
        return None
    best_i = _best_evaluation(values, best_i)
    best_step, last_step = int(series.steps[best_i]), int(series.steps[-1])
    train = finite_prefix(data.series(data.loss_key)) if data.loss_key else None
    has_train = train is not None and len(train) > 0
    if has_train:
        at_best = value_at(train, best_step)
        if at_best is not None and _train_end(train) >= at_best:
            return None  # training got worse too: not overfitting (see divergence / plateau)
    shown = float(series.values[best_i]), float(series.values[-1])
    return Issue(
        code="overfitting",
        severity="warning",
        title="Overfitting",
        message=(
            f"{key} was at its best at step {best_step} ({fmt(shown[0])}) and is now {fmt(shown[1])} at step "
            f"{last_step}: {how}"
            + (", while the training loss kept falling." if has_train else " (no training loss recorded to compare).")
        ),
        evidence={
            "metric": key,
            "best_step": best_step,
            "best_value": shown[0],
            "last_value": shown[1],
            "evaluations_after_best": len(values) - 1 - best_i,
            "noise_sd": noise,
        },  # fmt: skip
        first_step=best_step,
        fix_prompt=(
            f"{keep_best(data, best_step, key)}; to train longer, add regularization: weight decay 0.01-0.1, "
            "dropout, data augmentation, or more data."
        ),
    )


@check("generalization_gap", "loss")
def generalization_gap(data: RunData) -> Issue | None:
    """Validation loss far above training loss at the end (memorization, or a train/val mismatch)."""
    key = data.val_loss_key
    need(key is not None and data.loss_key is not None, "needs both training and validation loss")
    all_val = data.series(key)
    need(len(all_val) > 0 and bool(np.isfinite(all_val.values[-1])), "the validation loss ended non-finite")
    val = all_val.finite()
    train = finite_prefix(data.series(data.loss_key))
    need(len(val) >= 1 and len(train) >= 5, "too few loss values")
    v = median(val.values[-GAP_LAST:])
    near = train.values[np.abs(train.steps - val.steps[-1]) <= max(1, int(0.02 * train.steps[-1]))]
    t = float(np.median(near if len(near) else train.values[-5:]))
    if t <= 0 or v - t <= OVERFIT_NOISE * noise_sd(val.values):
        return None
    ratio = v / t
    severity = None
    if ratio >= GAP_WARNING[0] and v - t >= GAP_WARNING[1]:
        severity = "warning"
    elif ratio >= GAP_INFO[0] and v - t >= GAP_INFO[1]:
        severity = "info"
    if severity is None:
        return None
    return Issue(
        code="generalization_gap",
        severity=severity,
        title="Generalization gap",
        message=(
            f"At step {int(val.steps[-1])} the validation loss {fmt(v)} is {fmt(ratio)}x the training loss {fmt(t)}"
            + (f" (median of the last {GAP_LAST} evaluations)." if len(val) >= GAP_LAST else ".")
        ),
        evidence={"val_loss": v, "train_loss": t, "ratio": ratio, "step": int(val.steps[-1])},
        first_step=int(val.steps[-1]),
        fix_prompt=(
            "Add regularization (weight decay, dropout, augmentation) or more training data, and check that "
            "training and validation data come from the same distribution and preprocessing."
        ),
    )
