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
    by_device: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        if v is None:
            continue
        if is_tensor(v):
            by_device.setdefault(v.device, []).append(i)
            continue
        with contextlib.suppress(TypeError, ValueError):
            out[i] = float(v)
    if by_device:
        import torch

        for idx in by_device.values():
            with torch.no_grad():
                parts = [_scalar(values[i]) for i in idx]
                floats = torch.stack(parts).double().cpu().tolist()
            for i, f in zip(idx, floats, strict=False):
                out[i] = f
    return out


def _scalar(t: Any) -> Any:
    t = t.detach()
    if t.numel() == 1:
        return t.reshape(()).float()
    return t.float().mean()
