"""`trainatlas watch`: a real diverging training followed live by the CLI, alerts reaching loopback
Telegram and webhook fakes, `--once` with the `check` exit codes, `--auto` picking the newest run."""

from __future__ import annotations

import json
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
from trainatlas.watch import Alerts, RunSource, Telegram, analyse, diff, notify

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
    assert "lr-too-high @ step" in lines[0] and "watching, phase INITIALIZING" in lines[0], out + stderr
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


def test_auto_waits_for_a_run_then_gives_up(tmp_path, capsys):
    started = time.monotonic()
    code = main(["watch", "--auto", "--root", str(tmp_path / "empty"), "--wait", "0.4", "--interval", "0.1", "--json"])
    assert code == 2 and time.monotonic() - started >= 0.4
    assert "no training log or run found within 0.4 s" in json.loads(capsys.readouterr().out)["error"]


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
