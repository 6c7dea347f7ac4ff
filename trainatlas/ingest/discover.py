"""Finding training logs: under the current directory and the usual places (``work_dirs``,
``outputs``, ``runs``, ``logs``, ``experiments``, ``lightning_logs``, ``/kaggle/working``,
``/content``), newest first, skipping files that are tiny or do not look like a training log by
their content; and the trainatlas runs under a root. ``watch --auto`` uses this."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from trainatlas.ingest.detect import sniff
from trainatlas.store.layout import RUN_FILE, iter_run_dirs, resolve_root

USUAL_DIRS = ("work_dirs", "outputs", "runs", "logs", "experiments", "lightning_logs")
USUAL_ABSOLUTE = ("/kaggle/working", "/content")
MIN_BYTES = 128  # a TensorBoard file holding only its version header is 88 bytes
MAX_DEPTH = 8
MAX_FILES = 20_000  # files looked at per base directory: discovery stays quick in a big tree
SUFFIXES = (".log", ".json", ".csv", ".txt", ".out", ".jsonl")
SKIP_DIRS = {"node_modules", "__pycache__", "venv", "site-packages", "wandb"}  # hidden directories are skipped too


def default_base_dirs(cwd: Path | None = None) -> list[Path]:
    cwd = cwd or Path.cwd()
    dirs = [cwd] + [cwd / d for d in USUAL_DIRS] + [Path(d) for d in USUAL_ABSOLUTE]
    return [d for d in dirs if d.is_dir()]


def _candidates(base: Path, skip: Path | None) -> Iterator[Path]:
    """Files under ``base`` whose name could be a log, depth-limited, hidden and tool dirs skipped."""
    seen = 0
    base_depth = len(base.parts)
    for dirpath, dirnames, filenames in os.walk(base):
        here = Path(dirpath)
        if skip is not None and (here == skip or skip in here.parents):
            dirnames[:] = []
            continue
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and not d.startswith(".") and len(here.parts) - base_depth < MAX_DEPTH
        )
        for name in filenames:
            seen += 1
            if seen > MAX_FILES:
                return
            if "tfevents" in name or name.endswith(SUFFIXES):
                yield here / name


def walk_logs(base: Path, skip: Path | None = None, min_bytes: int = MIN_BYTES) -> Iterator[tuple[Path, str]]:
    """(file, format) of every training log under ``base``, in directory order."""
    for path in _candidates(base.resolve(), skip):
        try:
            if path.stat().st_size < min_bytes:
                continue
        except OSError:
            continue
        fmt = sniff(path)
        if fmt is not None:
            yield path, fmt


def _mtime(path: Path) -> float:
    try:
        if (path / RUN_FILE).is_file():  # a run: its newest shard or run.json
            times = [p.stat().st_mtime for p in path.glob("*/*.parquet")] + [(path / RUN_FILE).stat().st_mtime]
            return max(times)
        return path.stat().st_mtime
    except OSError:
        return 0.0


def discover(
    base_dirs: list[str | os.PathLike[str]] | None = None, root: str | os.PathLike[str] | None = None
) -> list[Path]:
    """Training logs under ``base_dirs`` (default: the current directory and the usual places)
    and trainatlas run directories under ``root``, newest first. Files inside the root are runs,
    not logs, and are not listed as logs."""
    root_dir = resolve_root(root).expanduser().resolve()
    bases = [Path(b).expanduser() for b in base_dirs] if base_dirs is not None else default_base_dirs()
    found: dict[Path, float] = {}
    for base in bases:
        if base.is_dir():
            for path, _ in walk_logs(base, skip=root_dir):
                found.setdefault(path, _mtime(path))
    for run in iter_run_dirs(root_dir):
        found.setdefault(run.resolve(), _mtime(run))
    return sorted(found, key=lambda p: found[p], reverse=True)


def wait_for_log(
    timeout_s: float,
    base_dirs: list[str | os.PathLike[str]] | None = None,
    root: str | os.PathLike[str] | None = None,
    poll_s: float = 1.0,
) -> Path | None:
    """The newest log or run once one exists, polling until ``timeout_s`` has passed; None if none."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = discover(base_dirs, root)
        if found:
            return found[0]
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
