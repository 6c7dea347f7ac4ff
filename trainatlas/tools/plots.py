"""PNG plots of chosen metrics of one or more runs: raw (faint) and EMA-smoothed, log scale when a
curve spans decades, one panel per key. The plotted numbers come back too, so a model that cannot
see images still gets the data.

matplotlib is imported only when a plot is drawn: a server that never plots never pays for it.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import numpy as np

from trainatlas.tools.series import metric_series

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog

MAX_RUNS = 8
MAX_KEYS = 6
SMOOTH_MIN_POINTS = 50  # sparse curves (evaluations every N steps) are drawn raw: an EMA would lag them
DATA_POINTS = 100  # numbers returned per curve beside the picture, to keep the answer small


def ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """Exponential moving average with bias correction (as TensorBoard's smoothing)."""
    out = np.empty_like(values)
    acc, weight = 0.0, 0.0
    for i, v in enumerate(values):
        acc = alpha * acc + (1 - alpha) * v
        weight = alpha * weight + (1 - alpha)
        out[i] = acc / weight
    return out


def wants_log_scale(values: np.ndarray) -> bool:
    """Log scale helps when a positive curve spans more than two decades."""
    finite = values[np.isfinite(values)]
    return bool(len(finite) > 2 and finite.min() > 0 and finite.max() / finite.min() > 100)


def plot_metrics(
    catalog: Catalog,
    refs: list[str],
    keys: list[str],
    smoothing: float = 0.9,
    max_points: int = 1000,
    log_scale: bool | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """A PNG of ``keys`` for each run in ``refs`` and the data it shows."""
    if not refs or len(refs) > MAX_RUNS:
        raise ValueError(f"give between 1 and {MAX_RUNS} runs, got {len(refs)}")
    if not keys or len(keys) > MAX_KEYS:
        raise ValueError(f"give between 1 and {MAX_KEYS} metric keys, got {len(keys)}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
    data = [metric_series(catalog, ref, keys, max_points=max_points) for ref in refs]
    names = {r["run_id"]: r["name"] for r in catalog.runs}

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(keys), 1, figsize=(8, 2.8 * len(keys)), squeeze=False, dpi=100)
    panels = []
    for ax, key in zip(axes[:, 0], keys, strict=True):
        curves, all_values = [], []
        for run in data:
            s = next(x for x in run["series"] if x["key"] == key)
            steps, values = np.array(s["steps"]), np.array(s["values"], dtype=float)
            label = f"{names.get(run['run_id'], run['run_id'])} ({run['run_id']})"
            alpha = smoothing if len(values) >= SMOOTH_MIN_POINTS else 0.0
            line = ax.plot(steps, values, alpha=0.3 if alpha else 1, linewidth=0.8 if alpha else 1.6)[0]
            smooth = ema(values, alpha) if alpha else values
            if alpha:
                ax.plot(steps, smooth, color=line.get_color(), linewidth=1.6, label=label)
            else:
                line.set_label(label)
            all_values.append(values)
            curves.append(_curve_summary(run["run_id"], steps, values, smooth))
        joined = np.concatenate(all_values) if all_values else np.array([])
        log = wants_log_scale(joined) if log_scale is None else log_scale
        if log and len(joined) and np.nanmin(joined) > 0:
            ax.set_yscale("log")
        ax.set_title(key, fontsize=10, loc="left")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        panels.append({"key": key, "log_scale": bool(ax.get_yscale() == "log"), "curves": curves})
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue(), {"panels": panels, "smoothing": smoothing}


def _curve_summary(run_id: str, steps: np.ndarray, values: np.ndarray, smooth: np.ndarray) -> dict[str, Any]:
    """The numbers behind one plotted curve: its extremes, last values and up to DATA_POINTS points."""
    if not len(values):
        return {"run_id": run_id, "points": 0}
    pick = np.unique(np.linspace(0, len(values) - 1, min(DATA_POINTS, len(values))).astype(int))
    return {
        "run_id": run_id,
        "points": len(values),
        "last": float(values[-1]),
        "last_smoothed": float(smooth[-1]),
        "min": float(values.min()),
        "min_step": int(steps[int(values.argmin())]),
        "max": float(values.max()),
        "data": [[int(steps[i]), float(values[i]), round(float(smooth[i]), 6)] for i in pick],
    }
