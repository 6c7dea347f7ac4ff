"""What recording costs the training it watches: trainatlas against TensorBoard, W&B and MLflow.

a. Scalars: N steps (100,000) of 10 Python floats per step, each tool in this one process,
   reps interleaved in rotating order (one warm-up rep dropped); figure = median us/step of the
   loop *plus* the final close/finish/file write; the logger's construction is timed apart.
   trainatlas ``obs.log(dict, step=i)`` (and apart ``obs.step(loss=float)``); TensorBoard
   ``add_scalar`` x10; MLflow ``log_metrics(dict, step=)`` on a local file store; W&B offline
   ``run.log(dict, step=)``; the floor appends to Python lists and writes one Parquet file.
   The peers' cost per step does not depend on N, so they run fewer steps (20,000; MLflow 10,000).
b. Training: overhead in % on an MLP 64-256-256-10, batch 128, Adam, synthetic data,
   torch.set_num_threads(1) (one core trains; the other is left to the loggers' threads and
   processes, as when a GPU trains; 2 threads on this 2-core VM made step times swing 3-20 ms).
   One logger per configuration lives through the whole benchmark, as one logger lives through a
   real run: it is built (timed: "start-up ms"), runs one unmeasured segment (its background
   start-up: environment probe, CodeCarbon), then R reps (10) of S steps (1000) of every
   configuration interleaved; all are closed at the end (timed: "close ms"). Start-up and close are
   one-off costs of a run, reported in ms and not spread over the steps. Two estimates of the
   steady-state overhead per config: "wall" = median over reps of segment time / mean of that
   rep's two baseline segments - 1 (the second baseline is an A/A control: its "overhead" is the
   method's error; idle loggers' threads wake up during other configs' segments too);
   "accounted" = (CPU time of the training thread inside the logging calls + CPU of the logger's
   own threads and child processes during its segment) / the training thread's CPU time per
   baseline step (that rep's two baselines; about the wall step time on an idle machine), which
   the VM's noise (other processes preempting ours) barely moves but which misses hooks inside forward(), GIL
   waits and a call blocking on another process (the wall "hot us/step" column shows those).
   A logger owns the threads and children first seen after its construction or during its
   segments (schedstat, ns resolution); work it hands to threads that existed before (Arrow's
   pool, torch's) is not counted.
   Default channels = Observer defaults (CodeCarbon on when installed, as here). The other tools
   log loss.item(), lr and the total grad norm (torch.nn.utils.get_total_norm) each step.
c. Memory: N steps (1,000,000) of obs.step(loss=float) + obs.log(3 floats), no model, each
   variant in a fresh child process; RSS every N/10 steps, after close, and its peak (sampled
   every 20 ms), all relative to the start of the loop, against the same loop without the Observer.

Nothing reaches the network: W&B offline, MLflow file store, CodeCarbon offline, a dead proxy.
Run: .venv-bench/bin/python benchmarks/observer_overhead.py [--quick] [--only a b c] [--json [F]]
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import _common as C

KEYS = [f"metric/{j}" for j in range(10)]
BATCH = 128
PEERS = C.PEERS


def _observer(tmp: Path, project: str, **kw: Any) -> Any:
    import trainatlas
    return trainatlas.Observer(project=project, root=tmp / "ta", **kw)


def bench_scalars(a: argparse.Namespace, tmp: Path, out: Any) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    def floor(rep: int) -> Any:
        st, ts, ks, vs = [], [], [], []

        def log(i: int, vals: dict[str, float]) -> None:
            now = time.time()
            for k, v in vals.items():
                st.append(i), ts.append(now), ks.append(k), vs.append(v)

        def close() -> None:
            cols = {"run_id": ["r"] * len(vs), "step": st, "ts": ts, "key": ks, "value": vs}
            pq.write_table(pa.table(cols), tmp / f"floor-{rep}.parquet")
        return log, close

    def ta_log(rep: int) -> Any:
        obs = _observer(tmp, "scalars", carbon=False)
        return (lambda i, vals: obs.log(vals, step=i)), obs.close

    def ta_step(rep: int) -> Any:
        obs = _observer(tmp, "steps", carbon=False)
        return (lambda i, vals: obs.step(loss=vals["metric/0"])), obs.close

    tools = {"floor: lists -> 1 Parquet": floor, "(loop + dict only)": lambda rep: (lambda i, v: None, dict),
             "trainatlas obs.log": ta_log, "trainatlas obs.step": ta_step, **C.peer_loggers(tmp)}  # fmt: skip
    caps = {"tensorboard": a.peer_steps, "wandb offline": a.peer_steps, "mlflow file store": a.mlflow_steps}
    steps = {k: min(a.steps, caps.get(k, a.steps)) for k in tools}

    def one(name: str, rep: int) -> tuple[float, float]:
        n = steps[name]
        dt_init, (log, close) = C.timed(lambda: tools[name](rep))
        gc.collect()
        t = time.perf_counter()
        for i in range(n):
            log(i, {k: i * 1e-3 for k in KEYS})
        close()
        return (time.perf_counter() - t) / n * 1e6, dt_init * 1e3

    res = C.interleaved(list(tools), a.reps, 1, one)
    us = {k: [r[0] for r in v] for k, v in res.items()}
    m = {k: C.med(v) for k, v in us.items()}
    cheapest = min(PEERS, key=m.get)
    ta, fl = m["trainatlas obs.log"], m["floor: lists -> 1 Parquet"]
    rows = [[k, m[k], C.spread(us[k]), C.med([r[1] for r in res[k]]), m[k] / fl, steps[k]] for k in tools]
    C.table(f"a. 10 scalars per step, median of {a.reps} interleaved reps (us/step, close included)",
            ["tool", "us/step", "min..max", "init ms", "x floor", "steps"], rows, out)  # fmt: skip
    ok = ta <= 2 * fl
    print(f"trainatlas obs.log / floor = {ta / fl:.2f}x (goal <= 2x: {C.verdict(ok)}); "
          f"/ cheapest peer ({cheapest}) = {ta / m[cheapest]:.3f}x", file=out)  # fmt: skip
    return {"us_per_step": us, "median_us": m, "steps": steps, "ratio_floor": ta / fl,
            "ratio_cheapest_peer": ta / m[cheapest], "cheapest_peer": cheapest, "goal_met": ok}  # fmt: skip


def bench_training(a: argparse.Namespace, tmp: Path, out: Any) -> dict[str, Any]:
    import psutil
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from torch import nn
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    params = list(model.parameters())
    xs, ys, lossf = torch.randn(32, BATCH, 64), torch.randint(0, 10, (32, BATCH)), nn.CrossEntropyLoss()
    cfg = {"lr": 1e-3, "batch_size": BATCH, "model": "mlp-64-256-256-10"}

    def user_metrics(loss: Any) -> dict[str, float]:  # what users log with the other tools
        gn = torch.nn.utils.get_total_norm([p.grad for p in params]).item()
        return {"train/loss": loss.item(), "lr": opt.param_groups[0]["lr"], "grad_norm": gn}

    def observer(project: str, **kw: Any) -> Any:
        def setup(rep: int) -> Any:
            obs = _observer(tmp, project, config=cfg, **kw)
            obs.watch(model, opt)
            return (lambda i, loss: obs.step(loss=loss, batch_size=BATCH)), obs.close
        return setup

    configs = {"baseline": None, "baseline (A/A control)": None,
               "trainatlas default channels": observer("default"),
               "trainatlas every channel": observer("every", sample_every=10, grad_norm_every=1,
                                                    carbon=True, system=True),
               **{f"{k} loss+lr+gradnorm": v
                  for k, v in C.peer_loggers(tmp, user_metrics).items()}}  # fmt: skip
    configs = {k: v for k, v in configs.items() if k.startswith("baseline") or any(c in k for c in a.configs)}

    def segment(log: Any) -> tuple[float, float, float, float]:
        """One segment of training: ms/step (wall), us/step inside log() (wall, and CPU of this thread),
        CPU ms/step of this thread."""
        gc.collect()
        hot = hot_cpu = 0.0
        n = a.segment_steps
        t0, c0 = time.perf_counter(), time.thread_time()
        for i in range(n):
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xs[i % 32]), ys[i % 32])
            loss.backward()
            opt.step()
            if log is not None:
                h, c = time.perf_counter(), time.thread_time()
                log(i, loss)
                hot_cpu += time.thread_time() - c
                hot += time.perf_counter() - h
        cpu = (time.thread_time() - c0) * 1e3 / n
        return (time.perf_counter() - t0) * 1e3 / n, hot * 1e6 / n, hot_cpu * 1e6 / n, cpu

    # Threads and child processes that exist before any logger (torch's, Arrow's pool) are nobody's;
    # a thread or child first seen after a logger's construction or segment is that logger's.
    segment(None)
    pq.write_table(pa.table({"x": [1.0]}), tmp / "warm.parquet")
    pq.read_table(tmp / "warm.parquet")
    known, kids = C.task_ids(), {c.pid for c in psutil.Process().children(recursive=True)}
    owned: dict[str, tuple[set[int], set[int]]] = {k: (set(), set()) for k in configs}

    def settle() -> None:
        """Wait (at most 20 s) until no thread starts or ends for a second: a logger's start-up is over."""
        for _ in range(20):
            before = C.task_ids()
            time.sleep(1.0)
            if C.task_ids() == before:
                return

    def claim(name: str) -> None:
        if configs[name] is None:  # a baseline owns nothing
            return
        tids, pids = owned[name]
        new = C.task_ids() - known
        tids |= new
        known.update(new)
        new_kids = {c.pid for c in psutil.Process().children(recursive=False)} - kids
        pids |= new_kids
        kids.update(new_kids)

    def own_cpu(name: str) -> float:
        tids, pids = owned[name]
        return C.threads_cpu(tids) + C.children_cpu(pids)

    loggers: dict[str, Any] = {}
    startup: dict[str, float] = {}
    for name, setup in configs.items():  # one logger per config for the whole benchmark, as in a real run
        if setup is not None:
            dt, loggers[name] = C.timed(lambda setup=setup: setup(0))
            startup[name] = dt * 1e3
            segment(loggers[name][0])  # its start-up work (environment probe, CodeCarbon, ...) is done here
            settle()
            claim(name)

    def one(name: str, rep: int) -> list[float]:
        log = loggers[name][0] if name in loggers else None
        cpu0 = own_cpu(name)
        ms, hot, hot_cpu, cpu_ms = segment(log)
        claim(name)  # a thread started during this segment is this logger's
        return [ms, hot, (own_cpu(name) - cpu0) * 1e6 / a.segment_steps, hot_cpu, cpu_ms]

    res = C.interleaved(list(configs), a.train_reps, 1, one)  # 1 warm-up rep: caches
    closing = {name: C.timed(close)[0] * 1e3 for name, (_, close) in loggers.items()}
    names = list(configs)
    wall, bg = ({k: [r[i] for r in v] for k, v in res.items()} for i in (0, 2))
    base = [(x + y) / 2 for x, y in zip(wall[names[0]], wall[names[1]], strict=True)]
    over = {k: [100 * (w / b - 1) for w, b in zip(wall[k], wall[names[0]] if k == names[1] else base,
                                                   strict=True)] for k in names}  # fmt: skip
    base_cpu = [(x[4] + y[4]) / 2 for x, y in zip(res[names[0]], res[names[1]], strict=True)]
    acct = {k: [0.1 * (r[3] + r[2]) / b for r, b in zip(res[k], base_cpu, strict=True)] for k in names}
    gn = grad_norm_share(tmp / "ta")
    goals = {"trainatlas default channels": 1.0, "trainatlas every channel": 5.0}
    rows = [[k, C.med(wall[k]), C.med(over[k]), C.spread(over[k]), C.med([r[1] for r in res[k]]),
             C.med([r[3] for r in res[k]]), C.med(bg[k]), startup.get(k, 0.0), closing.get(k, 0.0), C.med(acct[k]),
             gn.get(k.split()[1], "-") if k.startswith("trainatlas") else "-",
             f"<= {goals[k]:g}%: {C.verdict(C.med(acct[k]) <= goals[k])}" if k in goals else ""]
            for k in names]  # fmt: skip
    C.table(f"b. MLP 64-256-256-10, batch {BATCH}, Adam, {a.threads} torch thread(s), {a.train_reps} "
            f"interleaved reps x {a.segment_steps} steps, one logger per config for the whole benchmark",
            ["config", "ms/step", "wall ovh %", "min..max %", "hot us/step", "hot CPU us/step", "bg CPU us/step",
             "start-up ms", "close ms", "accounted %", "gradnorm", "goal (accounted)"], rows, out)  # fmt: skip
    b = wall[names[0]]
    noise = 100 * (max(b) - min(b)) / C.med(b)
    print(f"noise: baseline {C.med(b):.3f} ms/step ({C.med(base_cpu):.3f} ms CPU), segments "
          f"{min(b):.3f}..{max(b):.3f} ({noise:.0f}% spread); the A/A row is the wall method's error. "
          "'wall ovh' = segment time / that rep's baselines - 1, median of reps. 'accounted' = (CPU of the "
          "training thread inside the logging call + CPU of the logger's own threads and child processes) / "
          "CPU of a baseline step, per rep, median: steady state, robust to the noise, blind to hooks inside "
          "forward() and to GIL waits. Start-up (construction; the background start-up falls in an unmeasured "
          "warm-up segment) and close (final flush and compaction) are one-off costs, in ms. "
          "'gradnorm' = share of steps with a global grad norm.", file=out)  # fmt: skip
    return {"columns": ["wall ms/step", "hot us/step", "own bg cpu us/step", "hot cpu us/step", "cpu ms/step"],
            "raw": res, "startup_ms": startup, "close_ms": closing, "wall_overhead_pct": over,
            "accounted_overhead_pct": acct, "grad_norm_share": gn}  # fmt: skip


def grad_norm_share(root: Path) -> dict[str, str]:
    """How often the Observer computed the global gradient norm, per project (= config)."""
    import trainatlas
    q = ("SELECT split_part(r.project, '=', -1), count(*) FILTER (WHERE key = 'grad_norm'), "
         "count(*) FILTER (WHERE key = 'train/loss') FROM scalars s JOIN runs r USING (run_id) GROUP BY 1")
    rows = trainatlas.open_catalog(root).execute(q).fetchall()
    return {p: f"{100 * g / max(n, 1):.0f}%" for p, g, n in rows}


def mem_child(mode: str, steps: int, every: int) -> None:
    import torch  # noqa: F401 - the same imports in every variant

    import trainatlas.observer.observer  # noqa: F401
    tmp = C.scratch("mem")
    gc.collect()
    rss0, samples = C.rss_mb(), []
    obs = None if mode == "none" else _observer(tmp, "mem", carbon=mode == "default")
    peak = C.PeakRSS(rss0)
    t = time.perf_counter()
    for i in range(1, steps + 1):
        x = (i % 1000) * 1e-3
        vals = {"val/a": x, "val/b": x + 1, "val/c": x + 2}
        if obs is not None:
            obs.step(loss=x)
            obs.log(vals)
        if i % every == 0:
            samples.append(C.rss_mb() - rss0)
    loop_s = time.perf_counter() - t
    if obs is not None:
        obs.close()
    peak.stop()
    print(json.dumps({"samples": samples, "after close": C.rss_mb() - rss0, "peak": peak.peak,
                      "loop_s": loop_s, "total_s": time.perf_counter() - t}))  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


def bench_memory(a: argparse.Namespace, tmp: Path, out: Any) -> dict[str, Any]:
    res = {}
    for mode in ("none", "default", "carbon=False"):
        cmd = [sys.executable, __file__, "--_mem-child", mode, "--mem-steps", str(a.mem_steps)]
        res[mode] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    every = max(1, a.mem_steps // 10)
    labels = [f"{every * (i + 1):,} steps" for i in range(10)] + ["after close", "peak"]
    col = {m: r["samples"] + [r["after close"], r["peak"]] for m, r in res.items()}
    rows = [[lab, col["none"][i], col["default"][i], col["default"][i] - col["none"][i],
             col["carbon=False"][i], col["carbon=False"][i] - col["none"][i]] for i, lab in enumerate(labels)]
    C.table(f"c. RSS growth in MB from the start of the loop, {a.mem_steps:,} x (step() + log(3 floats))",
            ["at", "no Observer", "default", "above", "carbon=False", "above"], rows, out)  # fmt: skip
    for m in ("default", "carbon=False"):
        worst = max(c - n for c, n in zip(col[m], col["none"], strict=True))
        print(f"Observer {m}: worst {worst:.0f} MB above the loop without it (goal <= 50 MB over "
              f"1,000,000 steps: {C.verdict(worst <= 50)}); loop {res[m]['loop_s']:.1f} s + close = "
              f"{res[m]['total_s']:.1f} s (without: {res['none']['loop_s']:.2f} s)", file=out)  # fmt: skip
    return res


SIZES = {"steps": (100_000, 10_000, "a: steps per tool"),
         "peer_steps": (20_000, 2_000, "a: TensorBoard's and W&B's cap"),
         "mlflow_steps": (10_000, 1_000, "a: MLflow's cap"),
         "reps": (5, 2, "a: repetitions"), "train_reps": (10, 2, "b: repetitions"),
         "segment_steps": (1000, 200, "b: steps per segment"), "threads": (1, 1, "b: torch threads"),
         "mem_steps": (1_000_000, 100_000, "c: steps")}  # fmt: skip


def main() -> None:
    p = C.parser(__doc__, SIZES)
    p.add_argument("--only", nargs="*", choices=["a", "b", "c"], default=["a", "b", "c"])
    p.add_argument("--configs", nargs="*", default=["trainatlas", "tensorboard", "wandb", "mlflow"],
                   help="b: configurations to run besides the baselines (substrings)")
    p.add_argument("--_mem-child", dest="mem_child", help=argparse.SUPPRESS)
    a = C.resolve(p.parse_args(), SIZES)
    if a.mem_child:
        return mem_child(a.mem_child, a.mem_steps, max(1, a.mem_steps // 10))
    tmp = C.scratch("overhead")
    C.offline_env(tmp)
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    out = C.text_out(a.json)
    result: dict[str, Any] = {"machine": C.machine(), "args": vars(a)}
    print(f"machine: {result['machine']}", file=out)
    for part, fn in (("a", bench_scalars), ("b", bench_training), ("c", bench_memory)):
        if part in a.only:
            snap = C.cpu_snapshot()
            result[part] = fn(a, tmp, out)
            result[part]["foreign_cores"] = others = C.foreign_cores(snap)
            print(f"({part} took {time.perf_counter() - snap[0]:.0f} s; other processes kept {others:.2f} of "
                  f"{os.cpu_count()} cores busy meanwhile)", file=out)  # fmt: skip
    C.emit_json(a.json, result)
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
