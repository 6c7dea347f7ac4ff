"""Answers that read right to someone new: changes worded by their direction, lengths in the units
the log counts, one learning-rate advice per diagnosis, finished runs told as finished, and a run
without a recognised loss not called healthy. Runs come from real ingested logs (written here) and
real tiny PyTorch runs."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import torch
from scenarios import mlp, record
from torch import nn

from trainatlas.cli import main
from trainatlas.fmt import change, relative
from trainatlas.ingest import ingest_file
from trainatlas.store.catalog import Catalog
from trainatlas.tools.advice import _found, one_learning_rate_advice
from trainatlas.tools.answers import Advice, Issue
from trainatlas.tools.report import diagnose
from trainatlas.tools.rundata import RunData
from trainatlas.watch.sources import RunSource
from trainatlas.watch.watcher import ADVICE_SEVERITY, Snapshot, analyse, diff


def test_changes_are_worded_by_direction():
    assert change(0.3, 1e36) == "grew 3.3e36×"
    assert change(0.3, 0.42) == "rose 40.0%" and change(1.0, 0.88) == "fell 12.0%"
    assert change(10.0, 0.001) == "fell 1e4×" and change(2.0, 2.0) == "stayed level"
    assert change(-3.22e5, -6.51e7) == "became 202× more negative"
    assert change(-1.0, -0.5) == "shrank 50.0% towards zero"
    assert change(-1.0, 2.0) == "went from -1 to 2"
    assert relative(-0.142) == "fell 14.2%" and relative(0.142) == "rose 14.2%"


def write_csv(path: Path, header: str, rows: list[tuple]) -> Path:
    path.write_text(header + "\n" + "".join(",".join(f"{v:.6g}" for v in row) + "\n" for row in rows))
    return path


def diagnosed(root: Path, path: Path):
    run_id = ingest_file(path, root).run_id
    return diagnose(Catalog(root), run_id)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lengths_count_steps_not_rows_and_say_epochs_when_the_log_counts_epochs(tmp_path, seed):
    rng = np.random.default_rng(seed)
    # a loss logged every 10 steps, falling slowly and steadily: 200 rows over 1991 steps
    slow = [(10 * i, 1 - 0.1 * i / 200 + 0.002 * rng.standard_normal()) for i in range(200)]
    found = {i.code: i for i in diagnosed(tmp_path, write_csv(tmp_path / "slow.csv", "step,loss", slow)).issues}
    assert "over 1991 steps" in found["slow_convergence"].message
    # an epoch-level log (Keras CSVLogger style) whose loss never moves
    flat = [(e, 2.3 + 0.01 * rng.standard_normal(), 2.31 + 0.01 * rng.standard_normal()) for e in range(60)]
    log = write_csv(tmp_path / "flat.csv", "epoch,loss,val_loss", flat)
    found = {i.code: i for i in diagnosed(tmp_path, log).issues}
    assert found["no_learning"].message.startswith("After 60 epochs the loss is")


# -- one learning-rate recommendation ---------------------------------------------------------------


def lr_instructions(issues) -> set[tuple[bool, str | None]]:
    """Every learning-rate instruction in the fixes, as (lower?, amount)."""
    return {(a.lower, a.amount) for i in issues for a in _found(i.fix_prompt)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_diverging_run_gets_one_learning_rate_change(tmp_path, seed):
    torch.manual_seed(seed)
    model = mlp(nn.LeakyReLU)
    sgd = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
    run_id = record(tmp_path, f"lr-too-high-{seed}", seed=seed, model=model, optimizer=sgd)
    d = diagnose(Catalog(tmp_path), run_id)
    said = lr_instructions(d.issues)
    assert len([i for i in d.issues if _found(i.fix_prompt)]) >= 3  # divergence, NaN, gradients (update ratio)
    assert {lower for lower, _ in said} == {True}
    assert len({amount for _, amount in said if amount}) == 1, said
    assert "from 1 to 0.1" in next(i for i in d.issues if i.code == "loss_divergence").fix_prompt
    for ratio in (i for i in d.issues if i.code == "update_ratio_out_of_range"):  # its own target was 1e-5
        assert ratio.fix_prompt.startswith("Lower the learning rate of param group 0 from 1 to 0.1 as loss_divergence")


def fix(code: str, severity: str, text: str, step: int) -> Issue:
    return Issue(code=code, severity=severity, title=code, message=code, first_step=step, fix_prompt=text)


def test_a_fix_that_goes_the_other_way_is_reworded_to_the_leading_one():
    issues = [
        fix("loss_divergence", "critical", "Lower the learning rate of param group 0 from 1 to 0.1, then restart.", 5),
        fix("slow_convergence", "warning", "Raise the learning rate of param group 0 from 1 to 10 (or run a "
            "learning-rate range test), or switch SGD to Adam.", 0),
        fix("dead_relu", "warning", "Initialize biases at 0; lower the learning rate; or switch to GELU.", 9),
        fix("update_ratio_out_of_range", "warning", "Raise the learning rate until the ratio is near 1e-3.", 0),
        fix("loss_plateau", "info", "If the validation metric has also stopped improving, stop here; otherwise "
            "lower the learning rate of param group 0 from 0.5 to 0.05 (e.g. ReduceLROnPlateau(factor=0.1, "
            "patience=10)).", 50),
    ]  # fmt: skip
    out = one_learning_rate_advice(issues)
    assert out[0] == issues[0] and out[2] == issues[2]  # the lead, and a fix that agrees with it
    assert out[1].fix_prompt == (
        "Lower the learning rate of param group 0 from 1 to 0.1 as loss_divergence advises, or switch SGD to Adam."
    )
    assert out[3].fix_prompt.startswith("Lower the learning rate of param group 0 from 1 to 0.1 as loss_divergence")
    assert out[4].fix_prompt.endswith(  # same direction, another amount: its aside still holds
        "otherwise lower the learning rate of param group 0 from 1 to 0.1 as loss_divergence advises (e.g. "
        "ReduceLROnPlateau(factor=0.1, patience=10))."
    )
    assert lr_instructions(out) == {(True, "1 -> 0.1"), (True, None)}
    exhausted = [  # a schedule decayed to 0: the plateau check's "lower ... from 0 to 0" goes the other way
        fix("update_ratio_out_of_range", "warning", "Raise the learning rate until the ratio is near 1e-3.", 0),
        fix("loss_plateau", "info", "Stop here; otherwise lower the learning rate of param group 0 from 0 to 0 (e.g. "
            "ReduceLROnPlateau(factor=0.1, patience=10)).", 50),
    ]  # fmt: skip
    reworded = one_learning_rate_advice(exhausted)[1].fix_prompt
    assert reworded == "Stop here; otherwise raise the learning rate as update_ratio_out_of_range advises."


# -- checkpoints -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resume_advice_names_a_known_checkpoint_saved_before_the_trouble(tmp_path, seed):
    runs = {}
    for name, config in (("no-checkpoints", None), ("saves-every-2", {"save_steps": 2})):
        torch.manual_seed(seed)
        model = mlp(nn.LeakyReLU)
        sgd = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9)
        runs[name] = record(tmp_path, f"{name}-{seed}", seed=seed, model=model, optimizer=sgd, config=config)
    blind = diagnose(Catalog(tmp_path), runs["no-checkpoints"]).issues
    assert not [i.code for i in blind if re.search(r"resume|checkpoint[^.;]*step", i.fix_prompt)]
    assert next(i for i in blind if i.code == "loss_divergence").fix_prompt.endswith("then restart training.")
    for issue in diagnose(Catalog(tmp_path), runs["saves-every-2"]).issues:
        if issue.code not in ("loss_divergence", "nonfinite_loss"):
            continue
        said = re.search(r"checkpoint saved at step (\d+) \(the last save by step (\d+), where", issue.fix_prompt)
        saved, by = int(said[1]), int(said[2])
        assert saved % 2 == 0 and saved <= by < issue.first_step  # before the trouble, never the step it began


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overfitting_names_a_checkpoint_to_keep_only_when_one_was_saved(tmp_path, seed):
    fixes = {}
    for name, config in (("no-checkpoints", None), ("saves-every-20", {"save_steps": 20})):
        torch.manual_seed(seed)
        run_id = record(tmp_path, f"{name}-{seed}", seed=seed, model=mlp(hidden=256), train_size=40, lr=3e-3,
                        config=config)  # fmt: skip
        overfit = next(i for i in diagnose(Catalog(tmp_path), run_id).issues if i.code == "overfitting")
        fixes[name] = (overfit.fix_prompt, overfit.evidence["best_step"])
    text, best = fixes["no-checkpoints"]
    assert "checkpoint from" not in text and text.startswith(f"Stop training at step {best}, where val/loss was best")
    text, best = fixes["saves-every-20"]
    saved = int(re.match(r"Keep the checkpoint saved at step (\d+) \(the last save by step", text)[1])
    assert saved % 20 == 0 and best - 20 < saved <= best


# -- finished runs -----------------------------------------------------------------------------------


def test_a_finished_run_is_told_as_finished(tmp_path, capsys):
    run_id = record(tmp_path, "healthy", model=mlp(), steps=200)
    d = diagnose(Catalog(tmp_path), run_id)
    assert d.run.status == "completed" and d.phase != "INITIALIZING"
    assert d.recommendation.recommendation == "finished"
    assert d.recommendation.reason.startswith("the run completed all 200 planned steps; its best val/loss was")
    assert main(["diagnose", run_id, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "recommendation: finished - the run completed all 200 planned steps" in out and "stopping now" not in out
    assert ADVICE_SEVERITY["finished"] == "info"
    assert set(ADVICE_SEVERITY) == set(get_args(Advice.model_fields["recommendation"].annotation))


def finished_log(path: Path) -> Path:
    """A log last written an hour ago: the ingester takes its run as ended (completed)."""
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    return path


def test_a_short_finished_log_has_a_phase_and_no_continue(tmp_path):
    rows = [(e, 3.0 * 0.9**e, 3.1 * 0.92**e) for e in range(12)]  # a 12-epoch log: fewer rows than one window
    d = diagnosed(tmp_path, finished_log(write_csv(tmp_path / "short.csv", "epoch,loss,val_loss", rows)))
    assert d.phase not in ("INITIALIZING", "UNKNOWN") and d.recommendation.recommendation == "finished"
    assert d.recommendation.reason.startswith("the run completed at epoch 11")
    tiny = diagnosed(tmp_path, finished_log(write_csv(tmp_path / "tiny.csv", "epoch,loss", [(0, 1.0), (1, 0.9)])))
    assert tiny.phase == "UNKNOWN" and tiny.recommendation.recommendation == "finished"


def test_the_end_of_a_watched_run_is_told_once(tmp_path):
    run_id = record(tmp_path, "watched", model=mlp(), steps=60)
    ended = analyse(RunSource(run_id, tmp_path))
    running = ended.diagnosis.model_copy(update={"run": ended.diagnosis.run.model_copy(update={"status": "running"})})
    before = Snapshot(running, ended.status.model_copy(update={"recommendation": Advice(
        recommendation="continue", reason="phase LEARNING_FAST")}))  # fmt: skip
    kinds = [e.kind for e in diff(before, ended)]
    assert ended.status.recommendation.recommendation == "finished"
    assert "end" in kinds and "recommendation" not in kinds  # the end line says it: no "advice continue -> finished"


# -- runs without a recognised loss ------------------------------------------------------------------


def yolo_rows(seed: int, epochs: int = 80) -> list[tuple]:
    rng = np.random.default_rng(seed)
    decay = np.exp(-np.arange(epochs) / 12)
    return [(e, 0.05 + 0.07 * d + 0.002 * rng.standard_normal(), 0.3 + 0.25 * d, 0.01 + 0.02 * d, 0.9 - 0.8 * d)
            for e, d in enumerate(decay)]  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_component_losses_are_summed_when_no_total_is_logged(tmp_path, seed):
    header = "epoch,train/box_loss,train/obj_loss,train/cls_loss,metrics/mAP_0.5"
    d = diagnosed(tmp_path, finished_log(write_csv(tmp_path / "results.csv", header, yolo_rows(seed))))
    data = RunData.load(Catalog(tmp_path), d.run.run_id)
    assert data.loss_key == "train/box_loss+train/cls_loss+train/obj_loss"
    assert data.series(data.loss_key).values[0] == pytest.approx(sum(yolo_rows(seed)[0][1:4]), rel=1e-5)
    skipped = {s.code for s in d.skipped}
    assert not {"loss_divergence", "loss_spikes", "no_learning"} & skipped
    assert "loss_not_recognised" not in {i.code for i in d.issues} and d.phase != "INITIALIZING"
    mmdet = [(10 * i, r[1], r[2], 512.0) for i, r in enumerate(yolo_rows(seed))]  # fp16 loss_scale is no term
    log = finished_log(write_csv(tmp_path / "mmdet.csv", "step,loss_cls,loss_bbox,loss_scale", mmdet))
    d = diagnosed(tmp_path, log)
    assert RunData.load(Catalog(tmp_path), d.run.run_id).loss_key == "loss_bbox+loss_cls"


def test_a_run_without_a_recognised_loss_is_not_called_healthy(tmp_path, capsys):
    rows = [(e, 1.0 / (e + 1), 2.0 / (e + 1), 0.1 * e) for e in range(30)]
    log = finished_log(write_csv(tmp_path / "gan.csv", "epoch,Generator_loss,Discriminator_loss,score", rows))
    run_id = ingest_file(log, tmp_path).run_id
    d = diagnose(Catalog(tmp_path), run_id)
    assert d.health_score < 100 and [i.code for i in d.issues] == ["loss_not_recognised"]
    assert "Generator_loss" in d.issues[0].message and d.phase == "UNKNOWN"
    assert main(["diagnose", run_id, "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "no issues found" not in out
    assert "info loss_not_recognised: No training loss recognised among the 4 logged" in out
    assert not diagnose(Catalog(tmp_path), run_id, ["dead_relu"]).issues  # no loss check asked for


# -- no_learning and loss_divergence -----------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("case", ["blows-up", "jumps-and-stays"])
def test_a_diverging_run_is_not_also_called_not_learning(tmp_path, seed, case):
    torch.manual_seed(seed)
    model = mlp(nn.LeakyReLU) if case == "blows-up" else mlp()
    sgd = torch.optim.SGD(model.parameters(), lr=1.0, momentum=0.9) if case == "blows-up" else \
        torch.optim.SGD(model.parameters(), lr=3.0)  # fmt: skip
    run_id = record(tmp_path, f"{case}-{seed}", seed=seed, model=model, optimizer=sgd)
    codes = {i.code for i in diagnose(Catalog(tmp_path), run_id).issues}
    assert not {"loss_divergence", "no_learning"} <= codes, codes  # one cause, told once
    if case == "blows-up":
        assert "loss_divergence" in codes
