"""Auto-discovery of training logs and trainatlas runs (``watch --auto``)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from trainatlas.ingest import discover, ingest_file, wait_for_log
from trainatlas.ingest.discover import default_base_dirs

JSONL = "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1), "lr": 0.01}) + "\n" for s in range(20))
CSV = "epoch,loss,val_loss\n" + "".join(f"{e},{1 / (e + 1)},{1.1 / (e + 1)}\n" for e in range(20))


def _write(path: Path, text: str, age_s: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_discover_finds_logs_newest_first_and_skips_the_rest(tmp_path: Path) -> None:
    scalars = _write(tmp_path / "work_dirs" / "rtm" / "20230605" / "vis_data" / "scalars.json", JSONL, 300)
    keras = _write(tmp_path / "outputs" / "training.log", CSV, 100)
    _write(tmp_path / "runs" / "tiny.log", "loss=1 acc=2\n", 10)  # too small to be a training log
    _write(tmp_path / "logs" / "notes.txt", "meeting notes, nothing numeric here at all\n" * 20, 5)  # not a log
    _write(tmp_path / "data" / "image.png", "x" * 1000, 1)  # not a log name
    _write(tmp_path / ".git" / "hidden.log", JSONL, 1)  # hidden directories are skipped
    _write(tmp_path / "node_modules" / "pkg" / "x.log", JSONL, 1)
    found = discover([tmp_path], root=tmp_path / "nowhere")
    assert found == [keras.resolve(), scalars.resolve()]


def test_discover_lists_trainatlas_runs_and_not_their_files(tmp_path: Path) -> None:
    root = tmp_path / "trainatlas-runs"
    log = _write(tmp_path / "lightning_logs" / "version_0" / "metrics.csv", CSV.replace("epoch", "step"), 1000)
    result = ingest_file(log, root)
    newer = _write(tmp_path / "experiments" / "b" / "log.txt", JSONL, 50)
    found = discover([tmp_path], root=root)
    run_dir = Path(result.run_dir).resolve()
    assert found[0] == run_dir  # its shards were written just now
    assert set(found) == {run_dir, newer.resolve(), log.resolve()}
    assert not any(root.resolve() in p.parents for p in found if p != run_dir)


def test_default_base_dirs_are_the_usual_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("work_dirs", "runs", "lightning_logs"):
        (tmp_path / name).mkdir()
    monkeypatch.chdir(tmp_path)
    dirs = default_base_dirs()
    assert dirs[:4] == [tmp_path, tmp_path / "work_dirs", tmp_path / "runs", tmp_path / "lightning_logs"]
    log = _write(tmp_path / "runs" / "exp" / "results.csv", CSV, 1)
    assert discover(root=tmp_path / "none")[0] == log.resolve()


def test_wait_for_log(tmp_path: Path) -> None:
    start = time.monotonic()
    assert wait_for_log(0.3, [tmp_path], root=tmp_path / "none", poll_s=0.1) is None
    assert 0.25 <= time.monotonic() - start < 3
    target = tmp_path / "outputs" / "train.log.json"
    timer = threading.Timer(0.4, lambda: _write(target, JSONL, 0))
    timer.start()
    try:
        assert wait_for_log(10, [tmp_path], root=tmp_path / "none", poll_s=0.1) == target.resolve()
    finally:
        timer.cancel()
