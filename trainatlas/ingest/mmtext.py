"""OpenMMLab plain-text logs (MMCV 1.x and MMEngine), whatever comes before the record on the line
(timestamps, SLURM progress bars joined by carriage returns):

    Epoch [1][100/782]\tlr: 1.000e-01, eta: 0:09:26, time: 0.073, ..., loss: 0.7163
    Epoch(val) [1][157]\taccuracy_top-1: 83.3100, accuracy_top-5: 99.2600
    Epoch(train)  [1][ 5/16]  lr: 8.6212e-05  eta: 0:09:45  time: 0.9216 ... loss: 3.0623
    Iter(train) [  100/10000]  lr: 9.9779e-03 ...      Iter(val) [1206/1206]  aAcc: 89.1700 ...

Epoch-based steps are ``(epoch - 1) * iters_per_epoch + iter``; validation goes at the end of its
epoch. Progress lines of validation (``eta:``) carry no metrics and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainatlas.ingest.base import LineParser, Row, StepClock, wall_time
from trainatlas.ingest.keys import as_val

RECORD = re.compile(
    r"(?P<unit>Epoch|Iter)(?:\((?P<mode>\w+)\))?\s*\[\s*(?P<a>\d+)\s*\]"
    r"(?:\s*\[\s*(?P<b>\d+)\s*(?:/\s*(?P<n>\d+)\s*)?\])?"
    r"|(?P<unit2>Iter)(?:\((?P<mode2>\w+)\))?\s*\[\s*(?P<i>\d+)\s*/\s*(?P<total>\d+)\s*\]"
)
PAIR = re.compile(
    r"(?<![\w./()\-])([A-Za-z][\w./()\- ]*?):\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|nan|inf|-inf)(?![\d:.])"
)
_SKIP = {"eta", "memory", "epoch", "iter"}
MARKER = re.compile(r"Epoch(\(\w+\))?\s*\[\s*\d+\s*\]\s*\[\s*\d+|Iter(\(\w+\))?\s*\[\s*\d+\s*/\s*\d+\s*\]")


class MMTextParser(LineParser):
    format = "mmtext"

    def parse_line(self, text: str, line: int) -> Iterator[Row]:
        m = RECORD.search(text)
        if not m:
            return
        mode = (m.group("mode") or m.group("mode2") or "train").lower()
        values = {}
        for key, value in PAIR.findall(text, m.end()):
            key = key.strip()
            if key.lower() in _SKIP or key.endswith("copypaste"):
                continue
            values[key] = float(value)
        if not values or (mode != "train" and "eta" in text[m.end() :]):
            return
        clock = StepClock.load(self.state.get("clock"))
        epoch = None
        if m.group("unit") == "Epoch":
            epoch = int(m.group("a"))
            n = int(m.group("n") or 0) or self.state.get("per_epoch")
            if mode == "train":
                i = int(m.group("b") or 0)
                if n:
                    self.state["per_epoch"] = n
                    raw = (epoch - 1) * n + i
                else:  # MMCV without the epoch length: let the clock join the epochs
                    raw = i
                step = clock.step(raw)
                self.state["trained"] = True
            elif self.state.get("per_epoch"):
                step = clock.step(epoch * self.state["per_epoch"])
            elif self.state.get("trained"):
                step = clock.current
            else:  # no training lines at all (fewer iterations per epoch than the log interval)
                step = clock.step(epoch)
        else:
            raw = int(m.group("a") or m.group("i") or 0)
            step = clock.step(raw) if mode == "train" else clock.current
        if mode != "train":
            values = {as_val(k): v for k, v in values.items()}
        self.state["clock"] = clock.dump()
        yield Row(step, values, line, epoch, wall_time(text))
