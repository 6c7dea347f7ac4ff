"""What ``trainatlas watch`` follows: a run recorded by the Observer, or a training log that is
ingested as it grows. Both answer ``update()`` (did new data land?) and give a catalog and a run id.

Log files and auto-discovery rely on ``trainatlas.ingest``; it is imported lazily, here only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Protocol

from trainatlas.store.catalog import Catalog
from trainatlas.store.layout import RUN_FILE, resolve_root, run_signature


class Source(Protocol):
    catalog: Catalog
    run_id: str
    ends_on: tuple[str, ...]  # run statuses that end the watch

    def update(self) -> bool: ...


class RunSource:
    """A trainatlas run: a run id, name or directory (a directory may lie outside ``root``)."""

    ends_on = ("completed", "failed", "crashed")

    def __init__(self, ref: str, root: str | os.PathLike[str] | None = None) -> None:
        path = Path(ref).expanduser()
        if (path / RUN_FILE).is_file():  # a run directory: its root is two levels up
            root, ref = path.resolve().parent.parent, str(path.resolve())
        self.catalog = Catalog(root)
        run = self.catalog.resolve(ref)
        self.run_id: str = run["run_id"]
        self.run_dir = Path(run["path"])
        self._signature: tuple[int, ...] | None = None

    def update(self) -> bool:
        now = run_signature(self.run_dir)
        changed, self._signature = now != self._signature, now
        return changed


class LogSource:
    """A training log, ingested into ``root`` as it grows (rotation and truncation are the
    ingester's business: it appends new lines and rebuilds the run when the file was replaced)."""

    ends_on = ("completed", "failed")  # a log has no process to check: only what it says counts

    def __init__(self, path: Path, root: str | os.PathLike[str] | None = None, project: str | None = None) -> None:
        from trainatlas.ingest import ingest_file

        self._ingest = ingest_file
        self.path = path
        self.root = resolve_root(root)
        self.project = project
        self._seen = False
        self.update()  # the first ingestion gives the run id
        self.catalog = Catalog(self.root)

    def update(self) -> bool:
        try:
            result = self._ingest(self.path, self.root, project=self.project)
        except OSError:
            if not self._seen:
                raise
            return False  # the file is being rotated away: look again at the next poll
        self.run_id = result.run_id
        first, self._seen = not self._seen, True
        return first or result.rows_added > 0


def open_source(target: str, root: str | os.PathLike[str] | None = None, project: str | None = None) -> Source:
    """A run directory, a log file, else a run id or name under ``root``."""
    path = Path(target).expanduser()
    if path.is_file():
        return LogSource(path, root, project)
    return RunSource(target, root)


def newest(
    base_dirs: list[Path] | None = None,
    root: str | os.PathLike[str] | None = None,
    wait_s: float = 0.0,
    interval_s: float = 1.0,
) -> Path | None:
    """The newest training log or run directory, waiting up to ``wait_s`` seconds for one to appear."""
    from trainatlas.ingest import discover

    deadline = time.monotonic() + wait_s
    while True:
        found = discover(base_dirs=base_dirs, root=resolve_root(root))
        if found:
            return Path(found[0])
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
