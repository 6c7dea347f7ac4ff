"""JSON-per-line logs: MMCV/MMDet 2.x ``*.log.json``, MMEngine ``vis_data/scalars.json``, DETR/DeiT
``log.txt`` (one object per epoch) and any other JSON-lines log with numeric fields.

Steps: MMCV rows count ``iter`` within an epoch (epoch-based runner) or globally (iter-based);
the step clock turns both into a global step. MMEngine rows carry a global ``step``; its evaluation
rows of an epoch-based run give the epoch there, so they are put at the last training step.
Bare ``NaN``/``Infinity`` (non-standard JSON) are read as floats.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from trainatlas.ingest.base import LineParser, Row, StepClock, to_float, to_step
from trainatlas.ingest.keys import as_val

STEP_FIELDS = ("step", "global_step", "iteration", "iter", "it", "epoch")
_SKIP = {"mode", "epoch", "iter", "step", "global_step", "iteration", "n_parameters", "memory_gb"}
_LOSSY = ("loss", "lr")


def flatten(obj: dict[str, Any], skip: set[str]) -> dict[str, float]:
    """Numeric fields of a JSON object; lists of numbers become ``name/0``, ``name/1``, ..."""
    out: dict[str, float] = {}
    for key, value in obj.items():
        if key in skip or not isinstance(key, str):
            continue
        if isinstance(value, list) and len(value) <= 64:
            for i, item in enumerate(value):
                number = to_float(item) if not isinstance(item, str) else None
                if number is not None:
                    out[f"{key}/{i}"] = number
        elif not isinstance(value, str):
            number = to_float(value)
            if number is not None:
                out[key] = number
    return out


class JsonLinesParser(LineParser):
    format = "jsonl"

    def parse_line(self, text: str, line: int) -> Iterator[Row]:
        if not text.startswith("{"):
            self.error(line, "not a JSON object")
            return
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error(line, f"malformed JSON ({exc.msg} at column {exc.colno})")
            return
        if not isinstance(obj, dict):
            self.error(line, "not a JSON object")
            return
        if "env_info" in obj or "config" in obj and len(obj) <= 3:
            self.state["kind"] = "mmcv"
            return  # MMCV's first line: environment and config, no metrics
        row = self._row(obj, line)
        if row is not None:
            yield row

    def _row(self, obj: dict[str, Any], line: int) -> Row | None:
        clock = StepClock.load(self.state.get("clock"))
        epoch = to_float(obj.get("epoch"))
        values = flatten(obj, _SKIP)
        if not values:
            return None
        mode = obj.get("mode")
        if mode is not None:  # MMCV: iter counts within an epoch or globally; the clock handles both
            self.state["kind"] = "mmcv"
            raw = to_step(obj.get("iter"))
            step = clock.step(raw, epoch) if mode == "train" and raw is not None else clock.current
            if mode != "train":
                values = {as_val(k): v for k, v in values.items()}
        elif "step" in obj and ("lr" in obj or "epoch" in obj or self.state.get("kind") == "mmengine"):
            self.state["kind"] = "mmengine"
            raw = to_step(obj["step"])
            if raw is None:
                return None
            is_eval = not any(any(w in k for w in _LOSSY) for k in obj)
            if is_eval:
                values = {as_val(k): v for k, v in values.items()}
                # an epoch-based run logs the epoch as the step of its evaluations
                step = clock.current if self.state.get("epoch_based") else clock.step(raw)
            else:
                self.state["epoch_based"] = self.state.get("epoch_based") or epoch is not None
                step = clock.step(raw)
        else:
            raw = next((to_step(obj[f]) for f in STEP_FIELDS if f in obj and to_step(obj[f]) is not None), None)
            if raw is None:
                raw = int(self.state.get("rows", 0))
            step = clock.step(raw)
        self.state["rows"] = int(self.state.get("rows", 0)) + 1
        self.state["clock"] = clock.dump()
        return Row(step, values, line, epoch)
