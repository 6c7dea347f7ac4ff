"""Per-layer statistics on sampled steps: gradient and weight norms, update-to-weight ratio and
activation statistics. Hooks are attached only for the sampled step and removed afterwards, so
the steps in between pay nothing."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from trainatlas.observer.values import on_host

MAX_LAYERS = 512
SNAPSHOT_LIMIT_BYTES = 1 << 30  # above this the update ratio is skipped: it needs a weight copy
_FLOAT32_EXACT = 1 << 24  # float32 counts integers exactly up to here
_SATURATING = {"Tanh": "tanh", "Hardtanh": "tanh", "Sigmoid": "sigmoid", "Hardsigmoid": "sigmoid"}


def _tracked_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf modules and modules with parameters of their own, in model order."""
    picked = []
    for name, module in model.named_modules():
        own = any(True for _ in module.parameters(recurse=False))
        leaf = not any(True for _ in module.children())
        if (own or leaf) and name:
            picked.append((name, module))
    if not picked:  # the model itself is one layer
        picked = [(type(model).__name__, model)]
    if len(picked) > MAX_LAYERS:
        warnings.warn(
            f"trainatlas: {len(picked)} layers; layer stats cover the first {MAX_LAYERS}",
            RuntimeWarning,
            stacklevel=3,
        )
        picked = picked[:MAX_LAYERS]
    return picked


class _Sums(NamedTuple):
    """What the training thread measures of one output; ``LayerSample.stats`` derives the stats."""

    numel: int
    units: int  # channels of conv maps, else features; 0: no units (a 0-d or 1-d output)
    mean: torch.Tensor
    squares: torch.Tensor  # the sum of the squared deviations from the mean
    zeros: torch.Tensor  # per unit when there are units, else the total
    saturated: torch.Tensor | None  # count; None: not a saturating activation


def _activation_sums(module_type: str, y: torch.Tensor) -> _Sums:
    """The sums of one output as tensors (no host sync), in few vectorized passes over ``y`` and
    one scratch tensor: the squared deviations give the unbiased std as precisely as ``y.std()``,
    which is several times slower on CPU; comparisons write 0/1 floats, as comparisons into bool
    tensors and reductions of them are slow on CPU too."""
    if y.dtype != torch.float32:
        y = y.float()
    n = y.numel()
    mean = y.mean()
    scratch = y - mean
    squares = scratch.square_().sum()
    torch.eq(y, 0, out=scratch)
    if y.ndim >= 2:
        unit_dim = 1 if y.ndim >= 4 else y.ndim - 1  # channels of conv maps, else features
        units, dims = y.shape[unit_dim], tuple(d for d in range(y.ndim) if d != unit_dim)
    else:
        units, dims = 0, None
    exact = torch.float64 if n // max(units, 1) >= _FLOAT32_EXACT else None  # dead units need exact counts
    zeros = scratch.sum(dim=dims, dtype=exact)
    kind = _SATURATING.get(module_type)
    if kind == "tanh":
        sat = torch.abs(y, out=scratch).gt_(0.99).sum()
    elif kind == "sigmoid":  # y < 0.01 and y > 0.99 exclude each other: their counts add up
        sat = torch.lt(y, 0.01, out=scratch).sum() + torch.gt(y, 0.99, out=scratch).sum()
    else:
        sat = None  # only saturating activations are measured
    return _Sums(n, units, mean, squares, zeros, sat)


@dataclass
class LayerSample:
    """One sampled step as measured on the training thread: per-parameter norms and per-layer
    activation sums, all tensors. ``layer_stats`` combines them into the per-layer values on the
    background thread, where a sum or a division costs no torch call on the training thread."""

    layers: list[tuple[str, str, int, bool | None]]  # name, module type, param count, training
    owners: list[int]  # layer position of each parameter
    grad_owners: list[int]  # layer position of each gradient
    grad_norms: list[torch.Tensor]
    weight_norms: list[torch.Tensor]
    before_norms: list[torch.Tensor]  # per parameter, of the weights before the step (empty: not measured)
    update_norms: list[torch.Tensor]
    acts: list[_Sums | None]  # per layer; None: no floating-point output seen

    def scalars(self) -> list[torch.Tensor]:
        """The 0-d tensors, in the order ``stats`` reads their values."""
        out = [*self.grad_norms, *self.weight_norms, *self.before_norms, *self.update_norms]
        for a in self.acts:
            if a is not None:
                out += (a.mean, a.squares) if a.units else (a.mean, a.squares, a.zeros)
                if a.saturated is not None:
                    out.append(a.saturated)
        return out

    def unit_zeros(self) -> list[_Sums]:
        """The sums whose zero counts are per unit, in the order ``stats`` reads them."""
        return [a for a in self.acts if a is not None and a.units]

    def stats(self, floats: Iterator[float], unit_zeros: Iterator[tuple[float, int]]) -> list[list[float | None]]:
        """Per layer, the values of ``LAYER_STATS`` (None: not measured), from the values of
        ``scalars()`` and the (zeros, dead units) of ``unit_zeros()``, read in order."""
        n = len(self.layers)
        grad = _layer_norms([next(floats) for _ in self.grad_norms], self.grad_owners, n)
        weight = _layer_norms([next(floats) for _ in self.weight_norms], self.owners, n)
        before = _layer_norms([next(floats) for _ in self.before_norms], self.owners, n)
        update = _layer_norms([next(floats) for _ in self.update_norms], self.owners, n)
        rows = []
        for j, a in enumerate(self.acts):
            ratio = None if update[j] is None else update[j] / (before[j] + 1e-12)
            if a is None:
                rows.append([grad[j], weight[j], ratio, None, None, None, None, None])
                continue
            mean, squares = next(floats), next(floats)
            zeros, dead = next(unit_zeros) if a.units else (next(floats), None)
            std = math.sqrt(squares / (a.numel - 1)) if a.numel > 1 else 0.0
            rows.append([grad[j], weight[j], ratio, mean, std, zeros / a.numel,
                         None if dead is None else dead / a.units,
                         None if a.saturated is None else next(floats) / a.numel])  # fmt: skip
        return rows


def layer_stats(samples: list[LayerSample]) -> list[list[list[float | None]]]:
    """Per sample and layer, the values of ``LAYER_STATS``. Runs on the background thread: the
    tensors of all samples reach the host in two transfers, one of the 0-d tensors and one of the
    per-unit zero counts, and the counts are reduced in a few numpy calls."""
    scalars = [t for s in samples for t in s.scalars()]
    floats = on_host(scalars, torch.stack).tolist() if scalars else []
    sums = [a for s in samples for a in s.unit_zeros()]
    unit_zeros: list[tuple[float, int]] = []
    if sums:
        counts = on_host([a.zeros for a in sums], torch.cat)
        units = [a.units for a in sums]
        starts = np.cumsum([0, *units[:-1]])
        dead = counts == np.repeat([a.numel // a.units for a in sums], units)  # zero in every element
        unit_zeros = list(zip(np.add.reduceat(counts, starts).tolist(),
                              np.add.reduceat(dead, starts, dtype=np.int64).tolist(), strict=True))  # fmt: skip
    floats_in, zeros_in = iter(floats), iter(unit_zeros)
    return [s.stats(floats_in, zeros_in) for s in samples]


def _layer_norms(norms: list[float], owners: list[int], layers: int) -> list[float | None]:
    """Per layer, the L2 norm of its tensors from theirs; None for a layer that has none, and
    for every layer when ``norms`` is empty (not measured)."""
    squares: list[float | None] = [None] * layers
    if not norms:
        return squares
    for owner, norm in zip(owners, norms, strict=True):
        squares[owner] = (squares[owner] or 0.0) + norm * norm
    return [None if s is None else math.sqrt(s) for s in squares]


class LayerSampler:
    """Arms hooks before a sampled step and collects the layer stats after it."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = _tracked_modules(model)
        owned = [list(m.parameters(recurse=False)) for _, m in self.layers]
        self._params = [p for ps in owned for p in ps]
        self._owners = [i for i, ps in enumerate(owned) for _ in ps]
        self._meta = [(name, type(m).__name__, sum(p.numel() for p in ps))
                      for (name, m), ps in zip(self.layers, owned, strict=True)]  # fmt: skip
        total = sum(p.numel() * p.element_size() for p in self._params)
        self.snapshot_updates = total <= SNAPSHOT_LIMIT_BYTES
        self._hooks = [self._make_hook(i) for i in range(len(self.layers))]
        self._handles: list[Any] = []
        self._acts: dict[int, tuple[bool, _Sums]] = {}
        self._before: list[torch.Tensor] = []
        self._before_norms: list[torch.Tensor] = []
        self.armed = False

    def arm(self) -> None:
        """Hook activations and copy weights for the next step."""
        self.disarm()
        self._acts = {}
        for (_, module), hook in zip(self.layers, self._hooks, strict=True):
            self._handles.append(module.register_forward_hook(hook))
        if self.snapshot_updates and self._params:
            with torch.no_grad():
                self._before = [p.clone() for p in self._params]  # faster than a _foreach_ copy on CPU
                self._before_norms = list(torch._foreach_norm(self._before))
        self.armed = True

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.armed = False

    def _make_hook(self, position: int):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if position in self._acts:  # only the first forward of the step (gradient accumulation)
                return
            y = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(y, torch.Tensor) and y.is_floating_point() and y.numel() > 0:
                self._acts[position] = (module.training, _activation_sums(type(module).__name__, y.detach()))

        return hook

    def collect(self) -> LayerSample:
        """The stats of the step just taken, as tensors: they are turned into floats off the
        training thread. A handful of torch calls in all: each is one call for every parameter."""
        self.disarm()
        params = self._params
        grads = [p.grad for p in params]
        with torch.no_grad():
            present = [g for g in grads if g is not None]
            grad_norms = list(torch._foreach_norm(present)) if present else []
            weight_norms = list(torch._foreach_norm(params)) if params else []
            update_norms = []
            if self._before:
                torch._foreach_sub_(self._before, params)  # before - after: minus the update
                update_norms = list(torch._foreach_norm(self._before))
        grad_owners = [o for o, g in zip(self._owners, grads, strict=True) if g is not None]
        layers, acts = [], []
        for position, ((name, kind, count), (_, module)) in enumerate(zip(self._meta, self.layers, strict=True)):
            training, sums = self._acts.get(position, (module.training, None))
            layers.append((name, kind, count, training))
            acts.append(sums)
        sample = LayerSample(layers, self._owners, grad_owners, grad_norms, weight_norms, self._before_norms,
                             update_norms, acts)  # fmt: skip
        self._before, self._before_norms, self._acts = [], [], {}
        return sample


def grad_norms(params: list[torch.Tensor]) -> list[torch.Tensor] | None:
    """The gradient norm of each parameter, in one fused call and without a host sync; the global
    norm (their L2 norm) is combined in the background (``values.norm_column``): on the training
    thread that would be two more torch calls, as costly as the norms themselves on a cold cache."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    with torch.no_grad():
        return torch._foreach_norm(grads)
