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
    """Appends (step, ts, key, value) rows to a run's ``scalars/`` as new shards."""

    def __init__(self, run_dir: Path, run_id: str, flush_rows: int = FLUSH_ROWS) -> None:
        self.dir = run_dir / "scalars"
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.rows = 0
        self.max_step: int | None = None
        self._cols: tuple[list[int], list[float | None], list[str], list[float]] = ([], [], [], [])

    def add(self, step: int, ts: float | None, key: str, value: float) -> None:
        steps, stamps, keys, values = self._cols
        steps.append(step)
        stamps.append(ts if ts is None or math.isfinite(ts) else None)
        keys.append(key)
        values.append(value)
        if self.max_step is None or step > self.max_step:
            self.max_step = step
        if len(steps) >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        steps, stamps, keys, values = self._cols
        if not steps:
            return
        import pyarrow as pa

        self.dir.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {"run_id": pa.array([self.run_id] * len(steps), pa.string()), "step": steps, "ts": stamps,
             "key": keys, "value": values},
            schema=arrow_schema("scalars"),
        )  # fmt: skip
        write_shard_atomic(table, shard_path(self.dir, next_index(self.dir)))
        self.rows += len(steps)
        self._cols = ([], [], [], [])
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
