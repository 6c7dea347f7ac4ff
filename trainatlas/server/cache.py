"""Answers computed once per state of the data: a finished run's diagnosis does not change, so the
second client (or the fiftieth concurrent one) gets it without recomputing.

An answer is keyed by the tool, its arguments and the root's signature (the mtimes that change
whenever a run writes a shard or its run.json); concurrent identical requests wait for the
first one instead of computing in parallel. Entries expire after ``TTL_S`` anyway, because a
run's status can change without a write (its process died).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")
TTL_S = 30.0
MAX_ENTRIES = 256


class AnswerCache:
    """A small LRU of tool answers with single-flight computation."""

    def __init__(self, signature: Callable[[], Hashable], ttl_s: float = TTL_S, max_entries: int = MAX_ENTRIES):
        self.signature = signature
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._inflight: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer for ``key`` at the current state of the data, computed at most once."""
        full = (key, self.signature())
        with self._lock:
            gate = self._inflight.setdefault(full, threading.Lock())
        with gate:  # identical requests queue here; the first computes, the rest read
            with self._lock:
                hit = self._entries.get(full)
                if hit and time.monotonic() - hit[0] < self.ttl_s:
                    self._entries.move_to_end(full)
                    self.hits += 1
                    return hit[1]
            try:
                value = compute()
            finally:
                with self._lock:
                    self._inflight.pop(full, None)
            with self._lock:
                self.misses += 1
                self._entries[full] = (time.monotonic(), value)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
            return value
