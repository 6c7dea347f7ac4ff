"""Checks that judge a validation series against its own noise, and data waits against the wall time,
on real tiny runs under several seeds.

Healthy runs whose validation is measured on a small random sample each time (as many scripts do)
move by noise-level amounts after they converge; that is no overfitting and no generalization gap,
for a classifier, one trained with label smoothing, and a regression alike.
"""

from __future__ import annotations

import time

import pytest
import torch
from scenarios import digits, mlp, record
from sklearn.datasets import load_diabetes
from torch import nn

import trainatlas
from trainatlas.store.catalog import Catalog
from trainatlas.tools.report import diagnose

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("noise")


def diabetes() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_diabetes()
    x, y = torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target, dtype=torch.float32)[:, None]
    x, y = (x - x.mean(0)) / x.std(0), (y - y.mean()) / y.std()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:350]], y[order[:350]], x[order[350:]], y[order[350:]]


def regressor() -> nn.Sequential:
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 1))


KINDS = {
    "classifier": (digits, mlp, nn.CrossEntropyLoss(), 1e-3, 64),
    "label-smoothing": (digits, mlp, nn.CrossEntropyLoss(label_smoothing=0.1), 1e-3, 64),
    "regression": (diabetes, regressor, nn.MSELoss(), 3e-4, 32),
}


def sampled_validation_run(root, name: str, seed: int, kind: str, steps: int = 600) -> str:
    """Adam on the data; every 20 steps the validation loss of a fresh random sample of the held-out set."""
    data, build, loss_fn, lr, val_sample = KINDS[kind]
    x, y, xv, yv = data()
    torch.manual_seed(seed)
    model = build()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    with trainatlas.Observer("tests", name, root, {"max_steps": steps}, carbon=False, sample_every=20) as obs:
        obs.watch(model, opt, total_steps=steps)
        for step in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=gen)
            loss = loss_fn(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            obs.step(loss=loss, batch_size=32)
            if (step + 1) % 20 == 0:
                pick = torch.randint(0, len(xv), (val_sample,), generator=gen)
                model.eval()
                with torch.no_grad():
                    obs.log({"val/loss": loss_fn(model(xv[pick]), yv[pick])})
                model.train()
        return obs.run_id


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_validation_moving_by_noise_is_neither_overfitting_nor_a_gap_warning(root, kind, seed):
    run_id = sampled_validation_run(root, f"{kind}-{seed}", seed, kind)
    issues = {i.code: i for i in diagnose(Catalog(root), run_id).issues}
    assert "overfitting" not in issues, issues["overfitting"].message
    assert "generalization_gap" not in issues or issues["generalization_gap"].severity == "info"


@pytest.mark.parametrize("seed", SEEDS)
def test_a_real_rise_above_the_noise_is_still_overfitting(root, seed):
    torch.manual_seed(seed)
    run_id = record(root, f"tiny-train-{seed}", seed=seed, model=mlp(hidden=256), train_size=40, lr=3e-3)
    issue = {i.code: i for i in diagnose(Catalog(root), run_id).issues}["overfitting"]
    rise = issue.evidence["last_value"] - issue.evidence["best_value"]
    assert issue.severity == "warning" and rise > 3 * issue.evidence["noise_sd"]


def test_waits_every_fourth_batch_count_by_the_time_they_take(root):
    """Like a loader whose 4 workers cannot keep up: most steps get a batch at once, every 4th waits."""
    run_id = record(root, "bursty-data", model=mlp(), steps=120,
                    before_step=lambda step: time.sleep(0.04) if step % 4 == 0 else None)  # fmt: skip
    issue = {i.code: i for i in diagnose(Catalog(root), run_id).issues}["dataloader_bottleneck"]
    assert issue.severity == "warning" and issue.evidence["data_share"] > 0.3


def test_a_cpu_run_waiting_for_data_is_not_told_its_accelerator_idles(root):
    run_id = record(root, "sleepy-cpu", model=mlp(), steps=60, before_step=lambda step: time.sleep(0.01))
    issue = {i.code: i for i in diagnose(Catalog(root), run_id).issues}["dataloader_bottleneck"]
    assert not issue.evidence["gpu"] and "idles" not in issue.message and "training loop waits" in issue.message
    assert "pin_memory" not in issue.fix_prompt
