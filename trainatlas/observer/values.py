"""Turning logged values (floats, ints, tensors on any device) into floats in bulk, off the
training thread: one host transfer per device per flush instead of one ``.item()`` per step."""

from __future__ import annotations

import contextlib
from typing import Any


def is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "device")


def to_floats(values: list[Any]) -> list[float | None]:
    """Floats for a list of numbers and tensors; ``None`` for what is not a number."""
    if set(map(type, values)) <= {float, int}:  # the common case, at C speed
        return list(map(float, values))
    out: list[float | None] = [None] * len(values)
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        if is_tensor(v):
            # 0-d tensors of one device and dtype (losses, norms) stack in one call, no op per tensor
            kind = (v.device, v.dtype) if v.dim() == 0 else (v.device, None)
            groups.setdefault(kind, []).append(i)
            continue
        with contextlib.suppress(TypeError, ValueError):
            out[i] = float(v)
    if groups:
        import torch

        with torch.no_grad():
            for (_, dtype), idx in groups.items():
                tensors = [values[i] for i in idx] if dtype is not None else [_scalar(values[i]) for i in idx]
                floats = torch.stack(tensors).double().cpu().tolist()
                for i, f in zip(idx, floats, strict=True):
                    out[i] = f
    return out


def _scalar(t: Any) -> Any:
    t = t.detach()
    if t.numel() == 1:
        return t.reshape(()).float()
    return t.float().mean()
