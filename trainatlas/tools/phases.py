"""The training-phase state machine: INITIALIZING, WARMUP, LEARNING_FAST, STABLE_CONVERGENCE,
PLATEAU, OVERFITTING_RISK, DIVERGING, CONVERGED; and UNKNOWN for a finished run whose loss was too
short (or absent) to follow: a run that trains no more is never still initializing.

The run is cut into windows of equal length in steps; each window's median loss (and learning
rate, validation metric) moves the machine. ``PhaseTracker`` consumes windows one by one, so a live
run is followed incrementally; ``phase_history`` replays a whole run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainatlas.fmt import relative
from trainatlas.tools.robust import median
from trainatlas.tools.rundata import RunData

PHASES = (
    "INITIALIZING", "WARMUP", "LEARNING_FAST", "STABLE_CONVERGENCE",
    "PLATEAU", "OVERFITTING_RISK", "DIVERGING", "CONVERGED", "UNKNOWN",
)  # fmt: skip
WINDOWS = 25  # a run is followed in about this many windows
MIN_WINDOW_STEPS = 20
SMOOTH = 3  # window levels are smoothed by a running median of this many windows
FAST = 0.03  # >= 3% better per window: learning fast
SLOW = 0.003  # < 0.3% better per window: plateau
DIVERGE = 1.5  # smoothed level 1.5x above the best so far (and rising): diverging
WARMUP_RISE = 0.1  # the learning rate rose > 10% within the window
OVERFIT = 0.05  # validation loss 5% above its best while training improves
CONVERGED_AFTER = 3  # plateau windows in a row before the run counts as converged
CONVERGED_MIN_GAIN = 0.05  # ... and only if it improved at least 5% overall (else it is stuck)
CONFIRM = 2  # a new phase must hold for this many windows (diverging and warm-up switch at once)


@dataclass
class Window:
    end_step: int
    loss: float  # median training loss in the window (NaN if it went non-finite)
    lr_first: float | None = None
    lr_last: float | None = None
    val: float | None = None  # latest validation loss seen by the end of the window


@dataclass
class Transition:
    step: int
    phase: str
    previous: str | None
    reason: str

    def as_event(self) -> dict[str, Any]:
        return {"step": self.step, "kind": "phase", "code": self.phase, "severity": "info",
                "message": f"{self.previous or 'START'} -> {self.phase}: {self.reason}"}  # fmt: skip


@dataclass
class PhaseTracker:
    """Moves through the phases as windows arrive; keeps its transitions."""

    phase: str = "INITIALIZING"
    transitions: list[Transition] = field(default_factory=list)
    levels: list[float] = field(default_factory=list)
    smooth: list[float] = field(default_factory=list)
    best_val: float = math.inf
    plateau_run: int = 0
    candidate: str | None = None
    candidate_count: int = 0

    def update(self, w: Window) -> str:
        new, reason = self._next(w)
        immediate = new in ("DIVERGING", "WARMUP") or not self.transitions
        if new == self.phase:
            self.candidate, self.candidate_count = None, 0
        else:
            self.candidate_count = self.candidate_count + 1 if new == self.candidate else 1
            self.candidate = new
            if immediate or self.candidate_count >= CONFIRM:
                previous = self.phase if self.transitions else None
                self.transitions.append(Transition(w.end_step, new, previous, reason))
                self.phase, self.candidate, self.candidate_count = new, None, 0
        if not self.transitions:
            self.transitions.append(Transition(w.end_step, self.phase, None, reason))
        if w.val is not None and math.isfinite(w.val):
            self.best_val = min(self.best_val, w.val)
        return self.phase

    def _next(self, w: Window) -> tuple[str, str]:
        if not math.isfinite(w.loss):
            return "DIVERGING", f"the loss became non-finite by step {w.end_step}"
        self.levels.append(w.loss)
        level = float(np.median(self.levels[-SMOOTH:]))
        self.smooth.append(level)
        if len(self.smooth) < SMOOTH:
            return "INITIALIZING", f"loss {level:.4g} after {len(self.smooth)} window(s)"
        if w.lr_first and w.lr_last and w.lr_last > w.lr_first * (1 + WARMUP_RISE):
            return "WARMUP", f"the learning rate rose from {w.lr_first:.3g} to {w.lr_last:.3g}"
        best = min(self.smooth)
        before = self.smooth[-SMOOTH]
        if level > DIVERGE * best + 1e-12 and level > before:
            return "DIVERGING", f"the loss {level:.4g} is {level / best:.1f}x its best {best:.4g} and rising"
        gain = (before - level) / max(abs(before), 1e-12) / (SMOOTH - 1)
        if w.val is not None and math.isfinite(self.best_val) and w.val > self.best_val * (1 + OVERFIT) and gain > 0:
            self.plateau_run = 0
            return "OVERFITTING_RISK", (
                f"validation loss {w.val:.4g} is {w.val / self.best_val - 1:.0%} above its best while training improves"
            )
        if gain >= FAST:
            self.plateau_run = 0
            return "LEARNING_FAST", f"per window the loss {relative(-gain)}"
        if gain >= SLOW:
            self.plateau_run = 0
            return "STABLE_CONVERGENCE", f"per window the loss {relative(-gain)} (less than {FAST:.0%})"
        self.plateau_run += 1
        overall = (self.smooth[0] - best) / max(abs(self.smooth[0]), 1e-12)
        if self.plateau_run >= CONVERGED_AFTER and overall >= CONVERGED_MIN_GAIN:
            return "CONVERGED", f"no improvement for {self.plateau_run} windows after a {overall:.0%} total gain"
        return "PLATEAU", f"per window the loss {relative(-gain)} (less than {SLOW:.1%} better)"


def window_steps(data: RunData) -> int:
    """Steps per window: about ``WINDOWS`` windows over the planned length, at least ``MIN_WINDOW_STEPS``
    (a live window needs points for its median). A finished run that this leaves with fewer than
    ``2 * SMOOTH`` windows (a 25-epoch log) is cut finer, so its curve gets past the first windows."""
    planned = data.total_steps or 0
    length = max(planned, data.last_step)
    size = max(MIN_WINDOW_STEPS, length // WINDOWS)
    if data.finished and length // size < 2 * SMOOTH:
        size = max(1, length // (2 * SMOOTH))
    return size


def windows(data: RunData, size: int | None = None) -> list[Window]:
    """The run cut into windows of ``size`` steps, each summarized by medians."""
    key = data.loss_key
    if key is None:
        return []
    loss = data.series(key)
    if not len(loss):
        return []
    size = size or window_steps(data)
    lr = data.series("lr")
    val_key = data.val_loss_key
    val = data.series(val_key) if val_key else None
    index = (loss.steps - 1) // size
    bounds = np.flatnonzero(np.diff(index)) + 1  # series are in step order: windows are slices
    out = []
    for a, b in zip(np.r_[0, bounds], np.r_[bounds, len(index)], strict=True):
        values = loss.values[a:b]
        level = median(values) if np.isfinite(values).all() else math.nan
        w = int(index[a])
        end = (w + 1) * size
        entry = Window(end_step=min(end, int(loss.steps[b - 1])), loss=level)
        if len(lr):
            i, j = np.searchsorted(lr.steps, [w * size, end], side="right")
            if j > i:
                entry.lr_first, entry.lr_last = float(lr.values[i]), float(lr.values[j - 1])
        if val is not None and len(val):
            k = int(np.searchsorted(val.steps, end, side="right"))
            if k:
                entry.val = float(val.values[k - 1])
        out.append(entry)
    return out


def phase_history(data: RunData) -> PhaseTracker:
    tracker = PhaseTracker()
    seen = windows(data)
    for w in seen:
        tracker.update(w)
    if data.finished and tracker.phase == "INITIALIZING":
        why = "no training loss to follow"
        if seen:
            why = f"the run ended before its loss could be followed ({len(seen)} window(s))"
        previous = tracker.phase if tracker.transitions else None
        tracker.transitions.append(Transition(data.last_step, "UNKNOWN", previous, why))
        tracker.phase = "UNKNOWN"
    return tracker
