"""Per-layer statistics on sampled steps: gradient and weight norms, update-to-weight ratio and
activation statistics. Hooks are attached only for the sampled step and removed afterwards, so
the steps in between pay nothing."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

MAX_LAYERS = 512
SNAPSHOT_LIMIT_BYTES = 1 << 30  # above this the update ratio is skipped: it needs a weight copy
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


def _activation_stats(module_type: str, y: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
    y = y.detach().float()
    zero = y == 0
    if y.ndim >= 2:
        unit_dim = 1 if y.ndim >= 4 else y.ndim - 1  # channels of conv maps, else features
        others = [d for d in range(y.ndim) if d != unit_dim]
        dead = zero.permute(unit_dim, *others).reshape(y.shape[unit_dim], -1).all(dim=1)
        dead_frac = dead.float().mean()
    else:
        dead_frac = None
    kind = _SATURATING.get(module_type)
    if kind == "tanh":
        sat = (y.abs() > 0.99).float().mean()
    elif kind == "sigmoid":
        sat = ((y < 0.01) | (y > 0.99)).float().mean()
    else:
        sat = None  # only saturating activations are measured
    std = y.std() if y.numel() > 1 else torch.zeros((), device=y.device)
    return y.mean(), std, zero.float().mean(), dead_frac, sat


class LayerSampler:
    """Arms hooks before a sampled step and collects the layer stats after it."""

    def __init__(self, model: nn.Module) -> None:
        self.layers = _tracked_modules(model)
        self.params = {name: [p for p in m.parameters(recurse=False)] for name, m in self.layers}
        total = sum(p.numel() * p.element_size() for ps in self.params.values() for p in ps)
        self.snapshot_updates = total <= SNAPSHOT_LIMIT_BYTES
        self._handles: list[Any] = []
        self._acts: dict[str, tuple[bool, tuple[torch.Tensor, ...]]] = {}
        self._before: dict[str, list[torch.Tensor]] = {}
        self.armed = False

    def arm(self) -> None:
        """Hook activations and copy weights for the next step."""
        self.disarm()
        self._acts = {}
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._make_hook(name)))
        if self.snapshot_updates:
            with torch.no_grad():
                self._before = {n: [p.detach().clone() for p in ps] for n, ps in self.params.items()}
        self.armed = True

    def disarm(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self.armed = False

    def _make_hook(self, name: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if name in self._acts:  # only the first forward of the step (gradient accumulation)
                return
            y = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(y, torch.Tensor) and y.is_floating_point() and y.numel() > 0:
                with torch.no_grad():
                    self._acts[name] = (module.training, _activation_stats(type(module).__name__, y))

        return hook

    def collect(self) -> list[tuple[str, str, int, bool | None, list[Any]]]:
        """Rows (layer, type, params, training, [tensor stats]) for the step just taken.
        Values stay tensors; they are turned into floats off the training thread."""
        self.disarm()
        rows = []
        missing = None  # not measured: stored as NULL
        with torch.no_grad():
            for name, module in self.layers:
                ps = self.params[name]
                grads = [p.grad for p in ps if p.grad is not None]
                grad_norm = _norm(grads) if grads else missing
                weight_norm = _norm([p.detach() for p in ps]) if ps else missing
                update = missing
                before = self._before.get(name)
                if before and ps:
                    diffs = [p.detach() - b for p, b in zip(ps, before, strict=False)]
                    update = _norm(diffs) / (_norm(before) + 1e-12)
                training, acts = self._acts.get(name, (module.training, (missing,) * 5))
                count = sum(p.numel() for p in ps)
                rows.append((name, type(module).__name__, count, training, [grad_norm, weight_norm, update, *acts]))
        self._before = {}
        self._acts = {}
        return rows


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    norms = torch._foreach_norm(tensors)
    first = norms[0]
    if any(n.device != first.device or n.dtype != first.dtype for n in norms):
        norms = [n.float().to(first.device) for n in norms]
    return torch.linalg.vector_norm(torch.stack(norms))


def global_grad_norm(params: list[torch.Tensor]) -> torch.Tensor | None:
    """The global L2 gradient norm as a tensor (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return None
    with torch.no_grad():
        return _norm(grads)
