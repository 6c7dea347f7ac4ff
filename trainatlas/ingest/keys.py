"""Foreign metric names onto trainatlas names (``train/loss``, ``val/loss``, ``val/acc``, ``lr``, ...),
so that the diagnostics find what they look for in any log.

A value whose name maps is stored under the trainatlas name and again under ``orig/<name>``, its
name in the source; a name that does not map is stored as it is. Rows a log marks as validation
(MMCV ``mode: val``, ``Epoch(val)`` lines, MMEngine evaluation rows) get ``val/`` in front of names
that do not already say so, so ``loss`` there is ``val/loss``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

ORIG = "orig/"

_TABLE = {
    "train/loss": ("loss", "train_loss", "train/loss", "trainloss", "train_loss_step", "training_loss",
                   "train/loss_step"),
    "val/loss": ("val_loss", "val/loss", "eval_loss", "eval/loss", "valid_loss", "valid/loss", "validation_loss",
                 "valloss", "val_loss_epoch", "val/loss_epoch"),
    "test/loss": ("test_loss", "test/loss"),
    "train/acc": ("acc", "accuracy", "train_acc", "train_accuracy", "trainacc", "train/acc", "train/accuracy"),
    "val/acc": ("val_acc", "val_accuracy", "val/acc", "val/accuracy", "valacc", "eval_accuracy", "eval_acc",
                "eval/accuracy", "val/accuracy_top-1", "val/accuracy/top1", "val/top1", "val_acc_epoch"),
    "lr": ("lr", "learning_rate", "train_lr", "train/learning_rate", "train/lr", "x/lr0", "lr/pg0"),
    "grad_norm": ("grad_norm", "train/grad_norm", "gradient_norm", "grad_norm_total"),
}  # fmt: skip
_MAP = {name: target for target, names in _TABLE.items() for name in names}
# MMCV/MMEngine report the seconds an iteration and its data loading took
_MM = {"time": "time/step_s", "data_time": "time/data_s"}
_SPACES = re.compile(r"\s+")
VAL_PREFIXES = ("val/", "val_", "eval/", "eval_", "test/", "test_", "valid/", "valid_", "validation")


def normalise(name: str) -> str:
    return _SPACES.sub("_", name.strip().lower()).rstrip("%").rstrip("_")


def map_key(name: str, mm: bool = False) -> str | None:
    """The trainatlas name for a source name, or None when there is none."""
    norm = normalise(name)
    if mm and norm in _MM:
        return _MM[norm]
    if norm.startswith("lr-") and "/" not in norm:  # Lightning LearningRateMonitor: lr-Adam, lr-SGD
        return "lr"
    return _MAP.get(norm)


def as_val(name: str) -> str:
    """A name from a validation row, prefixed with ``val/`` unless it already says val/eval/test."""
    return name if name.lower().startswith(VAL_PREFIXES) else "val/" + name


class KeyMapper:
    """Cached mapping of source names to the (key, value-name) pairs that are stored."""

    def __init__(self, mm: bool | Callable[[], bool] = False) -> None:
        self.mm = mm  # a callable is asked at the first row (the parser knows by then)
        self._cache: dict[str, tuple[str, ...]] = {}

    def targets(self, name: str) -> tuple[str, ...]:
        got = self._cache.get(name)
        if got is None:
            mapped = map_key(name, self.mm() if callable(self.mm) else self.mm)
            got = (name,) if mapped is None or mapped == name else (mapped, ORIG + name)
            self._cache[name] = got
        return got
