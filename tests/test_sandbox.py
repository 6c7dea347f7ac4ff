"""`trainatlas sql` is read-only: hostile statements are refused or stopped, with a clear error."""

from __future__ import annotations

import os

import pytest
from conftest import observer, train

from trainatlas.store.sandbox import SQLRejected, open_sandbox, run_select


@pytest.fixture
def sandbox(root):
    with observer(root, name="r") as obs:
        train(obs, steps=5)
    os.symlink("/etc/passwd", root / "passwd-link")
    return open_sandbox(root)


def test_select_works_and_is_capped(sandbox):
    result = run_select(sandbox.con, "SELECT step FROM scalars WHERE key = 'train/loss' ORDER BY step", max_rows=3)
    assert result.columns == ["step"] and result.rows == [(1,), (2,), (3,)] and result.truncated


@pytest.mark.parametrize(
    "query, reason",
    [
        ("SELECT * FROM read_csv('/etc/passwd')", "Permission"),
        ("SELECT * FROM read_text('{root}/../../../../etc/passwd')", "Permission"),
        ("SELECT * FROM read_csv('{root}/passwd-link')", "Permission"),
        ("SELECT * FROM glob('/etc/*')", "Permission"),
        ("COPY (SELECT 1) TO '{root}/out.csv'", "single SELECT"),
        ("ATTACH '{root}/x.db'", "single SELECT"),
        ("INSTALL httpfs", "single SELECT"),
        ("SET threads = 1", "single SELECT"),
        ("SELECT 1; DROP VIEW runs", "single SELECT"),
        ("EXPLAIN ANALYZE COPY (SELECT 1) TO '{root}/e.csv'", "single SELECT"),
        ("SELEC nonsense", "parse"),
    ],
)
def test_hostile_sql_is_refused(sandbox, query, reason):
    with pytest.raises(SQLRejected, match=reason):
        run_select(sandbox.con, query.format(root=sandbox.root))
    assert not (sandbox.root / "out.csv").exists() and not (sandbox.root / "x.db").exists()
    assert run_select(sandbox.con, "SELECT count(*) FROM runs").rows == [(1,)]  # still serving


def test_a_query_that_runs_forever_is_stopped(sandbox):
    with pytest.raises(SQLRejected, match="longer than 0.5 s"):
        run_select(sandbox.con, "SELECT count(*) FROM range(100000000000) a", timeout_s=0.5)
    assert run_select(sandbox.con, "SELECT 42").rows == [(42,)]
