"""Where runs live on disk: ``ROOT/project=<project>/run=<run_id>/{run.json,scalars,layers,events}``.

The hive-style ``key=value`` directory names let DuckDB prune other runs' files from a query
on one run without opening them.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

TABLES = ("scalars", "layers", "events")
RUN_FILE = "run.json"
DEFAULT_ROOT = "trainatlas-runs"
ROOT_ENV = "TRAINATLAS_ROOT"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def resolve_root(root: str | os.PathLike[str] | None = None) -> Path:
    """The root given, else ``$TRAINATLAS_ROOT``, else ``./trainatlas-runs``."""
    return Path(root or os.environ.get(ROOT_ENV) or DEFAULT_ROOT).expanduser()


def safe_component(text: str, fallback: str = "default") -> str:
    """A string that is safe as one path component and in a hive ``key=value`` name."""
    cleaned = _UNSAFE.sub("-", text.strip()).strip(".-")
    return cleaned[:80] or fallback


def new_run_id() -> str:
    """Sortable by creation time and unique without coordination: ``20261122-005248-3f9a1c``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def run_dir(root: Path, project: str, run_id: str) -> Path:
    return root / f"project={safe_component(project)}" / f"run={run_id}"


def iter_run_dirs(root: Path) -> Iterator[Path]:
    """Every run directory under the root (those holding a ``run.json``), in name order. Uses
    ``os.scandir``: a root of thousands of runs is listed on every catalog open."""
    for project in _subdirs(str(root), "project="):
        for run in _subdirs(project, "run="):
            if os.path.isfile(os.path.join(run, RUN_FILE)):
                yield Path(run)


def _subdirs(parent: str, prefix: str) -> list[str]:
    try:
        with os.scandir(parent) as it:
            return sorted(e.path for e in it if e.name.startswith(prefix) and e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def run_signature(run_dir: str | os.PathLike[str]) -> tuple[int, ...]:
    """The mtimes and sizes that change whenever a run writes a shard or rewrites its run.json:
    a few ``stat`` calls tell a watcher whether anything new landed."""
    stamps: list[int] = []
    for name in (RUN_FILE, *TABLES):
        try:
            st = os.stat(os.path.join(run_dir, name))
            stamps += [st.st_mtime_ns, st.st_size]
        except OSError:
            stamps += [0, 0]
    return tuple(stamps)
