"""Forecast where a training metric will end up: a weighted ensemble of learning-curve families.

Numpy only and deterministic. The curve is cleaned (non-finite points dropped, steps sorted) and
turned into ``y``, lower is better (the loss itself; ``1 - metric`` for a higher-is-better metric
within [0, 1] such as accuracy; else ``-metric``), reduced to at most ``MAX_BUCKETS`` bucket
medians (robust to noise, fast on million-point curves), and its warm-up (the first ``WARMUP`` of
the steps, or up to the early peak) is skipped. Each family ``y = a + b * g(x; theta)`` of the
learning-curve extrapolation literature (Domhan et al. 2015: pow3, exp3, MMF, Janoschek), with
``x = step / target_step``, is fitted by variable projection: a grid over the nonlinear ``theta``,
closed-form least squares for ``a`` and ``b``; when ``y`` is positive each family is also fitted to
``log y`` (a loss heading for zero). Every fit is scored on how well, fitted on the earlier part of
the curve only, it extrapolates to the end of the later part (``HOLDOUT_CUTS``); a "last value"
constant is one more member. Weights ~ 1 / holdout error ** ``WEIGHT_POWER``. The fits are redone
on the whole curve, their forecasts at ``target_step`` kept within sane bounds (no more
improvement than the recent slope continued in a straight line, a positive metric stays
positive, no rise unless the curve is clearly rising) and averaged. The 80% interval combines the
holdout error (grown with the extrapolation distance), the spread between the fits and the noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from trainatlas.tools.answers import CurveFit, Forecast
from trainatlas.tools.medians import median

MIN_POINTS = 10
MIN_SPAN = 0.05  # the curve must reach this share of target_step
MAX_BUCKETS = 200
WARMUP = 0.05  # share of the seen steps always skipped as warm-up
HOLDOUT_CUTS = (0.5, 0.7)  # fit on the buckets before these shares, score on the rest
WEIGHT_POWER = 3.0  # weights ~ 1 / holdout error ** WEIGHT_POWER
LOG_SPACE = True  # also fit log(y) when the metric is positive
Z80 = 1.2815515655446004  # the 90% quantile of the standard normal: a two-sided 80% interval


# -- the families: y = a + b * g(x, theta), theta on a grid -------------------------------------------


@dataclass(frozen=True)
class Family:
    name: str
    description: str
    names: tuple[str, ...]  # of the nonlinear parameters
    grid: Callable[[float], np.ndarray]  # x_last -> (G, len(names)) parameter grid
    basis: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (x (n,), theta (G, k)) -> (G, n)


def _grid(*axes: np.ndarray) -> np.ndarray:
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.column_stack([m.ravel() for m in mesh])


def _pow3(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return x[None, :] ** -th[:, :1]


def _exp3(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return np.exp(-th[:, :1] * x[None, :])


def _mmf(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + (th[:, :1] * x[None, :]) ** th[:, 1:2])


def _janoschek(x: np.ndarray, th: np.ndarray) -> np.ndarray:
    return np.exp(-th[:, :1] * x[None, :] ** th[:, 1:2])


def _rate_grid(x_last: float) -> np.ndarray:
    """Rates c of exp(-c*x): from 0.2 to 40 e-foldings over the fitted range."""
    return (np.geomspace(0.2, 40.0, 60) / x_last)[:, None]


def _scale_shape_grid(lo: float, hi: float, shapes: np.ndarray) -> Callable[[float], np.ndarray]:
    """(k, d) pairs such that (k * x_last)^d runs from lo to hi, for each shape d (MMF)."""

    def grid(x_last: float) -> np.ndarray:
        rel, d = (m.ravel() for m in np.meshgrid(np.geomspace(lo, hi, 24), shapes, indexing="ij"))
        return np.column_stack([rel ** (1.0 / d) / x_last, d])

    return grid


def _janoschek_grid(x_last: float) -> np.ndarray:
    """(k, d) pairs such that k * x_last^d runs from 0.2 to 40."""
    rel, d = (m.ravel() for m in np.meshgrid(np.geomspace(0.2, 40.0, 24), np.geomspace(0.15, 2.0, 10),
                                            indexing="ij"))  # fmt: skip
    return np.column_stack([rel / x_last**d, d])


FAMILIES = (
    Family("pow3", "a + b*x^-c", ("c",), lambda x_last: np.geomspace(0.01, 3.0, 60)[:, None], _pow3),
    Family("exp3", "a + b*exp(-c*x)", ("c",), _rate_grid, _exp3),
    Family(
        "mmf",
        "a + b/(1 + (k*x)^d)",
        ("k", "d"),
        _scale_shape_grid(0.3, 300.0, np.geomspace(0.3, 3, 10)),
        _mmf,
    ),
    Family("janoschek", "a + b*exp(-k*x^d)", ("k", "d"), _janoschek_grid, _janoschek),
)


@dataclass
class _Fit:
    theta: np.ndarray
    a: float
    b: float
    family: Family

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.a + self.b * self.family.basis(np.atleast_1d(x), self.theta[None, :])[0]


def _fit(family: Family, x: np.ndarray, y: np.ndarray, x_last: float) -> _Fit | None:
    """Variable projection: the least-squares (a, b) for every theta of the grid, the best theta."""
    theta = family.grid(x_last)
    g = family.basis(x, theta)  # (G, n)
    gm = g.mean(axis=1, keepdims=True)
    ym = y.mean()
    gc = g - gm
    var = np.einsum("ij,ij->i", gc, gc)
    var = np.where(var > 1e-12 * np.einsum("ij,ij->i", g, g), var, 0.0)  # g ~ constant: b unidentifiable
    cov = gc @ (y - ym)
    b = np.where(var > 0, cov / np.where(var > 0, var, 1.0), 0.0)
    a = ym - b * gm[:, 0]
    r = gc * b[:, None] - (y - ym)[None, :]
    sse = np.einsum("ij,ij->i", r, r)
    ok = np.isfinite(sse) & np.isfinite(a) & np.isfinite(b) & (var > 0)
    if not ok.any():
        return None
    best = int(np.argmin(np.where(ok, sse, np.inf)))
    return _Fit(theta[best], float(a[best]), float(b[best]), family)


# -- the robust view of the curve ---------------------------------------------------------------------


def _clean(steps: object, values: object) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        s = np.asarray(steps, dtype=float).ravel()
        v = np.asarray(values, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    if s.shape != v.shape:
        return None
    ok = np.isfinite(s) & np.isfinite(v)
    s, v = s[ok], v[ok]
    order = np.argsort(s, kind="stable")
    return s[order], v[order]


def _buckets(s: np.ndarray, y: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Medians of step and value over ``nb`` buckets of (about) equal point counts."""
    if len(s) <= nb:
        return s.copy(), y.copy()
    edges = np.linspace(0, len(s), nb + 1).round().astype(int)
    bs = np.array([median(s[i:j]) for i, j in zip(edges[:-1], edges[1:], strict=True)])
    by = np.array([median(y[i:j]) for i, j in zip(edges[:-1], edges[1:], strict=True)])
    return bs, by


def _despike(y: np.ndarray, half: int = 2, k: float = 6.0) -> np.ndarray:
    """A Hampel filter: a point further than k robust sigmas from the median of its 2*half + 1
    neighbours is replaced by that median (a loss spike, a bad evaluation)."""
    if len(y) < 2 * half + 1:
        return y
    padded = np.concatenate([np.full(half, y[0]), y, np.full(half, y[-1])])
    med = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    resid = np.abs(y - med)
    sigma = max(1.4826 * float(np.median(resid)), 1e-9 * float(np.median(np.abs(y))))
    return np.where(resid > k * sigma, med, y) if sigma > 0 else y


def _noise(y: np.ndarray) -> float:
    """Robust point-to-point noise: the MAD of second differences over the later half."""
    tail = y[len(y) // 2 :]
    if len(tail) < 3:
        return 0.0
    d2 = tail[2:] - 2 * tail[1:-1] + tail[:-2]
    return float(1.4826 * median(np.abs(d2 - median(d2))) / math.sqrt(6.0))


def _smoothed(y: np.ndarray, share: float = 0.05) -> np.ndarray:
    """Medians over windows of ``share`` of the points (at most ~80 windows)."""
    w = max(1, min(len(y), math.ceil(share * len(y))))
    stride = max(1, w // 4)
    starts = np.arange(0, len(y) - w + 1, stride)
    return np.array([median(y[i : i + w]) for i in starts])


# -- the forecast ---------------------------------------------------------------------------------


@dataclass
class _Member:
    name: str
    pred: float  # at the target, in the working units (lower is better)
    error: float  # holdout error, same units
    params: dict[str, float]


def forecast_curve(
    steps: np.ndarray, values: np.ndarray, target_step: int, lower_is_better: bool = True
) -> Forecast | None:
    """Forecast the value of a metric at ``target_step`` from its curve so far.

    None when there is too little to go on: fewer than 10 finite points (at 10 distinct steps),
    or a curve that has not reached 5% of ``target_step``. Never raises: non-finite points are
    dropped, steps sorted, odd input gives None. For a metric where higher is better (accuracy),
    pass ``lower_is_better=False``.
    """
    with np.errstate(all="ignore"):  # overflow in a far-off grid point is expected, and handled
        return _forecast(steps, values, target_step, lower_is_better)


def _forecast(steps: object, values: object, target_step: object, lower_is_better: bool) -> Forecast | None:
    cleaned = _clean(steps, values)
    try:
        target = float(target_step)
    except (TypeError, ValueError):
        return None
    if cleaned is None or not math.isfinite(target):
        return None
    s, v = cleaned
    if len(s) < MIN_POINTS or len(np.unique(s)) < MIN_POINTS:
        return None
    offset = max(0.0, 1.0 - s[0])  # shifted steps start at 1 at least
    if target <= s[0] or s[-1] + offset < MIN_SPAN * (target + offset):
        return None
    # Work with y, lower is better: the loss itself, 1 - accuracy for a metric within [0, 1], or -v.
    # In units of the typical |y|, so that every threshold is relative and nothing overflows.
    sign, shift = (1.0, 0.0) if lower_is_better else (-1.0, 1.0 if v.min() >= 0 and v.max() <= 1 else 0.0)
    y = sign * (v - shift)
    unit = next((u for u in (median(np.abs(y)), float(np.max(np.abs(y)))) if 0 < u < math.inf), 1.0)
    y = np.clip(y / unit, -1e100, 1e100)
    scale = target + offset
    k_now = max(3, math.ceil(0.05 * len(y)))
    current = median(y[-k_now:])
    best = float(np.min(_smoothed(y)))
    noise = _noise(y)
    level_sd = noise * 1.2533 / math.sqrt(k_now)  # the standard error of a median of k_now points

    def out(value: float, low: float, high: float, fits: list[CurveFit], method: str) -> Forecast:
        lo, hi = (low, high) if sign > 0 else (high, low)
        k = sign * unit
        return Forecast(target_step=int(round(target)), value=shift + k * value, low=shift + k * lo,
                        high=shift + k * hi, current=shift + k * current, best_so_far=shift + k * best,
                        fits=fits, method=method)  # fmt: skip

    if target <= s[-1]:  # already seen: the robust level around the target
        pts = y[np.argsort(np.abs(s - target), kind="stable")[:k_now]]
        lvl = float(np.median(pts))
        return out(lvl, float(np.quantile(pts, 0.1)), float(np.quantile(pts, 0.9)), [], "observed level")

    bs, by = _buckets(s, y, MAX_BUCKETS)
    by = _despike(by)
    bx = (bs + offset) / scale
    start = _warmup_end(bs, by)
    x, yy = bx[start:], by[start:]
    if len(x) < 6 or np.ptp(yy) <= 1e-12:
        return out(current, current - Z80 * level_sd, current + Z80 * level_sd, [],
                   "constant curve: the last value")  # fmt: skip
    positive = bool(np.all(y > 0))
    bnoise = _noise(yy)  # the noise of the bucket medians
    tol = max(bnoise, level_sd)

    def members_at(xf: np.ndarray, yf: np.ndarray, level: float, x_to: np.ndarray) -> list[_Member]:
        """Every family fitted to (xf, yf), evaluated (within bounds) at x_to."""
        lo, hi = _bounds(xf, yf, level, float(x_to[-1]), tol, positive)
        out_: list[_Member] = []
        x_end = float(xf[-1])
        for fam in FAMILIES:
            for space in ("lin", "log") if positive and LOG_SPACE else ("lin",):
                f = _fit(fam, xf, np.log(yf) if space == "log" else yf, x_end)
                if f is None:
                    continue
                p = f(x_to)
                p = np.exp(p) if space == "log" else p
                p = np.where(np.isfinite(p), p, hi)
                name = fam.name if space == "lin" else f"{fam.name}-log"
                params = {"a": f.a, "b": f.b, **dict(zip(fam.names, map(float, f.theta), strict=True))}
                out_.append(_Member(name, float(np.median(np.clip(p, lo, hi))), math.nan, params))
        out_.append(_Member("last", level, math.nan, {"a": level}))
        return out_

    # Holdout: fit on the earlier part, score the extrapolation to the end of the later part.
    errors: dict[str, list[float]] = {}
    for share in HOLDOUT_CUTS:
        cut = int(round(share * len(x)))
        if cut < 5 or len(x) - cut < 2:
            continue
        tail = max(1, (len(x) - cut) // 3)
        truth = float(np.median(yy[-tail:]))  # the level at the end of the holdout
        k_cut = max(3, math.ceil(0.05 * cut))
        level = float(np.median(yy[cut - k_cut : cut]))
        for m in members_at(x[:cut], yy[:cut], level, x[-tail:]):
            errors.setdefault(m.name, []).append(abs(m.pred - truth))

    members = members_at(x, yy, current, np.array([1.0]))
    for m in members:
        m.error = _rms(errors.get(m.name, []))
    floor = max(level_sd, 1e-12)
    errs = np.array([m.error for m in members])
    if np.isnan(errs).all():
        errs = np.ones_like(errs)
    errs = np.where(np.isnan(errs), np.nanmax(errs) * 10 + floor, errs)
    w = 1.0 / (errs + floor) ** WEIGHT_POWER
    w = w / w.sum() if np.isfinite(w).all() and w.sum() > 0 else np.full(len(w), 1.0 / len(w))
    preds = np.array([m.pred for m in members])
    value = float(np.dot(w, preds))

    # The interval: holdout error grown with the extrapolation distance, the families' spread, noise.
    x_last = float(x[-1])
    x_cut = float(x[max(0, int(round(HOLDOUT_CUTS[-1] * len(x))) - 1)])
    grow = min(10.0, math.log(1.0 / x_last) / math.log(x_last / x_cut)) if x_last > x_cut * 1.001 else 1.0
    ho = float(np.dot(w, errs))
    between = float(np.sqrt(np.dot(w, (preds - value) ** 2)))
    sd = math.sqrt((ho * max(grow, 1.0)) ** 2 + between**2 + level_sd**2)
    low, high = value - Z80 * sd, value + Z80 * sd
    if positive:
        low = max(low, 0.0)
    fits = [CurveFit(family=m.name, params=_public(m, sign, shift, unit), weight=float(wi),
                     holdout_error=m.error * unit)
            for m, wi in zip(members, w, strict=True)]  # fmt: skip
    families = len({m.name.removesuffix("-log") for m in members}) - 1
    method = f"weighted ensemble of {families} curve families ({len(members) - 1} fits) and the last value"
    return out(value, low, high, fits, method)


def _public(m: _Member, sign: float, shift: float, unit: float) -> dict[str, float]:
    """Parameters in the metric's own units where the model is linear in them (see CurveFit)."""
    p = dict(m.params)
    if m.name.endswith("-log"):
        p["a"] += math.log(unit)  # log(y) = a + b*g in the working units, y = sign * (metric - shift)
        return p
    p["a"] = shift + sign * unit * p["a"]
    if "b" in p:
        p["b"] = sign * unit * p["b"]
    return p


def _rms(xs: list[float]) -> float:
    return math.sqrt(sum(e * e for e in xs) / len(xs)) if xs else math.nan


def _warmup_end(bs: np.ndarray, by: np.ndarray) -> int:
    """The first bucket after the warm-up: past WARMUP of the steps and past the early peak."""
    start = int(np.searchsorted(bs, bs[0] + WARMUP * (bs[-1] - bs[0])))
    early = max(1, len(by) // 3)
    peak = int(np.argmax(by[:early]))
    return min(max(start, peak), len(bs) - 6) if len(bs) > 6 else 0


def _bounds(
    x: np.ndarray, y: np.ndarray, current: float, x_t: float, tol: float, positive: bool
) -> tuple[float, float]:
    """Sane limits for a forecast at x_t (lower is better). Learning curves decelerate, so the
    recent slope continued in a straight line bounds the improvement (and a positive metric
    stays positive); no rise above the current level by more than the noise unless the curve is
    clearly rising, and then no faster than the recent slope."""
    n = len(x)
    k = max(1, n // 10)
    i = max(0, int(0.6 * n))
    ref = float(np.median(y[max(0, i - k) : i + k]))
    dx = float(x[-1] - x[min(i, n - 1)])
    slope = (ref - current) / dx if dx > 0 else 0.0  # improvement per unit of x
    ahead = x_t - float(x[-1])
    lower = current - max(slope, 0.0) * ahead - 2.0 * tol
    if positive:
        lower = max(lower, 0.0)
    rising = slope < 0 and -slope * dx > 3.0 * tol
    upper = current + (-slope * ahead if rising else 0.0) + 2.0 * tol
    return lower, upper
