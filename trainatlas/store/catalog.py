"""The DuckDB catalog: views ``runs``, ``scalars``, ``layers`` and ``events`` over every run under a
root, reading the Parquet shards in place.

DuckDB fails a whole query on one bad file and has no option to skip it, so every shard is vetted
here first (cheaply, and cached by path, size and mtime). A run whose shards are all sound is read
through a glob of its table directory, so shards it writes after the catalog opened are seen; a
run with a bad shard is read through the list of its good shards, with a warning.
"""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import duckdb

from trainatlas.store.layout import RUN_FILE, TABLES, iter_run_dirs, resolve_root
from trainatlas.store.runinfo import effective_status, parse_iso, read_run_json
from trainatlas.store.schema import COLUMNS
from trainatlas.store.shards import is_readable_shard, list_shards

RUNS_COLUMNS = (
    ("run_id", "VARCHAR"),
    ("project", "VARCHAR"),
    ("name", "VARCHAR"),
    ("status", "VARCHAR"),
    ("started_at", "TIMESTAMP"),  # UTC
    ("ended_at", "TIMESTAMP"),
    ("heartbeat_at", "TIMESTAMP"),
    ("steps", "BIGINT"),
    ("config", "VARCHAR"),
    ("source", "VARCHAR"),
    ("path", "VARCHAR"),
)
_GLOB_CHARS = set("*?[]{}")
_vetted: dict[Path, tuple[int, int, bool]] = {}
_vetted_lock = threading.Lock()


def _shard_ok(path: Path) -> bool:
    """Vet a shard once per (size, mtime); warn once when it is unreadable."""
    try:
        st = path.stat()
    except OSError:
        return False
    with _vetted_lock:
        cached = _vetted.get(path)
    if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
        return cached[2]
    ok = is_readable_shard(path)
    with _vetted_lock:
        _vetted[path] = (st.st_size, st.st_mtime_ns, ok)
    if not ok:
        warnings.warn(f"trainatlas: skipping unreadable shard {path}", stacklevel=3)
    return ok


def _table_sources(table_dir: Path) -> tuple[list[str], bool]:
    """Paths or globs DuckDB should read for one run's table, and whether any file exists."""
    shards = list_shards(table_dir)
    good = [s for s in shards if _shard_ok(s.path)]
    try:
        on_disk = sum(1 for n in os.listdir(table_dir) if n.endswith(".parquet"))
    except OSError:
        on_disk = 0
    clean = len(good) == on_disk and not (_GLOB_CHARS & set(str(table_dir)))
    if clean:
        return [str(table_dir / "*.parquet")], bool(good)
    return [str(s.path) for s in good], bool(good)


def _run_row(run_dir: Path, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": str(info["run_id"]),
        "project": str(info.get("project", "default")),
        "name": str(info.get("name") or info["run_id"]),
        "status": effective_status(info),
        "started_at": parse_iso(info.get("started_at")),
        "ended_at": parse_iso(info.get("ended_at")),
        "heartbeat_at": parse_iso(info.get("heartbeat_at")),
        "steps": int(info.get("steps") or 0),
        "config": json.dumps(info.get("config") or {}, default=str),
        "source": str(info.get("source", "observer")),
        "path": str(run_dir.resolve()),
    }


def _columns(table: str) -> str:
    return ", ".join(f'"{name}"' for name, _ in COLUMNS[table])


class Catalog:
    """A DuckDB connection with trainatlas views over a root; ``refresh()`` picks up new runs."""

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        con: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.root = resolve_root(root).resolve()
        self.con = con if con is not None else duckdb.connect()
        self.runs: list[dict[str, Any]] = []
        self.refresh()

    def refresh(self) -> None:
        """Rescan the root: new runs, new statuses, newly corrupt or compacted shards."""
        rows: list[dict[str, Any]] = []
        run_sources: dict[str, dict[str, tuple[list[str], bool]]] = {}
        for run_dir in iter_run_dirs(self.root):
            try:
                info = read_run_json(run_dir / RUN_FILE)
            except ValueError as exc:
                warnings.warn(f"trainatlas: skipping run: {exc}", stacklevel=2)
                continue
            row = _run_row(run_dir, info)
            rows.append(row)
            run_sources[row["run_id"]] = {table: _table_sources(run_dir / table) for table in TABLES}
        self.runs = rows
        self._run_sources = run_sources
        self._store("_trainatlas_runs", RUNS_COLUMNS, rows)
        self.con.execute(
            "CREATE OR REPLACE VIEW runs AS SELECT * REPLACE (config::JSON AS config) FROM _trainatlas_runs"
        )
        for table in TABLES:
            self._store(f"_trainatlas_empty_{table}", COLUMNS[table], [])
            paths = [p for sources in run_sources.values() for p in sources[table][0]]
            has_files = any(sources[table][1] for sources in run_sources.values())
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS {_select(table, paths, has_files)}")

    def run_table(self, table: str, run_id: str) -> str:
        """A relation (SQL text) over one run's shards only: what per-run analysis reads, without
        listing every other run's files."""
        paths, has_files = self._run_sources.get(run_id, {}).get(table, ([], False))
        return f"({_select(table, paths, has_files)})"

    def _store(self, name: str, columns: tuple[tuple[str, str], ...], rows: list[dict[str, Any]]) -> None:
        """A DuckDB table of ``rows``, passed column-wise as list parameters (fast, and no pandas or
        pyarrow import; a registered Python object would not survive the sandbox anyway)."""
        if not rows:
            ddl = ", ".join(f'"{col}" {kind}' for col, kind in columns)
            self.con.execute(f"CREATE OR REPLACE TABLE {name} ({ddl})")
            return
        select = ", ".join(f'unnest(?::{kind}[]) AS "{col}"' for col, kind in columns)
        params = [[_param(row[col]) for row in rows] for col, _ in columns]
        self.con.execute(f"CREATE OR REPLACE TABLE {name} AS SELECT {select}", params)

    def resolve(self, ref: str) -> dict[str, Any]:
        """The run a user means by ``ref``: a run id, a unique run name, or a run directory."""
        by_id = [r for r in self.runs if r["run_id"] == ref]
        if by_id:
            return by_id[0]
        path = Path(ref).expanduser()
        if (path / RUN_FILE).is_file():
            resolved = str(path.resolve())
            by_path = [r for r in self.runs if r["path"] == resolved]
            if by_path:
                return by_path[0]
            raise LookupError(f"{ref} is a run directory outside the root {self.root}; pass --root")
        by_name = [r for r in self.runs if r["name"] == ref]
        if len(by_name) == 1:
            return by_name[0]
        if by_name:
            ids = ", ".join(r["run_id"] for r in by_name)
            raise LookupError(f"{len(by_name)} runs are named {ref!r} ({ids}): give a run id")
        prefix = [r for r in self.runs if r["run_id"].startswith(ref)]
        if len(prefix) == 1:
            return prefix[0]
        raise LookupError(f"no run {ref!r} under {self.root} (try `trainatlas runs`)")


def _select(table: str, sources: list[str], has_files: bool) -> str:
    """A table's query over shards. The union with an empty table of the current schema gives every
    column even when all shards predate it (NULL there)."""
    empty = f"_trainatlas_empty_{table}"
    if not has_files:
        return f"SELECT * FROM {empty}"
    listing = "[" + ", ".join(_sql_str(s) for s in sources) + "]"
    return (
        f"SELECT {_columns(table)} FROM (SELECT run AS run_id, * EXCLUDE (run_id, run, project) "
        f"FROM read_parquet({listing}, hive_partitioning=true, hive_types={{'project': VARCHAR, 'run': VARCHAR}}, "
        f"union_by_name=true, allow_empty=true) UNION ALL BY NAME SELECT * FROM {empty})"
    )


def _param(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_catalog(root: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``runs``, ``scalars``, ``layers``, ``events`` over ``root``."""
    return Catalog(root).con
