"""Checks on gradients, updates and the learning-rate schedule."""

from __future__ import annotations

from typing import Any

import numpy as np

from trainatlas.tools.diagnostics.base import Issue, check, fmt, need
from trainatlas.tools.diagnostics.common import change_lr, lr_at
from trainatlas.tools.robust import buckets, find_spikes, level, median, spearman, window
from trainatlas.tools.rundata import RunData, Series

# vanishing_gradients (AUTOTRAINER): first/last layer gradient-norm ratio < 1e-3 and first-layer
# norm < 1e-4; or (SageMaker VanishingGradient) a global gradient norm below 1e-7.
VANISH_RATIO = 1e-3
VANISH_FIRST = 1e-4
VANISH_GLOBAL = 1e-7
# exploding_gradients: first/last ratio > 70 (AUTOTRAINER), a 100x rise of the global norm from its
# early level, or a global norm above 1e3 from the start (an initialization far too large).
EXPLODE_RATIO = 70.0
EXPLODE_GROWTH = 100.0
EXPLODE_ABSOLUTE = 1e3
# ... or (SageMaker PoorWeightInitialization: activation variance ratio > 10 across layers) layer
# output scales at the first step differing more than 30x (a variance ratio of about 1000).
INIT_STD_RATIO = 30.0
# gradient_norm_spike: 6 robust sigmas in log space and >= 5x the local median.
GN_SPIKE_Z = 6.0
GN_SPIKE_RATIO = 5.0
# stale_gradients: >= 5 identical consecutive norms, or a norm that climbs steadily (rank
# correlation >= 0.9) to >= 5x its start, the signature of gradients never zeroed.
STALE_REPEATS = 5
# Or, seen directly (grad/carried_over, the Observer's probe): the gradient is not reset between
# optimizer steps. After zero_grad() the left-over is exactly 0; without, it is the whole last
# gradient (a ratio near 1 and above). Half the probes, of at least 3, rules out a reset skipped
# now and then on purpose (a step skipped by a GradScaler, say).
CARRIED_MIN_PROBES = 3
ZERO_GRAD_FIX = (
    "Call optimizer.zero_grad(set_to_none=True) once per step before loss.backward() (or after "
    "optimizer.step()); with gradient accumulation, zero after each optimizer step."
)
CARRIED_SHARE = 0.5
ACCUMULATE_CORR = 0.9
ACCUMULATE_GROWTH = 5.0
# update_ratio_out_of_range: |dW|/|W| per step; about 1e-3 is healthy (cs231n); DeepDiagnosis
# flags outside [1e-5, 1e-1].
UPDATE_LOW = 1e-5
UPDATE_HIGH = 1e-1
# lr_schedule_exhausted: the learning rate fell below 1e-3 of its peak with >= 10% of steps to go.
LR_EXHAUSTED = 1e-3
LR_EXHAUSTED_REMAINING = 0.10


def per_layer(data: RunData) -> dict[str, dict[str, Any]]:
    """Layer name -> its rows over the sampled steps (arrays), in model order (computed once per
    run: six checks use it; read-only)."""
    cols = data.layers()
    need(len(cols["step"]) > 0, "no per-layer stats recorded (watch(model) with sample_every > 0)")
    return data.memo("per_layer", lambda: _split_layers(cols))


def _split_layers(cols: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    order = np.lexsort((cols["step"], cols["position"]))
    names = cols["layer"][order]
    for name in dict.fromkeys(names.tolist()):
        rows = order[names == name]
        out[name] = {k: np.asarray(v)[rows] for k, v in cols.items()}
    return out


def param_layers(data: RunData) -> dict[str, dict[str, Any]]:
    return {name: rows for name, rows in per_layer(data).items() if rows["param_count"][0] > 0}


def _grad_norm(data: RunData) -> Series:
    return data.series("grad_norm")


@check("nonfinite_gradients", "gradients")
def nonfinite_gradients(data: RunData) -> Issue | None:
    """A gradient norm became NaN or infinite (global norm, or any layer's)."""
    gn = _grad_norm(data)
    layers = data.layers() if data.has_layers else None
    need(len(gn) > 0 or layers is not None, "no gradient norms recorded")
    bad_steps = set(gn.steps[~np.isfinite(gn.values)].tolist())
    flagged = data.series("flag/nonfinite_gradients")
    bad_steps |= set(flagged.steps.tolist())
    bad_layers: list[str] = []
    if layers is not None:
        g = np.asarray(layers["grad_norm"], dtype=float)
        inf_mask = ~np.isfinite(g) & ~layers["grad_norm_is_null"]  # null means no gradient at all
        bad_steps |= set(np.asarray(layers["step"])[inf_mask].tolist())
        bad_layers = sorted(set(np.asarray(layers["layer"])[inf_mask].tolist()))
    if not bad_steps:
        return None
    first = int(min(bad_steps))
    lr = lr_at(data, first)
    return Issue(
        code="nonfinite_gradients",
        severity="critical",
        title="Gradients became NaN/Inf",
        message=f"The gradient norm is non-finite at {len(bad_steps)} recorded step(s), first at step {first}.",
        evidence={"first_step": first, "count": len(bad_steps), "layers": bad_layers[:20], "lr": lr},
        first_step=first,
        fix_prompt=(
            "Clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)), "
            + change_lr(data, 0.1, first)
            + ", and look for an operation that overflows (exp, log, division, fp16 without GradScaler)."
        ),
    )


@check("vanishing_gradients", "gradients")
def vanishing_gradients(data: RunData) -> Issue | None:
    """Gradients reaching the first layers are orders of magnitude smaller than at the last."""
    gn = _grad_norm(data).finite()
    global_level = level(gn) if len(gn) else float("nan")
    if data.has_layers:
        layers = param_layers(data)
        need(len(layers) >= 2, "needs at least two layers with parameters")
        names = list(layers)
        first, last = layers[names[0]], layers[names[-1]]
        g1, g2 = np.asarray(first["grad_norm"], float), np.asarray(last["grad_norm"], float)
        ok = np.isfinite(g1) & np.isfinite(g2)
        need(ok.sum() >= 1, "no finite layer gradient norms")
        ratio = median(g1[ok] / np.maximum(g2[ok], 1e-30))
        first_level = median(g1[ok])
        # exactly zero gradients mean nothing flows at all: dead units or unused layers, not vanishing
        vanishing = (0 < first_level < VANISH_FIRST and ratio < VANISH_RATIO) or 0 < global_level < VANISH_GLOBAL
        evidence = {"first_layer": names[0], "last_layer": names[-1], "first_over_last": ratio,
                    "first_layer_grad_norm": first_level, "global_grad_norm": global_level}  # fmt: skip
        detail = (
            f"the gradient norm of the first layer ({names[0]}: {fmt(first_level)}) is {fmt(ratio)}x that "
            f"of the last ({names[-1]})"
        )
    else:
        need(len(gn) > 0, "no gradient norms recorded")
        vanishing = 0 < global_level < VANISH_GLOBAL
        evidence = {"global_grad_norm": global_level}
        detail = f"the global gradient norm is {fmt(global_level)}"
    if not vanishing:
        return None
    return Issue(
        code="vanishing_gradients",
        severity="warning",
        title="Vanishing gradients",
        message=f"Gradients vanish: {detail} (median over the recorded steps).",
        evidence=evidence,
        first_step=int(gn.steps[0]) if len(gn) else None,
        fix_prompt=(
            "Replace sigmoid/tanh hidden activations with ReLU/GELU, use He (kaiming) initialization, add "
            "normalization (BatchNorm/LayerNorm) or residual connections, and check for dead ReLUs."
        ),
    )


@check("exploding_gradients", "gradients")
def exploding_gradients(data: RunData) -> Issue | None:
    """Gradient norms grow by orders of magnitude, or are huge from the start."""
    gn = _grad_norm(data).finite()
    need(len(gn) >= 10 or data.has_layers, "too few gradient norms")
    reasons, evidence = [], {}
    first_step = None
    if len(gn) >= 10:
        b = buckets(gn, 200)
        early, late = median(window(b, 0.02, 0.2).values), median(window(b, 0.8, 1.0).values)
        evidence.update(early_grad_norm=early, late_grad_norm=late)
        if early > 0 and late / early > EXPLODE_GROWTH:
            reasons.append(f"the gradient norm grew {fmt(late / early)}x (from {fmt(early)} to {fmt(late)})")
            first_step = int(b.steps[int(0.8 * len(b))])
        start = median(window(b, 0, 0.1).values)
        if start > EXPLODE_ABSOLUTE:
            reasons.append(f"the gradient norm is {fmt(start)} from the start (initialization far too large?)")
            first_step = int(gn.steps[0])
    if data.has_layers:
        layers = param_layers(data)
        stds = [float(rows["act_std"][0]) for rows in layers.values() if np.isfinite(rows["act_std"][0])]
        if len(stds) >= 2 and min(stds) > 0 and max(stds) / min(stds) > INIT_STD_RATIO:
            spread = max(stds) / min(stds)
            evidence["activation_std_spread"] = spread
            reasons.append(
                f"at the first step layer outputs differ {fmt(spread)}x in scale ({fmt(min(stds))} to "
                f"{fmt(max(stds))}): the initialization is far off"
            )
            first_step = first_step or int(next(iter(layers.values()))["step"][0])
        if len(layers) >= 2:
            names = list(layers)
            g1 = np.asarray(layers[names[0]]["grad_norm"], float)
            g2 = np.asarray(layers[names[-1]]["grad_norm"], float)
            ok = np.isfinite(g1) & np.isfinite(g2) & (g2 > 0)
            if ok.any():
                ratio = median(g1[ok] / g2[ok])
                evidence["first_over_last"] = ratio
                if ratio > EXPLODE_RATIO:
                    reasons.append(f"the first layer's gradient is {fmt(ratio)}x the last layer's")
                    first_step = first_step or int(layers[names[0]]["step"][0])
    if not reasons:
        return None
    lr = lr_at(data)
    return Issue(
        code="exploding_gradients",
        severity="critical" if len(reasons) > 1 else "warning",
        title="Exploding gradients",
        message="Gradients explode: " + "; ".join(reasons) + ".",
        evidence=evidence | {"lr": lr},
        first_step=first_step,
        fix_prompt=(
            "Clip gradients (torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)), "
            + change_lr(data, 0.1)
            + ", and use a standard initialization (kaiming/xavier, or the layer defaults) and normalization layers."
        ),
    )


@check("gradient_norm_spike", "gradients")
def gradient_norm_spike(data: RunData) -> Issue | None:
    """Isolated jumps of the gradient norm (6 robust sigmas in log space and >= 5x)."""
    gn = _grad_norm(data).finite()
    need(len(gn) >= 50, f"only {len(gn)} gradient norms")
    starts, ratio, base = find_spikes(gn, GN_SPIKE_Z, GN_SPIKE_RATIO)
    if not len(starts):
        return None
    worst = starts[np.argmax(ratio[starts])]
    steps = [int(gn.steps[i]) for i in starts[:20]]
    return Issue(
        code="gradient_norm_spike",
        severity="warning" if len(starts) >= 3 or ratio[worst] >= 20 else "info",
        title=f"{len(starts)} gradient-norm spike(s)",
        message=(
            f"The gradient norm spiked {len(starts)} time(s); the worst, at step {int(gn.steps[worst])}, was "
            f"{fmt(float(ratio[worst]))}x its local median ({fmt(float(gn.values[worst]))})."
        ),
        evidence={"spike_steps": steps, "worst_ratio": float(ratio[worst]), "count": len(starts)},
        first_step=steps[0],
        fix_prompt=(
            "Clip gradients at about 2x the typical norm (clip_grad_norm_(model.parameters(), "
            f"{fmt(2 * float(np.median(base)))})) and inspect the batches at steps {', '.join(map(str, steps[:5]))}."
        ),
    )


def _carried_over(data: RunData) -> Issue | None:
    probes = data.series("grad/carried_over").finite()
    if len(probes) < CARRIED_MIN_PROBES:
        return None
    kept = probes.values > 0
    if kept.mean() < CARRIED_SHARE:
        return None
    first = int(probes.steps[np.argmax(kept)])
    return Issue(
        code="stale_gradients",
        severity="critical",
        title="Gradients are never zeroed",
        message=(
            f"At {int(kept.sum())} of {len(probes)} checked steps the gradient of the previous step was still "
            f"there when the next backward pass added to it (median {fmt(float(np.median(probes.values)))}x "
            "the new gradient): every update follows the sum of all past gradients, not the current batch."
        ),
        evidence={"probes": len(probes), "carried": int(kept.sum()),
                  "median_ratio": float(np.median(probes.values))},  # fmt: skip
        first_step=first,
        fix_prompt=ZERO_GRAD_FIX,
    )


@check("stale_gradients", "gradients")
def stale_gradients(data: RunData) -> Issue | None:
    """Gradients that are never zeroed (norm climbs step after step) or never recomputed (repeats)."""
    carried = _carried_over(data)
    if carried is not None:
        return carried
    gn = _grad_norm(data)
    need(len(gn) >= 10, f"only {len(gn)} gradient norms")
    v = gn.values
    same = np.concatenate([[False], (v[1:] == v[:-1]) & np.isfinite(v[1:]) & (v[1:] != 0), [False]])
    edges = np.flatnonzero(np.diff(same.astype(np.int8)))  # starts and ends of runs of repeats
    starts, ends = edges[::2], edges[1::2]
    longest, end = 0, 0
    if len(starts):
        k = int(np.argmax(ends - starts))
        longest, end = int(ends[k] - starts[k]), int(ends[k])
    finite = gn.finite()
    b = buckets(finite, 200)
    corr = spearman(b.steps, b.values)
    start, stop = median(window(b, 0, 0.1).values), median(window(b, 0.9, 1.0).values)
    growth = stop / start if start > 0 else 0.0
    if longest + 1 >= STALE_REPEATS:
        first = int(gn.steps[end - longest])
        message = (
            f"The gradient norm is exactly {fmt(float(v[end]))} for {longest + 1} consecutive recorded steps "
            f"from step {first}: gradients are not being recomputed."
        )
        fix = "Call loss.backward() every step before optimizer.step(), on the loss of the current batch."
    elif corr >= ACCUMULATE_CORR and growth >= ACCUMULATE_GROWTH and _polynomial(b):
        first = int(finite.steps[0])
        message = (
            f"The gradient norm climbs steadily ({fmt(start)} -> {fmt(stop)}, {fmt(growth)}x, rank correlation "
            f"{corr:.2f}): gradients accumulate across steps because they are never zeroed."
        )
        fix = ZERO_GRAD_FIX
    else:
        return None
    return Issue(
        code="stale_gradients",
        severity="critical",
        title="Stale gradients",
        message=message,
        evidence={"identical_run": longest + 1, "rank_correlation": corr, "growth": growth},
        first_step=first,
        fix_prompt=fix,
    )


def _polynomial(b: Series) -> bool:
    """Summed gradients grow like step**k with k between 0.3 (a random walk) and 1.5 (aligned
    gradients); a blow-up from divergence grows exponentially, far faster."""
    ok = (b.steps > 0) & (b.values > 0)
    if ok.sum() < 5:
        return False
    slope = float(np.polyfit(np.log(b.steps[ok]), np.log(b.values[ok]), 1)[0])
    return 0.3 <= slope <= 1.5


def _modules(data: RunData) -> list[dict[str, Any]]:
    modules = (data.info.get("model") or {}).get("modules") or []
    need(bool(modules), "no model summary (the run did not call watch(model))")
    return [m for m in modules if m.get("own_params", 0) > 0]


@check("frozen_parameters", "gradients")
def frozen_parameters(data: RunData) -> Issue | None:
    """Layers whose parameters do not require gradients (intentional when fine-tuning)."""
    modules = _modules(data)
    frozen = [m for m in modules if m.get("own_trainable", m["own_params"]) == 0]
    if not frozen:
        return None
    total = sum(m["own_params"] for m in modules)
    count = sum(m["own_params"] for m in frozen)
    share = count / total if total else 0.0
    names = [m["name"] for m in frozen]
    return Issue(
        code="frozen_parameters",
        severity="critical" if share >= 0.999 else "info",
        title="Frozen parameters",
        message=(
            f"{len(frozen)} layer(s) with {count:,} parameters ({share:.0%} of the model) have requires_grad="
            f"False and do not train: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}."
        ),
        evidence={"layers": names[:50], "frozen_params": count, "share": share},
        first_step=None,
        fix_prompt=(
            "If these layers should train, set requires_grad=True on their parameters "
            f"(e.g. for p in model.{names[0]}.parameters(): p.requires_grad_(True)) and pass them to the optimizer."
        ),
    )


@check("unused_parameters", "gradients")
def unused_parameters(data: RunData) -> Issue | None:
    """Trainable parameters the optimizer never updates: missing from it, or never given a gradient."""
    modules = _modules(data)
    missing = [m for m in modules if m.get("own_in_optimizer") is not None
               and m.get("own_trainable", 0) > m["own_in_optimizer"]]  # fmt: skip
    no_grad: list[str] = []
    if data.has_layers:
        for name, rows in param_layers(data).items():
            g = np.asarray(rows["grad_norm"], float)
            trainable = next((m.get("own_trainable", 1) for m in modules if m["name"] == name), 1)
            if trainable and bool(np.all(rows["grad_norm_is_null"])) and len(g):
                no_grad.append(name)
    if not missing and not no_grad:
        return None
    total = sum(m.get("own_trainable", 0) for m in modules) or 1
    lost = sum(m["own_trainable"] - m["own_in_optimizer"] for m in missing)
    parts = []
    if missing:
        parts.append(
            f"{len(missing)} layer(s) with {lost:,} trainable parameters ({lost / total:.0%}) are not in the "
            f"optimizer: {', '.join(m['name'] for m in missing[:8])}"
        )
    if no_grad:
        parts.append(f"{len(no_grad)} layer(s) never received a gradient: {', '.join(no_grad[:8])}")
    return Issue(
        code="unused_parameters",
        severity="critical" if lost / total > 0.5 else "warning",
        title="Parameters that never update",
        message="; ".join(parts) + ".",
        evidence={
            "not_in_optimizer": [m["name"] for m in missing][:50],
            "params_not_in_optimizer": lost,
            "no_gradient": no_grad[:50],
        },  # fmt: skip
        first_step=None,
        fix_prompt=(
            "Build the optimizer from model.parameters() (or include every submodule's parameters in its "
            "param groups); for layers that never get a gradient, check they are used in forward() and that "
            "their output is not detached."
        ),
    )


@check("update_ratio_out_of_range", "gradients")
def update_ratio_out_of_range(data: RunData) -> Issue | None:
    """Per-step update/weight ratio far from ~1e-3: below 1e-5 (lr too low) or above 0.1 (too high)."""
    layers = param_layers(data)
    medians = {}
    for name, rows in layers.items():
        r = np.asarray(rows["update_ratio"], float)
        g = np.asarray(rows["grad_norm"], float)
        ok = np.isfinite(r) & np.isfinite(g) & (g > 0)
        if ok.sum():
            medians[name] = median(r[ok])
    need(len(medians) > 0, "no update ratios (needs two consecutive samples of a layer with gradients)")
    overall = median(np.array(list(medians.values())))
    high = {k: v for k, v in medians.items() if v > UPDATE_HIGH}
    if UPDATE_LOW <= overall <= UPDATE_HIGH and not any(v > 1 for v in high.values()):
        return None
    lr = lr_at(data)
    too_high = overall > UPDATE_HIGH or any(v > 1 for v in high.values())
    target = lr * 1e-3 / overall if lr and overall > 0 else None
    return Issue(
        code="update_ratio_out_of_range",
        severity="warning",
        title="Update/weight ratio " + ("too high" if too_high else "too low"),
        message=(
            f"Each step changes the weights by {fmt(overall)} of their norm (median over {len(medians)} layers; "
            f"about 1e-3 is healthy): the learning rate is likely too {'high' if too_high else 'low'}."
        ),
        evidence={"median_ratio": overall, "per_layer": medians, "lr": lr},
        first_step=None,
        fix_prompt=(
            f"Set the learning rate of param group 0 to about {fmt(target)} (from {fmt(lr)}), which would give a "
            "ratio near 1e-3."
            if target
            else f"{'Lower' if too_high else 'Raise'} the learning rate until the ratio is near 1e-3."
        ),
    )


@check("lr_schedule_exhausted", "gradients")
def lr_schedule_exhausted(data: RunData) -> Issue | None:
    """The learning rate decayed to ~0 (< 1e-3 of its peak) with >= 10% of the run still to go."""
    lr = data.series("lr").finite()
    need(len(lr) >= 10, "no learning-rate series")
    peak_i = int(np.argmax(lr.values))
    peak = float(lr.values[peak_i])
    if peak <= 0:
        return None
    low = np.flatnonzero(lr.values[peak_i:] <= LR_EXHAUSTED * peak)
    if not len(low):
        return None
    first = int(lr.steps[peak_i + low[0]])
    end = max(int(lr.steps[-1]), data.total_steps or 0)
    start = int(lr.steps[0])
    remaining = (end - first) / max(end - start, 1)
    if remaining < LR_EXHAUSTED_REMAINING:
        return None
    return Issue(
        code="lr_schedule_exhausted",
        severity="warning",
        title="Learning-rate schedule exhausted early",
        message=(
            f"The learning rate fell to {fmt(float(lr.values[peak_i + low[0]]))} (peak {fmt(peak)}) at step "
            f"{first}; the remaining {remaining:.0%} of the run trains with almost no step size."
        ),
        evidence={"peak_lr": peak, "exhausted_step": first, "remaining_fraction": remaining},
        first_step=first,
        fix_prompt=(
            f"Set the scheduler's horizon to the real run length ({end} steps: e.g. CosineAnnealingLR(T_max="
            f"{end}) or the total steps of your warm-up/decay schedule), or stop the run at step {first}."
        ),
    )
