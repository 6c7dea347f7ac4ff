"""Runs that end badly: killed with SIGKILL, dying of an uncaught exception, or running elsewhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import trainatlas
from trainatlas.store.runinfo import effective_status

SCRIPT = textwrap.dedent(
    """
    import sys, time, torch
    sys.path.insert(0, {tests!r})
    from conftest import observer, train
    obs = observer({root!r}, name="victim", flush_every_s=0.2)
    print(obs.run_id, flush=True)
    train(obs, steps=10_000_000, before_step=lambda s: time.sleep(0.002))
    """
)


def start_training(root: Path) -> tuple[subprocess.Popen, str]:
    code = SCRIPT.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    run_id = proc.stdout.readline().strip()
    return proc, run_id


def test_sigkill_loses_at_most_the_last_flush_and_shows_crashed(root):
    proc, run_id = start_training(root)
    try:
        con = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            con = trainatlas.open_catalog(root)
            steps = con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone()[0]
            if steps >= 100:
                break
            time.sleep(0.1)
        assert con.execute("SELECT status FROM runs").fetchone() == ("running",)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    con = trainatlas.open_catalog(root)
    status, steps_in_json = con.execute("SELECT status, steps FROM runs").fetchone()
    assert status == "crashed"
    recorded = con.execute("SELECT max(step) FROM scalars WHERE key = 'train/loss'").fetchone()[0]
    assert recorded >= 100
    assert recorded >= steps_in_json  # the heartbeat never claims more than was written
    # at 2 ms+ a step and a 0.2 s flush interval, the last interval holds < 150 steps
    assert con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone()[0] == recorded


def test_uncaught_exception_in_a_script_marks_the_run_failed(root):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import observer, train
        obs = observer({str(root)!r}, name="no-with")
        train(obs, steps=5)
        raise RuntimeError("CUDA out of memory (simulated)")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1 and "simulated" in proc.stderr
    [info_path] = root.glob("project=*/run=*/run.json")
    info = json.loads(info_path.read_text())
    assert info["status"] == "failed" and "CUDA out of memory" in info["traceback"]


def test_script_that_forgets_close_completes_at_exit(root):
    code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from conftest import observer, train
        obs = observer({str(root)!r}, name="forgetful")
        train(obs, steps=7)
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    con = trainatlas.open_catalog(root)
    assert con.execute("SELECT status, steps FROM runs").fetchone() == ("completed", 7)
    assert con.execute("SELECT count(*) FROM scalars WHERE key = 'train/loss'").fetchone() == (7,)


def test_a_run_on_another_host_is_crashed_once_its_heartbeat_is_old():
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    info = {"run_id": "r", "status": "running", "host": "elsewhere", "pid": 1}
    fresh = dict(info, heartbeat_at=(now - timedelta(seconds=5)).isoformat())
    old = dict(info, heartbeat_at=(now - timedelta(minutes=10)).isoformat())
    assert effective_status(fresh, now) == "running"
    assert effective_status(old, now) == "crashed"
    assert effective_status(dict(old, status="completed"), now) == "completed"


IMPORT_ONLY = textwrap.dedent(
    """
    import atexit, os, sys
    import duckdb, fastmcp, multiprocessing.util, numpy, pyarrow, torch  # their exit handlers are not ours
    before = (sys.excepthook, atexit._ncallbacks(), dict(os.environ))
    import trainatlas, trainatlas.observer.observer as observer, trainatlas.server.app
    assert (sys.excepthook, atexit._ncallbacks(), dict(os.environ)) == before, "an import changed the process"
    assert observer._libc.cache_info().misses == 0, "libc loaded at import"
    sys.path.insert(0, {tests!r})
    from conftest import observer as make_observer
    first = make_observer({root!r}, name="a")
    hook, handlers = sys.excepthook, atexit._ncallbacks()
    assert hook is not before[0] and handlers == before[1] + 1
    second = make_observer({root!r}, name="b")
    assert (sys.excepthook, atexit._ncallbacks()) == (hook, handlers), "installed twice"
    """
)


def test_importing_changes_nothing_and_the_first_observer_installs_the_exit_hooks_once(root):
    code = IMPORT_ONLY.format(tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    con = trainatlas.open_catalog(root)
    assert sorted(con.execute("SELECT name, status FROM runs").fetchall()) == [("a", "completed"), ("b", "completed")]
