"""Buffers the training thread appends to, and their conversion to Arrow tables in the background.

The training thread only appends tuples to lists (atomic under the GIL); the background thread
takes what is there with ``take`` and converts it in bulk, so the hot path never waits on a lock,
a host sync or I/O.
"""

from __future__ import annotations

import json
from itertools import chain, groupby, repeat
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from trainatlas.observer import columns as cols
from trainatlas.observer.values import to_floats
from trainatlas.store.schema import arrow_schema

# The per-step tuple: (step, ts, loss, grad_norm, step_s, data_s, batch_size, lrs, epoch)
DRAIN_CHUNK = 2_500
STEP_KEYS = ("train/loss", "grad_norm", "time/step_s", "time/data_s", "batch_size")
LAYER_STATS = (
    "grad_norm", "weight_norm", "update_ratio",
    "act_mean", "act_std", "act_zero_frac", "act_dead_frac", "act_sat_frac",
)  # fmt: skip


def take(items: list[Any], limit: int | None = None) -> list[Any]:
    """Remove and return (at most ``limit`` of) what is in ``items`` now; appends racing with
    this are kept."""
    n = len(items) if limit is None else min(len(items), limit)
    batch = items[:n]
    del items[:n]
    return batch


def repeat_each(items: list[Any], n: int) -> list[Any]:
    """[a, b] -> [a, a, b, b] for n=2, without a Python-level loop per element."""
    return list(chain.from_iterable(repeat(item, n) for item in items)) if n != 1 else items


def lr_key(group: int) -> str:
    return "lr" if group == 0 else f"lr/group{group}"


class Recording:
    """What has been recorded but not yet written."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []
        self.logged: list[tuple[int, float, tuple[Any, ...], tuple[Any, ...]]] = []  # step, ts, keys, values
        self.layers: list[tuple[int, float, list[tuple[Any, ...]]]] = []
        self.events: list[tuple[Any, ...]] = []
        self.seen_nonfinite: set[str] = set()
        self.last_step = 0  # the newest step handed to the writer

    def clear(self) -> None:
        for items in (self.steps, self.logged, self.layers, self.events):
            take(items)

    def event(self, step: int, ts: float, kind: str, code: str, severity: str, message: str,
              payload: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.events.append((step, ts, kind, code, severity, message, payload or {}))

    def pending(self) -> bool:
        return bool(self.steps or self.logged or self.layers or self.events)

    def drain(self, run_id: str) -> dict[str, pa.Table]:
        """Tables for what was recorded since the last drain, at most ``DRAIN_CHUNK`` steps and log
        calls at a time so that converting a backlog never needs much memory (empty tables left out)."""
        tables = {
            "scalars": self._scalars(run_id, take(self.steps, DRAIN_CHUNK), take(self.logged, DRAIN_CHUNK)),
            "layers": self._layers(run_id, take(self.layers)),
        }
        tables["events"] = self._events(run_id, take(self.events))
        return {name: t for name, t in tables.items() if t.num_rows}

    def _scalars(self, run_id: str, steps: list[tuple[Any, ...]],
                 logged: list[tuple[int, float, tuple[Any, ...], tuple[Any, ...]]]) -> pa.Table:  # fmt: skip
        """Long rows (step, ts, key, value), built column-wise with list operations that run in C:
        this thread competes with training for the GIL."""
        col_step: list[int] = []
        col_ts: list[float] = []
        col_key: list[str] = []
        raw: list[Any] = []

        def extend(key: str, col_s: tuple[int, ...], col_t: tuple[float, ...], values: Any) -> None:
            if None in values:  # values are floats or None here: a fast check
                keep = [i for i, v in enumerate(values) if v is not None]
                col_s, col_t, values = ([c[i] for i in keep] for c in (col_s, col_t, values))
            col_step.extend(col_s)
            col_ts.extend(col_t)
            col_key.extend([key] * len(values))
            raw.extend(values)

        if steps:
            self.last_step = max(self.last_step, steps[-1][0])
            s_step, s_ts, loss, grad_norm, step_s, data_s, batch_size, lrs, epoch = zip(*steps, strict=True)
            # tensors become floats column by column (one stack per column) before any comparison
            loss, grad_norm = to_floats(loss), to_floats(grad_norm)
            for key, column in zip(STEP_KEYS, (loss, grad_norm, step_s, data_s, batch_size), strict=True):
                extend(key, s_step, s_ts, column)
            speed = tuple(b / t if b and t else None for b, t in zip(batch_size, step_s, strict=True))
            extend("throughput/samples_per_s", s_step, s_ts, speed)
            for group in range(max(map(len, lrs))):
                extend(lr_key(group), s_step, s_ts, tuple(g[group] if len(g) > group else None for g in lrs))
            extend("epoch", s_step, s_ts, epoch)
        # consecutive log() calls with the same keys (the usual case) are transposed in bulk
        for keys, run in groupby(logged, key=itemgetter(2)):
            entries = list(run)
            n = len(keys)
            col_step.extend(repeat_each(list(map(itemgetter(0), entries)), n))
            col_ts.extend(repeat_each(list(map(itemgetter(1), entries)), n))
            col_key.extend(keys * len(entries))
            raw.extend(chain.from_iterable(map(itemgetter(3), entries)))
        converted = to_floats(raw)
        if None in converted:  # strings and the like are dropped
            keep = [i for i, v in enumerate(converted) if v is not None]
            columns = (col_step, col_ts, col_key, converted)
            col_step, col_ts, col_key, converted = ([c[i] for i in keep] for c in columns)
        values: list[float] = converted  # type: ignore[assignment]
        self._flag_nonfinite(col_step, col_ts, col_key, values)
        if any(type(k) is not str for k in set(col_key)):
            col_key = [str(k) for k in col_key]
        return cols.table(
            {"run_id": cols.repeated(run_id, len(values)), "step": cols.ints(col_step), "ts": cols.f64(col_ts),
             "key": cols.strings(col_key), "value": cols.f64(values)},
            arrow_schema("scalars"),
        )  # fmt: skip

    def _flag_nonfinite(self, steps: list[int], ts: list[float], keys: list[str],
                        values: list[float]) -> None:  # fmt: skip
        """Sparse flags (only where it happened) and one event the first time."""
        flags = {"train/loss": "nonfinite_loss", "grad_norm": "nonfinite_gradients"}
        if not values:
            return
        bad = np.flatnonzero(~np.isfinite(np.asarray(values, dtype=np.float64)))  # usually empty
        for i in bad.tolist():
            code = flags.get(keys[i])
            if code is None:
                continue
            steps.append(steps[i])
            ts.append(ts[i])
            keys.append(f"flag/{code}")
            values.append(1.0)
            if code not in self.seen_nonfinite:
                self.seen_nonfinite.add(code)
                what = "loss" if code == "nonfinite_loss" else "gradient norm"
                self.event(steps[i], ts[i], "alert", code, "critical",
                           f"the {what} became {values[i]} at step {steps[i]}",
                           {"key": keys[i], "value": str(values[i])})  # fmt: skip

    def _layers(self, run_id: str, sampled: list[tuple[int, float, list[tuple[Any, ...]]]]) -> pa.Table:
        meta = []
        raw: list[Any] = []
        for step, _ts, rows in sampled:
            for position, (layer, module_type, count, training, stats) in enumerate(rows):
                meta.append((step, layer, module_type, count, training, position))
                raw.extend(stats)
        values = to_floats(raw)  # None stays None: NULL = not measured
        n = len(LAYER_STATS)
        columns: dict[str, pa.Array] = {
            "run_id": cols.repeated(run_id, len(meta)),
            "step": cols.ints([m[0] for m in meta]),
            "layer": cols.strings([m[1] for m in meta]),
            "module_type": cols.strings([m[2] for m in meta]),
            "param_count": cols.ints([m[3] for m in meta]),
            "training": cols.bools([m[4] for m in meta]),
            "position": cols.ints([m[5] for m in meta], "i"),
        }
        for j, stat in enumerate(LAYER_STATS):
            columns[stat] = cols.f64(values[j::n])
        return cols.table(columns, arrow_schema("layers"))

    def _events(self, run_id: str, events: list[tuple[Any, ...]]) -> pa.Table:
        step, ts, kind, code, severity, message, payload = zip(*events, strict=True) if events else ((),) * 7
        columns = {"run_id": cols.repeated(run_id, len(events)), "step": cols.ints(step), "ts": cols.f64(ts),
                   "kind": cols.strings(kind), "code": cols.strings(code), "severity": cols.strings(severity),
                   "message": cols.strings(message),
                   "payload": cols.strings([json.dumps(p, default=str) for p in payload])}  # fmt: skip
        return cols.table(columns, arrow_schema("events"))
