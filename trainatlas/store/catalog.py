"""The DuckDB catalog: views ``runs``, ``scalars``, ``layers`` and ``events`` over every run under a
root, reading the Parquet shards in place.

DuckDB fails a whole query on one bad file and has no option to skip it, so every shard is vetted
here first (cheaply, and cached by path, size and mtime). A run whose shards are all sound is read
through a glob of its table directory, so shards it writes after the catalog opened are seen; a
run with a bad shard is read through the list of its good shards, with a warning.

Vetting also reads each shard's schema from its footer: shards in the current schema (all the
writer makes) are read without ``union_by_name``, which would make DuckDB open every file's footer
again when binding each view and each query; only older or foreign shards are read by name."""

from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import duckdb

from trainatlas.store.layout import RUN_FILE, TABLES, iter_run_dirs, resolve_root
from trainatlas.store.runinfo import effective_status, parse_iso, read_run_json
from trainatlas.store.schema import COLUMNS
from trainatlas.store.shards import inspect_shard, live_shard_names

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
_PHYSICAL = {"VARCHAR": (6, 0), "BIGINT": (2, None), "INTEGER": (1, None), "DOUBLE": (5, None), "BOOLEAN": (0, None)}
_CURRENT = {t: tuple((name, *_PHYSICAL[kind]) for name, kind in cols) for t, cols in COLUMNS.items()}
_vetted: dict[str, tuple[int, int, bool, bool]] = {}  # path -> size, mtime, readable, current schema
_vetted_lock = threading.Lock()


class Sources(NamedTuple):
    """What DuckDB reads for one table: paths or globs of shards in the current schema (read
    without ``union_by_name``, which would open every file's footer when binding), and of older
    or foreign shards (read by name)."""

    current: list[str]
    other: list[str]


def _vet(entry: os.DirEntry[str], table: str) -> tuple[bool, bool]:
    """(readable, in the current schema) for a shard, checked once per (size, mtime); warns once
    when it is unreadable."""
    try:
        st = entry.stat()
    except OSError:
        return False, False
    with _vetted_lock:
        cached = _vetted.get(entry.path)
    if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
        return cached[2], cached[3]
    ok, columns = inspect_shard(entry.path)
    current = ok and columns == _CURRENT[table]
    with _vetted_lock:
        _vetted[entry.path] = (st.st_size, st.st_mtime_ns, ok, current)
    if not ok:
        warnings.warn(f"trainatlas: skipping unreadable shard {entry.path}", stacklevel=4)
    return ok, current


def _table_sources(table_dir: str, table: str) -> Sources:
    """What DuckDB should read for one run's table: a glob of its directory when every file there
    is a sound shard of one kind (so shards written after the catalog opened are seen), else the
    list of its good live shards."""
    try:
        with os.scandir(table_dir) as it:
            entries = {e.name: e for e in it if e.name.endswith(".parquet")}
    except OSError:
        return Sources([], [])
    if not entries:  # a glob matching nothing reads as a table without the hive columns
        return Sources([], [])
    current: list[str] = []
    other: list[str] = []
    for _, _, name in live_shard_names(entries):
        ok, is_current = _vet(entries[name], table)
        if ok:
            (current if is_current else other).append(entries[name].path)
    if len(current) + len(other) == len(entries) and not (_GLOB_CHARS & set(table_dir)):
        pattern = [os.path.join(table_dir, "*.parquet")]
        if not other:
            return Sources(pattern, [])
        if not current:
            return Sources([], pattern)
    return Sources(current, other)


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
        "path": os.path.realpath(run_dir) if _linked(run_dir) else str(run_dir),
    }


def _linked(run_dir: Path) -> bool:
    """Whether a run directory under the (resolved) root is reached through a symlink: only then
    does its path need resolving (a syscall per path component, noticeable over 1,000s of runs)."""
    return os.path.islink(run_dir) or os.path.islink(run_dir.parent)


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
        run_sources: dict[str, dict[str, Sources]] = {}
        for run_dir in iter_run_dirs(self.root):
            try:
                info = read_run_json(run_dir / RUN_FILE)
            except ValueError as exc:
                warnings.warn(f"trainatlas: skipping run: {exc}", stacklevel=2)
                continue
            row = _run_row(run_dir, info)
            rows.append(row)
            run_sources[row["run_id"]] = {t: _table_sources(os.path.join(run_dir, t), t) for t in TABLES}
        self.runs = rows
        self._run_sources = run_sources
        self._store("_trainatlas_runs", RUNS_COLUMNS, rows)
        self.con.execute(
            "CREATE OR REPLACE VIEW runs AS SELECT * REPLACE (config::JSON AS config) FROM _trainatlas_runs"
        )
        for table in TABLES:
            self._store(f"_trainatlas_empty_{table}", COLUMNS[table], [])
            current = [p for sources in run_sources.values() for p in sources[table].current]
            other = [p for sources in run_sources.values() for p in sources[table].other]
            self.con.execute(f"CREATE OR REPLACE VIEW {table} AS {_select(table, Sources(current, other))}")

    def run_table(self, table: str, run_id: str) -> str:
        """A relation (SQL text) over one run's shards only: what per-run analysis reads, without
        listing every other run's files."""
        sources = self._run_sources.get(run_id, {}).get(table, Sources([], []))
        return f"({_select(table, sources)})"

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
        """The run a user means by ``ref``: a run id, a run directory, a run name (the newest run of
        that name when there are several), or a unique run id prefix."""
        by_id = [r for r in self.runs if r["run_id"] == ref]
        if by_id:
            return by_id[0]
        path = Path(ref).expanduser()
        if (path / RUN_FILE).is_file():
            resolved = str(path.resolve())
            by_path = [r for r in self.runs if r["path"] == resolved]
            if by_path:
                return by_path[0]
            raise UnknownRun(ref, self.root, [], outside=True)
        by_name = [r for r in self.runs if r["name"] == ref]
        if by_name:  # a script run twice gives two runs of one name: the name means the latest
            return max(by_name, key=_newest_first_key)
        prefix = [r for r in self.runs if r["run_id"].startswith(ref)]
        if len(prefix) == 1:
            return prefix[0]
        raise UnknownRun(ref, self.root, sorted(prefix, key=_newest_first_key, reverse=True))


class UnknownRun(LookupError):
    """``ref`` names no single run. ``str()`` is the command-line message (root path, CLI hint);
    ``answer`` is the same fact for an MCP client, which has neither a shell nor the root's path."""

    MAX_LISTED = 10  # an id prefix such as "2026" matches every run: name a few, count the rest

    def __init__(self, ref: str, root: Path, matches: list[dict[str, Any]], outside: bool = False) -> None:
        self.ref, self.matches, self.outside = ref, matches, outside
        outside_root = f"outside the root {root}; pass --root"
        super().__init__(self._describe(f" under {root}", outside_root, "try `trainatlas runs`"))

    @property
    def answer(self) -> str:
        return self._describe("", "outside the served root", "call list_runs to see the run ids")

    def _describe(self, under: str, outside: str, hint: str) -> str:
        if self.outside:
            return f"{self.ref} is a run directory {outside}"
        if not self.matches:
            return f"no run {self.ref!r}{under} ({hint})"
        shown = ", ".join(f"{r['run_id']} ({r['name']})" for r in self.matches[: self.MAX_LISTED])
        more = f" and {len(self.matches) - self.MAX_LISTED} more" if len(self.matches) > self.MAX_LISTED else ""
        return f"{self.ref!r} matches {len(self.matches)} runs: {shown}{more}; give more of the run id"


def _newest_first_key(run: dict[str, Any]) -> tuple[float, str]:
    """Start time, then run id (ids sort by creation time); a run without a start time is oldest."""
    started = run["started_at"]
    return (started.timestamp() if started is not None else float("-inf"), run["run_id"])


def _select(table: str, sources: Sources) -> str:
    """A table's query over shards. The union with an empty table of the current schema gives every
    column even when all shards predate it (NULL there)."""
    parts = [f"SELECT * FROM _trainatlas_empty_{table}"]
    for paths, by_name in ((sources.current, False), (sources.other, True)):
        if paths:
            listing = "[" + ", ".join(_sql_str(p) for p in paths) + "]"
            parts.append(
                f"SELECT run AS run_id, * EXCLUDE (run_id, run, project) FROM read_parquet({listing}, "
                f"hive_partitioning=true, hive_types={{'project': VARCHAR, 'run': VARCHAR}}, "
                f"union_by_name={str(by_name).lower()}, allow_empty=true)"
            )
    if len(parts) == 1:
        return parts[0]
    return f"SELECT {_columns(table)} FROM ({' UNION ALL BY NAME '.join(parts[1:] + parts[:1])})"


def _param(value: Any) -> Any:
    return value.isoformat() if hasattr(value, "isoformat") else value


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def open_catalog(root: str | os.PathLike[str] | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with views ``runs``, ``scalars``, ``layers``, ``events`` over ``root``."""
    return Catalog(root).con
