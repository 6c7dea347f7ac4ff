"""Turning logged values (floats, ints, tensors on any device) into floats in bulk, off the
training thread: one host transfer per device per flush instead of one ``.item()`` per step."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

# types numpy turns into float64 itself, at C speed (bool is an int)
_PLAIN = {float, int, bool, np.float64, np.float32, np.float16, np.int64, np.int32}


def is_tensor(value: Any) -> bool:
    return hasattr(value, "detach") and hasattr(value, "device")


def to_floats(values: list[Any] | tuple[Any, ...]) -> list[float | None]:
    """Floats for a list of numbers and tensors; ``None`` for what is not a number.

    Types are inspected once per type, not per value: this runs on the background thread, which
    competes with the training for the GIL (and ``==`` on a tensor is a slow torch call)."""
    kinds = set(map(type, values))
    if kinds <= {float, int}:  # the common case, at C speed
        try:
            return list(map(float, values))
        except OverflowError:  # an int beyond float64: the loop below says None for it
            pass
    examples = {type(v): v for v in values}
    tensor_kinds = {t for t, v in examples.items() if is_tensor(v)}
    out: list[float | None] = [None] * len(values)
    groups: dict[Any, list[int]] = {}
    for i, v in enumerate(values):
        kind = type(v)
        if kind is float:
            out[i] = v
        elif kind in tensor_kinds:
            if v.is_complex():  # not a number we can plot: None, like a string
                continue
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


def float_array(values: list[Any] | tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(floats, present)``: ``to_floats`` as a float64 array, ``present`` False where a value was
    not a number (its float is then 0). Plain numbers and Nones, and a column of 0-d tensors of one
    device and dtype (the loss, the gradient norm), skip the per-value Python loop."""
    kinds = set(map(type, values))
    if type(None) in kinds:
        kinds.discard(type(None))
        present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
        given = [v for v in values if v is not None]
    else:
        present, given = np.ones(len(values), dtype=bool), values
    floats = None
    if kinds <= _PLAIN:
        with contextlib.suppress(OverflowError):  # an int beyond float64: the slow path says None
            floats = np.array(given, dtype=np.float64)
    elif len(kinds) == 1 and is_tensor(given[0]):
        floats = _stacked(given)
    if floats is None:
        slow = to_floats(values)
        present = np.fromiter((f is not None for f in slow), dtype=bool, count=len(slow))
        return np.array([0.0 if f is None else f for f in slow], dtype=np.float64), present
    if len(given) == len(values):
        return floats, present
    out = np.zeros(len(values))
    out[present] = floats
    return out, present


def norm_column(values: list[Any] | tuple[Any, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(norms, present)`` for a column of per-tensor norm lists (``None``: not computed): the L2
    norm of each list, combined in float64 after one host transfer for the whole column."""
    present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    out = np.zeros(len(values))
    lists = [v for v in values if v is not None]
    if lists:
        import torch

        norms = on_host([t for v in lists for t in v], torch.stack)
        starts = np.cumsum([0, *map(len, lists[:-1])])
        out[present] = np.sqrt(np.add.reduceat(norms * norms, starts))
    return out, present


def on_host(tensors: list[Any], join: Callable[[list[Any]], Any]) -> np.ndarray:
    """``join(tensors)`` (``torch.stack`` or ``torch.cat``; mixed dtypes are promoted, exactly)
    as a float64 array, in one host transfer when the tensors share a device."""
    try:
        joined = join(tensors)
    except RuntimeError:  # tensors on several devices
        joined = join([t.cpu() for t in tensors])
    return joined.cpu().double().numpy()  # converted on the host: MPS has no float64


def _stacked(tensors: list[Any]) -> np.ndarray | None:
    """0-d real tensors as float64, in one stack and one host transfer (``on_host``); None when
    they do not make one real vector (``to_floats`` then sorts them out value by value)."""
    import torch

    def real_vector(ts: list[Any]) -> Any:
        joined = torch.stack(ts)
        if joined.dim() != 1 or joined.is_complex():
            raise TypeError("not a column of real 0-d tensors")
        return joined

    try:
        with torch.no_grad():
            return on_host(tensors, real_vector)
    except (RuntimeError, TypeError):  # shapes differ, or not real numbers
        return None


def _float_or_none(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError, OverflowError):
        return None


def _scalar(t: Any) -> Any:
    t = t.detach()
    if t.numel() == 1:
        return t.reshape(()).float()
    return t.float().mean()
