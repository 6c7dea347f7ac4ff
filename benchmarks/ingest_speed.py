"""Ingest speed per log format (MB/s, scalars/s), against tbparse on the same TensorBoard data, and
peak memory on a large generated log.

Run in the bench venv (it has tensorboard and tbparse):
    PYTHONPATH=. .venv-bench/bin/python benchmarks/ingest_speed.py [--quick] [--json FILE]

Three measures:
* the real logs of ../shared/real-logs, per format (small files: the figure includes per-file cost);
* one large synthetic file per format (``--mb`` each) for a stable throughput figure; the
  TensorBoard one is written with tensorboard's own EventFileWriter and also read with tbparse;
* peak RSS of a child process ingesting a ``--rss-mb`` JSON-lines log (memory must stay flat).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainatlas.ingest import ingest_file  # noqa: E402
from trainatlas.ingest.detect import PARSERS, sniff  # noqa: E402

REAL = ROOT.parent / "shared" / "real-logs"
if not REAL.is_dir():
    REAL = Path("/work/shared/real-logs")


def count_scalars(path: Path, fmt: str) -> int:
    parser = PARSERS[fmt](path)
    with open(path, "rb") as f:
        return sum(len(r.values) for r in parser.rows(f, True))


def timed_ingest(paths: list[Path], fmt: str | None = None) -> tuple[float, int]:
    """Seconds to ingest ``paths`` into a fresh root (parse + Parquet), and the rows written."""
    tmp = Path(tempfile.mkdtemp(prefix="ta-ingest-bench-"))
    try:
        start = time.perf_counter()
        rows = sum(ingest_file(p, tmp, fmt=fmt, final=True).rows_added for p in paths)
        return time.perf_counter() - start, rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _figures(label: str, fmt: str, files: int, size: int, scalars: int, rows: int, seconds: float) -> dict:
    return {"set": label, "format": fmt, "files": files, "mb": size / 1e6, "scalars": scalars, "rows": rows,
            "seconds": seconds, "mb_s": size / 1e6 / seconds, "scalars_s": scalars / seconds}  # fmt: skip


def real_logs() -> list[dict]:
    groups: dict[str, list[Path]] = defaultdict(list)
    for p in sorted(REAL.rglob("*")):
        if p.is_file() and p.parent != REAL:
            groups[sniff(p) or "unknown"].append(p)
    out = []
    for fmt, paths in sorted(groups.items()):
        size = sum(p.stat().st_size for p in paths)
        scalars = sum(count_scalars(p, fmt) for p in paths)
        seconds, rows = timed_ingest(paths)
        out.append(_figures("real", fmt, len(paths), size, scalars, rows, seconds))
    return out


# -- synthetic logs --------------------------------------------------------------------------------------


def _lines(path: Path, mb: int, line) -> None:
    target = mb * 1_000_000
    with open(path, "w") as f:
        i = 0
        while f.tell() < target:
            f.write("".join(line(i + k) for k in range(1000)))
            i += 1000


def _loss(i: int) -> float:
    return 2.0 * math.exp(-i / 50_000) + 0.01 * ((i * 7919) % 101) / 101


def make_synthetic(tmp: Path, mb: int) -> dict[str, Path]:
    files = {}
    p = files["jsonl"] = tmp / "scalars.json"
    _lines(p, mb, lambda i: json.dumps({"lr": 1e-3, "data_time": 0.01, "loss": _loss(i), "loss_cls": _loss(i) / 2,
                                        "time": 0.2, "epoch": i // 1000 + 1, "iter": i, "memory": 1623, "step": i + 1})
           + "\n")  # fmt: skip
    p = files["mmtext"] = tmp / "20230605_114237.log"
    _lines(p, mb, lambda i: "2023/06/05 11:43:12 - mmengine - INFO - "
           f"Epoch(train)   [{i // 1000 + 1}][{i % 1000 + 1:4d}/1000]  lr: 4.0000e-04  eta: 1:00:11  time: 0.2000"
           f"  data_time: 0.0100  memory: 2625  loss: {_loss(i):.4f}"
           f"  loss_cls: {_loss(i) / 2:.4f}  loss_bbox: 0.0501\n")  # fmt: skip
    p = files["csv"] = tmp / "metrics.csv"
    p.write_text("epoch,step,train_loss,val_loss,lr-Adam\n")
    with open(p, "a") as f:
        i = 0
        while f.tell() < mb * 1_000_000:
            f.write("".join(f"{j // 1000},{j},{_loss(j)},{_loss(j) * 1.1},0.001\n" for j in range(i, i + 1000)))
            i += 1000
    p = files["text"] = tmp / "training.log"
    _lines(p, mb, lambda i: f"2025-04-24 21:17:53,828 - INFO - Epoch [{i + 1}/1000000], Train Loss: {_loss(i):.4f}, "
           f"Train Acc: 20.34%, Val Loss: {_loss(i) * 1.1:.4f}, Val Acc: 17.37%\n")  # fmt: skip
    p = files["hf-trainer-state"] = tmp / "trainer_state.json"
    with open(p, "w") as f:
        f.write('{\n  "best_metric": null,\n  "global_step": 0,\n  "log_history": [\n')
        i = 0
        while f.tell() < mb * 1_000_000:
            f.write(json.dumps({"epoch": i / 1000, "grad_norm": 1.5, "learning_rate": 1e-4, "loss": _loss(i),
                                "step": i + 1}, indent=4) + ",\n")  # fmt: skip
            i += 1
        f.write(json.dumps({"epoch": i / 1000, "loss": _loss(i), "step": i + 1}) + '\n  ],\n  "max_steps": 1\n}\n')
    files["tensorboard"] = _tensorboard(tmp, mb)
    return files


def _tensorboard(tmp: Path, mb: int) -> Path:
    """An event file written by tensorboard itself (EventFileWriter), four scalar tags a step."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    out = tmp / "tb"
    writer = EventFileWriter(str(out))
    step = 0
    path = Path(writer.get_logdir())
    while True:
        values = [Summary.Value(tag=t, simple_value=v) for t, v in
                  (("train/loss", _loss(step)), ("train/grad_norm", 1.5), ("train/learning_rate", 1e-4),
                   ("train/epoch", step / 1000))]  # fmt: skip
        writer.add_event(Event(wall_time=1.7e9 + step, step=step, summary=Summary(value=values)))
        step += 1
        if step % 20_000 == 0:
            writer.flush()
            if sum(f.stat().st_size for f in path.iterdir()) >= mb * 1_000_000:
                break
    writer.close()
    return next(path.iterdir())


def synthetic(tmp: Path, mb: int) -> list[dict]:
    out = []
    for fmt, path in make_synthetic(tmp, mb).items():
        assert sniff(path) == fmt, (path, sniff(path))
        size = path.stat().st_size
        scalars = count_scalars(path, fmt)
        seconds, rows = timed_ingest([path], fmt)
        out.append(_figures("synthetic", fmt, 1, size, scalars, rows, seconds))
        if fmt == "tensorboard":
            out.append(_tbparse(path, scalars, "synthetic"))
    return out


def _tbparse(path: Path | list[Path], ours: int, label: str) -> dict:
    from tbparse import SummaryReader

    paths = path if isinstance(path, list) else [path]
    start = time.perf_counter()
    n = sum(len(SummaryReader(str(p), pivot=False).scalars) for p in paths)
    seconds = time.perf_counter() - start
    size = sum(p.stat().st_size for p in paths)
    assert n == ours, f"tbparse read {n} scalars, trainatlas {ours}"
    return _figures(label, "tensorboard (tbparse, read only)", len(paths), size, n, n, seconds)


# -- memory ----------------------------------------------------------------------------------------------

_CHILD = """
import resource, sys, time
sys.path.insert(0, {root!r})
from trainatlas.ingest import ingest_file
start = time.perf_counter()
r = ingest_file({path!r}, {out!r}, final=True) if {run} else None
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - start, r.rows_added if r else 0)
"""


def peak_rss(tmp: Path, mb: int) -> dict:
    """Peak RSS of a child ingesting a ``mb`` MB JSON-lines log, and of one that only imports."""
    big = tmp / "big" / "scalars.json"
    big.parent.mkdir()
    _lines(big, mb, lambda i: json.dumps({"lr": 1e-3, "loss": random.random(), "loss_cls": 0.5, "step": i + 1,
                                          "epoch": i // 1000 + 1, "time": 0.2}) + "\n")  # fmt: skip
    got = {}
    for run in (False, True):
        code = _CHILD.format(root=str(ROOT), path=str(big), out=str(tmp / "rss-runs"), run=run)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        got[run] = (int(out[0]) / 1024, float(out[1]), int(out[2]))
    return {"file_mb": big.stat().st_size / 1e6, "peak_rss_mb": got[True][0], "import_only_rss_mb": got[False][0],
            "seconds": got[True][1], "rows": got[True][2], "mb_s": big.stat().st_size / 1e6 / got[True][1]}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes (4 MB synthetic, 32 MB memory test)")
    p.add_argument("--mb", type=int, help="size of each synthetic file (default 20)")
    p.add_argument("--rss-mb", type=int, help="size of the memory-test log (default 256)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    a = p.parse_args()
    mb = a.mb or (4 if a.quick else 20)
    rss_mb = a.rss_mb or (32 if a.quick else 256)
    tmp = Path(tempfile.mkdtemp(prefix="ta-ingest-bench-"))
    try:
        rows = real_logs()
        tb_real = sorted((REAL / "tensorboard").iterdir())
        tb_ours = next(r for r in rows if r["format"] == "tensorboard")
        rows.append(_tbparse(tb_real, tb_ours["scalars"], "real"))
        rows += synthetic(tmp, mb)
        memory = peak_rss(tmp, rss_mb)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'set':10} {'format':34} {'files':>5} {'MB':>8} {'scalars':>10} {'s':>7} {'MB/s':>7} {'scalars/s':>10}")
    for r in rows:
        print(f"{r['set']:10} {r['format']:34} {r['files']:5d} {r['mb']:8.2f} {r['scalars']:10,d} {r['seconds']:7.2f} "
              f"{r['mb_s']:7.2f} {r['scalars_s']:10,.0f}")  # fmt: skip
    print(f"memory: ingesting a {memory['file_mb']:.0f} MB JSON-lines log ({memory['rows']:,} rows, "
          f"{memory['mb_s']:.1f} MB/s) peaked at {memory['peak_rss_mb']:.0f} MB RSS "
          f"(the interpreter with trainatlas imported: {memory['import_only_rss_mb']:.0f} MB)")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "memory": memory}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
