"""How fast the analysis is: every diagnostic check (plus phases, forecast and advice) on one
1,000,000-step run with layer stats, and on 1,000 small runs.

The runs are written in the real on-disk layout (hive directories, Parquet shards, run.json) with
the schemas the Observer uses; their curves are synthetic (a noisy power-law loss, lr schedule,
step times), because recording a million real steps would measure the training, not the analysis.
Prints a table; goal: the 1M-step diagnosis in <= 1 s on two cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from trainatlas.store.catalog import Catalog
from trainatlas.store.layout import run_dir
from trainatlas.store.runinfo import utcnow_iso, write_run_json
from trainatlas.store.schema import arrow_schema
from trainatlas.store.shards import shard_path, write_shard_atomic
from trainatlas.tools.report import diagnose

KEYS_PER_STEP = ("train/loss", "lr", "grad_norm", "time/step_s", "time/data_s", "batch_size",
                 "throughput/samples_per_s", "epoch")  # fmt: skip


def write_run(root: Path, run_id: str, steps: int, layer_every: int, shards: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    d = run_dir(root, "bench", run_id)
    (d / "scalars").mkdir(parents=True)
    (d / "layers").mkdir()
    s = np.arange(1, steps + 1)
    x = s / steps
    values = {
        "train/loss": 0.3 + 2.0 * (1 + 50 * x) ** -0.7 * np.exp(rng.normal(0, 0.1, steps)),
        "lr": 1e-3 * 0.5 * (1 + np.cos(np.pi * x)),
        "grad_norm": 1.0 * np.exp(rng.normal(0, 0.2, steps)),
        "time/step_s": 0.05 * np.exp(rng.normal(0, 0.05, steps)),
        "time/data_s": 0.002 * np.exp(rng.normal(0, 0.1, steps)),
        "batch_size": np.full(steps, 64.0),
        "throughput/samples_per_s": 64 / 0.05 * np.exp(rng.normal(0, 0.05, steps)),
        "epoch": s / 1000,
    }
    for i, part in enumerate(np.array_split(np.arange(steps), shards)):
        n = len(part)
        table = pa.table(
            {"run_id": [run_id] * n * len(values), "step": np.tile(s[part], len(values)),
             "ts": np.tile(s[part] * 0.05, len(values)), "key": np.repeat(list(values), n),
             "value": np.concatenate([v[part] for v in values.values()])},
            schema=arrow_schema("scalars"),
        )  # fmt: skip
        write_shard_atomic(table, shard_path(d / "scalars", i))
    sampled = s[::layer_every]
    names = ["0", "1", "2", "3", "4"]
    types = ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    n = len(sampled) * len(names)
    layers = {
        "run_id": [run_id] * n, "step": np.repeat(sampled, len(names)), "layer": names * len(sampled),
        "position": list(range(len(names))) * len(sampled), "module_type": types * len(sampled),
        "param_count": [4160, 0, 4160, 0, 650] * len(sampled), "training": [True] * n,
        "grad_norm": rng.uniform(0.1, 1, n), "weight_norm": rng.uniform(5, 6, n),
        "update_ratio": rng.uniform(5e-4, 2e-3, n), "act_mean": rng.normal(0, 1, n),
        "act_std": rng.uniform(0.5, 1.5, n), "act_zero_frac": rng.uniform(0.3, 0.5, n),
        "act_dead_frac": rng.uniform(0, 0.1, n), "act_sat_frac": [None] * n,
    }  # fmt: skip
    write_shard_atomic(pa.table(layers, schema=arrow_schema("layers")), shard_path(d / "layers", 0))
    write_run_json(d / "run.json", {"run_id": run_id, "name": run_id, "project": "bench", "status": "completed",
                                    "started_at": utcnow_iso(), "ended_at": utcnow_iso(), "steps": steps,
                                    "total_steps": steps, "config": {"lr": 1e-3}})  # fmt: skip


def timed(fn, repeat: int) -> float:
    return timed_cpu(fn, repeat)[0]


def timed_cpu(fn, repeat: int) -> tuple[float, float]:
    """Median wall and CPU seconds (CPU of all threads: on a shared machine it moves less than wall)."""
    times, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--small-runs", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100k steps and 100 small runs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.steps, args.small_runs = 100_000, 100
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp, "big"), Path(tmp, "small")
        write_run(big, "big", args.steps, layer_every=100, shards=50, seed=0)
        figures["big_run_rows"] = args.steps * len(KEYS_PER_STEP)
        figures["load_before"] = os.getloadavg()[0]
        figures["big_diagnose_s"], figures["big_diagnose_cpu_s"] = timed_cpu(lambda: diagnose(Catalog(big), "big"), 5)
        figures["big_catalog_open_s"] = timed(lambda: Catalog(big), 3)
        for i in range(args.small_runs):
            write_run(small, f"r{i:04d}", 500, layer_every=50, shards=1, seed=i)

        def all_small() -> None:
            catalog = Catalog(small)
            for run in catalog.runs:
                diagnose(catalog, run["run_id"])

        figures["small_runs"] = args.small_runs
        figures["small_all_diagnose_s"] = timed(all_small, 1)
        figures["small_per_run_ms"] = figures["small_all_diagnose_s"] / args.small_runs * 1000
        figures["load_after"] = os.getloadavg()[0]
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"1 run x {args.steps:,} steps ({figures['big_run_rows']:,} scalar rows, layer stats every 100 steps)")
    print(f"  catalog open                  {figures['big_catalog_open_s'] * 1000:8.0f} ms")
    print(f"  diagnose (33 checks + phases, forecast, advice)  {figures['big_diagnose_s'] * 1000:8.0f} ms"
          f" (CPU {figures['big_diagnose_cpu_s'] * 1000:.0f} ms)"
          f"   goal <= 1000 ms: {'PASS' if figures['big_diagnose_s'] <= 1 else 'MISS'}")  # fmt: skip
    print(f"{args.small_runs} runs x 500 steps")
    print(f"  diagnose all                  {figures['small_all_diagnose_s']:8.1f} s"
          f"  ({figures['small_per_run_ms']:.1f} ms per run)")  # fmt: skip
    print(f"load average (1 min) {figures['load_before']:.1f} before, {figures['load_after']:.1f} after, "
          f"{os.cpu_count()} CPUs: other work on the machine inflates wall times")  # fmt: skip


if __name__ == "__main__":
    main()
