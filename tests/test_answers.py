"""Answers that read right to someone new: changes worded by their direction, lengths in the units
the log counts, one learning-rate advice per diagnosis, finished runs told as finished, and a run
without a recognised loss not called healthy. Runs come from real ingested logs (written here) and
real tiny PyTorch runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainatlas.fmt import change, relative
from trainatlas.ingest import ingest_file
from trainatlas.store.catalog import Catalog
from trainatlas.tools.report import diagnose


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
