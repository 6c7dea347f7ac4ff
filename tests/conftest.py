"""Shared helpers: a real tiny training loop and a root per test."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import trainatlas

torch.set_num_threads(1)


@pytest.fixture
def anyio_backend() -> str:
    """The MCP client and server tests run on asyncio (the official SDK's own choice)."""
    return "asyncio"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def mlp(hidden: int = 32, act: type[nn.Module] = nn.ReLU, bias: float | None = None) -> nn.Sequential:
    model = nn.Sequential(nn.Linear(8, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, 3))
    if bias is not None:
        with torch.no_grad():
            model[0].bias.fill_(bias)
            model[2].bias.fill_(bias)
    return model


def data(n: int = 256, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def train(
    obs: trainatlas.Observer | None,
    model: nn.Module | None = None,
    steps: int = 50,
    lr: float = 0.05,
    batch: int = 32,
    before_step: Callable[[int], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> list[float]:
    """Train for real on a small synthetic task; return the losses (read after the fact)."""
    torch.manual_seed(0)
    model = model or mlp()
    opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr)
    x, y = data()
    if obs is not None:
        obs.watch(model, opt, total_steps=steps)
    losses = []
    for step in range(steps):
        if before_step:
            before_step(step)
        i = step % (len(x) // batch)
        loss = nn.functional.cross_entropy(model(x[i * batch : (i + 1) * batch]), y[i * batch : (i + 1) * batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if obs is not None:
            obs.step(loss=loss, batch_size=batch)
        losses.append(loss.detach())
    return [float(v) for v in losses]


def observer(root: Path, **kwargs) -> trainatlas.Observer:
    kwargs.setdefault("carbon", False)
    kwargs.setdefault("system", False)
    return trainatlas.Observer(project=kwargs.pop("project", "tests"), root=root, **kwargs)


@pytest.fixture(autouse=True)
def _warnings_are_visible():
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        yield
