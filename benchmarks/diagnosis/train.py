"""Train one benchmark run: a tiny model on generated or scikit-learn data, under a trainatlas
Observer, with at most one planted bug. Everything a run needs is in its `Spec`, so a run is
reproduced from its name alone (and can be trained in a worker process)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import trainatlas


@dataclass(frozen=True)
class Spec:
    """One labelled run. ``label`` is "healthy" or the pathology planted; ``hits`` are the codes
    that count as finding it (at warning or critical)."""

    family: str
    label: str
    hits: tuple[str, ...]
    seed: int = 0
    data: str = "digits"  # digits | classes | moons | regression | sequence
    model: str = "mlp"  # mlp | cnn | gru | transformer
    act: str = "ReLU"
    hidden: int = 64
    depth: int = 2
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = ""  # "" | step | cosine | warmup_cosine | onecycle | cyclic | exhausted | delayed
    steps: int = 300
    batch: int = 64
    train_size: int = 0  # 0: all
    label_smoothing: float = 0.0
    clip: float = 0.0
    bug: str = ""  # see BUGS
    extra: tuple[tuple[str, Any], ...] = field(default=())

    @property
    def name(self) -> str:
        return f"{self.family}-{self.variant}-s{self.seed}"

    @property
    def variant(self) -> str:
        return dict(self.extra).get("variant", "base")


# -- data -----------------------------------------------------------------------------------------


@cache
def dataset(name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """(x_train, y_train, x_val, y_val, classes); classes is 0 for regression. Fixed split."""
    from sklearn import datasets

    if name in ("digits", "sequence"):
        raw = datasets.load_digits()
        x, y = raw.data / 16.0, raw.target
    elif name == "classes":
        x, y = datasets.make_classification(3000, 20, n_informative=10, n_classes=4, n_clusters_per_class=2,
                                            class_sep=1.5, random_state=0)  # fmt: skip
    elif name == "moons":
        x, y = datasets.make_moons(3000, noise=0.25, random_state=0)
    elif name == "regression":
        x, y = datasets.make_regression(3000, 16, n_informative=8, noise=10.0, random_state=0)
        y = (y - y.mean()) / y.std()
    else:
        raise ValueError(f"unknown data set {name!r}")
    x = (x - x.mean(0)) / (x.std(0) + 1e-8) if name in ("classes", "moons", "regression") else x
    order = np.random.default_rng(0).permutation(len(x))
    split = int(0.8 * len(x))
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32 if name == "regression" else torch.long)
    classes = 0 if name == "regression" else int(yt.max()) + 1
    tr, va = torch.tensor(order[:split]), torch.tensor(order[split:])
    return xt[tr], yt[tr], xt[va], yt[va], classes


# -- models ---------------------------------------------------------------------------------------


class _Tokens(nn.Module):
    """A tiny transformer classifier: the 64 features as 8 tokens of 8."""

    def __init__(self, classes: int, width: int = 32) -> None:
        super().__init__()
        self.embed = nn.Linear(8, width)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True), 2
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x.view(-1, 8, 8))).mean(1))


class _Recurrent(nn.Module):
    """A GRU reading the 8x8 digit row by row."""

    def __init__(self, classes: int, hidden: int) -> None:
        super().__init__()
        self.gru = nn.GRU(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.gru(x.view(-1, 8, 8))[0][:, -1])


def build_model(spec: Spec, inputs: int, outputs: int) -> nn.Module:
    act = getattr(nn, spec.act)
    if spec.model == "mlp":
        layers: list[nn.Module] = []
        width = inputs
        options = dict(spec.extra)
        for _ in range(spec.depth):
            layers.append(nn.Linear(width, spec.hidden))
            layers += [nn.BatchNorm1d(spec.hidden)] if options.get("batchnorm") else []
            layers.append(act())
            layers += [nn.Dropout(0.3)] if spec.bug == "eval_mode" or options.get("dropout") else []
            width = spec.hidden
        return nn.Sequential(*layers, nn.Linear(width, outputs))
    if spec.model == "cnn":
        return nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)),
            nn.Conv2d(1, 8, 3, padding=1), act(),
            nn.Conv2d(8, 16, 3, padding=1), act(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(16 * 16, outputs),
        )  # fmt: skip
    if spec.model == "gru":
        return _Recurrent(outputs, spec.hidden)
    if spec.model == "transformer":
        return _Tokens(outputs)
    raise ValueError(f"unknown model {spec.model!r}")


def build_optimizer(spec: Spec, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay or 0.01)
    return torch.optim.Adam(params, lr=spec.lr, weight_decay=spec.weight_decay)


def build_schedule(spec: Spec, opt: torch.optim.Optimizer) -> Any:
    n = spec.steps
    if spec.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(opt, max(1, n // 3), 0.1)
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, n)
    if spec.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, spec.lr, total_steps=n)
    if spec.schedule == "cyclic":
        period = int(dict(spec.extra).get("half_period", 50))
        return torch.optim.lr_scheduler.CyclicLR(opt, spec.lr / 100, spec.lr, step_size_up=period, cycle_momentum=False)
    if spec.schedule == "delayed":  # a 100x lower rate for the first 40%: flat, then it learns
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.01 if step < 0.4 * n else 1.0)
    if spec.schedule in ("warmup_cosine", "exhausted"):
        warmup = max(1, n // 10)

        def factor(step: int) -> float:
            if spec.schedule == "exhausted":  # decays to 0 within the first third, then stays there
                return max(0.0, 1 - step / (n / 3))
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * (step - warmup) / (n - warmup)))

        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    return None


# -- bugs -----------------------------------------------------------------------------------------


def _plant(spec: Spec, model: nn.Module) -> None:
    """Bugs in the model before training."""
    with torch.no_grad():
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if spec.bug == "negative_bias":
            for m in linears[:-1]:
                m.bias.fill_(-5)
        elif spec.bug == "huge_init":
            for p in model.parameters():
                p.mul_(30)
        elif spec.bug == "saturating_init":
            linears[0].weight.mul_(40)


def _labels(spec: Spec, y: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(spec.seed + 7)
    if spec.bug == "shuffled_labels":  # a broken join: labels unrelated to the inputs
        return y[torch.randperm(len(y), generator=gen)]
    if spec.bug == "noisy_labels":  # 20% of the training labels wrong, as annotators make them: healthy
        wrong = torch.rand(len(y), generator=gen) < 0.2
        return torch.where(wrong, torch.randint(0, int(y.max()) + 1, y.shape, generator=gen), y)
    return y


def _before_step(spec: Spec, step: int, cache_: list) -> None:
    """Bugs in the input pipeline: work done before each step's forward pass."""
    wait = dict(spec.extra).get("data_wait")
    if wait:  # a data loader's time: gives a short run the wall time of a real one
        time.sleep(float(wait))
    if spec.bug == "slow_data":
        time.sleep(float(dict(spec.extra).get("wait", 0.01)))
    elif spec.bug == "feature_cache":
        cache_.append(torch.randn(256, 1024))  # 1 MB a step, kept forever


def _batch(spec: Spec, step: int, xb: torch.Tensor) -> torch.Tensor:
    at = dict(spec.extra).get("at", spec.steps // 3)
    if spec.bug == "nan_batch" and step == at:
        return xb * float("nan")
    if spec.bug == "corrupt_batches" and step in {int(spec.steps * f) for f in (0.35, 0.5, 0.65, 0.8)}:
        return xb * 60
    return xb


# -- training -------------------------------------------------------------------------------------


def train(spec: Spec, root: Path) -> str:
    """Train ``spec`` under an Observer writing to ``root``; returns the run id."""
    torch.manual_seed(spec.seed)
    x, y, xv, yv, classes = dataset(spec.data)
    if spec.train_size:
        x, y = x[: spec.train_size], y[: spec.train_size]
    y = _labels(spec, y)
    regression = classes == 0
    model = build_model(spec, x.shape[1], 1 if regression else classes)
    _plant(spec, model)
    params = [p for p in model.parameters() if p.requires_grad]
    if spec.bug == "frozen_backbone":  # fine-tuning a head on a frozen body: healthy
        for p in list(model.parameters())[:-2]:
            p.requires_grad_(False)
        params = list(model.parameters())[-2:]
    if spec.bug == "optimizer_misses_params":
        params = list(model.parameters())[2:]
    opt = build_optimizer(spec, params)
    schedule = build_schedule(spec, opt)
    if regression:
        loss_fn: Any = lambda out, target: nn.functional.mse_loss(out.squeeze(-1), target)  # noqa: E731
    else:
        loss_fn = nn.CrossEntropyLoss(label_smoothing=spec.label_smoothing)
    config: dict[str, Any] = {"lr": spec.lr, "batch_size": spec.batch, "max_steps": spec.steps,
                              "optimizer": spec.optimizer, "model": spec.model}  # fmt: skip
    if classes:
        config["num_classes"] = classes
    kept: list = []
    gen = torch.Generator().manual_seed(spec.seed + 1)
    with trainatlas.Observer("bench-diagnosis", spec.name, root, config, carbon=False, sample_every=20,
                             flush_every_s=0.5) as obs:  # fmt: skip
        obs.watch(model, opt, total_steps=spec.steps)
        if spec.bug == "eval_mode":
            model.eval()
        if spec.bug == "kept_activations":  # a debugging hook that keeps every first-layer output
            first = next(m for m in model.modules() if isinstance(m, nn.Linear))
            first.register_forward_hook(lambda module, inputs, output: kept.append(output) if module.training else None)
        for step in range(spec.steps):
            _before_step(spec, step, kept)
            idx = torch.randint(0, len(x), (spec.batch,), generator=gen)
            loss = loss_fn(model(_batch(spec, step, x[idx])), y[idx])
            if spec.bug != "no_zero_grad":
                opt.zero_grad()
            loss.backward()
            if spec.clip:
                nn.utils.clip_grad_norm_(params, spec.clip)
            opt.step()
            if schedule is not None:
                schedule.step()
            if spec.bug == "stalls" and step % 5 == 0:
                time.sleep(0.03)  # a periodic synchronous save or sync inside the step
            elif spec.bug == "slowing":
                time.sleep(0.002 + step * 0.0001)  # work inside the step that grows with the run
            obs.step(loss=loss, batch_size=spec.batch)
            if (step + 1) % 20 == 0:
                _evaluate(obs, model, loss_fn, xv, yv, regression)
        return obs.run_id


def _evaluate(obs: Any, model: nn.Module, loss_fn: Any, xv: torch.Tensor, yv: torch.Tensor, regression: bool) -> None:
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(xv)
        metrics = {"val/loss": loss_fn(out, yv)}
        if not regression:
            metrics["val/acc"] = (out.argmax(1) == yv).float().mean()
    obs.log(metrics)
    model.train(was)
