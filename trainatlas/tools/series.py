"""Metric series, layer health and events of one run, sized for a reader: downsampled curves (LTTB),
the latest layer statistics, filtered events.

Largest-Triangle-Three-Buckets picks the points a plot needs (it keeps spikes, which averaging
would hide). A million-point series arrives from DuckDB as two numpy arrays, never as Python
objects.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog


MAX_POINTS = 5_000
MAX_EVENTS = 1_000


def lttb(x: np.ndarray, y: np.ndarray, n_out: int) -> np.ndarray:
    """Indices of the ``n_out`` points that keep a curve's visual shape (Steinarsson 2013)."""
    n = len(x)
    if n_out >= n or n_out < 3:
        return np.arange(n) if n_out >= n else np.linspace(0, n - 1, max(n_out, 1)).astype(int)
    edges = np.linspace(1, n - 1, n_out - 1).astype(int)
    chosen = np.empty(n_out, dtype=int)
    chosen[0], chosen[-1] = 0, n - 1
    a = 0
    for i in range(n_out - 2):
        lo, hi = edges[i], edges[i + 1]
        nxt_lo, nxt_hi = hi, edges[i + 2] if i + 2 < len(edges) else n
        avg_x, avg_y = x[nxt_lo:nxt_hi].mean(), y[nxt_lo:nxt_hi].mean()
        xs, ys = x[lo:hi], y[lo:hi]
        area = np.abs((x[a] - avg_x) * (ys - y[a]) - (x[a] - xs) * (avg_y - y[a]))
        a = lo + int(np.argmax(area)) if len(area) else lo
        chosen[i + 1] = a
    return chosen


def metric_series(
    catalog: Catalog,
    ref: str,
    keys: list[str],
    start_step: int | None = None,
    end_step: int | None = None,
    max_points: int = 500,
) -> dict[str, Any]:
    """Chosen keys of one run over a step range, at most ``max_points`` points per key."""
    if not 3 <= max_points <= MAX_POINTS:
        raise ValueError(f"max_points must be between 3 and {MAX_POINTS}, got {max_points}")
    if start_step is not None and end_step is not None and start_step > end_step:
        raise ValueError(f"start_step {start_step} is after end_step {end_step}: the range would be empty")
    run = catalog.resolve(ref)
    source = catalog.run_table("scalars", run["run_id"])
    lo = start_step if start_step is not None else -(2**62)
    hi = end_step if end_step is not None else 2**62
    series = []
    for key in keys:
        # fetchnumpy: a million rows arrive as two arrays, not a million tuples
        cols = catalog.con.execute(
            f"SELECT step, value FROM {source} WHERE key = ? AND step BETWEEN ? AND ?", [key, lo, hi]
        ).fetchnumpy()
        steps = np.asarray(cols["step"], dtype=np.int64)
        values = np.ma.filled(np.ma.asarray(cols["value"], dtype=float), np.nan)
        if not len(steps):
            _check_key(catalog, source, run["run_id"], key)
        gaps = np.diff(steps)
        if not (gaps > 0).all():  # unsorted or repeated steps: one value per step, the first written
            steps, idx = np.unique(steps, return_index=True)
            values = values[idx]
        finite = np.isfinite(values)
        keep = lttb(steps[finite].astype(float), values[finite], max_points) if finite.any() else np.array([], int)
        series.append(
            {
                "key": key,
                "points_in_range": int(len(steps)),
                "steps": steps[finite][keep].tolist(),
                "values": values[finite][keep].tolist(),
                "nonfinite_steps": steps[~finite][:100].tolist(),
                "downsampled": bool(len(keep) < finite.sum()),
            }
        )
    return {"run_id": run["run_id"], "series": series}


def _check_key(catalog: Catalog, source: str, run_id: str, key: str) -> None:
    """An empty answer is fine for a narrow step range; for a key the run never logged, say which it has."""
    if catalog.con.execute(f"SELECT 1 FROM {source} WHERE key = ? LIMIT 1", [key]).fetchone():
        return
    available = [k for (k,) in catalog.con.execute(f"SELECT DISTINCT key FROM {source} ORDER BY key").fetchall()]
    raise LookupError(f"run {run_id} has no key {key!r}; it has: {', '.join(available)}")


LAYER_FLAGS = (
    ("dead", "act_dead_frac", 0.5, "more than half of its units never fire"),
    ("saturated", "act_sat_frac", 0.5, "more than half of its activations are saturated"),
)


def layer_health(catalog: Catalog, ref: str, step: int | None = None, limit: int = 200) -> dict[str, Any]:
    """Per-layer statistics at one sampled step (the latest by default), worst layers first."""
    run = catalog.resolve(ref)
    source = catalog.run_table("layers", run["run_id"])
    steps = [s for (s,) in catalog.con.execute(f"SELECT DISTINCT step FROM {source} ORDER BY step").fetchall()]
    if not steps:
        note = "no layer statistics: the run was not watched with obs.watch(model), or it was imported"
        return {
            "run_id": run["run_id"],
            "step": None,
            "sampled_steps": 0,
            "layers": [],
            "truncated": False,
            "note": note,
        }
    chosen = steps[-1] if step is None else max([s for s in steps if s <= step] or steps[:1])
    substituted = step is not None and chosen != step
    cur = catalog.con.execute(f"SELECT * FROM {source} WHERE step = ? ORDER BY position, layer", [chosen])
    names = [d[0] for d in cur.description]
    layers = []
    for row in cur.fetchall():
        rec = {k: v for k, v in zip(names, row, strict=True) if k not in ("run_id", "ts") and v is not None}
        rec["flags"] = [flag for flag, col, limit_, _ in LAYER_FLAGS if (rec.get(col) or 0) > limit_]
        grad, weight = rec.get("grad_norm"), rec.get("weight_norm")
        if grad is not None and weight and grad / weight < 1e-7:
            rec["flags"].append("vanishing_gradient")
        layers.append(rec)
    layers.sort(key=lambda r: -len(r["flags"]))
    return {"run_id": run["run_id"], "step": chosen, "sampled_steps": len(steps), "layers": layers[:limit],
            "truncated": len(layers) > limit,
            "flag_meaning": {flag: meaning for flag, _, _, meaning in LAYER_FLAGS},
            "note": _substitution_note(step, chosen, steps) if substituted else None}  # fmt: skip


def _substitution_note(asked: int, chosen: int, steps: list[int]) -> str:
    """Say which step is shown instead of the one asked for, and where the sampled steps are."""
    where = "the nearest sampled step before it" if chosen < asked else "the first sampled step"
    return (f"step {asked} was not sampled; showing step {chosen}, {where} "
            f"({len(steps)} sampled steps from {steps[0]} to {steps[-1]})")  # fmt: skip


# Kinds the observer writes, checkpoints a run declares, and the derived phase rows; an imported run may add its own.
EVENT_KINDS = ("alert", "checkpoint", "lifecycle", "observer", "phase")


def list_events(
    catalog: Catalog,
    ref: str,
    kinds: list[str] | None = None,
    min_severity: str | None = None,
    limit: int = 100,
) -> dict[str, Any]:
    """A run's events (alerts, phase changes, channel failures), newest first."""
    if not 1 <= limit <= MAX_EVENTS:
        raise ValueError(f"limit must be between 1 and {MAX_EVENTS}, got {limit}")
    order = {"info": 0, "warning": 1, "critical": 2}
    if min_severity is not None and min_severity not in order:
        raise ValueError(f"min_severity must be one of {', '.join(order)}, got {min_severity!r}")
    run = catalog.resolve(ref)
    source = catalog.run_table("events", run["run_id"])
    if kinds:
        _check_kinds(catalog, source, kinds)
    where, params = ["TRUE"], []
    if kinds:
        where.append("list_contains(?, kind)")
        params.append(kinds)
    if min_severity:
        where.append("list_contains(?, severity)")
        params.append([s for s, rank in order.items() if rank >= order[min_severity]])
    cur = catalog.con.execute(
        f"SELECT step, ts, kind, code, severity, message, payload FROM {source} WHERE {' AND '.join(where)} "
        f"ORDER BY ts DESC, step DESC LIMIT {limit + 1}",
        params,
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if (not kinds or "phase" in kinds) and min_severity in (None, "info"):  # phase rows are info
        rows += phase_events(catalog, run["run_id"])
        rows.sort(key=lambda e: (e["ts"] or 0.0, e["step"] or 0), reverse=True)
    return {"run_id": run["run_id"], "events": rows[:limit], "truncated": len(rows) > limit}


def _check_kinds(catalog: Catalog, source: str, kinds: list[str]) -> None:
    """A misspelt kind would match nothing and look like a run without such events: refuse it, listing the kinds."""
    stored = {k for (k,) in catalog.con.execute(f"SELECT DISTINCT kind FROM {source}").fetchall()}
    valid = sorted(set(EVENT_KINDS) | stored)
    unknown = [k for k in kinds if k not in valid]
    if unknown:
        raise ValueError(f"unknown event kind(s) {', '.join(map(repr, unknown))}; the kinds are: {', '.join(valid)}")


def phase_events(catalog: Catalog, run_id: str) -> list[dict[str, Any]]:
    """The run's phase transitions as event rows (kind ``phase``), replayed from its loss curve.

    They are derived when asked, not stored: the phase windows are sized by the run's length, so a
    live run's history is re-cut as it grows, and a stored row would contradict the replay."""
    from trainatlas.tools.phases import phase_history
    from trainatlas.tools.rundata import RunData

    data = RunData.load(catalog, run_id)
    transitions = phase_history(data).transitions
    if not transitions:
        return []
    ts = dict(catalog.con.execute(
        f"SELECT step, max(ts) FROM {data.scalars_table} WHERE list_contains(?, step) GROUP BY step",
        [sorted({t.step for t in transitions})],
    ).fetchall())  # fmt: skip
    rows = []
    for t in transitions:
        event = t.as_event()
        rows.append({"step": t.step, "ts": ts.get(t.step), "kind": event["kind"], "code": event["code"],
                     "severity": event["severity"], "message": event["message"],
                     "payload": json.dumps({"previous": t.previous, "reason": t.reason, "derived": True})})  # fmt: skip
    return rows
