"""``trainatlas demo``: three small real trainings on scikit-learn's digits, one healthy and two
with classic bugs, recorded by the Observer, then shown from the catalog."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.datasets import load_digits
from torch import nn

from trainatlas.observer.observer import Observer
from trainatlas.store.catalog import Catalog

PROJECT = "demo"


@dataclass(frozen=True)
class Scenario:
    name: str
    bug: str
    optimizer: str
    lr: float
    relu_bias: float = 0.0  # initial bias of the hidden layers
    activation: type[nn.Module] = nn.ReLU


SCENARIOS = (
    Scenario("healthy", "none", "adam", 1e-3),
    Scenario(
        "lr-too-high",
        "SGD at lr 1.0 with momentum 0.9: the loss explodes to NaN",
        "sgd",
        1.0,
        activation=nn.LeakyReLU,
    ),
    Scenario("dead-relu", "hidden biases start at -4, so every ReLU outputs 0", "adam", 1e-3, -4.0),
)


def digits(seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Digits 8x8 scaled to [0, 1], split 80/20 with a fixed seed."""
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    cut = int(0.8 * len(x))
    return x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]]


def build(scenario: Scenario) -> tuple[nn.Module, torch.optim.Optimizer]:
    act = scenario.activation
    model = nn.Sequential(nn.Linear(64, 128), act(), nn.Linear(128, 64), act(), nn.Linear(64, 10))
    if scenario.relu_bias:
        with torch.no_grad():
            model[0].bias.fill_(scenario.relu_bias)
            model[2].bias.fill_(scenario.relu_bias)
    if scenario.optimizer == "sgd":
        return model, torch.optim.SGD(model.parameters(), lr=scenario.lr, momentum=0.9)
    return model, torch.optim.Adam(model.parameters(), lr=scenario.lr)


def train(scenario: Scenario, root: Any, steps: int, progress: Progress, task: Any) -> str:
    torch.manual_seed(0)
    x, y, xv, yv = digits()
    model, optimizer = build(scenario)
    batch = 64
    config = {"lr": scenario.lr, "optimizer": scenario.optimizer, "batch_size": batch,
              "max_steps": steps, "relu_bias_init": scenario.relu_bias, "bug": scenario.bug}  # fmt: skip
    per_epoch = len(x) // batch
    with Observer(PROJECT, scenario.name, root, config, sample_every=20) as obs:
        obs.watch(model, optimizer, total_steps=steps)
        for step in range(steps):
            epoch, i = divmod(step, per_epoch)
            if i == 0:
                perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
            idx = perm[i * batch : (i + 1) * batch]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            obs.step(loss=loss, batch_size=batch, epoch=epoch + (i + 1) / per_epoch)
            if i == per_epoch - 1:
                model.eval()
                with torch.no_grad():
                    logits = model(xv)
                    obs.log({"val/loss": nn.functional.cross_entropy(logits, yv),
                             "val/acc": (logits.argmax(1) == yv).float().mean()})  # fmt: skip
                model.train()
            progress.advance(task)
        return obs.run_id


def run_demo(root: Any, steps: int, as_json: bool = False) -> int:
    from trainatlas.cli.rendering import console, render_diagnosis, render_runs
    from trainatlas.demo_mcp import ask_server
    from trainatlas.demo_mcp import render as render_mcp
    from trainatlas.tools.report import diagnose
    from trainatlas.tools.runs import list_runs

    torch.set_num_threads(min(2, torch.get_num_threads()))
    started = time.perf_counter()
    run_ids = []
    with Progress(
        TextColumn("{task.description:<12}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, disable=as_json, transient=False,
    ) as progress:  # fmt: skip
        for scenario in SCENARIOS:
            task = progress.add_task(scenario.name, total=steps)
            run_ids.append(train(scenario, root, steps, progress, task))
    seconds = time.perf_counter() - started
    catalog = Catalog(root)
    rows = [r for r in list_runs(catalog, project=PROJECT) if r["run_id"] in run_ids]
    figures = _figures(catalog, run_ids)
    diagnoses = [diagnose(catalog, run_id) for run_id in run_ids]
    answers = ask_server(catalog.root, buggy=run_ids[1], healthy=run_ids[0])
    if as_json:
        payload = {"seconds": round(seconds, 2), "runs": rows, "figures": figures,
                   "diagnoses": [d.model_dump(mode="json") for d in diagnoses], "mcp": answers}  # fmt: skip
        print(json.dumps(payload, default=str))
        return 0
    console.print(f"trained {len(run_ids)} runs in {seconds:.1f} s; written to {catalog.root}")
    render_runs(rows)
    for scenario, fig, diagnosis in zip(SCENARIOS, figures, diagnoses, strict=True):
        console.print(
            f"\n[bold]{scenario.name}[/bold] (bug: {scenario.bug}): final loss {fig['final_loss']:.4g}, "
            f"best val acc {fig['best_val_acc']:.3f}",
            highlight=False,
        )
        render_diagnosis(diagnosis)
    console.print()
    render_mcp(answers, console)
    console.print(
        "\nNext: connect Claude Desktop (README), `trainatlas status healthy`, "
        "`trainatlas compare healthy lr-too-high`, "
        "`trainatlas carbon healthy`, or SQL such as\n"
        '  trainatlas sql "SELECT r.name, max(s.step) FROM scalars s JOIN runs r USING (run_id) GROUP BY 1"'
    )
    return 0


def _figures(catalog: Catalog, run_ids: list[str]) -> list[dict[str, Any]]:
    """The numbers that tell the three runs apart, straight from SQL."""
    query = """
        SELECT
          (SELECT arg_max(value, step) FROM scalars WHERE run_id = $id AND key = 'train/loss'),
          (SELECT max(value) FROM scalars WHERE run_id = $id AND key = 'val/acc'),
          (SELECT min(step) FROM scalars WHERE run_id = $id AND key = 'flag/nonfinite_loss'),
          (SELECT avg(act_dead_frac) FROM layers WHERE run_id = $id AND module_type LIKE '%ReLU'
             AND step = (SELECT max(step) FROM layers WHERE run_id = $id))
    """
    out = []
    for run_id in run_ids:
        loss, acc, nonfinite, dead = catalog.con.execute(query, {"id": run_id}).fetchone()
        out.append({"run_id": run_id, "final_loss": _nan(loss), "best_val_acc": _nan(acc),
                    "first_nonfinite_step": nonfinite, "dead_relu_frac": _nan(dead)})  # fmt: skip
    return out


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
