"""The server's view of a root: one catalog shared by every request, kept fresh, with a DuckDB
cursor per request (a connection must not be used by two threads at once; cursors may).

New runs appear through ``refresh()``, at most every ``FRESH_S`` seconds, or at once when the
watcher (subscriptions) has seen the root change. The sandboxed catalog for user SQL cannot
refresh once locked, so it is rebuilt when it is older than the data.
"""

from __future__ import annotations

import copy
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from trainatlas.server.cache import AnswerCache
from trainatlas.store.layout import iter_run_dirs, resolve_root, run_signature

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog

FRESH_S = 2.0
# At most this many analyses (diagnose, plots, curves...) compute at once; the rest queue. More would not finish sooner
# on these cores, and each holds DuckDB buffers and arrays, so fifty clients must not mean fifty copies. An answer from
# the cache takes no slot, and neither do the cheap tools (list_runs, beliefs, review) nor user SQL (its own slots).
ANALYSIS_SLOTS = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))
T = TypeVar("T")
Signature = tuple[int, ...]


def scan(root: Path) -> dict[str, Signature]:
    """Per run id, the mtimes that change when the run writes anything."""
    return {run.name.removeprefix("run="): run_signature(run) for run in iter_run_dirs(root)}


class RootState:
    """Catalogs over one root for concurrent requests."""

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = resolve_root(root).resolve()
        self._lock = threading.Lock()
        self._catalog: Catalog | None = None
        self._refreshed = 0.0
        self._sandbox: Catalog | None = None
        self._sandbox_built = 0.0
        self._changed = 0.0  # monotonic time the watcher last saw a change
        self.answers = AnswerCache(lambda: tuple(sorted(scan(self.root).items())))

    def answer(self, key: tuple[Any, ...], compute: Callable[[], T]) -> T:
        """``compute()``, or its earlier result if no run has written anything since; computing waits for one of
        the ``ANALYSIS_SLOTS``."""

        def in_a_slot() -> T:
            with ANALYSIS_SLOTS:
                return compute()

        return self.answers.get(key, in_a_slot)

    def mark_changed(self) -> None:
        """The root changed (a run appeared or wrote data): the next request refreshes."""
        self._changed = time.monotonic()

    def catalog(self) -> Catalog:
        """A catalog for this request: fresh to within FRESH_S, with its own cursor."""
        from trainatlas.store.catalog import Catalog  # DuckDB loads on the first request, not at start-up

        with self._lock:
            now = time.monotonic()
            if self._catalog is None:
                self._catalog = Catalog(self.root)
                self._refreshed = now
            elif now - self._refreshed > FRESH_S or self._changed > self._refreshed:
                self._catalog.refresh()
                self._refreshed = now
            base = self._catalog
        view = copy.copy(base)
        view.con = base.con.cursor()
        return view

    def sandbox(self) -> Catalog:
        """The locked, read-only catalog for user SQL, rebuilt when it may have missed new data."""
        from trainatlas.store.sandbox import open_sandbox

        with self._lock:
            now = time.monotonic()
            stale = now - self._sandbox_built > FRESH_S or self._changed > self._sandbox_built
            if self._sandbox is None or stale:
                self._sandbox = open_sandbox(self.root)
                self._sandbox_built = now
            return self._sandbox

    def close(self) -> None:
        """Close the DuckDB connections; the next request reopens them. The tools stay referenced (fastmcp
        caches them) until interpreter exit, and DuckDB objects alive at exit make nanobind report leaks."""
        with self._lock:
            for catalog in (self._catalog, self._sandbox):
                if catalog is not None:
                    catalog.con.close()
            self._catalog = self._sandbox = None
