"""Writing an ingested run: scalar rows buffered into Parquet shards of bounded size (so memory
stays flat on a 1 GB log), and the run directory itself (found again by run id, emptied for a
rebuild)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from trainatlas.store.layout import RUN_FILE
from trainatlas.store.schema import arrow_schema
from trainatlas.store.shards import ROLLING_COMPACT_AT, compact, list_shards, next_index, shard_path, write_shard_atomic

FLUSH_ROWS = 250_000


class ScalarWriter:
    """Appends (step, ts, key, value) rows to a run's ``scalars/`` as new shards. Keys are kept as
    codes into a small dictionary: a log has few distinct names and millions of rows."""

    def __init__(self, run_dir: Path, run_id: str, flush_rows: int = FLUSH_ROWS) -> None:
        self.dir = run_dir / "scalars"
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.rows = 0
        self.max_step: int | None = None
        self._codes: dict[str, int] = {}
        self._steps: list[int] = []
        self._stamps: list[float | None] = []
        self._keys: list[int] = []
        self._values: list[float] = []

    def add(self, step: int, ts: float | None, keys: list[str], values: list[float]) -> None:
        """Rows of one step: ``keys[i]`` = ``values[i]``."""
        n = len(keys)
        if ts is not None and not math.isfinite(ts):
            ts = None
        codes = self._codes
        self._keys.extend(codes.setdefault(k, len(codes)) for k in keys)
        self._values.extend(values)
        self._steps.extend([step] * n)
        self._stamps.extend([ts] * n)
        if self.max_step is None or step > self.max_step:
            self.max_step = step
        if len(self._steps) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        n = len(self._steps)
        if not n:
            return
        import numpy as np
        import pyarrow as pa

        from trainatlas.store import columns as cols

        self.dir.mkdir(parents=True, exist_ok=True)
        columns = {
            "run_id": cols.repeated(self.run_id, n),  # dictionary-encoded, as the Observer writes them
            "step": pa.array(self._steps, pa.int64()),
            "ts": pa.array(self._stamps, pa.float64()),
            "key": cols.coded(list(self._codes), np.asarray(self._keys, dtype=np.int32)),
            "value": pa.array(self._values, pa.float64()),
        }
        table = cols.table(columns, arrow_schema("scalars"))
        write_shard_atomic(table, shard_path(self.dir, next_index(self.dir)))
        self.rows += n
        self._steps, self._stamps, self._keys, self._values = [], [], [], []
        if len(list_shards(self.dir)) >= ROLLING_COMPACT_AT:
            compact(self.dir)


def find_run_dir(root: Path, run_id: str) -> Path | None:
    """The directory of run ``run_id`` under any project of ``root``."""
    for candidate in sorted(root.glob(f"project=*/run={run_id}")):
        if (candidate / RUN_FILE).is_file():
            return candidate
    return None


def clear_scalars(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "scalars", ignore_errors=True)
