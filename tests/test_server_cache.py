"""Answers are computed once per state of the data, and recomputed when a run writes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.conftest import observer, train
from trainatlas.server.cache import AnswerCache
from trainatlas.server.state import RootState
from trainatlas.tools.report import diagnose


def test_identical_concurrent_requests_compute_once() -> None:
    calls = []

    def slow() -> int:
        calls.append(1)
        time.sleep(0.3)
        return 42

    cache = AnswerCache(lambda: "v1")
    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(("k",), slow))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 8 and len(calls) == 1
    assert (cache.hits, cache.misses) == (7, 1)


def test_a_new_signature_or_an_old_entry_recomputes() -> None:
    version = ["v1"]
    cache = AnswerCache(lambda: version[0], ttl_s=0.2)
    counter = iter(range(100))
    assert cache.get(("k",), lambda: next(counter)) == 0
    assert cache.get(("k",), lambda: next(counter)) == 0
    version[0] = "v2"
    assert cache.get(("k",), lambda: next(counter)) == 1
    time.sleep(0.25)
    assert cache.get(("k",), lambda: next(counter)) == 2


def test_a_run_that_writes_invalidates_its_answers(root: Path) -> None:
    with observer(root, name="r") as obs:
        train(obs, steps=30)
    state = RootState(root)
    first = state.answer(("diagnose", "r"), lambda: diagnose(state.catalog(), "r"))
    again = state.answer(("diagnose", "r"), lambda: diagnose(state.catalog(), "r"))
    assert again is first
    run_json = next(root.glob("project=*/run=*/run.json"))
    stamp = run_json.stat().st_mtime_ns + 10**9
    os.utime(run_json, ns=(stamp, stamp))  # what a heartbeat or a new shard does
    fresh = state.answer(("diagnose", "r"), lambda: diagnose(state.catalog(), "r"))
    assert fresh is not first and fresh.health_score == first.health_score
