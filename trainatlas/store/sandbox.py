"""Read-only SQL over a root: exactly one SELECT, no file access outside the root, no writes, no
extensions, no setting changes, and a time limit that interrupts the query.

DuckDB's own locks (``allowed_directories``, ``enable_external_access=false``,
``lock_configuration``) stop reads outside the root, symlinks included; they still allow writes
inside it (``COPY ... TO``, ``ATTACH``), which the single-SELECT rule closes.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

import duckdb

from trainatlas.store.catalog import Catalog
from trainatlas.store.layout import resolve_root


class SQLRejected(ValueError):
    """The statement is not a single read-only SELECT, or it failed; the message says why."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]
    truncated: bool


def open_sandbox(root: str | os.PathLike[str] | None = None, threads: int = 2, memory_limit: str = "1GB") -> Catalog:
    """A catalog whose connection can only read the root."""
    root_path = resolve_root(root).resolve()
    con = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            "threads": threads,
            "memory_limit": memory_limit,
        },
    )
    con.execute("SET temp_directory=''")  # else cwd/.tmp/ is silently allowed too
    con.execute("SET allowed_directories=?", [[str(root_path) + os.sep]])
    catalog = Catalog(root_path, con)
    con.execute("SET enable_external_access=false")
    con.execute("SET lock_configuration=true")
    return catalog


def run_select(con: duckdb.DuckDBPyConnection, sql: str, timeout_s: float = 10.0, max_rows: int = 1000) -> QueryResult:
    """Run one SELECT with a row cap and a time limit."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise SQLRejected(f"cannot parse the query: {exc}") from exc
    if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
        raise SQLRejected("only a single SELECT statement is allowed (tables: runs, scalars, layers, events)")
    cur = con.cursor()
    timer = threading.Timer(timeout_s, cur.interrupt)
    timer.start()
    try:
        rel = cur.execute(sql)
        columns = [d[0] for d in rel.description]
        rows = rel.fetchmany(max_rows + 1)
    except duckdb.InterruptException as exc:
        raise SQLRejected(f"the query ran longer than {timeout_s:g} s and was stopped") from exc
    except duckdb.Error as exc:
        raise SQLRejected(f"{type(exc).__name__}: {exc}") from exc
    finally:
        timer.cancel()
        cur.close()
    return QueryResult(columns, rows[:max_rows], len(rows) > max_rows)
