"""Checks on activations and architecture: dead ReLUs, saturation, attention entropy, weight growth,
eval mode during training, BatchNorm with tiny batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainatlas.tools.diagnostics.base import Issue, check, fmt, need
from trainatlas.tools.diagnostics.common import change_lr, learned_well
from trainatlas.tools.diagnostics.gradients import param_layers, per_layer
from trainatlas.tools.robust import buckets, median, window
from trainatlas.tools.rundata import RunData

# dead_relu (SageMaker DeadRelu): a layer is flagged when > 50% of its units output 0 for the whole
# batch; critical when >= 99% (nothing flows through).
DEAD_LAYER = 0.5
DEAD_ALL = 0.99
RELU_TYPES = {"ReLU", "ReLU6"}
# activation_saturation (SageMaker SaturatedActivation, DeepDiagnosis): > 50% of outputs saturated.
# A warning when the layer was saturated from its first sample (inputs not scaled, init too large:
# gradients are cut from the start) or when the loss did not learn well; units that saturate as
# training goes on while the loss falls to under half its start are a high learning rate's normal
# side effect (info).
SATURATED_LAYER = 0.5
SATURATING_TYPES = {"Tanh", "Sigmoid", "Hardtanh", "Hardsigmoid"}
# attention_entropy_collapse (Zhai et al. 2023): entropy fell below 10% of its early level.
ENTROPY_COLLAPSE = 0.1
# weight_norm_growth: a layer's weight norm grew more than 10x. A warning while it is still growing
# (more than 10% over the last third of its samples: no weight decay holds it) or when the loss did
# not learn well; a norm that grew early (warm-up to a high peak) and then settled, in a run that
# learned well, is info.
WEIGHT_GROWTH = 10.0
LATE_GROWTH = 1.1
# batchnorm_small_batch: BatchNorm statistics are noisy below 16 samples per device (GroupNorm paper).
BN_MIN_BATCH = 16
BN_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "SyncBatchNorm", "BatchNorm")
EVAL_SENSITIVE = ("Dropout", "BatchNorm", "AlphaDropout", "InstanceNorm")


def _late(rows: dict[str, Any], column: str) -> float:
    """Median of a layer's stat over the second half of its samples (the first sample too if alone)."""
    values = np.asarray(rows[column], float)
    late = values[len(values) // 2 :]
    late = late[np.isfinite(late)]
    return median(late)


@check("dead_relu", "activations")
def dead_relu(data: RunData) -> Issue | None:
    """ReLU layers where most units output 0 for every sample of the batch."""
    layers = {n: r for n, r in per_layer(data).items() if r["module_type"][0] in RELU_TYPES}
    need(len(layers) > 0, "no ReLU modules recorded (a functional F.relu is invisible to hooks)")
    dead = {n: _late(r, "act_dead_frac") for n, r in layers.items()}
    dead = {n: v for n, v in dead.items() if np.isfinite(v)}
    flagged = {n: v for n, v in dead.items() if v > DEAD_LAYER}
    if not flagged:
        return None
    worst = max(flagged, key=flagged.get)
    first = None
    rows = layers[worst]
    series = np.asarray(rows["act_dead_frac"], float)
    hits = np.flatnonzero(series > DEAD_LAYER)
    if len(hits):
        first = int(rows["step"][hits[0]])
    # Dead from the first sampled step: the initialization. Alive then, dead later: the updates
    # killed them, which a learning rate far too high does (one large step pushes biases negative).
    died_training = bool(len(hits) and hits[0] > 0)
    if died_training:
        cause = f"They were alive at step {int(rows['step'][0])} and died by step {first}: the updates killed them."
        fix = (
            f"{change_lr(data, 0.1, first).capitalize()} (a step that large pushes units where no input "
            "activates them), or clip gradients; LeakyReLU(0.01)/GELU cannot die this way."
        )
    else:
        cause = "They were dead from the first sampled step: the initialization."
        fix = (
            "Initialize biases at 0 (or small positive) and weights with kaiming_normal_(nonlinearity='relu'); "
            "or switch to LeakyReLU(0.01)/GELU."
        )
    return Issue(
        code="dead_relu",
        severity="critical" if flagged[worst] >= DEAD_ALL else "warning",
        title="Dead ReLUs",
        message=(
            f"{len(flagged)} of {len(dead)} ReLU layer(s) have most units dead (zero for the whole batch); "
            f"worst, layer '{worst}': {flagged[worst]:.0%} of units. {cause}"
        ),
        evidence={"dead_fraction": flagged, "layers_checked": len(dead), "died_during_training": died_training},
        first_step=first,
        fix_prompt=fix,
    )


@check("activation_saturation", "activations")
def activation_saturation(data: RunData) -> Issue | None:
    """Tanh/sigmoid layers with most outputs in their flat regions (gradients near 0)."""
    layers = {n: r for n, r in per_layer(data).items() if r["module_type"][0] in SATURATING_TYPES}
    need(len(layers) > 0, "no tanh/sigmoid modules recorded")
    sat = {n: _late(r, "act_sat_frac") for n, r in layers.items()}
    flagged = {n: v for n, v in sat.items() if np.isfinite(v) and v > SATURATED_LAYER}
    if not flagged:
        return None
    worst = max(flagged, key=flagged.get)
    rows = layers[worst]
    series = np.asarray(rows["act_sat_frac"], float)
    from_start = bool(series[0] > SATURATED_LAYER)
    learned = learned_well(data)
    harmless = not from_start and learned
    if from_start:
        when = "from the first sampled step"
    else:
        first = int(rows["step"][int(np.argmax(series > SATURATED_LAYER))])
        when = f"since step {first}" + (", while the loss kept falling to under half its start" if harmless else "")
    return Issue(
        code="activation_saturation",
        severity="info" if harmless else "warning",
        title="Saturated activations",
        message=(
            f"{len(flagged)} of {len(sat)} tanh/sigmoid layer(s) are saturated; worst, layer '{worst}': "
            f"{flagged[worst]:.0%} of outputs in the flat region, {when}."
            + (" Saturation that arrives with a high learning rate and does not stop learning is harmless."
               if harmless else "")
        ),
        evidence={"saturated_fraction": flagged, "saturated_from_start": from_start, "learned_well": learned},
        first_step=int(rows["step"][0] if from_start else rows["step"][int(np.argmax(series > SATURATED_LAYER))]),
        fix_prompt=(
            "Scale inputs to zero mean and unit variance, use xavier_uniform_ initialization, add LayerNorm/"
            "BatchNorm before the activation, or use ReLU/GELU in hidden layers."
        ),
    )


@check("attention_entropy_collapse", "activations")
def attention_entropy_collapse(data: RunData) -> Issue | None:
    """Attention entropy (logged as attention/entropy*) collapsed below 10% of its early level."""
    keys = sorted(k for k in data.keys if k.startswith(("attention/entropy", "attn/entropy")))
    need(len(keys) > 0, "no attention entropy logged (log attention/entropy to enable)")
    collapsed = {}
    for key in keys:
        s = data.series(key).finite()
        if len(s) < 10:
            continue
        b = buckets(s, 200)
        early, late = median(s.values[:5]), median(window(b, 0.9, 1).values)  # vs the initial entropy
        if early > 0 and late < ENTROPY_COLLAPSE * early:
            collapsed[key] = (early, late, int(b.steps[int(0.9 * len(b))]))
    if not collapsed:
        return None
    key, (early, late, step) = next(iter(collapsed.items()))
    return Issue(
        code="attention_entropy_collapse",
        severity="warning",
        title="Attention entropy collapse",
        message=f"{len(collapsed)} attention entropy series collapsed; {key} fell from {fmt(early)} to {fmt(late)}.",
        evidence={k: {"early": e, "late": v} for k, (e, v, _) in collapsed.items()},
        first_step=step,
        fix_prompt=(
            "Lower the learning rate, add warm-up, and stabilize attention logits (QK-LayerNorm, or sigma-reparam "
            "of the query/key projections)."
        ),
    )


@check("weight_norm_growth", "activations")
def weight_norm_growth(data: RunData) -> Issue | None:
    """A layer's weight norm grew more than 10x during training."""
    layers = param_layers(data)
    growth, late = {}, {}
    for name, rows in layers.items():
        w = np.asarray(rows["weight_norm"], float)
        w = w[np.isfinite(w)]
        if len(w) >= 3 and w[0] > 0:
            growth[name] = float(w[-1] / w[0])
            late[name] = float(w[-1] / w[(2 * len(w)) // 3])
    need(len(growth) > 0, "needs at least three samples of layer weight norms")
    flagged = {n: g for n, g in growth.items() if g > WEIGHT_GROWTH}
    if not flagged:
        return None
    worst = max(flagged, key=flagged.get)
    growing = late[worst] > LATE_GROWTH
    settled = not growing and learned_well(data)
    trend = (
        f"still growing ({late[worst] - 1:.0%} over the last third of the run)" if growing
        else "then settled" + (" while the loss fell to under half its start" if settled else "")
    )
    return Issue(
        code="weight_norm_growth",
        severity="info" if settled else "warning",
        title="Weight norms growing",
        message=(
            f"{len(flagged)} layer(s) grew their weight norm more than {WEIGHT_GROWTH:g}x; "
            f"layer '{worst}': {fmt(flagged[worst])}x, {trend}."
        ),
        evidence={"growth": flagged, "late_growth": {n: late[n] for n in flagged}, "learned_well": learned_well(data)},
        first_step=None,
        fix_prompt="Add weight decay (AdamW weight_decay=0.01-0.1), lower the learning rate, and clip gradients.",
    )


def _module_types(data: RunData) -> set[str]:
    types = {m.get("type", "") for m in (data.info.get("model") or {}).get("modules") or []}
    if data.has_layers:
        types |= set(data.layers()["module_type"].tolist())
    return types


@check("model_in_eval_mode", "activations")
def model_in_eval_mode(data: RunData) -> Issue | None:
    """Modules were in eval mode during training steps (model.eval() without model.train())."""
    need(data.has_layers, "no per-layer stats recorded")
    cols = data.layers()
    last = cols["step"] == cols["step"].max()
    training = np.asarray(cols["training"][last], bool)
    if training.all():
        return None
    names = cols["layer"][last][~training].tolist()
    types = set(cols["module_type"][last][~training].tolist())
    sensitive = sorted(t for t in _module_types(data) if any(s in t for s in EVAL_SENSITIVE))
    severity = "critical" if sensitive and not training.any() else "warning" if sensitive else "info"
    step = int(cols["step"].max())
    return Issue(
        code="model_in_eval_mode",
        severity=severity,
        title="Model in eval mode while training",
        message=(
            f"At training step {step}, {len(names)} of {len(training)} modules were in eval mode"
            + (f"; the model has {', '.join(sensitive)} which behave differently in eval mode" if sensitive else "")
            + "."
        ),
        evidence={"step": step, "eval_modules": names[:50], "module_types": sorted(types)},
        first_step=step,
        fix_prompt="Call model.train() at the start of every training epoch (after each validation pass).",
    )


@check("batchnorm_small_batch", "activations")
def batchnorm_small_batch(data: RunData) -> Issue | None:
    """BatchNorm layers trained with fewer than 16 samples per batch (noisy statistics)."""
    bn = sorted(t for t in _module_types(data) if t in BN_TYPES)
    need(bool(_module_types(data)), "no model summary or layer stats")
    if not bn:
        return None
    bs = data.series("batch_size").finite()
    need(len(bs) > 0, "no batch size recorded (pass batch_size to step())")
    size = median(bs.values)
    if size >= BN_MIN_BATCH:
        return None
    return Issue(
        code="batchnorm_small_batch",
        severity="critical" if size <= 2 else "warning",
        title="BatchNorm with a small batch",
        message=(
            f"The model uses {', '.join(bn)} with a median batch of {size:g} samples; batch statistics that "
            "small are noise."
        ),
        evidence={"batch_size": size, "batchnorm_types": bn},
        first_step=int(bs.steps[0]),
        fix_prompt=(
            "Use a batch of at least 16 per device, or replace BatchNorm with GroupNorm(32, C)/LayerNorm, or "
            "use SyncBatchNorm across devices."
        ),
    )
