"""Turning logged values (floats, ints, tensors on any device) into floats in bulk, off the
training thread: one host transfer per device per flush instead of one ``.item()`` per step."""

from __future__ import annotations

from typing import Any


def is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "device")


def to_floats(values: list[Any] | tuple[Any, ...]) -> list[float | None]:
    """Floats for a list of numbers and tensors; ``None`` for what is not a number.

    Types are inspected once per type, not per value: this runs on the background thread, which
    competes with the training for the GIL (and ``==`` on a tensor is a slow torch call)."""
    kinds = set(map(type, values))
    if kinds <= {float, int}:  # the common case, at C speed
        return list(map(float, values))
    examples = {type(v): v for v in values}
    tensor_kinds = {t for t, v in examples.items() if is_tensor(v)}
    out: list[float | None] = [None] * len(values)
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        kind = type(v)
        if kind is float:
            out[i] = v
        elif kind in tensor_kinds:
            # 0-d tensors of one device and dtype (losses, norms) stack in one call, no op per tensor
            groups.setdefault((v.device, v.dtype) if v.dim() == 0 else (v.device, None), []).append(i)
        elif v is not None:
            out[i] = _float_or_none(v)
    if groups:
        import torch

        with torch.no_grad():
            for (_, dtype), idx in groups.items():
                tensors = [values[i] for i in idx] if dtype is not None else [_scalar(values[i]) for i in idx]
                floats = torch.stack(tensors).double().cpu().tolist()
                for i, f in zip(idx, floats, strict=True):
                    out[i] = f
    return out


def _float_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _scalar(t: Any) -> Any:
    t = t.detach()
    if t.numel() == 1:
        return t.reshape(()).float()
    return t.float().mean()
