"""How well ``trainatlas.tools.forecast`` predicts the final value of a training metric early on.

Every curve is cut at 30% of its steps; from that prefix each method predicts the value at the last
step. The truth is the curve's robust final value: the median of its last 2% of points (at least
3). Error = |pred - final| / |final|. Methods:

* forecast: ``forecast_curve(prefix, target_step=last step)`` (the weighted curve-family ensemble;
  were it to decline, with None, the last value would stand in);
* last value: the median of the last 5% (at least 3) points of the prefix;
* power law: the least-squares fit of y = a + b * x^(-c) to the prefix (x = step / last step, the
  first 5% of the prefix dropped as warm-up; c on a dense log grid, a and b by linear least squares,
  i.e. the global optimum over the grid) evaluated at the last step.

Curves, all from real trainings recorded by ``trainatlas.Observer`` and read back from the catalog
with SQL (curves that went non-finite are skipped):

* the demo's three scenarios (``trainatlas.demo.SCENARIOS``, ``trainatlas.demo.train``) at 1500 steps
  (the CLI's default of 600 leaves a 30% prefix only 8 validation points);
* the tests' tiny training (``tests/conftest.py``: an MLP on a synthetic 3-class task, plain SGD)
  at several learning rates;
* MLPs and a small CNN on scikit-learn's digits: SGD, SGD with momentum and Adam, several learning
  rates, batch sizes and seeds; validation loss and accuracy every 25 steps.

Keys: ``train/loss``, ``val/loss`` (lower is better), ``val/acc`` (higher is better). "wins" counts
the curves on which a method's error is the lowest of the three (ties count for each). Training
runs on one thread (about 100 s on a 2-core VM); the forecasts take milliseconds per curve.
``--curves-dir DIR`` adds CSV files with columns ``step,value`` (a header row is optional); a file
whose name contains "acc", "auc", "f1", "score", "bleu", "map" or "reward" is higher-is-better.
``--save-curves DIR`` writes the trained curves as such CSV files; ``--no-train`` evaluates only
``--curves-dir`` and the real logs.

Real curves, summarised apart from the recorded ones: every log in ``--real-logs DIR`` (default
``../shared/real-logs`` when present; ``--real-logs ''`` to leave them out) is ingested
(``trainatlas.ingest``), and its main metric (``trainatlas.tools.convergence.main_metric``, its
direction included: FID lower, mAP higher) and its training loss are taken when they have at least
20 distinct steps. Values logged several times at one step (per-batch losses written at the epoch)
are reduced to their median; a curve identical to one already taken (the same run logged in two
formats) is taken once.

Run: .venv/bin/python benchmarks/forecast_eval.py [--quick] [--curves-dir DIR] [--real-logs DIR] [--json [FILE]]
"""

from __future__ import annotations

import argparse
import math
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _common as C
import numpy as np

REPO = Path(__file__).resolve().parent.parent
REAL_LOGS = REPO.parent / "shared" / "real-logs"
MIN_REAL_POINTS = 20  # a real curve shorter than this leaves its 30% prefix too few points
PREFIX = 0.3  # the share of the steps the methods see
HIGHER_IS_BETTER = re.compile(r"acc|auc|f1|score|bleu|map|reward", re.IGNORECASE)


@dataclass
class Curve:
    name: str
    steps: np.ndarray
    values: np.ndarray
    lower_is_better: bool


# -- the curves: real tiny trainings, recorded by the Observer --------------------------------------


@dataclass(frozen=True)
class Setting:
    name: str
    model: str  # "mlp", "mlp2" (two hidden layers) or "cnn"
    optimizer: str  # "sgd", "momentum" or "adam"
    lr: float
    batch: int
    seed: int = 0


SETTINGS = (
    Setting("mlp-adam-1e-3-b64", "mlp", "adam", 1e-3, 64),
    Setting("mlp-adam-3e-4-b32", "mlp", "adam", 3e-4, 32),
    Setting("mlp-adam-1e-4-b64", "mlp", "adam", 1e-4, 64, seed=1),
    Setting("mlp2-adam-3e-3-b128", "mlp2", "adam", 3e-3, 128),
    Setting("mlp2-adam-1e-3-b16", "mlp2", "adam", 1e-3, 16, seed=2),
    Setting("mlp-sgd-0.1-b64", "mlp", "sgd", 0.1, 64),
    Setting("mlp-sgd-0.02-b32", "mlp", "sgd", 0.02, 32, seed=1),
    Setting("mlp2-sgd-0.3-b256", "mlp2", "sgd", 0.3, 256),
    Setting("mlp2-momentum-0.01-b64", "mlp2", "momentum", 0.01, 64, seed=3),
    Setting("mlp-momentum-0.003-b128", "mlp", "momentum", 3e-3, 128),
    Setting("cnn-adam-1e-3-b64", "cnn", "adam", 1e-3, 64),
    Setting("cnn-adam-2e-4-b32", "cnn", "adam", 2e-4, 32, seed=1),
    Setting("cnn-momentum-0.02-b64", "cnn", "momentum", 0.02, 64),
    Setting("cnn-sgd-0.05-b128", "cnn", "sgd", 0.05, 128, seed=2),
)
TEST_LRS = (0.01, 0.05, 0.2)  # the tests' tiny training (conftest.train), plain SGD


def read_curves(root: Path, run_id: str, name: str) -> list[Curve]:
    import trainatlas

    con = trainatlas.open_catalog(root)
    out = []
    for key in ("train/loss", "val/loss", "val/acc"):
        rows = con.execute(
            "SELECT step, value FROM scalars WHERE run_id = ? AND key = ? ORDER BY step", [run_id, key]
        ).fetchall()
        if not rows:
            continue
        steps = np.array([r[0] for r in rows], dtype=float)
        values = np.array([np.nan if r[1] is None else r[1] for r in rows], dtype=float)
        if not np.isfinite(values).all():
            print(f"  skipped {name} {key}: non-finite values", file=sys.stderr)
            continue
        out.append(Curve(f"{name}:{key}", steps, values, key != "val/acc"))
    return out


def demo_curves(root: Path, steps: int) -> list[Curve]:
    from rich.progress import Progress

    from trainatlas import demo

    out = []
    with Progress(disable=True) as progress:
        for scenario in demo.SCENARIOS:
            task = progress.add_task(scenario.name, total=steps)
            run_id = demo.train(scenario, root, steps, progress, task)
            out += read_curves(root, run_id, f"demo-{scenario.name}")
    return out


def test_curves(root: Path, steps: int) -> list[Curve]:
    sys.path.insert(0, str(REPO / "tests"))
    import conftest

    import trainatlas

    out = []
    for lr in TEST_LRS:
        name = f"tests-sgd-{lr:g}"
        with trainatlas.Observer(project="forecast", name=name, root=root, carbon=False, system=False) as obs:
            conftest.train(obs, steps=steps, lr=lr)
        out += read_curves(root, obs.run_id, name)
    return out


def build(setting: Setting) -> Any:
    import torch
    from torch import nn

    torch.manual_seed(setting.seed)
    if setting.model == "cnn":
        model = nn.Sequential(
            nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(32 * 16, 10),
        )  # fmt: skip
    elif setting.model == "mlp2":
        model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    else:
        model = nn.Sequential(nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 10))
    params = model.parameters()
    if setting.optimizer == "adam":
        return model, torch.optim.Adam(params, lr=setting.lr)
    momentum = 0.9 if setting.optimizer == "momentum" else 0.0
    return model, torch.optim.SGD(params, lr=setting.lr, momentum=momentum)


def digits_curves(root: Path, steps: int, settings: tuple[Setting, ...], val_every: int = 25) -> list[Curve]:
    import torch
    from torch import nn

    import trainatlas
    from trainatlas.demo import digits

    out = []
    for setting in settings:
        x, y, xv, yv = digits(setting.seed)
        model, optimizer = build(setting)
        g = torch.Generator().manual_seed(setting.seed)
        config = {"model": setting.model, "optimizer": setting.optimizer, "lr": setting.lr,
                  "batch_size": setting.batch, "seed": setting.seed}  # fmt: skip
        obs = trainatlas.Observer(
            project="forecast", name=setting.name, root=root, config=config, carbon=False, system=False,
            sample_every=0,
        )  # fmt: skip
        with obs:
            obs.watch(model, optimizer, total_steps=steps)
            per_epoch = len(x) // setting.batch
            for step in range(steps):
                i = step % per_epoch
                if i == 0:
                    perm = torch.randperm(len(x), generator=g)
                idx = perm[i * setting.batch : (i + 1) * setting.batch]
                loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                obs.step(loss=loss, batch_size=setting.batch)
                if (step + 1) % val_every == 0:
                    model.eval()
                    with torch.no_grad():
                        logits = model(xv)
                        obs.log({"val/loss": nn.functional.cross_entropy(logits, yv),
                                 "val/acc": (logits.argmax(1) == yv).float().mean()})  # fmt: skip
                    model.train()
        out += read_curves(root, obs.run_id, setting.name)
    return out


def trained_curves(
    steps: int, demo_steps: int, test_steps: int, settings: tuple[Setting, ...]
) -> list[Curve]:
    import torch

    torch.set_num_threads(1)
    tmp = C.scratch("forecast")
    try:
        curves = demo_curves(tmp, demo_steps)
        curves += test_curves(tmp, test_steps)
        curves += digits_curves(tmp, steps, settings)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return curves


def csv_curves(directory: Path) -> list[Curve]:
    out = []
    for path in sorted(directory.glob("*.csv")):
        rows = []
        for line in path.read_text().splitlines():
            parts = line.split(",")
            try:
                rows.append((float(parts[0]), float(parts[1])))
            except (ValueError, IndexError):
                continue  # a header or a malformed line
        if not rows:
            continue
        arr = np.array(rows, dtype=float)
        arr = arr[np.argsort(arr[:, 0], kind="stable")]
        if not np.isfinite(arr).all():
            print(f"  skipped {path.name}: non-finite values", file=sys.stderr)
            continue
        out.append(Curve(path.stem, arr[:, 0], arr[:, 1], not HIGHER_IS_BETTER.search(path.stem)))
    return out


def real_curves(directory: Path) -> list[Curve]:
    """The main metric and the training loss of every ingested real log (see the module docstring)."""
    from trainatlas.ingest import ingest_file
    from trainatlas.store.catalog import Catalog
    from trainatlas.tools.convergence import main_metric
    from trainatlas.tools.rundata import RunData

    tmp = C.scratch("forecast-real")
    out: list[Curve] = []
    seen: set[tuple[Any, ...]] = set()
    try:
        ids = {p: ingest_file(p, tmp).run_id for p in sorted(directory.glob("*/*")) if p.is_file()}
        catalog = Catalog(tmp)
        for path, run_id in ids.items():
            if not run_id:
                continue
            data = RunData.load(catalog, run_id)
            wanted = [main_metric(data), (data.loss_key, True) if data.loss_key else None]
            for key, lower in dict(w for w in wanted if w).items():
                s = data.series(key).finite()
                steps, idx = np.unique(s.steps, return_inverse=True)
                values = np.array([np.median(s.values[idx == i]) for i in range(len(steps))])
                picks = values[[0, len(values) // 2, -1]] if len(steps) else []
                fingerprint = (len(steps), *(f"{v:.3g}" for v in picks))  # formats round differently
                if len(steps) < MIN_REAL_POINTS or fingerprint in seen:
                    continue
                seen.add(fingerprint)
                out.append(Curve(f"{path.name.split('.')[0]}:{key}", steps.astype(float), values, lower))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def save_curves(curves: list[Curve], directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for c in curves:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", c.name)
        lines = ["step,value"] + [f"{int(s)},{float(v)!r}" for s, v in zip(c.steps, c.values, strict=True)]
        (directory / f"{name}.csv").write_text("\n".join(lines) + "\n")


# -- the methods ------------------------------------------------------------------------------------


def robust_tail(values: np.ndarray, share: float) -> float:
    k = max(3, math.ceil(share * len(values)))
    return float(np.median(values[-k:]))


def power_law(steps: np.ndarray, values: np.ndarray, target: float) -> float:
    """The least-squares y = a + b x^(-c) over a dense grid of c, a and b linear; value at target."""
    keep = steps >= steps[0] + 0.05 * (steps[-1] - steps[0])
    x = np.maximum(steps[keep], 1.0) / target
    y = values[keep]
    best = (math.inf, float(np.median(y[-3:])))
    for c in np.geomspace(1e-3, 5.0, 400):
        g = x**-c
        A = np.column_stack([np.ones_like(g), g])
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        sse = float(np.sum((A @ coef - y) ** 2))
        if sse < best[0]:
            best = (sse, float(coef[0] + coef[1]))  # x = 1 at the target
    return best[1]


def evaluate(curves: list[Curve]) -> tuple[list[dict[str, Any]], float]:
    from trainatlas.tools.forecast import forecast_curve

    rows = []
    seconds = 0.0
    for c in curves:
        target = int(c.steps[-1])
        cut = c.steps <= c.steps[0] + PREFIX * (c.steps[-1] - c.steps[0])
        steps, values = c.steps[cut], c.values[cut]
        final = robust_tail(c.values, 0.02)
        if len(steps) < 10 or final == 0:
            print(f"  skipped {c.name}: {len(steps)} points in the prefix, final {final:g}", file=sys.stderr)
            continue
        sign = 1.0 if c.lower_is_better else -1.0
        t = time.perf_counter()
        fc = forecast_curve(steps, values, target, lower_is_better=c.lower_is_better)
        seconds += time.perf_counter() - t
        last = robust_tail(values, 0.05)
        preds = {
            "forecast": fc.value if fc is not None else last,
            "last value": last,
            "power law": sign * power_law(steps, sign * values, target),
        }
        errs = {m: abs(p - final) / abs(final) for m, p in preds.items()}
        rows.append({
            "curve": c.name, "n": len(c.steps), "prefix_n": len(steps), "final": final,
            "pred": preds, "err": errs,
            "low": fc.low if fc else math.nan, "high": fc.high if fc else math.nan,
            "covered": bool(fc and fc.low <= final <= fc.high), "declined": fc is None,
        })  # fmt: skip
    return rows, seconds


METHODS = ("forecast", "last value", "power law")


def summary(rows: list[dict[str, Any]]) -> list[list[Any]]:
    out = []
    for m in METHODS:
        errs = [r["err"][m] for r in rows]
        wins = sum(1 for r in rows if r["err"][m] <= min(r["err"].values()))
        out.append([m, float(np.median(errs)), float(np.mean(errs)), float(np.percentile(errs, 90)), wins])
    return out


def report(group: str, rows: list[dict[str, Any]], total: int, forecast_s: float, out: Any) -> dict[str, Any]:
    """Print the per-curve and summary tables of one group of curves; return them for the JSON."""
    print(f"\n== {group} curves: {len(rows)} ({total - len(rows)} skipped); forecasting "
          f"{forecast_s * 1000 / len(rows):.1f} ms per curve", file=out)  # fmt: skip
    C.table(
        f"Per {group} curve: relative error of the final value predicted from the first {PREFIX:.0%} of steps",
        ["curve", "n", "final", "forecast", "[low, high]", "last value", "power law"],
        [[r["curve"], r["n"], r["final"], r["err"]["forecast"], f"[{r['low']:.3g}, {r['high']:.3g}]",
          r["err"]["last value"], r["err"]["power law"]] for r in rows],
        out=out,
    )  # fmt: skip
    table = summary(rows)
    C.table(f"Summary ({group}): |pred - final| / |final|", ["method", "median", "mean", "p90", "wins"], table,
            out=out)  # fmt: skip
    coverage = float(np.mean([r["covered"] for r in rows]))
    ours, *baselines = (row[1] for row in table)
    beats = all(ours < b for b in baselines)
    print(f"\n{group}: 80% interval coverage of the forecast: {coverage:.0%}; forecast declined on "
          f"{sum(r['declined'] for r in rows)} curves; beats both baselines in median error: "
          f"{C.verdict(beats)}", file=out)  # fmt: skip
    return {"rows": rows, "summary": table, "coverage": coverage, "beats_baselines": beats, "forecast_s": forecast_s}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer, shorter trainings for a smoke run")
    p.add_argument("--curves-dir", type=Path, help="extra curves: CSV files with columns step,value")
    p.add_argument("--save-curves", type=Path, metavar="DIR", help="write the trained curves as CSV")
    p.add_argument("--no-train", action="store_true", help="evaluate only the curves of --curves-dir")
    p.add_argument("--real-logs", type=Path, default=REAL_LOGS if REAL_LOGS.is_dir() else None,
                   help="a directory of real logs (<format>/<file>) to ingest; '' for none")
    p.add_argument("--steps", type=int, help="steps of the digits trainings (1500; quick 400)")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write JSON (stdout if no FILE)")
    a = p.parse_args()
    out = C.text_out(a.json)
    steps = a.steps or (400 if a.quick else 1500)
    started = time.perf_counter()
    curves: list[Curve] = []
    if not a.no_train:
        settings = SETTINGS[:3] if a.quick else SETTINGS
        curves += trained_curves(steps, demo_steps=steps, test_steps=steps, settings=settings)
        if a.save_curves:
            save_curves(curves, a.save_curves)
    train_s = time.perf_counter() - started
    if a.curves_dir:
        curves += csv_curves(a.curves_dir)
    real = real_curves(a.real_logs) if a.real_logs and str(a.real_logs) not in ("", ".") else []
    groups = {"recorded": curves, "real": real}
    payload: dict[str, Any] = {"train_s": train_s}
    for group, members in groups.items():
        if not members:
            continue
        rows, forecast_s = evaluate(members)
        if not rows:
            print(f"no {group} curves to evaluate", file=sys.stderr)
            continue
        payload[group] = report(group, rows, len(members), forecast_s, out)
    if len(payload) == 1:
        print("no curves to evaluate", file=sys.stderr)
        return 1
    print(f"\ntraining {train_s:.0f} s", file=out)
    C.emit_json(a.json, payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
