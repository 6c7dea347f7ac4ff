"""Whether gradients are reset between optimizer steps: a missing ``zero_grad()`` seen directly.

Every ``CARRY_EVERY`` optimizer steps, the first backward pass after the step looks at one
parameter's ``.grad`` just before the new gradient is added to it. After ``zero_grad()`` it is
None or exactly zero; without, it still holds the last step's gradient. The curves cannot tell
this apart under Adam, which normalises the growing sum away; this probe can, whatever the
optimizer. Recorded as ``grad/carried_over``: the left-over gradient's norm over the new one's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

CARRY_EVERY = 10
KEY = "grad/carried_over"


class CarryProbe:
    """Hooks on the optimizer and on its last trainable parameter (a head's bias, usually: it gets
    a gradient every step). ``record(step, value)`` receives a 0-d tensor, synced later in bulk;
    ``guard(fn, *args)`` runs the hooks' work so that a failure of ours never reaches the training."""

    def __init__(self, optimizer: Any, record: Callable[[int, Any], None], guard: Callable[..., Any]) -> None:
        optimizer = innermost(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
        self._param = params[-1]
        self._record = record
        self._guard = guard
        self._steps = 0
        self._armed = False
        self._handles = [
            optimizer.register_step_post_hook(self._after_step),
            self._param.register_hook(self._before_accumulate),
        ]

    def _after_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self._steps += 1
        self._armed = self._steps % CARRY_EVERY == 0

    def _before_accumulate(self, grad: Any) -> None:
        if self._armed:
            self._armed = False
            self._guard(self._measure, grad)

    def _measure(self, grad: Any) -> None:
        left = self._param.grad
        value = grad.new_zeros(()) if left is None else left.norm() / grad.norm().clamp_min(1e-30)
        self._record(self._steps + 1, value.detach())

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def innermost(optimizer: Any) -> Any:
    """The optimizer that really steps. Wrappers (Accelerate's AcceleratedOptimizer, Lightning's
    LightningOptimizer) have their step called on every micro-batch and skip the real one while
    gradients accumulate: hooked there, an intended accumulation would read as a missing zero_grad."""
    for _ in range(4):
        inner = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
        if inner is None or inner is optimizer or not hasattr(inner, "param_groups"):
            break
        optimizer = inner
    return optimizer


def applies(optimizer: Any) -> bool:
    """The probe needs an optimizer with step hooks (torch >= 2.0) and a trainable parameter."""
    optimizer = innermost(optimizer)
    return hasattr(optimizer, "register_step_post_hook") and any(
        p.requires_grad for g in optimizer.param_groups for p in g["params"]
    )
