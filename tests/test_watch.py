"""`trainatlas watch`: a real diverging training followed live by the CLI, alerts reaching loopback
Telegram and webhook fakes, `--once` with the `check` exit codes, `--auto` picking the newest run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from http_fakes import FakeEndpoint
from scenarios import record

from trainatlas.cli import main
from trainatlas.demo import SCENARIOS, build
from trainatlas.store.layout import iter_run_dirs
from trainatlas.watch import Alerts, LogSource, RunSource, Telegram, Watcher, analyse, diff, notify
from trainatlas.watch.watcher import RESOLVE_AFTER

REPO = Path(__file__).resolve().parents[1]
TOKEN = "987:watch-token"


def lr_too_high(root: Path, steps: int = 60, **kwargs) -> str:
    """The demo's bug: SGD at lr 1.0 with momentum 0.9; the loss goes NaN after about 20 steps."""
    model, optimizer = build(SCENARIOS[1])
    return record(root, "lr-too-high", model, steps=steps, optimizer=optimizer, **kwargs)


def healthy(root: Path, steps: int = 60) -> str:
    model, optimizer = build(SCENARIOS[0])
    return record(root, "healthy", model, steps=steps, optimizer=optimizer)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, str, str]:
    root = tmp_path_factory.mktemp("watch") / "runs"
    ok = healthy(root)
    bad = lr_too_high(root)  # recorded last: the newest run
    return root, ok, bad


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_watch_follows_a_live_diverging_run_and_alerts_once(tmp_path):
    root = tmp_path / "runs"
    healthy(root, steps=30)  # an older, finished run: --auto must pick the live one
    gate = threading.Event()  # the training holds at step 5 until the watch has looked once

    def before_step(step: int) -> None:
        if step == 5:
            gate.wait(60)
        time.sleep(0.02)

    trainer = threading.Thread(target=lr_too_high, args=(root, 150), kwargs={"before_step": before_step})
    tg, hook = FakeEndpoint(), FakeEndpoint(default=204, answer={204: b""})
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRAINATLAS_TELEGRAM_TOKEN": TOKEN,
           "TRAINATLAS_TELEGRAM_CHAT": "42", "TRAINATLAS_TELEGRAM_API": tg.url,
           "TRAINATLAS_WEBHOOK_URL": f"{hook.url}/api/webhooks/1/secret"}  # fmt: skip
    trainer.start()
    try:
        deadline = time.monotonic() + 30
        while len(list(iter_run_dirs(root))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lines = []
        with subprocess.Popen(
            [sys.executable, "-m", "trainatlas", "watch", "--auto", "--root", str(root), "--interval", "0.2",
             "--max-time", "120"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        ) as watch:  # fmt: skip
            for line in watch.stdout:
                lines.append(line)
                if "watching" in line:
                    gate.set()
            code = watch.wait(30)
            stderr = watch.stderr.read()
    finally:
        gate.set()
        trainer.join()
        tg.close()
        hook.close()
    out = "".join(lines)
    assert lines[0].startswith("--auto picked the newest run it found: ") and str(root) in lines[0], out + stderr
    assert "lr-too-high @ step" in lines[1] and "watching, phase INITIALIZING" in lines[1], out + stderr
    assert "-> DIVERGING" in out and "new critical issue nonfinite_loss" in out
    assert "now: loss nan (best" in out and "health 0/100" in out and "ETA" in out
    assert "recommendation: stop now" in out and "stopping now saves" in out and "kg CO2" in out
    assert "run completed" in lines[-3]  # the watch ended with the run, with a summary
    assert "issues: " in lines[-1] and "nonfinite_loss (critical)" in lines[-1]
    assert code == 1  # critical issues stand at the end: the `check` exit code
    assert not stderr.strip()
    texts = tg.texts()
    assert all(t.startswith("trainatlas: lr-too-high @ step") for t in texts)
    assert sum("new critical issue nonfinite_loss" in t for t in texts) == 1  # once, though NaN persisted
    assert sum("run completed" in t for t in texts) == 1
    assert not any("watching" in t for t in texts)  # the start line is not news
    assert {r.path for r in tg.requests} == {f"/bot{TOKEN}/sendMessage"}
    assert [r.json["content"] for r in hook.requests] == texts  # the webhook got the same alerts


def test_once_exits_like_check(finished, capsys):
    root, ok, bad = finished
    assert main(["watch", ok, "--root", str(root), "--once"]) == 0
    out = capsys.readouterr().out
    assert "healthy @ step 60: watching" in out and "run completed" in out and "no issues found" in out
    assert main(["watch", bad, "--root", str(root), "--once"]) == 1
    out = capsys.readouterr().out
    assert "critical issue nonfinite_loss" in out and "loss nan" in out
    assert main(["watch", "no-such-run", "--root", str(root), "--once"]) == 2


def test_once_as_json_lines_with_a_refusing_webhook(finished, capsys):
    root, _, bad = finished
    hook = FakeEndpoint(default=401)  # a revoked webhook
    try:
        code = main(["watch", bad, "--root", str(root), "--once", "--json", "--webhook", hook.url + "/h"])
    finally:
        hook.close()
    captured = capsys.readouterr()
    events = json_lines(captured.out)
    assert code == 1  # the failed alert did not change the outcome
    assert [e["kind"] for e in events][0] == "start" and events[-1]["kind"] == "end"
    nan = next(e for e in events if e["key"] == "nonfinite_loss")
    assert nan["severity"] == "critical" and nan["run_id"] == bad and nan["loss"] is None  # NaN is no JSON
    assert events[-1]["status"] == "completed" and events[-1]["phase"] == "DIVERGING"
    assert len(hook.requests) == 1  # 401 is not worth a retry
    assert captured.err.count("could not send an alert") == 1


def test_auto_picks_the_newest_run(finished, capsys):
    root, _, bad = finished
    assert main(["watch", "--auto", "--root", str(root), "--once", "--json"]) == 1
    assert {e["run_id"] for e in json_lines(capsys.readouterr().out)} == {bad}


def test_auto_waits_for_a_run_then_gives_up_saying_where_it_looked(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "logs").mkdir()  # one of the usual places: searched, and named
    code = main(["watch", "--auto", "--root", str(tmp_path / "empty"), "--wait", "0.4", "--interval", "0.1", "--json",
                 "--base-dir", str(tmp_path / "typo")])  # fmt: skip
    assert code == 2
    error = json.loads(capsys.readouterr().out)["error"]
    assert error.startswith("--auto found no training log or run within 0.4 s; it looked for runs under ")
    assert f"{tmp_path / 'empty'} (which does not exist)" in error
    assert f"in {tmp_path}, {tmp_path / 'logs'} (the current directory" in error and "*.csv" in error
    assert f"--base-dir {tmp_path / 'typo'} does not exist" in error and "trainatlas watch PATH" in error


def test_auto_waits_for_a_run_to_appear(tmp_path, capsys):
    root = tmp_path / "runs"
    trainer = threading.Thread(target=lambda: (time.sleep(0.5), healthy(root, steps=30)))
    trainer.start()
    code = main(["watch", "--auto", "--root", str(root), "--wait", "30", "--interval", "0.2", "--json"])
    trainer.join()
    events = json_lines(capsys.readouterr().out)
    assert code == 0 and events[0]["kind"] == "start" and events[-1]["kind"] == "end"
    assert events[0]["run"] == "healthy"


def test_diff_between_real_analyses(finished):
    root, ok, bad = finished
    good, broken = analyse(RunSource(ok, root)), analyse(RunSource(bad, root))
    events = diff(good, broken)
    kinds = {(e.kind, e.key) for e in events}
    assert ("phase", "phase:DIVERGING") in kinds and ("issue", "nonfinite_loss") in kinds
    assert ("recommendation", "recommendation:stop_now") in kinds
    phase = next(e for e in events if e.kind == "phase")
    assert phase.severity == "critical" and "non-finite" in phase.why
    assert not any(e.kind == "end" for e in events)  # both had ended: no news there
    back = diff(broken, good)
    assert {e.key for e in back if e.kind == "resolved"} == {i.code for i in broken.diagnosis.issues}
    assert diff(broken, broken) == []


def test_a_flapping_signal_is_alerted_once_per_cooldown(finished):
    root, _, bad = finished
    snap = analyse(RunSource(bad, root))
    tg = FakeEndpoint()
    alerts = Alerts([Telegram(TOKEN, "42", api=tg.url)], cooldown_s=600)
    try:
        events = diff(None, snap)
        first = notify(alerts, events, snap, alert_on="critical")
        nan = [e for e in events if e.key == "nonfinite_loss"]
        again = notify(alerts, nan, snap)  # the issue came back after a resolved round
        alerts.close()
    finally:
        tg.close()
    assert first is not None and "nonfinite_loss" in first and again is None
    warnings = [i.code for i in snap.diagnosis.issues if i.severity == "warning"]
    assert warnings and not any(f"issue {code}" in first for code in warnings)  # below --alert-on critical
    assert tg.texts() == [first]


REAL_LOG = next(
    (d / "mmengine-scalars/rtmdet-tiny-drink-40ep.scalars.json" for d in (REPO.parent / "shared/real-logs",
     Path("/work/shared/real-logs")) if d.is_dir()),
    Path("missing"),
)  # fmt: skip
needs_real_log = pytest.mark.skipif(not REAL_LOG.is_file(), reason="../shared/real-logs is not here")


@needs_real_log
def test_watch_follows_a_growing_log_file(tmp_path):
    """A real MMEngine log written line by line while `watch` follows it: the run is ingested as it
    grows (one run, updated in place) and each new batch of lines is analysed."""
    lines = REAL_LOG.read_text().splitlines(keepends=True)
    log = tmp_path / "work_dirs" / "vis_data" / "scalars.json"
    log.parent.mkdir(parents=True)
    log.write_text("".join(lines[:20]))
    cmd = [sys.executable, "-m", "trainatlas", "watch", str(log), "--root", str(tmp_path / "runs"), "--json",
           "--interval", "0.2", "--max-time", "12"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    first = json.loads(proc.stdout.readline())  # the watch has ingested the first 20 lines
    assert first["kind"] == "start"
    with log.open("a") as f:
        for line in lines[20:]:
            f.write(line)
            f.flush()
            time.sleep(0.01)
    out, err = proc.communicate(timeout=60)
    events = [first, *json_lines(out)]
    runs = list(iter_run_dirs(tmp_path / "runs"))
    assert len(runs) == 1  # one run, updated in place, never duplicated
    ingested = json.loads((runs[0] / "run.json").read_text())["steps"]
    seen = [e.get("step") or 0 for e in events]
    assert first["step"] < ingested and max(seen) == ingested, err[-2000:]  # it saw the whole log arrive
    assert main(["watch", str(log), "--root", str(tmp_path / "runs"), "--once"]) in (0, 1)


@needs_real_log
def test_auto_finds_a_log_in_the_usual_places(tmp_path, capsys, monkeypatch):
    work = tmp_path / "project" / "work_dirs" / "exp1" / "vis_data"
    work.mkdir(parents=True)
    (work / "scalars.json").write_text(REAL_LOG.read_text())
    monkeypatch.chdir(tmp_path / "project")
    code = main(["watch", "--auto", "--root", str(tmp_path / "runs"), "--once", "--json"])
    events = json_lines(capsys.readouterr().out)
    assert code in (0, 1) and events[0]["kind"] == "start"
    assert events[0]["run_id"].startswith("ingest-")


def grow(log: Path, start: int, n: int, lr: float) -> int:
    """Append ``n`` rows of a decaying loss at learning rate ``lr`` to a CSV log; the last step."""
    with log.open("a") as f:
        for step in range(start + 1, start + n + 1):
            f.write(f"{step},{2.0 * math.exp(-step / 80) + 0.1:.6f},{lr}\n")
    return start + n


def test_an_issue_that_comes_and_goes_is_not_told_resolved_until_it_stays_away(tmp_path):
    """A real CSV log grows between polls; its learning rate drops to ~0 (lr_schedule_exhausted), comes
    back to a new peak (the check no longer fires), drops again, then stays up. The watch tells the
    issue once, and resolved once, after RESOLVE_AFTER analyses of new rows in a row without it."""
    log = tmp_path / "metrics.csv"
    log.write_text("step,loss,lr\n")
    step = grow(log, 0, 40, 1.0)
    told: list = []
    watcher = Watcher(LogSource(log, tmp_path / "runs"), lambda events, snap: told.extend(events))
    watcher.poll()
    found = []
    for n, lr in [(20, 1e-5), (10, 2.0), (20, 1e-5), (10, 3.0), (10, 4.0), (10, 5.0), (10, 6.0)]:
        step = grow(log, step, n, lr)
        watcher.poll()
        found.append("lr_schedule_exhausted" in {i.code for i in watcher.snapshot.diagnosis.issues})
    assert found == [True, False, True, False, False, False, False]  # the check itself flaps
    news = [(e.kind, e.step) for e in told if e.key == "lr_schedule_exhausted"]
    assert news == [("issue", 60), ("resolved", 120)]  # missed at steps 100, 110, 120: resolved at the third
    assert RESOLVE_AFTER == 3


def test_max_time_ends_with_a_line_that_says_so(tmp_path):
    """The real CLI on a log that is still being written (fresh, so 'running'): the watch stops at
    --max-time, and its last line says that the time limit, not the run, ended it."""
    log = tmp_path / "metrics.csv"
    log.write_text("step,loss,lr\n")
    grow(log, 0, 50, 0.1)
    cmd = [sys.executable, "-m", "trainatlas", "watch", str(log), "--root", str(tmp_path / "runs"),
           "--interval", "0.1", "--max-time", "0.5"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert text.returncode == 0, text.stderr
    last = text.stdout.strip().splitlines()[-1]
    assert "@ step 50: watch stopped: the time limit of 0.5 s was reached - the run is still running" in last
    lines = json_lines(subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=120, env=env).stdout)
    assert lines[-1]["kind"] == "stop" and lines[-1]["status"] == "running" and "time limit" in lines[-1]["what"]


def test_the_watch_loop_runs_on_an_injected_clock(finished):
    """``run(max_time_s)`` on a clock the test owns: a fixed number of polls, no real sleeping."""
    root, ok, _ = finished
    now = [0.0]
    polls = []
    watcher = Watcher(RunSource(ok, root), lambda events, snap: polls.append(events), interval_s=1.0,
                      recheck_s=0.0, clock=lambda: now[0], sleep=lambda s: now.__setitem__(0, now[0] + s))  # fmt: skip
    watcher.source.ends_on = ()  # keep watching the finished run until the time limit
    watcher.run(max_time_s=3.0)
    assert watcher.timed_out and now[0] == 3.0 and len(polls) == 1  # 4 analyses; news only at the first
