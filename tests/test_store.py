"""Shards, compaction and the DuckDB catalog: corrupt files, live runs, pruning, run lookup."""

from __future__ import annotations

import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import observer, train

import trainatlas
from trainatlas.store.catalog import Catalog, Sources
from trainatlas.store.schema import arrow_schema
from trainatlas.store.shards import (
    compact,
    inspect_shard,
    is_readable_shard,
    list_shards,
    shard_path,
    write_shard_atomic,
)


def scalars(run_id: str, steps: range) -> pa.Table:
    n = len(steps)
    return pa.table(
        {"run_id": [run_id] * n, "step": list(steps), "ts": [0.0] * n, "key": ["train/loss"] * n,
         "value": [float(s) for s in steps]},
        schema=arrow_schema("scalars"),
    )  # fmt: skip


def test_atomic_write_leaves_no_temporary_file(tmp_path):
    path = shard_path(tmp_path, 0)
    write_shard_atomic(scalars("r", range(5)), path)
    assert os.listdir(tmp_path) == ["part-000000.parquet"]
    assert pq.read_table(path).num_rows == 5


def test_vetting_catches_truncated_empty_and_foreign_files(tmp_path):
    good = shard_path(tmp_path, 0)
    write_shard_atomic(scalars("r", range(100)), good)
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "empty": b"",
        "csv": b"step,value\n1,2\n",
        "no-head": data[4:],
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        assert not is_readable_shard(tmp_path / name), name
    assert is_readable_shard(good)


def test_compaction_merges_small_shards_and_readers_ignore_leftovers(tmp_path):
    for i in range(5):
        write_shard_atomic(scalars("r", range(i * 10, i * 10 + 10)), shard_path(tmp_path, i))
    merged = compact(tmp_path)
    assert merged.name == "part-000000-000004.parquet"
    assert [s.path.name for s in list_shards(tmp_path)] == [merged.name]
    assert pq.read_table(merged).column("step").to_pylist() == list(range(50))
    # a crash between writing the merged shard and deleting the parts leaves both: parts are ignored
    write_shard_atomic(scalars("r", range(0, 10)), shard_path(tmp_path, 2))
    write_shard_atomic(scalars("r", range(50, 60)), shard_path(tmp_path, 5))
    assert [s.path.name for s in list_shards(tmp_path)] == [merged.name, "part-000005.parquet"]


def test_corrupt_shard_is_skipped_with_a_warning_and_the_rest_is_read(root):
    with observer(root, name="a", flush_every_s=0.05) as obs:
        train(obs, steps=20)
    bad = obs.dir / "scalars" / "part-000099.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.warns(UserWarning, match="skipping unreadable shard"):
        con = trainatlas.open_catalog(root)
    assert con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone() == (20,)
    assert bad.exists()  # nothing is deleted or moved: the user's data stays as it was


def test_catalog_sees_shards_written_after_it_opened(root):
    obs = observer(root, flush_every_s=0.05)
    train(obs, steps=5)
    obs._flush()
    con = trainatlas.open_catalog(root)
    assert con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone() == (5,)
    train(obs, steps=5)
    obs._flush()
    assert con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone() == (10,)
    obs.close()


def test_query_on_one_run_opens_only_that_runs_files(root):
    ids = []
    for name in ("a", "b", "c"):
        with observer(root, name=name) as obs:
            train(obs, steps=5)
        ids.append(obs.run_id)
    con = trainatlas.open_catalog(root)
    plan = con.execute("EXPLAIN ANALYZE SELECT sum(value) FROM scalars WHERE run_id = ?", [ids[1]]).fetchall()[0][1]
    assert "Scanning Files: 1/3" in plan


def test_documented_join_works(root):
    for name in ("a", "b"):
        with observer(root, name=name) as obs:
            train(obs, steps=3 if name == "a" else 4)
    con = trainatlas.open_catalog(root)
    rows = con.execute(
        "SELECT r.name, max(s.step) FROM scalars s JOIN runs r USING (run_id) GROUP BY 1 ORDER BY 1"
    ).fetchall()
    assert rows == [("a", 3), ("b", 4)]


def test_empty_root_gives_empty_typed_views(tmp_path):
    con = trainatlas.open_catalog(tmp_path / "nothing-here")
    for table in ("runs", "scalars", "layers", "events"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert "value" in [c[0] for c in con.execute("DESCRIBE scalars").fetchall()]


def test_malformed_run_json_skips_that_run_with_a_warning(root):
    with observer(root, name="good") as obs:
        train(obs, steps=3)
    broken = root / "project=tests" / "run=broken"
    broken.mkdir()
    (broken / "run.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable run.json"):
        catalog = Catalog(root)
    assert [r["name"] for r in catalog.runs] == ["good"]


def test_run_lookup_by_id_name_prefix_and_path(root):
    made = {}
    for name in ("alpha", "twin", "twin"):
        with observer(root, name=name) as obs:
            obs.step(loss=1.0)
        made.setdefault(name, []).append(obs)
    catalog = Catalog(root)
    alpha = made["alpha"][0]
    assert catalog.resolve(alpha.run_id)["name"] == "alpha"
    assert catalog.resolve("alpha")["run_id"] == alpha.run_id
    assert catalog.resolve(str(alpha.dir))["run_id"] == alpha.run_id
    older, newer = made["twin"]  # a script run twice (make demo twice): its name means the newest run
    assert catalog.resolve("twin")["run_id"] == newer.run_id != older.run_id
    assert catalog.resolve(older.run_id)["run_id"] == older.run_id  # the older one by its id
    with pytest.raises(LookupError, match="no run 'nope'"):
        catalog.resolve("nope")


def test_shards_of_other_schemas_are_read_by_name_and_current_ones_by_glob(root):
    def run_with(run_id: str, *tables: pa.Table):
        run = root / "project=p" / f"run={run_id}"
        (run / "scalars").mkdir(parents=True)
        (run / "run.json").write_text(json.dumps({"run_id": run_id, "status": "completed"}))
        for i, table in enumerate(tables):
            write_shard_atomic(table, shard_path(run / "scalars", i))
        return run / "scalars"

    older = scalars("mixed", range(3)).drop(["ts"])  # written before the column "ts" existed
    newer = scalars("newer", range(2)).append_column("later", pa.array([1, 2]))  # by a newer writer
    mixed = run_with("mixed", older, scalars("mixed", range(3, 5)))
    run_with("current", scalars("current", range(4)))
    run_with("old", scalars("old", range(3)).drop(["ts"]), newer)
    assert inspect_shard(mixed / "part-000001.parquet")[1] == (
        ("run_id", 6, 0), ("step", 2, None), ("ts", 5, None), ("key", 6, 0), ("value", 5, None))  # fmt: skip
    catalog = Catalog(root)
    rows = catalog.con.execute("SELECT run_id, count(*), count(ts) FROM scalars GROUP BY 1 ORDER BY 1").fetchall()
    assert rows == [("current", 4, 4), ("mixed", 5, 2), ("old", 5, 2)]
    sources = {run_id: s["scalars"] for run_id, s in catalog._run_sources.items()}
    assert sources["current"] == Sources([str(root.resolve() / "project=p/run=current/scalars/*.parquet")], [])
    assert [len(s) for s in sources["mixed"]] == [1, 1]
    assert sources["old"] == Sources([], [str(root.resolve() / "project=p/run=old/scalars/*.parquet")])


def test_numeric_run_names_in_paths_stay_strings(root):
    run = root / "project=p" / "run=0123"
    (run / "scalars").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"run_id": "0123", "status": "completed"}))
    write_shard_atomic(scalars("0123", range(3)), shard_path(run / "scalars", 0))
    con = trainatlas.open_catalog(root)
    assert con.execute("SELECT DISTINCT run_id FROM scalars").fetchall() == [("0123",)]
    assert con.execute("SELECT count(*) FROM scalars s JOIN runs USING (run_id)").fetchone() == (3,)


def test_a_run_reached_through_a_symlink_has_its_real_path(root, tmp_path):
    elsewhere = tmp_path / "elsewhere" / "run=linked"
    (elsewhere / "scalars").mkdir(parents=True)
    (elsewhere / "run.json").write_text(json.dumps({"run_id": "linked", "status": "completed"}))
    write_shard_atomic(scalars("linked", range(3)), shard_path(elsewhere / "scalars", 0))
    (root / "project=p").mkdir(parents=True)
    (root / "project=p" / "run=linked").symlink_to(elsewhere, target_is_directory=True)
    catalog = Catalog(root)
    assert [r["path"] for r in catalog.runs] == [str(elsewhere.resolve())]
    assert catalog.resolve(str(elsewhere))["run_id"] == "linked"
    assert catalog.con.execute("SELECT count(*) FROM scalars WHERE run_id = 'linked'").fetchone() == (3,)


def test_a_run_whose_table_directories_are_still_empty_is_queryable(root):
    """A run that has started but not flushed yet: its table directories exist and are empty."""
    with observer(root, name="starting") as obs:
        for table in ("scalars", "layers", "events"):
            (obs.dir / table).mkdir(parents=True, exist_ok=True)
            for f in (obs.dir / table).glob("*.parquet"):
                f.unlink()
        con = trainatlas.open_catalog(root)
        assert con.execute("SELECT count(*) FROM scalars").fetchone() == (0,)
        assert con.execute("SELECT status FROM runs").fetchone() == ("running",)
