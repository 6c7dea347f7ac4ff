"""The labelled runs of the diagnosis benchmark: families of one pathology (or of one kind of
healthy run), each in several variants (optimizer, width, activation, data set, batch size,
schedule) and seeds. A pathological run counts as found when one of its ``hits`` is raised at
warning or critical; a healthy run must get neither.

The healthy families are the hard negatives: runs that look odd on the way (a warm-up bump, LR
steps, a long flat tail, noisy small batches, frozen layers) and end well."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from train import Spec

SEEDS = (0, 1, 2, 3)
HEALTHY = "healthy"
# A learning rate far too high shows as NaN, as a loss that jumps and stays up, or as ReLUs that the
# first large updates killed (dead_relu then says they died during training and to lower the rate).
LR_TOO_HIGH = ("nonfinite_loss", "loss_divergence", "nonfinite_gradients", "dead_relu")

# family -> (label, hits, variants). Each variant is the Spec fields that differ from the defaults,
# with a short "variant" name; every variant runs under every seed.
Variants = list[dict[str, Any]]
FAMILIES: dict[str, tuple[str, tuple[str, ...], Variants]] = {
    # -- the loss ------------------------------------------------------------------------------------
    "lr-far-too-high-nan": ("nonfinite_loss", LR_TOO_HIGH, [
        {"variant": "sgd-leaky", "act": "LeakyReLU", "optimizer": "sgd", "lr": 1.0, "momentum": 0.9},
        {"variant": "sgd-classes", "data": "classes", "optimizer": "sgd", "lr": 2.0, "momentum": 0.9},
        {"variant": "sgd-cnn", "model": "cnn", "optimizer": "sgd", "lr": 1.0, "momentum": 0.9},
    ]),
    "lr-too-high-stuck": ("loss_divergence", LR_TOO_HIGH, [
        {"variant": "adam-1", "lr": 1.0},
        {"variant": "adam-0.3-wide", "lr": 0.3, "hidden": 256},
        {"variant": "adam-classes", "data": "classes", "lr": 1.0},
    ]),
    "nan-in-data": ("nonfinite_loss", ("nonfinite_loss", "nonfinite_gradients"), [
        {"variant": "mlp", "bug": "nan_batch"},
        {"variant": "cnn-late", "model": "cnn", "bug": "nan_batch", "extra_at": 250},
        {"variant": "classes", "data": "classes", "bug": "nan_batch", "extra_at": 40},
    ]),
    "corrupt-batches": ("loss_spikes", ("loss_spikes", "gradient_norm_spike", "loss_divergence"), [
        {"variant": "mlp", "steps": 400, "bug": "corrupt_batches"},
        {"variant": "cnn", "model": "cnn", "steps": 400, "bug": "corrupt_batches"},
        {"variant": "classes-sgd", "data": "classes", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
         "steps": 400, "bug": "corrupt_batches"},
    ]),
    "cyclic-lr-too-high": ("loss_oscillation", ("loss_oscillation", "loss_divergence", "nonfinite_loss"), [
        {"variant": "period-100", "act": "LeakyReLU", "optimizer": "sgd", "lr": 1.0, "schedule": "cyclic",
         "steps": 600},
        {"variant": "period-50", "act": "LeakyReLU", "optimizer": "sgd", "lr": 1.0, "schedule": "cyclic",
         "steps": 600, "extra_half_period": 25},
        {"variant": "period-200", "act": "LeakyReLU", "optimizer": "sgd", "lr": 1.0, "schedule": "cyclic",
         "steps": 800, "extra_half_period": 100},
    ]),
    "shuffled-labels": ("no_learning", ("no_learning", "overfitting"), [
        {"variant": "mlp-16", "hidden": 16, "bug": "shuffled_labels"},
        {"variant": "mlp-64-classes", "data": "classes", "bug": "shuffled_labels"},
        {"variant": "cnn", "model": "cnn", "bug": "shuffled_labels"},
    ]),
    "dead-relu": ("dead_relu", ("dead_relu", "no_learning"), [
        {"variant": "mlp", "bug": "negative_bias"},
        {"variant": "wide-classes", "data": "classes", "hidden": 128, "bug": "negative_bias"},
        {"variant": "deep-sgd", "depth": 3, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "bug": "negative_bias"},
    ]),
    "tiny-train-set": ("overfitting", ("overfitting",), [
        {"variant": "mlp-256", "hidden": 256, "train_size": 40, "lr": 3e-3},
        {"variant": "classes", "data": "classes", "hidden": 256, "train_size": 60, "lr": 3e-3},
        {"variant": "cnn", "model": "cnn", "train_size": 40, "lr": 3e-3},
        # 16 epochs of a warm-up to a high peak: val loss ~26% above its best at the end (seeds 0-3)
        {"variant": "warmup-16-epochs", "data": "classes", "lr": 0.02, "schedule": "warmup_cosine", "steps": 600},
    ]),
    "lr-too-low": ("no_learning", ("no_learning", "update_ratio_out_of_range", "slow_convergence"), [
        {"variant": "adam", "lr": 1e-6},
        {"variant": "cnn", "model": "cnn", "lr": 1e-6},
        {"variant": "sgd-classes", "data": "classes", "optimizer": "sgd", "lr": 1e-5},
    ]),
    "slow-sgd": ("slow_convergence", ("slow_convergence", "update_ratio_out_of_range", "no_learning"), [
        {"variant": "digits", "optimizer": "sgd", "lr": 0.01, "steps": 600},
        {"variant": "classes", "data": "classes", "optimizer": "sgd", "lr": 0.003, "steps": 600},
    ]),
    "lr-schedule-exhausted": ("lr_schedule_exhausted", ("lr_schedule_exhausted",), [
        {"variant": "sgd", "optimizer": "sgd", "lr": 0.1, "schedule": "exhausted"},
        {"variant": "adam-classes", "data": "classes", "lr": 1e-3, "schedule": "exhausted", "steps": 450},
    ]),
    # -- gradients -------------------------------------------------------------------------------------
    "deep-sigmoid": ("vanishing_gradients", ("vanishing_gradients",), [
        {"variant": "depth-8", "act": "Sigmoid", "hidden": 32, "depth": 8},
        {"variant": "depth-10-classes", "data": "classes", "act": "Sigmoid", "hidden": 32, "depth": 10},
    ]),
    "huge-init": ("exploding_gradients", ("exploding_gradients",), [
        {"variant": "mlp", "bug": "huge_init"},
        {"variant": "classes", "data": "classes", "bug": "huge_init"},
    ]),
    "no-zero-grad-sgd": ("stale_gradients", ("stale_gradients",), [
        {"variant": "digits", "optimizer": "sgd", "lr": 0.01, "bug": "no_zero_grad"},
        {"variant": "classes-momentum", "data": "classes", "optimizer": "sgd", "lr": 0.001, "momentum": 0.9,
         "bug": "no_zero_grad"},
    ]),
    "no-zero-grad-adam": ("stale_gradients", ("stale_gradients",), [
        {"variant": "adam", "bug": "no_zero_grad"},
        {"variant": "adamw-classes", "data": "classes", "optimizer": "adamw", "bug": "no_zero_grad"},
    ]),
    "optimizer-misses-params": ("unused_parameters", ("unused_parameters",), [
        {"variant": "mlp", "bug": "optimizer_misses_params"},
        {"variant": "classes", "data": "classes", "bug": "optimizer_misses_params"},
    ]),
    # -- activations and architecture --------------------------------------------------------------------
    "saturated-tanh": ("activation_saturation", ("activation_saturation",), [
        {"variant": "digits", "act": "Tanh", "bug": "saturating_init"},
        {"variant": "classes", "data": "classes", "act": "Tanh", "bug": "saturating_init"},
    ]),
    "eval-mode": ("model_in_eval_mode", ("model_in_eval_mode",), [
        {"variant": "dropout", "bug": "eval_mode"},
        {"variant": "classes", "data": "classes", "bug": "eval_mode"},
    ]),
    "batchnorm-tiny-batch": ("batchnorm_small_batch", ("batchnorm_small_batch",), [
        {"variant": "batch-4", "batch": 4, "extra_batchnorm": True},
        {"variant": "batch-2-classes", "data": "classes", "batch": 2, "extra_batchnorm": True},
    ]),
    "weights-grow": ("weight_norm_growth", ("weight_norm_growth",), [
        {"variant": "sgd-1", "optimizer": "sgd", "lr": 1.0, "momentum": 0.9},
        {"variant": "sgd-classes", "data": "classes", "optimizer": "sgd", "lr": 1.0, "momentum": 0.9},
    ]),
    # -- the system --------------------------------------------------------------------------------------
    "slow-data": ("dataloader_bottleneck", ("dataloader_bottleneck",), [
        {"variant": "10ms", "steps": 150, "bug": "slow_data"},
        {"variant": "20ms-cnn", "model": "cnn", "steps": 120, "bug": "slow_data", "extra_wait": 0.02},
    ]),
    "memory-leak": ("memory_leak", ("memory_leak",), [
        {"variant": "feature-cache", "steps": 1200, "bug": "feature_cache"},
        {"variant": "kept-activations", "hidden": 512, "depth": 1, "batch": 128, "steps": 1500,
         "bug": "kept_activations", "extra_data_wait": 0.002},
    ]),
    "slowing-steps": ("throughput_degradation", ("throughput_degradation",), [
        {"variant": "mlp", "bug": "slowing"},
    ]),
    "periodic-stalls": ("step_time_instability", ("step_time_instability",), [
        {"variant": "mlp", "steps": 600, "bug": "stalls"},
    ]),
    # -- healthy hard negatives --------------------------------------------------------------------------
    "healthy-mlp": (HEALTHY, (), [
        {"variant": "digits"}, {"variant": "wide-classes", "data": "classes", "hidden": 128},
        {"variant": "moons", "data": "moons", "hidden": 32},
    ]),
    "healthy-cnn": (HEALTHY, (), [{"variant": "adam", "model": "cnn"},
                                  {"variant": "sgd", "model": "cnn", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9}]),
    "healthy-gru": (HEALTHY, (), [{"variant": "adam", "model": "gru", "hidden": 32, "lr": 3e-3}]),
    "healthy-transformer": (HEALTHY, (), [{"variant": "adam", "model": "transformer", "lr": 1e-3},
                                          {"variant": "warmup", "model": "transformer", "schedule": "warmup_cosine",
                                           "lr": 2e-3}]),  # fmt: skip
    "healthy-regression": (HEALTHY, (), [
        {"variant": "adam", "data": "regression"},
        {"variant": "sgd", "data": "regression", "optimizer": "sgd", "lr": 0.01, "momentum": 0.9},
    ]),
    "warmup-high-peak": (HEALTHY, (), [
        {"variant": "tanh", "act": "Tanh", "lr": 0.03, "schedule": "warmup_cosine", "steps": 600},
        {"variant": "sigmoid", "act": "Sigmoid", "lr": 0.03, "schedule": "warmup_cosine", "steps": 600},
        {"variant": "relu-cnn", "model": "cnn", "lr": 0.01, "schedule": "warmup_cosine", "steps": 600},
    ]),
    "step-lr": (HEALTHY, (), [
        {"variant": "sgd", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "schedule": "step", "steps": 600},
        {"variant": "adam-classes", "data": "classes", "lr": 3e-3, "schedule": "step", "steps": 600},
    ]),
    "cosine": (HEALTHY, (), [
        {"variant": "sgd", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "schedule": "cosine"},
        {"variant": "adamw", "optimizer": "adamw", "lr": 3e-3, "schedule": "cosine"},
    ]),
    "one-cycle": (HEALTHY, (), [{"variant": "sgd", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
                                 "schedule": "onecycle", "steps": 400}]),
    "label-smoothing": (HEALTHY, (), [{"variant": "0.1", "label_smoothing": 0.1},
                                      {"variant": "0.2-classes", "data": "classes", "label_smoothing": 0.2}]),
    "long-flat-tail": (HEALTHY, (), [
        {"variant": "moons-800", "data": "moons", "hidden": 32, "steps": 800},
        {"variant": "digits-1000", "steps": 1000},
    ]),
    "small-batches": (HEALTHY, (), [{"variant": "batch-8", "batch": 8, "steps": 600},
                                    {"variant": "batch-4", "batch": 4, "lr": 3e-4, "steps": 800}]),
    "frozen-backbone": (HEALTHY, (), [{"variant": "head-only", "hidden": 128, "bug": "frozen_backbone", "lr": 3e-3}]),
    "regularized": (HEALTHY, (), [
        {"variant": "dropout", "extra_dropout": True},
        {"variant": "batchnorm", "extra_batchnorm": True},
        {"variant": "weight-decay", "optimizer": "adamw", "weight_decay": 0.05},
    ]),
    "clipped-sgd": (HEALTHY, (), [{"variant": "clip-1", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "clip": 1.0}]),
    "short-run": (HEALTHY, (), [{"variant": "60-steps", "steps": 60}]),
    "late-start": (HEALTHY, (), [
        {"variant": "adam", "schedule": "delayed", "steps": 500},
        {"variant": "sgd-classes", "data": "classes", "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
         "schedule": "delayed", "steps": 500},
    ]),
    "noisy-labels": (HEALTHY, (), [{"variant": "digits", "bug": "noisy_labels"},
                                   {"variant": "classes", "data": "classes", "bug": "noisy_labels"}]),
    "more-architectures": (HEALTHY, (), [
        {"variant": "gru-sgd-clipped", "model": "gru", "hidden": 32, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9,
         "clip": 1.0, "steps": 400},
        {"variant": "transformer-smoothed", "model": "transformer", "optimizer": "adamw", "lr": 1e-3,
         "schedule": "warmup_cosine", "label_smoothing": 0.1},
        {"variant": "regression-wide-cosine", "data": "regression", "hidden": 256, "schedule": "cosine"},
        {"variant": "cnn-batch-8", "model": "cnn", "batch": 8, "steps": 500},
    ]),
}


def _spec(family: str, label: str, hits: tuple[str, ...], fields: dict[str, Any], seed: int) -> Spec:
    fields = dict(fields)
    extra = {"variant": fields.pop("variant")}
    extra.update({k.removeprefix("extra_"): fields.pop(k) for k in list(fields) if k.startswith("extra_")})
    return Spec(family=family, label=label, hits=hits, seed=seed, extra=tuple(sorted(extra.items())), **fields)


def specs(seeds: tuple[int, ...] = SEEDS) -> Iterator[Spec]:
    """Every run of the benchmark."""
    for family, (label, hits, variants) in FAMILIES.items():
        for fields in variants:
            for seed in seeds:
                yield _spec(family, label, hits, fields, seed)


def regression_slice() -> list[Spec]:
    """One run per family (its first variant, seed 0): the fixed slice `make test` scores."""
    return [_spec(family, label, hits, variants[0], 0) for family, (label, hits, variants) in FAMILIES.items()]
