"""Robust statistics over windows: real loss curves are noisy, so checks compare window medians,
never single points. Long series are reduced to at most a few thousand bucket medians first."""

from __future__ import annotations

import numpy as np

from trainatlas.tools.medians import median, row_medians
from trainatlas.tools.rundata import Series

MAX_BUCKETS = 2000
MAD_TO_SIGMA = 1.4826


def buckets(series: Series, n: int = MAX_BUCKETS) -> Series:
    """Medians of ``n`` consecutive equal-count buckets (the series itself when it is short);
    each bucket is placed at its last step. Cached on the series: several checks ask for the same."""
    if len(series) <= n:
        return series
    return series.memo(("buckets", n), lambda: _buckets(series, n))


def _buckets(series: Series, n: int) -> Series:
    m = len(series)
    edges = np.linspace(0, m, n + 1).astype(np.int64)
    size = int(np.min(np.diff(edges)))
    # equal-size core via reshape (fast), the few leftover points join the last bucket's step
    idx = edges[:-1, None] + np.arange(size)[None, :]
    return Series(series.steps[edges[1:] - 1], row_medians(series.values[idx]))


def window(series: Series, start_frac: float, end_frac: float) -> Series:
    """The points between two fractions of the series' length (by position)."""
    m = len(series)
    a, b = int(m * start_frac), max(int(m * end_frac), int(m * start_frac) + 1)
    return Series(series.steps[a:b], series.values[a:b])


def level(series: Series) -> float:
    """The median of a whole series, cached on it (several checks ask for it)."""
    return series.memo("median", lambda: median(series.values))


def mad(values: np.ndarray) -> float:
    """Median absolute deviation, scaled to a standard deviation for normal data."""
    if not len(values):
        return float("nan")
    return MAD_TO_SIGMA * median(np.abs(values - median(values)))


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Rank correlation: how monotonic y is in x (1 = always rising)."""
    if len(x) < 3:
        return float("nan")
    rx = np.argsort(np.argsort(x)).astype(float)
    ry = np.argsort(np.argsort(y)).astype(float)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def rolling_median(values: np.ndarray, width: int) -> np.ndarray:
    """Centered rolling median (the edges use shrunken windows); for bucketed series only."""
    n = len(values)
    if n == 0:
        return values
    half = max(1, width // 2)
    padded = np.pad(values, half, mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.median(view, axis=1)[:n]


def find_spikes(series: Series, z: float, min_ratio: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points far above their local level: ``z`` robust sigmas (in log space for positive series)
    and at least ``min_ratio`` times the local median. Returns (first index of each spike, ratio of
    every point, local median of every point); consecutive points count as one spike."""
    b = buckets(series, 500)
    base = np.interp(series.steps, b.steps, rolling_median(b.values, 7))
    if np.all(series.values > 0) and np.all(base > 0):
        resid = np.log(series.values) - np.log(base)
        ratio = series.values / base
    else:
        resid = series.values - base
        ratio = np.where(np.abs(base) > 1e-12, series.values / np.maximum(np.abs(base), 1e-12), np.inf)
    scale = mad(resid)
    if not scale > 0:
        return np.zeros(0, dtype=np.int64), ratio, base
    idx = np.flatnonzero((resid > z * scale) & (ratio >= min_ratio))
    starts = idx[np.insert(np.diff(idx) > 1, 0, True)] if len(idx) else idx
    return starts, ratio, base
