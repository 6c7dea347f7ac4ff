"""Ingestion of foreign training logs: every real log in ../shared/real-logs, checked against the
source read independently here; re-ingest, growth, truncation, malformed input, fuzzing."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainatlas.cli import main
from trainatlas.ingest import ingest_file, ingest_paths, run_id_for, sniff
from trainatlas.ingest.detect import PARSERS, sniff_bytes
from trainatlas.store.catalog import Catalog
from trainatlas.store.layout import RUN_FILE
from trainatlas.store.runinfo import effective_status

REAL = Path(__file__).resolve().parents[2] / "shared" / "real-logs"
if not REAL.is_dir():
    REAL = Path("/work/shared/real-logs")
FORMATS = {
    "detr-style-jsonl": "jsonl",
    "gan-studiogan-text": "text",
    "hf-trainer-state": "hf-trainer-state",
    "keras-csvlogger": "csv",
    "lightning-metrics-csv": "csv",
    "mm-text-log": "mmtext",
    "mmcv-log-json": "jsonl",
    "mmengine-scalars": "jsonl",
    "other-text": "text",
    "tensorboard": "tensorboard",
    "yolo-results-csv": "csv",
}
REAL_FILES = sorted(p for p in REAL.rglob("*") if p.is_file() and p.parent != REAL) if REAL.is_dir() else []
needs_real = pytest.mark.skipif(not REAL_FILES, reason="../shared/real-logs is not here")
OLD = time.time() - 3600  # an mtime that makes a written file "finished"


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    root = tmp_path_factory.mktemp("real") / "runs"
    results = {r.path: r for r in ingest_paths([REAL], root)}
    return root, results


def series(root: Path, path: Path, key: str) -> list[tuple[int, float]]:
    con = Catalog(root).con
    return con.execute(
        "SELECT step, value FROM scalars WHERE run_id = ? AND key = ? ORDER BY step", [run_id_for(path.resolve()), key]
    ).fetchall()


def values(root: Path, path: Path, key: str) -> list[float]:
    """Values of ``key`` in file order (steps can repeat, so order by step alone is not enough)."""
    return [v for _, v in series(root, path, key)]


def real(folder: str, prefix: str) -> Path:
    return next(p for p in (REAL / folder).iterdir() if p.name.startswith(prefix))


def close(a: float, b: float, tol: float = 1e-9) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b or abs(a - b) <= tol * max(1.0, abs(a), abs(b))


# -- every real file ----------------------------------------------------------------------------------


@needs_real
@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: f"{p.parent.name}/{p.name[:40]}")
def test_every_real_log_ingests(real_root, path: Path) -> None:
    root, results = real_root
    r = results[str(path.resolve())]
    assert r.ok and r.format == FORMATS[path.parent.name] == sniff(path)
    assert r.errors == [], r.errors
    info = json.loads((Path(r.run_dir) / RUN_FILE).read_text())
    assert info["source"] == f"ingest:{r.format}" and info["source_path"] == str(path.resolve())
    assert info["status"] in ("completed", "running") and info["steps"] == r.steps
    if "graph-only-no-scalars" in path.name:
        assert r.rows_added == 0
    else:
        assert r.rows_added > 0 and r.steps > 0 or path.name.startswith("pinn-pendulum-aborted")
        steps = [s for s, _ in Catalog(root).con.execute(
            "SELECT step, count(*) FROM scalars WHERE run_id = ? GROUP BY step", [r.run_id]).fetchall()]  # fmt: skip
        assert max(steps) == r.steps


@needs_real
def test_hf_trainer_state_matches_the_json(real_root) -> None:
    root, _ = real_root
    for path in (REAL / "hf-trainer-state").iterdir():
        history = json.loads(path.read_text())["log_history"]  # json reads bare NaN/Infinity
        train = [(e["step"], e["loss"]) for e in history if "loss" in e]
        assert [(s, v) for s, v in series(root, path, "train/loss")] == train, path.name
        assert values(root, path, "orig/loss") == [v for _, v in train]
        evals = [(e["step"], e["eval_loss"]) for e in history if "eval_loss" in e]
        assert series(root, path, "val/loss") == evals
    spike = real("hf-trainer-state", "unsloth")
    grad = dict(series(root, spike, "grad_norm"))
    assert math.isnan(grad[5]) and grad[18] == math.inf
    assert min(values(root, spike, "train/loss")) < 0  # the impossible negative loss is kept


@needs_real
def test_mm_json_logs_match_the_json(real_root) -> None:
    root, _ = real_root
    for folder in ("mmcv-log-json", "mmengine-scalars"):
        for path in (REAL / folder).iterdir():
            rows = [json.loads(line) for line in path.read_text().splitlines()[1 if folder == "mmcv-log-json" else 0 :]]
            train = [r["loss"] for r in rows if "loss" in r and r.get("mode", "train") == "train"]
            assert values(root, path, "train/loss") == train, path.name
            steps = [s for s, _ in series(root, path, "train/loss")]
            assert steps == sorted(steps) and len(set(steps)) == len(steps), f"{path.name}: steps not increasing"
    # MMEngine: the global step is the file's; evaluations of an epoch-based run sit at a training step
    drink = real("mmengine-scalars", "rtmdet-tiny-drink")
    rows = [json.loads(line) for line in drink.read_text().splitlines()]
    assert [s for s, _ in series(root, drink, "train/loss")] == [r["step"] for r in rows if "loss" in r]
    maps = series(root, drink, "val/coco/bbox_mAP")
    assert [v for _, v in maps] == [r["coco/bbox_mAP"] for r in rows if "coco/bbox_mAP" in r]
    assert all(s >= 100 for s, _ in maps)  # not the epoch numbers 10, 20, 30, 40
    cls = real("mmcv-log-json", "mmcls-resnet50")
    rows = [json.loads(line) for line in cls.read_text().splitlines()[1:]]
    accs = [r["accuracy_top-1"] for r in rows if r["mode"] == "val"]
    assert values(root, cls, "val/acc") == accs and len(accs) == 10


@needs_real
def test_csv_logs_match_the_csv(real_root) -> None:
    root, _ = real_root
    for folder in ("keras-csvlogger", "yolo-results-csv", "lightning-metrics-csv"):
        for path in (REAL / folder).iterdir():
            reader = csv.DictReader(path.read_text().splitlines())
            rows = [{k.strip(): v.strip() for k, v in row.items()} for row in reader]
            for column, key in (("loss", "train/loss"), ("val_loss", "val/loss"), ("train_loss", "train/loss"),
                                ("metrics/mAP50(B)", "metrics/mAP50(B)"), ("x/lr0", "lr")):  # fmt: skip
                expected = [float(r[column]) for r in rows if r.get(column)]
                if expected:
                    assert values(root, path, key) == expected, (path.name, column)
    keras = real("keras-csvlogger", "car-cnn")
    assert [s for s, _ in series(root, keras, "val/acc")] == list(range(100))  # epoch column 0..99


@needs_real
def test_text_logs(real_root) -> None:
    root, _ = real_root
    emonet = real("other-text", "emonet")
    assert len(series(root, emonet, "train/loss")) == 500 and len(series(root, emonet, "val/loss")) == 500
    fer = real("other-text", "fer-cnn")  # three runs appended: 10, 8 and 11 epochs
    steps = [s for s, _ in series(root, fer, "val/loss")]
    assert len(steps) == 29 and steps == sorted(set(steps))
    iqn = real("other-text", "iqn")  # records separated by carriage returns
    assert len(series(root, iqn, "Average100 Score")) == 507
    gan = real("gan-studiogan-text", "studiogan-dcgan")
    text = gan.read_text()
    fids = [float(line.rsplit(":", 1)[1]) for line in text.splitlines() if "> FID score (Step:" in line]
    assert values(root, gan, "FID score") == fids and len(fids) > 50
    assert max(s for s, _ in series(root, gan, "Generator_loss")) == 200_000  # "Best FID (Step: 42000)" no restart
    caffe = real("other-text", "caffe")
    assert series(root, caffe, "train/loss")[:1] == [(0, 2.40473)]
    assert series(root, caffe, "lr")[-1] == (100, 0.00992565)
    selfplay = real("other-text", "selfplay")
    assert len(series(root, selfplay, "train/loss")) == 25  # `iter 20/500 eps 0.84 ... loss 0.0079`


@needs_real
def test_mm_text_logs(real_root) -> None:
    root, _ = real_root
    val_only = real("mm-text-log", "mmdet2-mask-rcnn")
    assert [s for s, _ in series(root, val_only, "val/bbox_mAP")] == list(range(1, 101))
    slurm = real("mm-text-log", "slurm")
    assert len(series(root, slurm, "val/acc")) == 10
    iters = real("mm-text-log", "pspnet-satellite")
    assert [s for s, _ in series(root, iters, "train/loss")][:2] == [100, 200]
    assert max(s for s, _ in series(root, iters, "val/mIoU")) <= 10000


@needs_real
def test_pairs_in_two_formats_agree(real_root) -> None:
    root, _ = real_root
    # the same run as TensorBoard events and as trainer_state.json: same steps and losses
    tb, hf = real("tensorboard", "t5-summarization"), real("hf-trainer-state", "t5-summarization")
    a, b = series(root, tb, "train/loss"), series(root, hf, "train/loss")
    assert len(a) == len(b) == 430 and all(
        sa == sb and close(va, vb, 1e-6) for (sa, va), (sb, vb) in zip(a, b, strict=True)
    )
    # MMCV text log and its log.json twin: the same losses (the text rounds to 4 decimals)
    text, js = real("mm-text-log", "mmcls-resnet50"), real("mmcv-log-json", "mmcls-resnet50")
    lt, lj = values(root, text, "train/loss"), values(root, js, "train/loss")
    assert len(lt) == len(lj) == 70 and all(abs(x - y) < 1e-4 for x, y in zip(lt, lj, strict=True))
    assert values(root, text, "val/acc") == pytest.approx(values(root, js, "val/acc"), abs=1e-4)
    # MMEngine scalars.json and its text log
    sj, st_ = real("mmengine-scalars", "rtmdet-tiny-ear-interrupted"), real("mm-text-log", "rtmdet-tiny-ear")
    assert [s for s, _ in series(root, sj, "train/loss")] == [s for s, _ in series(root, st_, "train/loss")]
    # YOLOv8: TensorBoard val losses per epoch and results.csv
    tb8, csv8 = real("tensorboard", "yolov8"), real("yolo-results-csv", "yolov8")
    assert values(root, tb8, "val/box_loss") == pytest.approx(values(root, csv8, "val/box_loss"), abs=1e-4)  # csv: 5 dp


@needs_real
def test_tensorboard_matches_tbparse() -> None:
    tbparse = pytest.importorskip("tbparse")
    for path in (REAL / "tensorboard").iterdir():
        df = tbparse.SummaryReader(str(path), pivot=False).scalars
        theirs = sorted((r.tag, int(r.step), float(r.value)) for r in df.itertuples())
        parser = PARSERS["tensorboard"](path)
        with open(path, "rb") as f:
            ours = sorted((k, r.step, v) for r in parser.rows(f, True) for k, v in r.values.items())
        assert [t[:2] for t in theirs] == [o[:2] for o in ours]
        assert all(close(t[2], o[2], 1e-7) for t, o in zip(theirs, ours, strict=True))


@needs_real
def test_analysis_runs_on_ingested_logs(real_root, capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = real_root
    for path in (real("hf-trainer-state", "whisper-large"), real("keras-csvlogger", "ecg"),
                 real("mmengine-scalars", "rtmdet-balloon"), real("tensorboard", "lightning")):  # fmt: skip
        run = run_id_for(path.resolve())
        assert main(["diagnose", run, "--root", str(root), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["run"]["run_id"] == run and 0 <= report["health_score"] <= 100
        assert main(["status", run, "--root", str(root), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["phase"]
    codes = {i["code"] for i in _diagnose(root, real("hf-trainer-state", "whisper-large"), capsys)["issues"]}
    assert "overfitting" in codes  # train loss falls while eval loss rises at every eval
    codes = {i["code"] for i in _diagnose(root, real("hf-trainer-state", "unsloth"), capsys)["issues"]}
    assert "nonfinite_gradients" in codes or "exploding_gradients" in codes or "nonfinite_loss" in codes


def _diagnose(root: Path, path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    main(["diagnose", run_id_for(path.resolve()), "--root", str(root), "--json"])
    return json.loads(capsys.readouterr().out)


# -- re-ingest, growth, truncation -------------------------------------------------------------------


def _jsonl(n: int, start: int = 0) -> str:
    return "".join(json.dumps({"step": s, "loss": 1.0 / (s + 1), "lr": 0.1}) + "\n" for s in range(start, start + n))


def _rows(root: Path, path: Path) -> list[tuple[int, str, float]]:
    return (
        Catalog(root)
        .con.execute(
            "SELECT step, key, value FROM scalars WHERE run_id = ? ORDER BY key, step", [run_id_for(path.resolve())]
        )
        .fetchall()
    )


def test_reingest_updates_the_run_instead_of_duplicating(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "train.jsonl"
    log.write_text(_jsonl(20))
    first = ingest_file(log, root)
    assert first.mode == "new" and first.rows_added == 20 * 3  # train/loss, orig/loss, lr
    again = ingest_file(log, root)
    assert again.mode == "unchanged" and again.rows_added == 0 and again.run_id == first.run_id
    os.utime(log, (OLD, OLD))  # touched but not changed in size: parsed again from the offset, nothing new
    assert ingest_file(log, root).rows_added == 0
    assert len(_rows(root, log)) == 60 and len(Catalog(root).runs) == 1
    moved = ingest_file(log, root, project="elsewhere")  # a new project moves the run
    assert moved.mode == "rebuild" and len(Catalog(root).runs) == 1 and Catalog(root).runs[0]["project"] == "elsewhere"
    assert len(_rows(root, log)) == 60


def test_a_growing_file_appends_only_the_new_part(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "scalars.json"
    log.write_text(_jsonl(100))
    assert ingest_file(log, root).rows_added == 300
    with log.open("a") as f:
        f.write(_jsonl(50, 100) + '{"step": 150, "loss": 0.')  # the writer is mid-line
    grown = ingest_file(log, root)
    assert grown.mode == "append" and grown.rows_added == 150 and grown.steps == 149
    info = json.loads((Path(grown.run_dir) / RUN_FILE).read_text())
    assert info["status"] == "running" and info["ingest"]["parser"]["offset"] < log.stat().st_size
    with log.open("a") as f:
        f.write('5, "lr": 0.1}\n')
    done = ingest_file(log, root)
    assert done.mode == "append" and done.rows_added == 3 and done.steps == 150
    rows = _rows(root, log)
    assert len(rows) == 453 and len(set(rows)) == 453
    assert (150, "train/loss", 0.5) in rows


def _status_now(root: Path, log: Path) -> str:
    """The status every reader sees (runs view, list_runs), without ingesting again."""
    (run,) = [r for r in Catalog(root).runs if r["run_id"] == run_id_for(log.resolve())]
    return run["status"]


def test_a_real_log_is_running_while_it_grows_then_completed(tmp_path: Path, root: Path) -> None:
    lines = (REAL / "other-text" / "emonet-tcn-python-logging-500ep.training.log").read_bytes().splitlines(True)
    log = tmp_path / "training.log"
    log.write_bytes(b"".join(lines[: len(lines) // 2]))
    assert ingest_file(log, root).status == "running" and _status_now(root, log) == "running"
    with log.open("ab") as f:
        f.write(b"".join(lines[len(lines) // 2 :]))
    assert ingest_file(log, root).status == "running"
    stopped = time.time() - 3 * 60  # the trainer wrote its last line three minutes ago
    os.utime(log, (stopped, stopped))
    assert _status_now(root, log) == "completed"  # no re-ingest needed; was "running", then "crashed"
    info = json.loads((Path(Catalog(root).runs[0]["path"]) / RUN_FILE).read_text())
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert effective_status(info, later) == "completed"  # an old log is not a dead process
    assert ingest_file(log, root).status == "completed"


def test_a_log_that_ends_in_a_traceback_is_failed(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "train.log"
    good = "".join(f"epoch {e}: loss={1 / (e + 1):.4f}\n" for e in range(10))
    crash = 'Traceback (most recent call last):\n  File "train.py", line 9, in <module>\ntorch.OutOfMemoryError: CUDA\n'
    log.write_text(good + crash)
    os.utime(log, (OLD, OLD))
    r = ingest_file(log, root)
    assert r.status == "failed" and r.steps == 9 and _status_now(root, log) == "failed"
    with log.open("a") as f:  # a caught error, then training went on: the crash is not the end
        f.write("".join(f"epoch {e}: loss={1 / (e + 1):.4f}\n" for e in range(10, 12)))
    os.utime(log, (OLD + 1, OLD + 1))
    assert ingest_file(log, root).status == "completed" and _status_now(root, log) == "completed"


def test_a_truncated_or_rewritten_file_rebuilds_the_run(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "metrics.csv"
    log.write_text("step,train_loss\n" + "".join(f"{s},{1 / (s + 1)}\n" for s in range(50)))
    ingest_file(log, root)
    log.write_text("step,train_loss\n" + "".join(f"{s},{2.0}\n" for s in range(10)))  # shorter: a new run
    r = ingest_file(log, root)
    assert r.mode == "rebuild" and r.steps == 9 and {v for _, k, v in _rows(root, log) if k == "train/loss"} == {2.0}
    # Lightning rewrites the file with a wider header when a metric appears: head changed, rebuild
    log.write_text("step,train_loss,val_loss\n" + "".join(f"{s},{3.0},\n" for s in range(40)) + "39,,0.5\n")
    r = ingest_file(log, root)
    assert r.mode == "rebuild" and len([k for _, k, _ in _rows(root, log) if k == "train/loss"]) == 40
    assert (39, "val/loss", 0.5) in _rows(root, log)


def test_trainer_state_rewritten_at_each_checkpoint_is_reread(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "checkpoint-20" / "trainer_state.json"
    path.parent.mkdir()
    state = {"global_step": 10, "log_history": [{"step": s, "loss": 1.0, "epoch": s / 10} for s in range(1, 11)]}
    path.write_text(json.dumps(state, indent=2))
    assert ingest_file(path, root).steps == 10
    state["log_history"] += [{"step": s, "loss": 0.5} for s in range(11, 21)]
    path.write_text(json.dumps(state, indent=2))
    r = ingest_file(path, root)
    assert r.mode == "rebuild" and r.steps == 20 and r.name == f"{tmp_path.name}/checkpoint-20"
    assert len([k for _, k, _ in _rows(root, path) if k == "train/loss"]) == 20


# -- malformed input -----------------------------------------------------------------------------------


def test_malformed_json_line_names_file_and_line_and_keeps_the_rest(tmp_path: Path, root: Path) -> None:
    log = tmp_path / "log.json"
    lines = _jsonl(10).splitlines()
    lines[4] = '{"step": 4, "loss": '  # cut
    log.write_text("\n".join(lines) + "\n")
    r = ingest_file(log, root)
    assert r.errors == [f"{log.resolve()}:5: malformed JSON (Expecting value at column 20)"]
    assert sorted(s for s, k, _ in _rows(root, log) if k == "train/loss") == [0, 1, 2, 3, 5, 6, 7, 8, 9]


def test_truncated_tensorboard_file_keeps_the_whole_records(tmp_path: Path, root: Path) -> None:
    src = real("tensorboard", "lightning") if REAL_FILES else None
    if src is None:
        pytest.skip("no real TensorBoard file")
    data = src.read_bytes()
    cut = tmp_path / "events.out.tfevents.1.host"
    cut.write_bytes(data[: len(data) // 2])
    os.utime(cut, (OLD, OLD))
    r = ingest_file(cut, root)
    assert r.rows_added > 100 and len(r.errors) == 1
    assert r.errors[0].startswith(f"{cut.resolve()}:") and "truncated record" in r.errors[0]
    whole = ingest_file(src, root)
    assert whole.rows_added > r.rows_added
    garbage = tmp_path / "garbage.tfevents"
    first = 16 + int.from_bytes(data[:8], "little")  # the end of the first record
    garbage.write_bytes(data[:first] + b"\xff" * 12 + data[first:])
    os.utime(garbage, (OLD, OLD))
    g = ingest_file(garbage, root)
    assert g.ok and g.errors == [
        f"{garbage.resolve()}:2: corrupt record header at byte {first}; the rest of the file is skipped"
    ]


def test_truncated_trainer_state_keeps_the_complete_entries(tmp_path: Path, root: Path) -> None:
    text = json.dumps({"log_history": [{"step": s, "loss": 0.1 * s} for s in range(1, 30)]}, indent=2)
    path = tmp_path / "trainer_state.json"
    path.write_text(text[: len(text) * 2 // 3])
    r = ingest_file(path, root)
    assert r.rows_added >= 15 * 2 and r.errors and r.errors[0].startswith(f"{path.resolve()}:")
    assert "truncated" in r.errors[0]


def test_csv_row_with_missing_cells_is_reported(tmp_path: Path, root: Path) -> None:
    path = tmp_path / "training.log"
    path.write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9\n2,0.8,0.9\n")
    r = ingest_file(path, root)
    assert r.errors == [f"{path.resolve()}:3: 2 cells where the header has 3"]
    assert [k for s, k, _ in _rows(root, path) if s == 1] == ["epoch", "orig/loss", "train/loss"]  # the good cell kept


def test_cli_ingest(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "run" / "log.txt"
    log.parent.mkdir()
    log.write_text("".join(f"epoch={e} loss={1 / (e + 1):.4f} acc={e / 10:.2f}\n" for e in range(10)))
    (tmp_path / "run" / "notes.txt").write_text("nothing to see here, just words\n" * 20)
    assert main(["ingest", str(tmp_path), "--root", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(Path(o["path"]).name, o["format"], o["steps"]) for o in out] == [("log.txt", "text", 9)]
    assert main(["ingest", str(tmp_path / "run" / "notes.txt"), "--root", str(root), "--json"]) == 2
    err = json.loads(capsys.readouterr().out)[0]["errors"][0]
    assert "notes.txt:1: not a training log" in err
    assert main(["ingest", str(tmp_path / "missing.log"), "--root", str(root)]) == 2
    assert main(["ingest", str(log), "--root", str(root)]) == 0
    assert "unchanged" in capsys.readouterr().out


# -- fuzz: no input crashes a parser ---------------------------------------------------------------------

SAMPLES = [
    b'{"mode": "train", "epoch": 1, "iter": 100, "lr": 0.1, "loss": NaN}\n',
    b'{"step": 5, "loss": Infinity, "coco/bbox_mAP": -1.0}\r\n',
    b"Epoch(train) [1][ 5/16]  lr: 8.6e-05  eta: 0:09:45  loss: 3.06\n",
    b"Epoch(val) [1][157]\taccuracy_top-1: 83.31, loss: 0.2\r",
    b"Iter(val) [1206/1206]  aAcc: 89.17  mIoU: 68.70\n",
    b"epoch,loss,val_loss\n0,1.0,\n",
    b"INFO:root:Episode 20 | Avg Reward: 6.00 | Win Rate: 0.48%\n",
    b"FID score (Step: 2000, Using test moments): 45.4\n",
    b'{"log_history": [{"step": 1, "loss": 1.5}, {"step": 2',
    b"\x00\x01\xff\xfe",
]


def _parse_all(fmt: str, data: bytes, tmp: Path) -> None:
    path = tmp / f"fuzz-{fmt}"
    path.write_bytes(data)
    parser = PARSERS[fmt](path)
    with open(path, "rb") as f:
        for row in parser.rows(f, True):
            assert isinstance(row.step, int) and all(isinstance(v, float) for v in row.values.values())
    assert all(e.startswith(str(path)) for e in parser.errors)


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    sniff_bytes(data)
    for fmt in PARSERS:
        _parse_all(fmt, data, tmp_path)


@FUZZ
@given(parts=st.lists(st.sampled_from(SAMPLES) | st.binary(max_size=40), max_size=12), cut=st.integers(0, 2000))
def test_fuzz_mangled_log_lines(tmp_path: Path, parts: list[bytes], cut: int) -> None:
    data = b"".join(parts)
    data = data[: cut % (len(data) + 1)] if data else data
    sniff_bytes(data)
    for fmt in PARSERS:
        _parse_all(fmt, data, tmp_path)


@FUZZ
@given(data=st.binary(min_size=1, max_size=300))
def test_fuzz_tensorboard_payloads(tmp_path: Path, data: bytes) -> None:
    """Well-framed records with arbitrary payloads: the protobuf decoding must not crash."""
    from trainatlas.ingest.tensorboard import masked_crc

    header = len(data).to_bytes(8, "little")
    record = header + masked_crc(header).to_bytes(4, "little") + data + masked_crc(data).to_bytes(4, "little")
    _parse_all("tensorboard", record * 2, tmp_path)


@FUZZ
@given(text=st.text(max_size=300))
def test_fuzz_ingest_file_never_raises(tmp_path: Path, text: str) -> None:
    path = tmp_path / "any.log"
    path.write_bytes(text.encode("utf-8", "replace"))
    result = ingest_file(path, tmp_path / "runs")
    assert result.ok or result.errors
    shutil.rmtree(tmp_path / "runs", ignore_errors=True)


def test_stream_does_not_hold_the_file(tmp_path: Path) -> None:
    """Rows come out while the file is read: the first row arrives after one chunk, not the whole file."""
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for s in range(200_000):
            f.write(json.dumps({"step": s, "loss": 0.5}) + "\n")
    parser = PARSERS["jsonl"](path)
    with open(path, "rb") as f:
        first = next(iter(parser.rows(f, True)))
        assert first.step == 0 and f.tell() < path.stat().st_size // 2


def test_sniff_by_content_not_name(tmp_path: Path) -> None:
    cases = {
        "a.txt": b'{"epoch": 0, "train_loss": 1.0}\n',
        "b.log": b"step,loss\n1,0.5\n2,0.4\n",
        "c.json": b"Epoch [1][100/782]\tlr: 1.0e-01, loss: 0.7163\n",
        "d.csv": b"Epoch 1: Train Loss=0.5, Val Loss=0.6\n",
        "e": b'{\n "best_metric": null,\n "global_step": 5,\n "log_history": []}',
    }
    got = {}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        got[name] = sniff(tmp_path / name)
    assert got == {"a.txt": "jsonl", "b.log": "csv", "c.json": "mmtext", "d.csv": "text", "e": "hf-trainer-state"}
    assert sniff_bytes(b"just some words\nand more words\n") is None
    assert sniff_bytes(io.BytesIO(b"PAR1\x00\x00").read()) is None
