"""Comparing two runs: what differs in their config, how their metrics and speed compare, which
problems one has and the other lacks, and the config changes that most plausibly explain it."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from trainatlas.tools.answers import Comparison, ConfigChange, MetricComparison, RunRef
from trainatlas.tools.convergence import main_metric
from trainatlas.tools.diagnostics import health_score, run_checks
from trainatlas.tools.robust import median
from trainatlas.tools.rundata import RunData

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog

CURVE_POINTS = 200
# Config keys that change training outcomes most often, most influential first.
INFLUENTIAL = ("lr", "learning_rate", "optimizer", "batch_size", "weight_decay", "warmup", "scheduler",
               "model", "epochs", "max_steps", "dropout", "momentum", "seed", "precision", "data")  # fmt: skip


def _config_changes(a: dict[str, Any], b: dict[str, Any]) -> list[ConfigChange]:
    keys = sorted(set(a) | set(b), key=lambda k: (_rank(k), k))
    return [ConfigChange(key=k, a=a.get(k), b=b.get(k)) for k in keys if a.get(k) != b.get(k)]


def _rank(key: str) -> int:
    low = key.lower()
    return next((i for i, name in enumerate(INFLUENTIAL) if name in low), len(INFLUENTIAL))


def _metric(key: str, lower: bool, da: RunData, db: RunData) -> MetricComparison:
    values = {}
    for side, data in (("a", da), ("b", db)):
        s = data.series(key)
        finite = s.finite()
        final = float(s.values[-1]) if len(s) else None
        if len(finite):
            i = int(np.argmin(finite.values) if lower else np.argmax(finite.values))
            best, step = float(finite.values[i]), int(finite.steps[i])
        else:
            best = step = None
        values |= {f"final_{side}": final, f"best_{side}": best, f"best_step_{side}": step}
    return MetricComparison(key=key, lower_is_better=lower, **values)


def _aligned(key: str, da: RunData, db: RunData) -> dict[str, list[float | None]]:
    sa, sb = da.series(key), db.series(key)
    steps = np.union1d(sa.steps, sb.steps)
    if len(steps) > CURVE_POINTS:
        steps = steps[np.linspace(0, len(steps) - 1, CURVE_POINTS).astype(int)]

    def at(s: Any) -> list[float | None]:
        if not len(s):
            return [None] * len(steps)
        idx = np.searchsorted(s.steps, steps, side="right") - 1
        return [float(s.values[i]) if i >= 0 and np.isfinite(s.values[i]) else None for i in idx]

    return {"steps": [float(x) for x in steps], "a": at(sa), "b": at(sb)}


def compare(catalog: Catalog, ref_a: str, ref_b: str) -> Comparison:
    """Config diff, metrics side by side, aligned curves, diagnostic differences and a verdict."""
    da, db = RunData.load(catalog, ref_a), RunData.load(catalog, ref_b)
    if da.run_id == db.run_id:
        raise ValueError(f"run_a {ref_a!r} and run_b {ref_b!r} are both run {da.run_id}: compare it with another run")
    changes = _config_changes(da.config, db.config)
    main = main_metric(da) or main_metric(db)
    keys: list[tuple[str, bool]] = []
    if main:
        keys.append(main)
    for key in ("train/loss", "val/loss", "val/acc"):
        if key not in [k for k, _ in keys] and (da.has(key) or db.has(key)):
            keys.append((key, key != "val/acc"))
    metrics = [_metric(k, lower, da, db) for k, lower in keys]
    issues_a, _ = run_checks(da)
    issues_b, _ = run_checks(db)
    codes_a = {i.code for i in issues_a if i.severity != "info"}
    codes_b = {i.code for i in issues_b if i.severity != "info"}
    speed = {}
    for side, data in (("a", da), ("b", db)):
        st = data.series("time/step_s").finite()
        tp = data.series("throughput/samples_per_s").finite()
        speed[f"step_s_{side}"] = median(st.values) if len(st) else None
        speed[f"samples_per_s_{side}"] = median(tp.values) if len(tp) else None
    comparison = Comparison(
        a=RunRef.of(da),
        b=RunRef.of(db),
        config_changes=changes, metrics=metrics, speed=speed,
        curves={k: _aligned(k, da, db) for k, _ in keys},
        only_a=sorted(codes_a - codes_b), only_b=sorted(codes_b - codes_a), both=sorted(codes_a & codes_b),
        health={"a": health_score(issues_a), "b": health_score(issues_b)}, verdict="",
    )  # fmt: skip
    comparison.verdict = _verdict(comparison)
    return comparison


def _verdict(c: Comparison) -> str:
    parts = []
    m = c.metrics[0] if c.metrics else None
    better = None
    if m and m.best_a is not None and m.best_b is not None:
        a_wins = m.best_a < m.best_b if m.lower_is_better else m.best_a > m.best_b
        better, worse = ("A", "B") if a_wins else ("B", "A")
        va, vb = (m.best_a, m.best_b) if a_wins else (m.best_b, m.best_a)
        parts.append(f"Run {better} ({(c.a if a_wins else c.b).name}) is better on {m.key}: best {va:.4g} vs {vb:.4g}.")
        worse_only = c.only_b if a_wins else c.only_a
        if worse_only:
            parts.append(f"Run {worse} has {', '.join(worse_only)}, which run {better} does not.")
    elif m:
        parts.append(f"{m.key} is missing in one run.")
    if c.config_changes:
        top = c.config_changes[:3]
        described = "; ".join(
            f"{ch.key}: {json.dumps(ch.a, default=str)} -> {json.dumps(ch.b, default=str)}" for ch in top
        )
        parts.append(f"The config changes that most plausibly explain it: {described}.")
    else:
        parts.append("Their configs are identical: the difference comes from randomness (seed, data order) or code.")
    return " ".join(parts)
