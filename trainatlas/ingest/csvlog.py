"""CSV logs: Lightning ``metrics.csv`` (sparse rows, train and val on separate rows), Keras
CSVLogger, YOLOv5/Ultralytics ``results.csv`` (header cells padded with spaces), and any CSV with a
step or epoch column and numeric columns.

The step is the ``step`` column when there is one, else ``iteration``/``iter``, else ``epoch``,
else the row number. Lightning rewrites the whole file when a new metric appears; the changed
header makes the ingest rebuild the run.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator

from trainatlas.ingest.base import LineParser, Row, StepClock, to_float, to_step

STEP_COLUMNS = ("step", "global_step", "iteration", "iter", "epoch")


class CsvParser(LineParser):
    format = "csv"

    def parse_line(self, text: str, line: int) -> Iterator[Row]:
        cells = [c.strip() for c in next(csv.reader([text]))]
        header = self.state.get("header")
        if header is None:
            self.state["header"] = cells
            lowered = [c.lower() for c in cells]
            self.state["step_col"] = next((lowered.index(c) for c in STEP_COLUMNS if c in lowered), None)
            self.state["epoch_col"] = lowered.index("epoch") if "epoch" in lowered else None
            return
        if len(cells) != len(header):
            self.error(line, f"{len(cells)} cells where the header has {len(header)}")
            if len(cells) < 2:
                return
        step_col, epoch_col = self.state.get("step_col"), self.state.get("epoch_col")
        values = {}
        for i, (name, cell) in enumerate(zip(header, cells, strict=False)):
            if i in (step_col, epoch_col) or not name:
                continue
            number = to_float(cell)
            if number is not None:
                values[name] = number
        raw = to_step(cells[step_col]) if step_col is not None and step_col < len(cells) else None
        if raw is None and step_col is not None and values:
            self.error(line, f"no {header[step_col]} value")
            return
        if not values:
            return
        clock = StepClock.load(self.state.get("clock"))
        step = clock.step(raw if raw is not None else (clock.last_raw or 0) + 1)
        self.state["clock"] = clock.dump()
        epoch = to_float(cells[epoch_col]) if epoch_col is not None and epoch_col < len(cells) else None
        yield Row(step, values, line, epoch)
