"""Helpers shared by the benchmark scripts: an offline environment, timing statistics, tables, JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

_DEAD_PROXY = "http://127.0.0.1:9"  # discard port: any HTTP(S) request fails at once, locally


def parser(doc: str, sizes: dict[str, tuple[int, int, str]]) -> argparse.ArgumentParser:
    """The shared flags, plus one integer flag per size: name -> (full, quick, help)."""
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write JSON (stdout if no FILE)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    for name, (full, quick, text) in sizes.items():
        p.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"{text} ({full:,}; quick {quick:,})")
    return p


def resolve(a: argparse.Namespace, sizes: dict[str, tuple[int, int, str]]) -> argparse.Namespace:
    for name, (full, quick, _) in sizes.items():
        if getattr(a, name) is None:
            setattr(a, name, quick if a.quick else full)
    return a


def offline_env(tmp: Path) -> None:
    """Environment variables that keep every tool local. Call before importing wandb or mlflow."""
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_DIR": str(tmp / "wandb"),
        "WANDB_CONSOLE": "off",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_DISABLE_CODE": "true",
        "MLFLOW_TRACKING_URI": f"file:{tmp / 'mlruns'}",
        "MLFLOW_ALLOW_FILE_STORE": "true",  # mlflow 3.x refuses the file store without it
        "CODECARBON_LOG_LEVEL": "error",
        "TRAINATLAS_CARBON_COUNTRY": "USA",
        "FASTMCP_CHECK_FOR_UPDATES": "off",
        "TF_CPP_MIN_LOG_LEVEL": "3",
        # A safety net: whatever tries the network anyway goes to a dead local proxy.
        "HTTP_PROXY": _DEAD_PROXY,
        "HTTPS_PROXY": _DEAD_PROXY,
        "http_proxy": _DEAD_PROXY,
        "https_proxy": _DEAD_PROXY,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    os.environ.update(env)
    (tmp / "wandb").mkdir(parents=True, exist_ok=True)


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"trainatlas-bench-{prefix}-"))


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def interleaved(names: Sequence[str], reps: int, warmup: int, run: Callable[[str, int], Any]) -> dict:
    """Run every name once per rep, the order rotated each rep and reversed every other rep, so
    that slow drifts of the machine fall on every name alike; the first ``warmup`` reps are dropped."""
    out: dict[str, list[Any]] = {n: [] for n in names}
    for rep in range(warmup + reps):
        k = rep % len(names)
        order = list(names[k:]) + list(names[:k])
        for name in order if rep % 2 else order[::-1]:
            result = run(name, rep)
            if rep >= warmup:
                out[name].append(result)
    return out


def med(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def spread(xs: Sequence[float]) -> str:
    """min..max around the median, as text."""
    return f"{min(xs):.3g}..{max(xs):.3g}" if xs else "-"


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def cpu_snapshot() -> tuple[float, float, float]:
    """(wall s, busy CPU s of the whole machine, CPU s of this process and its children)."""
    import psutil

    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")  # user nice system irq softirq
    me = psutil.Process()
    own = sum(me.cpu_times()[:4])  # user, system and those of waited-for children
    for c in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            own += sum(c.cpu_times()[:2])
    return time.perf_counter(), busy, own


def foreign_cores(before: tuple[float, float, float]) -> float:
    """Cores that other processes kept busy on average since ``before`` (others' noise in our figures)."""
    after = cpu_snapshot()
    return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / (after[0] - before[0])


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("PASS" if ok else "MISS")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], out: Any = None) -> None:
    """Print an aligned text table."""
    out = out or sys.stdout
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n## {title}", file=out)
    for n, r in enumerate(cells):
        line = (c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        print("  ".join(line), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    out.flush()


def _fmt(c: Any) -> str:
    if isinstance(c, float):
        if c != c:
            return "-"
        return f"{c:.3g}" if abs(c) < 100 else f"{c:,.0f}"
    return str(c)


def text_out(json_flag: str | None) -> Any:
    """Tables go to stderr when the JSON goes to stdout, so stdout stays parseable."""
    return sys.stderr if json_flag == "-" else sys.stdout


def emit_json(json_flag: str | None, payload: dict[str, Any]) -> None:
    if json_flag is None:
        return
    text = json.dumps(payload, indent=1, default=str)
    if json_flag == "-":
        print(text)
    else:
        Path(json_flag).write_text(text + "\n")


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "cpu_model": platform.processor() or platform.machine(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg": os.getloadavg(),
        "trainatlas": _git("rev-parse", "--short", "HEAD"),
        "trainatlas_dirty": _git("status", "--porcelain", "--", "trainatlas") != "",
    }


def _git(*args: str) -> str:
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


PEERS = ("tensorboard", "wandb offline", "mlflow file store")


def peer_loggers(tmp: Path, metrics: Any = None) -> dict[str, Any]:
    """TensorBoard, W&B offline, MLflow file store: name -> setup(rep) -> (log(i, x), close);
    ``metrics(x)`` turns x into the dict to log."""
    metrics = metrics or (lambda vals: vals)

    def tensorboard(rep: int) -> Any:
        from torch.utils.tensorboard import SummaryWriter
        w = SummaryWriter(str(tmp / "tb" / f"{time.time_ns()}"))

        def log(i: int, x: Any) -> None:
            for k, v in metrics(x).items():
                w.add_scalar(k, v, i)
        return log, w.close

    def wandb(rep: int) -> Any:
        import wandb
        run = wandb.init(project="bench", dir=str(tmp / "wandb"), mode="offline", config={"rep": rep})
        return (lambda i, x: run.log(metrics(x), step=i)), run.finish

    def mlflow(rep: int) -> Any:
        import mlflow
        mlflow.start_run()
        mlflow.log_params({"rep": rep})
        return (lambda i, x: mlflow.log_metrics(metrics(x), step=i)), mlflow.end_run

    return dict(zip(PEERS, (tensorboard, wandb, mlflow), strict=True))


def cpu_elsewhere() -> float:
    """CPU s of this process's other threads and of its child processes (call it on the main thread)."""
    import psutil

    me, kids = psutil.Process(), 0.0
    for c in me.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            kids += sum(c.cpu_times()[:2])
    return sum(me.cpu_times()[:2]) - time.thread_time() + kids


def task_ids() -> set[int]:
    """Native ids of this process's threads (Python's and C++ pools')."""
    return {int(t) for t in os.listdir("/proc/self/task")}


def threads_cpu(tids: Iterable[int]) -> float:
    """CPU s of the given threads of this process (ns resolution; threads gone count 0)."""
    total = 0
    for tid in tids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[0])
    return total / 1e9


def children_cpu(pids: Iterable[int]) -> float:
    """CPU s of the given child processes (and their children) that are still alive."""
    import psutil

    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            for c in [p, *p.children(recursive=True)]:
                total += sum(c.cpu_times()[:2])
    return total


class PeakRSS:
    """Samples RSS every 20 ms in a thread; ``peak`` is the highest MB above ``base``."""

    def __init__(self, base: float) -> None:
        self.base, self.peak, self._done = base, 0.0, threading.Event()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, rss_mb() - self.base)

    def stop(self) -> None:
        self._done.set()
