"""Exact medians, faster than ``np.median`` (which partitions around two indices and the last, for NaN:
several times slower than around one in NumPy 2). NumPy only, so that ``forecast`` stays standalone."""

from __future__ import annotations

import numpy as np


def median(values: np.ndarray) -> float:
    """Exactly ``np.median`` (NaN when a value is NaN), at a quarter of its cost on long arrays."""
    return float(row_medians(np.asarray(values)[None, :])[0]) if len(values) else float("nan")


def row_medians(rows: np.ndarray) -> np.ndarray:
    """The median of each row, exactly as ``np.median(rows, axis=1)``. NumPy partitions around one
    index several times faster than around the two middle ones (and the last, for NaN) that
    ``np.median`` asks for; the lower middle of an even row is then the largest value below it."""
    half = rows.shape[1] // 2
    part = np.partition(rows, half, axis=1)
    upper = part[:, half]
    mid = upper if rows.shape[1] % 2 else (part[:, :half].max(axis=1) + upper) / 2
    return np.where(np.isnan(part[:, half:].max(axis=1)), np.nan, mid)  # NaN sorts last
