"""What ``trainatlas watch`` follows: a run recorded by the Observer, or a training log that is
ingested as it grows. Both answer ``update()`` (did new data land?) and give a catalog and a run id.

Log files and auto-discovery rely on ``trainatlas.ingest``; it is imported lazily, here only.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
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


@dataclass
class AutoSearch:
    """Where ``watch --auto`` looks: training logs under ``log_dirs`` (looked up on each search: a
    directory may appear while it waits), trainatlas runs under ``root``."""

    extra_dirs: list[Path]  # --base-dir
    root: Path

    @classmethod
    def of(cls, base_dirs: list[Path] | None = None, root: str | os.PathLike[str] | None = None) -> AutoSearch:
        return cls([Path(d).expanduser() for d in base_dirs or []], resolve_root(root).expanduser())

    @property
    def log_dirs(self) -> list[Path]:
        """The current directory and those of the usual places that exist now, plus --base-dir."""
        from trainatlas.ingest.discover import default_base_dirs

        return list(dict.fromkeys(default_base_dirs() + [d for d in self.extra_dirs if d.is_dir()]))

    def newest(self) -> Path | None:
        from trainatlas.ingest import discover

        found = discover(base_dirs=self.log_dirs, root=self.root)
        return Path(found[0]) if found else None

    def describe_pick(self, path: Path) -> str:
        what = "run" if (path / RUN_FILE).is_file() else "training log"
        return f"--auto picked the newest {what} it found: {path}"

    def describe_places(self) -> str:
        """Where it looked, in words a user can check: the root, the directories, the file patterns."""
        from trainatlas.ingest.discover import MAX_DEPTH, MIN_BYTES, SUFFIXES, USUAL_ABSOLUTE, USUAL_DIRS

        root = f"{self.root}" + ("" if self.root.is_dir() else " (which does not exist)")
        patterns = ", ".join(f"*{s}" for s in SUFFIXES) + ", *tfevents*"
        usual = ", ".join([f"./{d}" for d in USUAL_DIRS] + list(USUAL_ABSOLUTE))
        text = (
            f"it looked for runs under {root} and for training logs ({patterns}; at least {MIN_BYTES} bytes, up to "
            f"{MAX_DEPTH} directories deep, recognised by their content) in {', '.join(map(str, self.log_dirs))} "
            f"(the current directory, those of {usual} that exist, and --base-dir)"
        )
        missing = [str(d) for d in self.extra_dirs if not d.is_dir()]
        if missing:
            text += f"; --base-dir {', '.join(missing)} does not exist"
        return text


def newest(search: AutoSearch, wait_s: float = 0.0, interval_s: float = 1.0) -> Path | None:
    """The newest training log or run directory, waiting up to ``wait_s`` seconds for one to appear."""
    deadline = time.monotonic() + wait_s
    while True:
        found = search.newest()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(min(interval_s, max(0.0, deadline - time.monotonic())))
