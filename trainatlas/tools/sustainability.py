"""The sustainability report of a run: energy, CO2, cost, a grade, and what to change."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from trainatlas.tools.answers import RunRef, SustainabilityReport
from trainatlas.tools.convergence import convergence_step
from trainatlas.tools.diagnostics.base import MissingData
from trainatlas.tools.diagnostics.sustainability import HIGH_INTENSITY, IDLE_GPU, energy_share_after
from trainatlas.tools.robust import median
from trainatlas.tools.rundata import RunData
from trainatlas.tools.status import CARBON_PRICE_EUR_PER_T, carbon_intensity, power_w

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog

GRADES = "ABCDEF"
GRADE_BANDS = (100, 200, 300, 450, 600)  # g CO2/kWh upper bounds of A..E


def duration_s(data: RunData) -> float:
    st = data.series("time/step_s").finite()
    if len(st):
        return float(st.values.sum())
    row = data.catalog.con.execute(f"SELECT max(ts) - min(ts) FROM {data.scalars_table}").fetchone()
    return float(row[0] or 0.0)


def sustainability_report(
    catalog: Catalog, ref: str, price_eur_per_t: float = CARBON_PRICE_EUR_PER_T
) -> SustainabilityReport:
    """Energy and carbon of a run, measured by CodeCarbon when it ran, else estimated."""
    data = RunData.load(catalog, ref)
    seconds = duration_s(data)
    kwh_series = data.series("energy/kwh").finite()
    watts, estimated, basis = power_w(data)
    if len(kwh_series) and kwh_series.values[-1] > 0:
        kwh, measured = float(kwh_series.values[-1]), True
    else:
        kwh, measured = watts * seconds / 3.6e6, False
    intensity, default_intensity = carbon_intensity(data)
    co2 = kwh * intensity
    power = {k.split("/")[1]: median(data.series(k).finite().values) for k in sorted(data.keys)
             if k.startswith("power/") and len(data.series(k).finite())}  # fmt: skip
    step = convergence_step(data)
    after_kwh = share = None
    if step is not None:
        try:
            share, _, _, _ = energy_share_after(data, step)
            after_kwh = share * kwh
        except MissingData:
            pass
    idle = _idle_seconds(data)
    g = intensity * 1000
    grade_i = next((i for i, bound in enumerate(GRADE_BANDS) if g < bound), 5)
    grade_i += (share or 0) >= 0.3
    grade_i += bool(idle)
    recommendations = []
    if share is not None and share >= 0.3:
        recommendations.append(
            f"Stop at about step {step}: {share:.0%} of the energy ({after_kwh:.3g} kWh) went into steps after the "
            "main metric stopped improving; add early stopping."
        )
    if intensity > HIGH_INTENSITY:
        recommendations.append(
            f"The grid emits {g:.0f} g CO2/kWh: the same run in a region under 100 g/kWh would emit "
            f"{kwh * 0.1:.3g} kg instead of {co2:.3g} kg."
        )
    if idle:
        recommendations.append(f"The GPU idled for about {idle:.0f} s: feed it faster or use a smaller device.")
    if not measured:
        recommendations.append(
            "Install the carbon extra (pip install 'trainatlas[carbon]') to measure instead of estimate."
        )
    return SustainabilityReport(
        run=RunRef.of(data),
        measured=measured,
        basis=("CodeCarbon offline tracker" if measured else basis)
        + f"; {g:.0f} g CO2/kWh" + (" (default)" if default_intensity else ""),
        duration_s=seconds, energy_kwh=kwh, co2_kg=co2, intensity_g_per_kwh=g, power_w=power,
        cost_eur=co2 / 1000 * price_eur_per_t, carbon_price_eur_per_t=price_eur_per_t,
        grade=GRADES[min(grade_i, 5)], convergence_step=step, energy_after_convergence_kwh=after_kwh,
        share_after_convergence=share, idle_accelerator_s=idle, recommendations=recommendations,
    )  # fmt: skip


def _idle_seconds(data: RunData) -> float | None:
    """Seconds during which some GPU ran below the idle threshold (from ~1 s samples)."""
    keys = [k for k in data.keys if re.match(r"^gpu/\d+/util_percent$", k)]
    if not keys:
        return None
    idle_samples = sum(int((data.series(k).finite().values < IDLE_GPU).sum()) for k in keys)
    return float(idle_samples) if idle_samples else None
