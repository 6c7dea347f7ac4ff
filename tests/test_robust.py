"""The fast paths of the analysis give the same numbers as the plain ones: exact medians, the
one-pass read of a run's scalars, the row grouping behind it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from trainatlas.store.catalog import Catalog
from trainatlas.store.layout import run_dir
from trainatlas.store.runinfo import utcnow_iso, write_run_json
from trainatlas.store.schema import arrow_schema
from trainatlas.store.shards import shard_path, write_shard_atomic
from trainatlas.tools import rundata
from trainatlas.tools.medians import median, row_medians
from trainatlas.tools.robust import buckets
from trainatlas.tools.rundata import RunData, Series, _split_rows


def test_median_is_exactly_numpys():
    rng = np.random.default_rng(0)
    for n in (1, 2, 3, 4, 7, 10, 1001, 20_000):
        for trial in range(12):
            v = rng.normal(size=n) * 10.0 ** rng.integers(-5, 5)
            if trial % 3 == 0:
                v = np.round(v, 1)  # ties
            if trial % 4 == 1:
                v[rng.integers(n)] = np.nan
            if trial % 4 == 2:
                v[rng.integers(n)] = -np.inf
            assert median(v) == pytest.approx(float(np.median(v)), rel=0, abs=0, nan_ok=True)
            if n >= 4:
                rows = v[: n // 2 * 2].reshape(2, -1)
                assert np.array_equal(row_medians(rows), np.median(rows, axis=1), equal_nan=True)


def test_buckets_are_medians_and_cached():
    s = Series(np.arange(1, 10_001), np.random.default_rng(1).random(10_000))
    b = buckets(s, 100)
    assert np.array_equal(b.values, np.median(s.values.reshape(100, 100), axis=1))
    assert b.steps[0] == 100 and b.steps[-1] == 10_000
    assert buckets(s, 100) is b


@pytest.mark.parametrize("layout", ["grouped", "interleaved", "random"])
def test_split_rows_is_a_stable_sort_by_code(layout):
    rng = np.random.default_rng(2)
    code = {
        "grouped": np.tile(np.repeat(np.arange(1, 6, dtype=np.uint8), 500), 4),
        "interleaved": np.tile(np.arange(1, 6, dtype=np.uint8), 2000),
        "random": rng.integers(1, 6, size=10_000).astype(np.uint8),
    }[layout]
    steps, values = np.arange(len(code)), rng.random(len(code))
    split = _split_rows(code, steps, values, 7)
    order = np.argsort(code, kind="stable")
    ends = np.r_[0, np.cumsum(np.bincount(code, minlength=7))]
    assert len(split) == 7 and len(split[0][0]) == len(split[6][0]) == 0
    for g, (s, v) in enumerate(split):
        assert np.array_equal(s, steps[order][ends[g] : ends[g + 1]])
        assert np.array_equal(v, values[order][ends[g] : ends[g + 1]])


def _write_run(root, rows: list[tuple[int, str, float]]) -> None:
    d = run_dir(root, "p", "r1")
    (d / "scalars").mkdir(parents=True)
    for i, part in enumerate((rows[: len(rows) // 2], rows[len(rows) // 2 :])):
        table = pa.table(
            {"run_id": ["r1"] * len(part), "step": [r[0] for r in part], "ts": [float(r[0]) for r in part],
             "key": [r[1] for r in part], "value": [r[2] for r in part]},
            schema=arrow_schema("scalars"),
        )  # fmt: skip
        write_shard_atomic(table, shard_path(d / "scalars", i))
    write_run_json(d / "run.json", {"run_id": "r1", "name": "r1", "project": "p", "status": "completed",
                                    "started_at": utcnow_iso(), "steps": 40})  # fmt: skip


def test_one_pass_read_matches_the_per_key_queries(tmp_path, monkeypatch):
    """Keys interleaved and in blocks, steps out of order, a repeated step (the last stored value
    wins): the one-pass read gives what the per-key queries give."""
    rows = [(s, k, s * 1.0 + j) for s in range(1, 21) for j, k in enumerate(["loss", "lr", "gn"])]
    rows += [(s, "val/loss", s / 10) for s in range(40, 20, -2)] + [(30, "val/loss", 99.0)]
    rows += [(s, "time/step_s", 0.1) for s in range(21, 41)]
    _write_run(tmp_path, rows)
    catalog = Catalog(tmp_path)
    whole = RunData.load(catalog, "r1")
    assert whole.keys == {"loss", "lr", "gn", "val/loss", "time/step_s"}
    monkeypatch.setattr(rundata, "LOAD_ALL_ROWS", 0)
    per_key = RunData.load(catalog, "r1")
    for key in sorted(whole.keys):
        a, b = whole.series(key), per_key.series(key)
        assert np.array_equal(a.steps, b.steps) and np.array_equal(a.values, b.values), key
    val = whole.series("val/loss")
    assert list(val.steps) == list(range(22, 41, 2)) and val.values[val.steps == 30][0] == 99.0
