"""The learning-curve forecaster on synthetic curves of known limit and on a real tiny training."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from conftest import observer
from sklearn.datasets import load_digits
from torch import nn

import trainatlas
from trainatlas.tools.forecast import Forecast, forecast_curve


def power_law(steps: np.ndarray) -> np.ndarray:
    return 0.3 + 1.5 * (steps / 100.0) ** -0.6


def noisy(values: np.ndarray, sd: float, seed: int = 0) -> np.ndarray:
    return values + np.random.default_rng(seed).normal(0.0, sd, len(values))


def check_interval(fc: Forecast) -> None:
    assert fc.low <= fc.value <= fc.high
    assert sum(f.weight for f in fc.fits) == pytest.approx(1.0)
    assert {f.family for f in fc.fits} >= {"pow3", "exp3", "mmf", "janoschek", "last"}


def test_power_law_with_noise_finds_the_asymptote():
    steps = np.arange(1, 3001)
    fc = forecast_curve(steps, noisy(power_law(steps), 0.03), target_step=10_000)
    assert fc is not None
    truth = float(power_law(np.array([10_000]))[0])  # 0.395, while the curve is at 0.495
    assert fc.current == pytest.approx(0.495, abs=0.02)
    assert abs(fc.value - truth) < 0.02
    assert abs(fc.value - truth) < 0.25 * abs(fc.current - truth)
    assert fc.low <= truth <= fc.high
    assert fc.high - fc.low < 0.15
    check_interval(fc)
    assert fc.target_step == 10_000
    assert fc.best_so_far == pytest.approx(fc.current, abs=0.02)
    pow3 = next(f for f in fc.fits if f.family == "pow3")  # truth: 0.3 + 0.0946 * x^-0.6, x = step / 1e4
    assert pow3.params["a"] == pytest.approx(0.3, abs=0.05)
    assert pow3.params["c"] == pytest.approx(0.6, abs=0.15)


def test_exponential_decay_levels_off():
    steps = np.arange(0, 1500)
    values = noisy(0.2 + np.exp(-steps / 400.0), 0.01, seed=1)
    fc = forecast_curve(steps, values, target_step=5000)
    assert fc is not None
    assert fc.current == pytest.approx(0.2 + np.exp(-1500 / 400), abs=0.01)  # 0.224
    assert abs(fc.value - 0.2) < 0.012
    assert fc.low <= 0.2 <= fc.high
    check_interval(fc)


def test_noisy_plateau_stays_put():
    steps = np.arange(1, 501)
    fc = forecast_curve(steps, noisy(np.full(500, 1.0), 0.05, seed=2), target_step=5000)
    assert fc is not None
    assert abs(fc.value - 1.0) < 0.03
    assert fc.low <= 1.0 <= fc.high
    assert fc.high - fc.low < 0.3


def test_increasing_accuracy_with_higher_is_better():
    steps = np.arange(1, 1001)
    acc = np.clip(noisy(0.9 - 0.8 * np.exp(-steps / 300.0), 0.01, seed=3), 0.0, 1.0)
    fc = forecast_curve(steps, acc, target_step=4000, lower_is_better=False)
    assert fc is not None
    assert fc.current == pytest.approx(0.9 - 0.8 * np.exp(-1000 / 300), abs=0.01)  # 0.871
    assert fc.value > fc.current + 0.01
    assert abs(fc.value - 0.9) < 0.02
    assert fc.low <= 0.9 <= fc.high <= 1.0
    assert fc.best_so_far >= fc.current - 0.01  # the best accuracy is the highest
    exp3 = next(f for f in fc.fits if f.family == "exp3")  # in accuracy units: 0.9 - 0.8 exp(-13.3 x)
    assert exp3.params["a"] == pytest.approx(0.9, abs=0.02)
    assert exp3.params["b"] == pytest.approx(-0.8, abs=0.05)
    assert exp3.params["c"] == pytest.approx(4000 / 300, rel=0.15)
    as_loss = forecast_curve(steps, acc, target_step=4000)  # wrongly taken as a loss: still sane
    assert as_loss is not None and as_loss.value > fc.current


def test_negative_loss_and_unsorted_steps():
    steps = np.arange(1, 2001)
    values = noisy(power_law(steps) - 2.0, 0.02, seed=4)
    order = np.random.default_rng(0).permutation(len(steps))
    fc = forecast_curve(steps[order], values[order], target_step=8000)
    assert fc is not None
    truth = float(power_law(np.array([8000]))[0]) - 2.0
    assert fc.value < fc.current
    assert abs(fc.value - truth) < 0.03
    assert fc.value == forecast_curve(steps, values, target_step=8000).value


def test_nan_and_inf_points_are_dropped():
    steps = np.arange(1, 2001).astype(float)
    values = noisy(power_law(steps), 0.03, seed=5)
    bad = np.random.default_rng(1).random(len(steps)) < 0.1
    dirty = values.copy()
    dirty[bad] = np.where(np.arange(bad.sum()) % 2, np.nan, np.inf)
    steps_dirty = steps.copy()
    steps_dirty[3] = np.nan
    fc = forecast_curve(steps_dirty, dirty, target_step=8000)
    keep = ~bad
    keep[3] = False
    clean = forecast_curve(steps[keep], values[keep], target_step=8000)
    assert fc is not None and clean is not None
    assert np.isfinite([fc.value, fc.low, fc.high, fc.current, fc.best_so_far]).all()
    assert fc.value == clean.value and fc.low == clean.low and fc.high == clean.high


def test_a_loss_spike_does_not_derail_it():
    steps = np.arange(25, 1501, 25)  # a validation loss: 60 evaluations
    values = noisy(power_law(steps), 0.01, seed=8)
    clean = forecast_curve(steps, values, target_step=5000)
    values[40] *= 20  # one bad evaluation
    fc = forecast_curve(steps, values, target_step=5000)
    assert clean is not None and fc is not None
    assert abs(fc.value - clean.value) < 0.01
    assert fc.high - fc.low < 2 * (clean.high - clean.low)


def test_too_little_data_gives_none():
    steps = np.arange(1, 10)
    assert forecast_curve(steps, power_law(steps), target_step=100) is None  # 9 points
    steps = np.arange(1, 41)
    assert forecast_curve(steps, power_law(steps), target_step=1000) is None  # 4% of the way
    assert forecast_curve(steps, power_law(steps), target_step=700) is not None  # 5.7%
    assert forecast_curve(steps, np.full(40, np.nan), target_step=700) is None
    assert forecast_curve(np.array([]), np.array([]), target_step=700) is None
    assert forecast_curve(steps, power_law(steps)[:-1], target_step=700) is None  # lengths differ
    assert forecast_curve(steps, power_law(steps), target_step=0) is None


def test_odd_curves_do_not_raise():
    steps = np.arange(1, 301)
    flat = forecast_curve(steps, np.full(300, 0.7), target_step=3000)
    assert flat is not None and flat.value == pytest.approx(0.7) and flat.high - flat.low < 1e-9
    same_step = forecast_curve(np.full(50, 10.0), np.linspace(1, 0, 50), target_step=100)
    assert same_step is None  # fewer than 10 distinct steps
    huge = forecast_curve(steps, 1e30 * power_law(steps), target_step=3000)
    assert huge is not None and 1e29 < huge.value < huge.current
    seen = forecast_curve(steps, power_law(steps), target_step=150)  # inside the observed range
    assert seen is not None and seen.value == pytest.approx(power_law(np.array([150]))[0], rel=0.01)


def test_a_rising_validation_loss_is_followed():
    steps = np.arange(1, 1201)
    val = noisy(0.4 + 0.0004 * steps, 0.005, seed=6)  # overfitting: rising steadily
    fc = forecast_curve(steps, val, target_step=3000)
    assert fc is not None
    assert fc.value > fc.current + 0.2  # the truth is 1.6 against 0.88 now
    assert fc.best_so_far < 0.45


def test_a_million_points_are_quick():
    steps = np.arange(1, 1_000_001)
    values = noisy(power_law(steps / 100.0), 0.05, seed=7)
    t = time.perf_counter()
    fc = forecast_curve(steps, values, target_step=3_000_000)
    assert time.perf_counter() - t < 2.0
    assert fc is not None
    assert abs(fc.value - power_law(np.array([30_000.0]))[0]) < 0.01


def test_real_training_beats_the_last_value(root):
    """A 2-layer MLP on scikit-learn's digits, 400 steps, recorded by the Observer: forecast the loss
    at step 400 from the first 120 steps."""
    torch.manual_seed(0)
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    with observer(root, name="digits") as obs:
        for _ in range(400):
            idx = torch.randint(0, len(x), (32,), generator=g)
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            obs.step(loss=loss)
    rows = (
        trainatlas.open_catalog(root)
        .execute(
            "SELECT step, value FROM scalars WHERE run_id = ? AND key = 'train/loss' ORDER BY step",
            [obs.run_id],
        )
        .fetchall()
    )
    steps, values = np.array(rows, dtype=float).T
    assert len(steps) == 400
    final = float(np.median(values[-20:]))
    first = steps <= 120
    fc = forecast_curve(steps[first], values[first], target_step=400)
    assert fc is not None
    last = float(np.median(values[first][-6:]))
    assert last > 1.3 * final  # still learning at step 120: there is something to forecast
    assert abs(fc.value - final) < abs(last - final) or abs(fc.value - final) < 0.25 * final
    assert fc.value < fc.current
