"""How fast the DuckDB catalog answers over big and many runs, against plain DuckDB and tbparse.

Data (built in a scratch directory, in the real on-disk layout):
* one run of N steps (1,000,000) x 10 keys = 10M scalar rows, in four layouts: 1, 100 and 1000
  equal shards, and "observer": the flush/compaction sequence of a real Observer
  (``write_shard_atomic`` per 1 s flush of 333 steps, i.e. 3 ms/step, rolling ``compact`` at
  ROLLING_COMPACT_AT shards, a final ``compact`` as in ``close()``). Each run's ``run.json`` and
  events come from a real (empty) Observer run; only ``steps`` in run.json is patched.
* the same rows as one plain Parquet file, for DuckDB's ``read_parquet('one.parquet')``;
* a TensorBoard event log (``SummaryWriter.add_scalar``) of a subset (200,000 scalars); its tbparse
  time is extrapolated linearly to 10M (stated in the table);
* 1,000 small runs (1,000 steps x 5 keys): one recorded by the real Observer, copied with new run
  ids, run.json and data.

Every figure is the median of R repetitions (5), each in a fresh Python process (imports done
before the clock starts, OS page cache warm): ``open_catalog`` then the query ("cold": what a CLI or
a freshly started MCP server pays), then a second ``open_catalog`` + query in the same process
("warm"). Queries: the whole-run per-key aggregate (count/min/max/avg/last); a 1,000-bucket series
of ``train/loss`` (``step // bucket``); the same aggregate with plain DuckDB over one.parquet; tbparse
loading the event log into a DataFrame, then the pandas aggregate; for the small runs, the last
``train/loss`` of every run (a join of ``scalars`` and ``runs``). Goals are judged on the cold total.

Run: .venv-bench/bin/python benchmarks/query_scale.py [--quick] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

KEYS = ["train/loss", "lr", "grad_norm", "val/loss", "val/acc", *(f"metric/{j}" for j in range(5))]
AGG = ("SELECT key, count(*), min(value), max(value), avg(value), arg_max(value, step) FROM {src} "
       "{where} GROUP BY key ORDER BY key")  # fmt: skip
SERIES = ("SELECT step // {b} AS bucket, min(step), avg(value), min(value), max(value) FROM scalars "
          "WHERE run_id = ? AND key = 'train/loss' GROUP BY bucket ORDER BY bucket")  # fmt: skip
LAST = ("SELECT r.name, arg_max(s.value, s.step) AS last_loss FROM scalars s JOIN runs r USING (run_id) "
        "WHERE s.key = 'train/loss' GROUP BY r.name ORDER BY last_loss")  # fmt: skip


def scalars_table(run_id: str, steps: int, keys: list[str], seed: int, t0: float = 1.8e9) -> Any:
    import numpy as np
    import pyarrow as pa

    from trainatlas.store.schema import arrow_schema

    def strings(codes: Any, words: list[str]) -> Any:
        return pa.DictionaryArray.from_arrays(codes, words).cast(pa.string())

    rng = np.random.default_rng(seed)
    n = steps * len(keys)
    step = np.repeat(np.arange(steps, dtype=np.int64), len(keys))
    value = rng.random(n) + np.repeat(2.0 * np.exp(-np.arange(steps) / (steps / 5)), len(keys))
    keys_col = strings(np.tile(np.arange(len(keys), dtype=np.int32), steps), keys)
    cols = [strings(np.zeros(n, np.int32), [run_id]), step, t0 + step * 0.003, keys_col, value]
    return pa.Table.from_arrays(cols, schema=arrow_schema("scalars"))


def empty_observer_run(root: Path, project: str, name: str, **kw: Any) -> Path:
    """A run directory with run.json and events as the real Observer writes them, no scalars."""
    import trainatlas

    obs = trainatlas.Observer(project=project, name=name, root=root, carbon=False, system=False, **kw)
    obs.close()
    shutil.rmtree(obs.dir / "scalars", ignore_errors=True)
    (obs.dir / "scalars").mkdir()
    return obs.dir


def patch_run_json(run_dir: Path, **fields: Any) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info.update(fields)
    (run_dir / "run.json").write_text(json.dumps(info, indent=1))


def build(a: argparse.Namespace, tmp: Path, out: Any) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from trainatlas.store import shards as S

    ds: dict[str, Any] = {}
    pq.write_table(scalars_table("one", a.steps, KEYS, seed=1), tmp / "one.parquet")
    ds["one.parquet"] = {"path": str(tmp / "one.parquet"), "files": 1,
                         "mb": (tmp / "one.parquet").stat().st_size / 2**20}
    per_flush = 333  # steps per 1 s flush at 3 ms/step
    for layout in [*(str(n) for n in a.shards), "observer"]:
        root = tmp / f"big-{layout}"
        run = empty_observer_run(root, "big", f"big-{layout}", config={"layout": layout})
        run_id, scal = run.name.split("=", 1)[1], run / "scalars"
        t = scalars_table(run_id, a.steps, KEYS, seed=1)  # the same rows in every layout
        if layout == "observer":
            for i, first in enumerate(range(0, a.steps, per_flush)):
                S.write_shard_atomic(t.slice(first * len(KEYS), per_flush * len(KEYS)), S.shard_path(scal, i))
                if len(S.list_shards(scal)) >= S.ROLLING_COMPACT_AT:
                    S.compact(scal, S.ROLLING_COMPACT_AT)
            S.compact(scal)
        else:
            n, rows = int(layout), t.num_rows
            for i in range(n):
                S.write_shard_atomic(t.slice(i * rows // n, (i + 1) * rows // n - i * rows // n),
                                     S.shard_path(scal, i))  # fmt: skip
        patch_run_json(run, steps=a.steps)
        files = list(scal.glob("*.parquet"))
        ds[f"{layout} shards" if layout != "observer" else "observer layout"] = {
            "path": str(root), "run_id": run_id, "files": len(files),
            "mb": sum(f.stat().st_size for f in files) / 2**20}  # fmt: skip
    # TensorBoard subset
    from torch.utils.tensorboard import SummaryWriter

    tb_steps = a.tb_scalars // len(KEYS)
    sub = scalars_table("tb", tb_steps, KEYS, seed=1).to_pydict()
    t0 = time.perf_counter()
    w = SummaryWriter(str(tmp / "tb"))
    for k, v, s in zip(sub["key"], sub["value"], sub["step"], strict=True):
        w.add_scalar(k, v, s)
    w.close()
    dt = time.perf_counter() - t0
    ds["tensorboard"] = {"path": str(tmp / "tb"), "scalars": tb_steps * len(KEYS), "write_s": dt}
    # 1,000 small runs: the first recorded by the Observer, the rest copied from it
    small = tmp / "small"
    import trainatlas

    obs = trainatlas.Observer(project="small", name="small-0000", root=small, config={"lr": 1e-3, "i": 0},
                              carbon=False)  # fmt: skip
    for i in range(a.small_steps):
        obs.log({k: 1.0 / (i + 1) for k in KEYS[:5]}, step=i)
    obs.close()
    for i in range(1, a.small_runs):
        run_id = f"{obs.run_id}-{i:04d}"
        d = obs.dir.with_name(f"run={run_id}")
        shutil.copytree(obs.dir, d)
        shutil.rmtree(d / "scalars")
        (d / "scalars").mkdir()
        table = scalars_table(run_id, a.small_steps, KEYS[:5], seed=i)
        S.write_shard_atomic(table, S.shard_path(d / "scalars", 0))
        patch_run_json(d, run_id=run_id, name=f"small-{i:04d}", config={"lr": 1e-3 * (1 + i % 7), "i": i})
    ds["small runs"] = {"path": str(small), "runs": a.small_runs}
    rows = [[k, v.get("files", v.get("runs", "-")), v.get("mb", float("nan"))] for k, v in ds.items()]
    C.table("datasets", ["dataset", "files / runs", "MB"], rows, out)
    print(f"tensorboard: {ds['tensorboard']['scalars']:,} scalars written in {dt:.1f} s", file=out)
    return ds


def child(task: str, path: str, run_id: str, steps: int) -> None:
    """One measurement in this fresh process: open + query twice (cold, then warm); prints seconds."""
    import duckdb

    import trainatlas

    if task == "tbparse":
        from tbparse import SummaryReader

        t0 = time.perf_counter()
        df = SummaryReader(path).scalars
        t1 = time.perf_counter()
        df.groupby("tag")["value"].agg(["count", "min", "max", "mean", "last"])
        return print(json.dumps({"open": t1 - t0, "query": time.perf_counter() - t1}))
    if task == "duckdb":
        q, args = AGG.format(src=f"read_parquet('{path}')", where=""), []
    elif task == "agg":
        q, args = AGG.format(src="scalars", where="WHERE run_id = ?"), [run_id]
    elif task == "series":
        q, args = SERIES.format(b=max(1, steps // 1000)), [run_id]
    else:
        q, args = LAST, []
    res = {}
    for when in ("", "warm "):
        t0 = time.perf_counter()
        con = duckdb.connect() if task == "duckdb" else trainatlas.open_catalog(path)
        t1 = time.perf_counter()
        con.execute(q, args).fetchall()
        res.update({f"{when}open": t1 - t0, f"{when}query": time.perf_counter() - t1})
        con.close()
    print(json.dumps(res))


def measure(a: argparse.Namespace, ds: dict[str, Any], out: Any) -> dict[str, Any]:
    jobs: dict[str, tuple[str, str, str, int]] = {}
    for k in [k for k in ds if "shards" in k or k == "observer layout"]:
        for task in ("agg", "series"):
            jobs[f"{k}|{task}"] = (task, ds[k]["path"], ds[k]["run_id"], a.steps)
    jobs["one.parquet|duckdb"] = ("duckdb", ds["one.parquet"]["path"], "", a.steps)
    jobs["tensorboard|tbparse"] = ("tbparse", ds["tensorboard"]["path"], "", a.steps)
    jobs["small runs|last"] = ("last", ds["small runs"]["path"], "", a.small_steps)

    def one(name: str, rep: int) -> dict[str, float]:
        task, path, run_id, steps = jobs[name]
        cmd = [sys.executable, __file__, "--_child", task, path, run_id, str(steps)]
        return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)

    res = C.interleaved(list(jobs), a.reps, 0, one)
    m = {k: {f: C.med([r[f] for r in v]) * 1e3 for f in v[0]} for k, v in res.items()}
    for v in m.values():
        v["total"] = v["open"] + v["query"]
        v["warm total"] = v.get("warm open", float("nan")) + v.get("warm query", float("nan"))
    scale = a.steps * len(KEYS) / ds["tensorboard"]["scalars"]
    tb = m["tensorboard|tbparse"]["total"] * scale
    duck = m["one.parquet|duckdb"]["total"]
    label = {"agg": "per-key aggregate", "series": "1000-bucket series of train/loss",
             "duckdb": "plain DuckDB aggregate (open = connect)",
             "tbparse": "tbparse (open = load, query = pandas agg)", "last": "last train/loss of every run"}
    rows = []
    for k, v in m.items():
        ds_name, task = k.split("|")
        goal = ""
        if task == "agg":
            ok = v["total"] <= 1000 and v["total"] <= 2 * duck and tb / v["total"] >= 100
            goal = (f"<=1 s; <=2x duckdb: {v['total'] / duck:.2f}x; >=100x tbparse: "
                    f"{tb / v['total']:,.0f}x => {C.verdict(ok)}")  # fmt: skip
        totals = [1e3 * (r["open"] + r["query"]) for r in res[k]]
        rows.append([ds_name, label[task], v["open"], v["query"], v["total"], C.spread(totals),
                     v.get("warm open", float("nan")), v["warm total"], goal])  # fmt: skip
    rows.append(["tensorboard", f"tbparse extrapolated x{scale:g} to {a.steps * len(KEYS):,} scalars",
                 float("nan"), float("nan"), tb, "linear", float("nan"), float("nan"), ""])  # fmt: skip
    C.table(f"query times in ms, median of {a.reps} fresh processes ({a.steps:,} steps x {len(KEYS)} keys; "
            f"{a.small_runs} runs x {a.small_steps} steps x 5 keys); warm = 2nd open + query, same process",
            ["dataset", "measurement", "open", "query", "total", "min..max", "warm open", "warm total",
             "goals (cold total)"], rows, out)  # fmt: skip
    return {"median_ms": m, "raw": res, "tbparse_extrapolated_ms": tb, "tb_scale": scale}


SIZES = {"steps": (1_000_000, 100_000, "steps of the big run"),
         "tb_scalars": (200_000, 20_000, "scalars in the TensorBoard log"),
         "small_runs": (1000, 100, "small runs"), "small_steps": (1000, 1000, "steps per small run"),
         "reps": (5, 2, "repetitions")}  # fmt: skip


def main() -> None:
    p = C.parser(__doc__, SIZES)
    p.add_argument("--shards", type=int, nargs="*", default=[1, 100, 1000], help="shard counts (1 100 1000)")
    p.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    a = C.resolve(p.parse_args(), SIZES)
    if a._child:
        return child(a._child[0], a._child[1], a._child[2], int(a._child[3]))
    tmp = C.scratch("query")
    C.offline_env(tmp)
    out = C.text_out(a.json)
    result: dict[str, Any] = {"machine": C.machine(), "args": vars(a)}
    print(f"machine: {result['machine']}; scratch {tmp}", file=out)
    t = time.perf_counter()
    result["datasets"] = build(a, tmp, out)
    print(f"(building took {time.perf_counter() - t:.0f} s)", file=out)
    snap = C.cpu_snapshot()
    result["queries"] = measure(a, result["datasets"], out)
    result["foreign_cores"] = others = C.foreign_cores(snap)
    print(f"(queries took {time.perf_counter() - snap[0]:.0f} s; other processes kept {others:.2f} of "
          f"{os.cpu_count()} cores busy meanwhile)", file=out)  # fmt: skip
    C.emit_json(a.json, result)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
