"""Buffers the training thread appends to, and their conversion to Arrow tables in the background.

The training thread only appends tuples to lists (atomic under the GIL); the background thread
takes what is there with ``take`` and converts it in bulk, so the hot path never waits on a lock,
a host sync or I/O.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import chain, groupby
from operator import itemgetter
from typing import Any

import numpy as np
import pyarrow as pa

from trainatlas.observer.values import float_array, norm_column
from trainatlas.store import columns as cols
from trainatlas.store.schema import arrow_schema

# The per-step tuple: (step, perf_counter at step(), at the end of the previous step(), at the first forward
# since then, loss, grad_norm, batch_size, lrs, epoch)
DRAIN_CHUNK = 10_000
STEP_KEYS = ("train/loss", "grad_norm", "time/step_s", "time/data_s", "batch_size")
NONFINITE_FLAGS = {"train/loss": "nonfinite_loss", "grad_norm": "nonfinite_gradients"}
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


def lr_key(group: int) -> str:
    return "lr" if group == 0 else f"lr/group{group}"


class LongRows:
    """Rows (step, ts, key, value) gathered as numpy pieces and joined once; keys kept as codes
    into ``names``."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._codes: dict[Any, int] = {}
        self._pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def code(self, key: Any) -> int:
        found = self._codes.get(key)
        if found is None:
            found = self._codes[key] = len(self.names)
            self.names.append(key if type(key) is str else str(key))
        return found

    def add(self, keys: list[Any], step: np.ndarray, ts: np.ndarray, values: np.ndarray,
            present: np.ndarray) -> None:  # fmt: skip
        """``len(step)`` rows of ``len(keys)`` values each (``values`` row by row); values not
        ``present`` are left out."""
        n = len(keys)
        code = np.tile(np.array([self.code(k) for k in keys], dtype=np.int32), len(step))
        if n != 1:
            step, ts = np.repeat(step, n), np.repeat(ts, n)
        if not present.all():
            step, ts, code, values = step[present], ts[present], code[present], values[present]
        if len(values):
            self._pieces.append((step, ts, code, values))

    def join(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._pieces:
            return np.zeros(0, np.int64), np.zeros(0), np.zeros(0, np.int32), np.zeros(0)
        return tuple(np.concatenate(column) for column in zip(*self._pieces, strict=True))  # type: ignore[return-value]


class Recording:
    """What has been recorded but not yet written."""

    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []
        self.logged: list[tuple[int, float, tuple[Any, ...], tuple[Any, ...]]] = []  # step, ts, keys, values
        self.layers: list[tuple[int, float, list[tuple[Any, ...]]]] = []
        self.events: list[tuple[Any, ...]] = []
        self.seen_nonfinite: set[str] = set()
        self.last_step = 0  # the newest step handed to the writer
        self.wall = time.time() - time.perf_counter()  # perf_counter -> unix time

    def clear(self) -> None:
        for items in (self.steps, self.logged, self.layers, self.events):
            take(items)

    def event(self, step: int, ts: float, kind: str, code: str, severity: str, message: str,
              payload: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.events.append((step, ts, kind, code, severity, message, payload or {}))

    def pending(self) -> bool:
        return bool(self.steps or self.logged or self.layers or self.events)

    def drain(self, run_id: str) -> Iterator[dict[str, pa.Table]]:
        """Tables for what was recorded until now (empty tables left out), at most ``DRAIN_CHUNK``
        steps and log calls at a time, so that converting a backlog never needs much memory. Events
        come last: converting scalars may raise some."""
        steps, logged = len(self.steps), len(self.logged)
        tables = {"layers": self._layers(run_id, take(self.layers))} if self.layers else {}
        while steps or logged:
            a, b = min(steps, DRAIN_CHUNK), min(logged, DRAIN_CHUNK)
            steps, logged = steps - a, logged - b
            tables["scalars"] = self._scalars(run_id, take(self.steps, a), take(self.logged, b))
            yield {name: t for name, t in tables.items() if t.num_rows}
            tables = {}
        if self.events:
            tables["events"] = self._events(run_id, take(self.events))
        if tables:
            yield {name: t for name, t in tables.items() if t.num_rows}

    def _scalars(self, run_id: str, steps: list[tuple[Any, ...]],
                 logged: list[tuple[int, float, tuple[Any, ...], tuple[Any, ...]]]) -> pa.Table:  # fmt: skip
        """Long rows (step, ts, key, value), built as numpy columns: no Python loop per value, because
        this thread competes with training for the GIL."""
        rows = LongRows()
        if steps:
            self.last_step = max(self.last_step, steps[-1][0])
            s_step, now, last, start, loss, grad_norm, batch_size, lrs, epoch = zip(*steps, strict=True)
            now = np.array(now, dtype=np.float64)
            at = np.array(s_step, dtype=np.int64), now + self.wall
            last, start = float_array(last), float_array(start)  # None: the first step, no forward seen
            seconds = (now - last[0], last[1])
            data_s = (start[0] - last[0], last[1] & start[1])
            # tensors become floats column by column (one stack per column)
            batch = float_array(batch_size)
            columns = (float_array(loss), norm_column(grad_norm), seconds, data_s, batch)
            for key, (values, present) in zip(STEP_KEYS, columns, strict=True):
                rows.add([key], *at, values, present)
            with np.errstate(divide="ignore", invalid="ignore"):
                speed = batch[0] / seconds[0]
            measured = batch[1] & seconds[1] & (batch[0] != 0) & (seconds[0] != 0)
            rows.add(["throughput/samples_per_s"], *at, speed, measured)
            for group in range(max(map(len, lrs))):
                rows.add([lr_key(group)], *at, *float_array([g[group] if len(g) > group else None for g in lrs]))
            rows.add(["epoch"], *at, *float_array(epoch))
        # consecutive log() calls with the same keys (the usual case) make one matrix, row per call
        for keys, run in groupby(logged, key=itemgetter(2)):
            entries = list(run)
            at_step = np.fromiter(map(itemgetter(0), entries), dtype=np.int64, count=len(entries))
            at_ts = np.fromiter(map(itemgetter(1), entries), dtype=np.float64, count=len(entries))
            rows.add(list(keys), at_step, at_ts, *float_array(list(chain.from_iterable(map(itemgetter(3), entries)))))
        step, ts, code, value = rows.join()
        bad = np.flatnonzero(~np.isfinite(value))  # usually empty
        if len(bad):
            step, ts, code, value = self._flag_nonfinite(rows, bad, step, ts, code, value)
        return cols.table(
            {"run_id": cols.repeated(run_id, len(value)), "step": cols.from_numpy(step, pa.int64()),
             "ts": cols.from_numpy(ts, pa.float64()), "key": cols.coded(rows.names, code),
             "value": cols.from_numpy(value, pa.float64())},
            arrow_schema("scalars"),
        )  # fmt: skip

    def _flag_nonfinite(self, rows: LongRows, bad: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
        """Sparse flags (only where it happened) and one event the first time."""
        step, ts, code, value = columns
        flagged = []
        for i in bad.tolist():
            flag = NONFINITE_FLAGS.get(rows.names[code[i]])
            if flag is None:
                continue
            flagged.append((i, rows.code(f"flag/{flag}")))
            if flag not in self.seen_nonfinite:
                self.seen_nonfinite.add(flag)
                what = "loss" if flag == "nonfinite_loss" else "gradient norm"
                self.event(int(step[i]), float(ts[i]), "alert", flag, "critical",
                           f"the {what} became {value[i]} at step {step[i]}",
                           {"key": rows.names[code[i]], "value": str(value[i])})  # fmt: skip
        if not flagged:
            return columns
        idx = [i for i, _ in flagged]
        extra = (step[idx], ts[idx], np.array([c for _, c in flagged], dtype=np.int32), np.ones(len(idx)))
        return tuple(np.concatenate(pair) for pair in zip(columns, extra, strict=True))

    def _layers(self, run_id: str, sampled: list[tuple[int, float, Any]]) -> pa.Table:
        """``sampled``: (step, ts, ``LayerSample``)."""
        meta = []
        values: list[float | None] = []
        from trainatlas.observer.layers import layer_stats  # imports torch: layer samples exist only with it

        for (step, _ts, sample), rows in zip(sampled, layer_stats([s for _, _, s in sampled]), strict=True):
            for position, ((layer, module_type, count, training), stats) in enumerate(
                    zip(sample.layers, rows, strict=True)):  # fmt: skip
                meta.append((step, layer, module_type, count, training, position))
                values.extend(stats)  # None: NULL = not measured
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
