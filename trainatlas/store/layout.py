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
    """Every run directory under the root (those holding a ``run.json``)."""
    if not root.is_dir():
        return
    for project in sorted(root.iterdir()):
        if not project.name.startswith("project=") or not project.is_dir():
            continue
        for run in sorted(project.iterdir()):
            if run.name.startswith("run=") and (run / RUN_FILE).is_file():
                yield run
