"""Real tiny trainings on scikit-learn's digits, healthy and with classic bugs, recorded by the Observer."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

import trainatlas


@cache
def digits() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def mlp(act: type[nn.Module] = nn.ReLU, hidden: int = 64, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = 64
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), act()]
        width = hidden
    return nn.Sequential(*layers, nn.Linear(width, 10))


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Unflatten(1, (1, 8, 8)),
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 16, 10),
    )  # fmt: skip


def record(
    root: Path,
    name: str,
    model: nn.Module,
    steps: int = 300,
    batch: int = 64,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 1e-3,
    scheduler: Any = None,
    train_size: int | None = None,
    labels: Callable[[torch.Tensor], torch.Tensor] | None = None,
    corrupt: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    before_step: Callable[[int], None] | None = None,
    keep: list | None = None,
    zero_grad: bool = True,
    eval_every: int = 20,
    setup: Callable[[nn.Module], None] | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    **observer: Any,
) -> str:
    """Train ``model`` on digits for ``steps`` steps under an Observer; returns the run id. ``seed``
    picks the batch order (build the model after ``torch.manual_seed(seed)`` for its init)."""
    torch.manual_seed(seed)
    x, y, xv, yv = digits()
    if train_size:
        x, y = x[:train_size], y[:train_size]
    if labels:
        y = labels(y)
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    observer.setdefault("carbon", False)
    observer.setdefault("sample_every", 20)
    config = {"lr": lr, "batch_size": batch, "max_steps": steps, "num_classes": 10, **(config or {})}
    with trainatlas.Observer("tests", name, root, config,
                             **observer) as obs:  # fmt: skip
        obs.watch(model, opt, total_steps=steps)
        if setup:
            setup(model)
        gen = torch.Generator().manual_seed(seed + 1)
        for step in range(steps):
            if before_step:
                before_step(step)
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            xb = x[idx]
            if corrupt:
                xb = corrupt(step, xb)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            if zero_grad:
                opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler:
                scheduler.step()
            obs.step(loss=loss, batch_size=batch)
            if keep is not None:
                keep.append(loss)  # the bug: every loss kept with its graph
            if (step + 1) % eval_every == 0:
                was = model.training
                model.eval()
                with torch.no_grad():
                    logits = model(xv)
                obs.log({"val/loss": nn.functional.cross_entropy(logits, yv),
                         "val/acc": (logits.argmax(1) == yv).float().mean()})  # fmt: skip
                model.train(was)
        return obs.run_id


def sleep(seconds: float) -> Callable[[int], None]:
    return lambda step: time.sleep(seconds)
