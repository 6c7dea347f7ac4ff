"""Where a run stands and what to do: phase, ETA, forecast of the main metric, early-stop advice
with the time, energy, CO2 and money that stopping now would save."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np

from trainatlas.tools.answers import ETA, IMPROVEMENT_THRESHOLD, Advice, Savings
from trainatlas.tools.convergence import main_metric
from trainatlas.tools.diagnostics.base import Issue
from trainatlas.tools.diagnostics.common import step_unit
from trainatlas.tools.forecast import Forecast, forecast_curve
from trainatlas.tools.robust import window
from trainatlas.tools.rundata import RunData

CARBON_PRICE_EUR_PER_T = 50.0  # EU ETS order of magnitude, 2025-2026
DEFAULT_INTENSITY = 0.4  # kg CO2/kWh when the run has no measurement (world average is about 0.48)
ESTIMATED_CPU_W = 65.0  # device power when nothing was measured (labelled as an estimate)
ESTIMATED_GPU_W = 300.0
STOP_CODES = ("nonfinite_loss", "loss_divergence", "no_learning", "stale_gradients")


def step_times(data: RunData) -> np.ndarray:
    """Recent seconds per step: measured step times, else wall-clock time between logged losses."""
    st = data.series("time/step_s").finite()
    if len(st) >= 10:
        return window(st, 0.7, 1.0).values
    key = data.logged_loss_key
    if key is None:
        return np.zeros(0)
    row = data.catalog.con.execute(
        f"SELECT min(ts), max(ts), min(step), max(step) FROM {data.scalars_table} WHERE key = ?", [key]
    ).fetchone()
    if row[0] is None or row[3] <= row[2] or row[1] <= row[0]:
        return np.zeros(0)
    return np.array([(row[1] - row[0]) / (row[3] - row[2])])


def eta(data: RunData) -> ETA | None:
    """Remaining time with a 10-90% range, when the planned length is known."""
    total = data.total_steps
    done = data.last_step
    if not total or data.run.get("status") != "running":
        return None  # unknown length, or nothing left to wait for
    times = step_times(data)
    if not len(times):
        return None
    remaining = max(0, total - done)
    per_step = float(np.mean(times))  # a sum of step times: the mean, pauses included, is what adds up
    if len(times) >= 20:  # spread of the mean over blocks of 10 steps
        blocks = times[: len(times) // 10 * 10].reshape(-1, 10).mean(axis=1)
        lo, hi = np.quantile(blocks, [0.1, 0.9])
    else:
        lo, hi = per_step * 0.9, per_step * 1.1
    lo, hi = min(float(lo), per_step), max(float(hi), per_step)
    seconds = remaining * per_step
    end = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return ETA(total_steps=total, done_steps=done, remaining_steps=remaining, step_time_s=per_step,
               seconds=seconds, low_s=remaining * float(lo), high_s=remaining * float(hi),
               finish_at=end.isoformat(timespec="seconds"))  # fmt: skip


def forecast(data: RunData) -> tuple[str, bool, Forecast] | None:
    """The main metric's forecast at the planned end (or at the current step when unknown)."""
    found = main_metric(data)
    if found is None:
        return None
    key, lower = found
    s = data.series(key).finite()
    target = data.total_steps or (int(s.steps[-1]) if len(s) else 0)
    result = forecast_curve(s.steps, s.values, target, lower_is_better=lower) if len(s) else None
    return (key, lower, result) if result is not None else None


def power_w(data: RunData) -> tuple[float, bool, str]:
    """Average power of the run: measured (energy / time) or an estimate from its devices."""
    kwh = data.series("energy/kwh").finite()
    if len(kwh) >= 2:
        row = data.catalog.con.execute(
            f"SELECT min(ts), max(ts) FROM {data.scalars_table} WHERE key = 'energy/kwh'"
        ).fetchone()
        elapsed = (row[1] - row[0]) if row[0] is not None else 0
        gained = float(kwh.values[-1] - kwh.values[0])
        if elapsed > 0 and gained > 0:
            return gained * 3.6e6 / elapsed, False, "measured by CodeCarbon"
    gpus = len((data.info.get("environment") or {}).get("gpus") or [])
    watts = ESTIMATED_CPU_W + gpus * ESTIMATED_GPU_W
    return watts, True, f"estimate: {ESTIMATED_CPU_W:g} W CPU + {gpus} x {ESTIMATED_GPU_W:g} W GPU"


def carbon_intensity(data: RunData) -> tuple[float, bool]:
    kwh, kg = data.series("energy/kwh").finite(), data.series("carbon/kg").finite()
    if len(kwh) and len(kg) and kwh.values[-1] > 0:
        return float(kg.values[-1] / kwh.values[-1]), False
    return DEFAULT_INTENSITY, True


def savings(data: RunData, seconds: float, price_eur_per_t: float = CARBON_PRICE_EUR_PER_T) -> Savings:
    watts, estimated, basis = power_w(data)
    intensity, intensity_estimated = carbon_intensity(data)
    kwh = watts * seconds / 3.6e6
    co2 = kwh * intensity
    return Savings(seconds=seconds, energy_kwh=kwh, co2_kg=co2, cost_eur=co2 / 1000 * price_eur_per_t,
                   estimated=estimated or intensity_estimated,
                   basis=f"{basis}; {intensity * 1000:.0f} g CO2/kWh"
                   + (" (default)" if intensity_estimated else " (measured)"))  # fmt: skip


def ended(data: RunData) -> str:
    """How the run ended, in the units its log counts: 'the run completed all 300 planned steps'."""
    status, done, total, unit = data.run.get("status"), data.last_step, data.total_steps, step_unit(data)
    if total and done >= total:
        verb = "completed" if status in ("completed", "running") else f"{status} after"
        return f"the run {verb} all {total} planned {unit}s"
    return f"the run {status} at {unit} {done}" + (f" of {total} planned" if total else "")


def advise(
    data: RunData,
    issues: list[Issue],
    phase: str,
    remaining: ETA | None,
    predicted: tuple[str, bool, Forecast] | None,
    threshold: float = IMPROVEMENT_THRESHOLD,
    price_eur_per_t: float = CARBON_PRICE_EUR_PER_T,
) -> Advice:
    """Continue, consider stopping, or stop now, with what stopping now would save; ``finished`` once the
    run trains no more (stop now still, when a critical issue says its result is broken)."""
    saved = savings(data, remaining.seconds, price_eur_per_t) if remaining and remaining.remaining_steps else None
    blocking = [i for i in issues if i.code in STOP_CODES and i.severity == "critical"]
    best_step = best_value = None
    if predicted:
        key, lower, fc = predicted
        s = data.series(key).finite()
        i = int(np.argmin(s.values) if lower else np.argmax(s.values))
        best_step, best_value = int(s.steps[i]), float(s.values[i])
    if blocking:
        return Advice(recommendation="stop_now", reason=blocking[0].message,
                      best_step=best_step, best_value=best_value, savings=saved, threshold=threshold)  # fmt: skip
    if data.finished:
        best = f"; its best {predicted[0]} was {best_value:.4g} at {step_unit(data)} {best_step}" if predicted else ""
        return Advice(recommendation="finished", reason=ended(data) + best,
                      best_step=best_step, best_value=best_value, threshold=threshold)  # fmt: skip
    if predicted is None or remaining is None:
        if phase in ("CONVERGED", "OVERFITTING_RISK"):
            return Advice(
                recommendation="consider_stopping",
                reason=f"the run is in phase {phase}",
                best_step=best_step,
                best_value=best_value,
                savings=saved,
                threshold=threshold,
            )
        return Advice(recommendation="continue", reason=f"phase {phase}; no planned length to forecast against",
                      best_step=best_step, best_value=best_value, threshold=threshold)  # fmt: skip
    key, lower, fc = predicted
    sigma = max((fc.high - fc.low) / 2.563, 1e-12)  # the 80% interval of a normal spans 2.563 sigma
    goal = (
        fc.best_so_far - threshold * abs(fc.best_so_far) if lower else fc.best_so_far + threshold * abs(fc.best_so_far)
    )
    z = (goal - fc.value) / sigma if lower else (fc.value - goal) / sigma
    p = 0.5 * (1 + math.erf(z / math.sqrt(2)))
    if phase == "OVERFITTING_RISK":
        p = min(p, 0.3)
    rec = "continue" if p >= 0.5 else "consider_stopping" if p >= 0.1 else "stop_now"
    return Advice(
        recommendation=rec,
        reason=(
            f"{key} is forecast to reach {fc.value:.4g} (80% range {fc.low:.4g}-{fc.high:.4g}) at step "
            f"{fc.target_step} vs {fc.best_so_far:.4g} so far: {p:.0%} chance of improving by more than "
            f"{threshold:.0%}"
        ),
        probability_of_improvement=p,
        best_step=best_step,
        best_value=best_value,
        savings=saved,
        threshold=threshold,
    )
