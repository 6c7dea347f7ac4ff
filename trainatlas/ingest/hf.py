"""Hugging Face ``trainer_state.json``: the ``log_history`` list, read object by object so a large
state file is never held whole (the Trainer rewrites the file at each checkpoint, so a change
re-reads it). Bare ``NaN``/``Infinity`` are read as floats.

Training entries (``loss``, ``grad_norm``, ``learning_rate``) and evaluation entries (``eval_*``)
keep their names; the closing summary entry (``train_runtime``, mean ``train_loss``, ...) is stored
under ``summary/`` so that its mean loss is not read as the last training loss.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from typing import Any, BinaryIO

from trainatlas.ingest.base import CHUNK, Parser, Row, to_float, to_step
from trainatlas.ingest.jsonlines import flatten

_DECODER = json.JSONDecoder()
_TOP_INT = re.compile(
    r'"(max_steps|global_step|num_train_epochs|logging_steps|eval_steps|train_batch_size)"\s*:\s*(\d+)'
)
_START = re.compile(r'"log_history"\s*:\s*\[')
MAX_OBJECT = 16 << 20


class TrainerStateParser(Parser):
    format = "hf-trainer-state"
    appendable = False

    def rows(self, f: BinaryIO, final: bool) -> Iterator[Row]:
        f.seek(0)
        buf, line, pos, started = "", 1, 0, False
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        for chunk in iter(lambda: f.read(CHUNK), b""):
            buf = buf[pos:] + decode(chunk)
            pos = 0
            if not started:
                self._top(buf)
                m = _START.search(buf)
                if not m:
                    keep = max(0, len(buf) - 64)  # the marker may straddle two chunks
                    line += buf.count("\n", 0, keep)
                    buf, pos = buf[keep:], 0
                    continue
                line += buf.count("\n", 0, m.end())
                pos, started = m.end(), True
            while True:
                start = _skip(buf, pos)
                if start >= len(buf):
                    break
                if buf[start] == "]":
                    self._top(buf[start:])
                    for rest in iter(lambda: f.read(CHUNK), b""):
                        self._top(rest.decode("utf-8", "replace"))
                    return
                try:
                    obj, end = _DECODER.raw_decode(buf, start)
                except json.JSONDecodeError:
                    if len(buf) - start > MAX_OBJECT:
                        self.error(line + buf.count("\n", pos, start), "log_history entry too large or malformed")
                        return
                    break  # an object cut by the chunk end: read more
                entry_line = line + buf.count("\n", pos, start)
                line = entry_line + buf.count("\n", start, end)
                pos = end
                row = self._row(obj, entry_line)
                if row is not None:
                    yield row
        if not started:
            self.error(line, "no log_history list")
        else:
            self.error(line, "file ends inside log_history (truncated?)")

    def _top(self, text: str) -> None:
        for key, value in _TOP_INT.findall(text[:4096] if len(text) > 4096 else text):
            self.meta.setdefault(key, int(value))

    def _row(self, obj: Any, line: int) -> Row | None:
        if not isinstance(obj, dict):
            self.error(line, "log_history entry is not an object")
            return None
        step = to_step(obj.get("step"))
        if step is None:  # predict_* entries carry no step: they belong to the last one
            step = int(self.state.get("last_step", 0))
        self.state["last_step"] = step
        values = flatten(obj, {"step", "epoch"})
        if "train_runtime" in obj:
            values = {f"summary/{k}": v for k, v in values.items()}
        return Row(step, values, line, to_float(obj.get("epoch"))) if values else None


def _skip(buf: str, pos: int) -> int:
    """Position of the next JSON value after whitespace and commas."""
    n = len(buf)
    while pos < n and buf[pos] in " \t\r\n,":
        pos += 1
    return pos
