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
   A fresh logger per segment of S steps (1000; construction not timed, close timed), R reps (10)
   of every configuration interleaved. Two estimates per config: "wall" = median over reps of
   segment time / mean of that rep's two baseline segments - 1 (the second baseline is an A/A
   control: its "overhead" is the method's error); "accounted" = (time inside the logging calls +
   CPU of other threads and child processes above the baseline's + close) / baseline step time,
   which the VM's noise barely moves but which misses hooks inside forward() and GIL waits.
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

    none = lambda rep: (None, lambda: None)  # noqa: E731
    configs = {"baseline": none, "baseline (A/A control)": none,
               "trainatlas default channels": observer("default"),
               "trainatlas every channel": observer("every", sample_every=10, grad_norm_every=1,
                                                    carbon=True, system=True),
               **{f"{k} loss+lr+gradnorm": v
                  for k, v in C.peer_loggers(tmp, user_metrics).items()}}  # fmt: skip
    configs = {k: v for k, v in configs.items() if k.startswith("baseline") or any(c in k for c in a.configs)}

    def one(name: str, rep: int) -> list[float]:
        log, close = configs[name](rep)
        gc.collect()
        hot, n = 0.0, a.segment_steps
        bg0, t0 = C.cpu_elsewhere(), time.perf_counter()
        for i in range(n):
            opt.zero_grad(set_to_none=True)
            loss = lossf(model(xs[i % 32]), ys[i % 32])
            loss.backward()
            opt.step()
            if log is not None:
                h = time.perf_counter()
                log(i, loss)
                hot += time.perf_counter() - h
        t1 = time.perf_counter()
        close()
        t2 = time.perf_counter()
        return [(t2 - t0) * 1e3 / n, hot * 1e6 / n, (C.cpu_elsewhere() - bg0) * 1e6 / n, (t2 - t1) * 1e3]

    res = C.interleaved(list(configs), a.train_reps, 2, one)  # 2 warm-up reps: caches, codecarbon, wandb
    names = list(configs)
    wall, bg = ({k: [r[i] for r in v] for k, v in res.items()} for i in (0, 2))
    base = [(x + y) / 2 for x, y in zip(wall[names[0]], wall[names[1]], strict=True)]
    bg_base = [(x + y) / 2 for x, y in zip(bg[names[0]], bg[names[1]], strict=True)]
    over = {k: [100 * (w / b - 1) for w, b in zip(wall[k], wall[names[0]] if k == names[1] else base,
                                                   strict=True)] for k in names}  # fmt: skip
    acct = {k: [0.1 * (r[1] + max(0.0, r[2] - g) + r[3] * 1e3 / a.segment_steps) / b
                for r, b, g in zip(res[k], base, bg_base, strict=True)] for k in names}  # fmt: skip
    gn = grad_norm_share(tmp / "ta")
    goals = {"trainatlas default channels": 1.0, "trainatlas every channel": 5.0}
    rows = [[k, C.med(wall[k]), C.med(over[k]), C.spread(over[k]), C.med([r[1] for r in res[k]]),
             C.med(bg[k]), C.med([r[3] for r in res[k]]), C.med(acct[k]),
             gn.get(k.split()[1], "-") if k.startswith("trainatlas") else "-",
             f"<= {goals[k]:g}%: {C.verdict(C.med(acct[k]) <= goals[k])}" if k in goals else ""]
            for k in names]  # fmt: skip
    C.table(f"b. MLP 64-256-256-10, batch {BATCH}, Adam, {a.threads} torch thread(s), {a.train_reps} "
            f"interleaved reps x {a.segment_steps} steps, fresh logger per segment",
            ["config", "ms/step", "wall ovh %", "min..max %", "hot us/step", "bg CPU us/step", "close ms",
             "accounted %", "gradnorm", "goal (accounted)"], rows, out)  # fmt: skip
    b = wall[names[0]]
    noise = 100 * (max(b) - min(b)) / C.med(b)
    print(f"noise: baseline {C.med(b):.3f} ms/step, segments {min(b):.3f}..{max(b):.3f} ({noise:.0f}% "
          "spread); the A/A row is the wall method's error. 'wall ovh' = segment time incl. close / that "
          "rep's baselines - 1, median of reps. 'accounted' = (time inside the logging call + CPU of other "
          "threads and child processes above the baseline's + close) / baseline step, per rep, median: "
          "robust to the noise, blind to hooks inside forward() and to GIL waits. 'gradnorm' = share of "
          "steps with a global grad norm.", file=out)  # fmt: skip
    return {"columns": ["wall ms/step", "hot us/step", "bg cpu us/step", "close ms"], "raw": res,
            "wall_overhead_pct": over, "accounted_overhead_pct": acct, "grad_norm_share": gn}


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
