"""Checks on energy and carbon: compute spent after convergence, idle accelerators, dirty grids."""

from __future__ import annotations

import re

from trainatlas.tools.convergence import convergence_step
from trainatlas.tools.diagnostics.base import Issue, check, fmt, need
from trainatlas.tools.diagnostics.common import value_at
from trainatlas.tools.robust import median
from trainatlas.tools.rundata import RunData

# energy_after_convergence: >= 30% of the run's energy (or time) came after the main metric stopped
# improving. Info only: a healthy run that converged and flattened out is not a fault.
AFTER_CONVERGENCE_SHARE = 0.30
# idle_accelerator (SageMaker LowGPUUtilization: p95 < 70%): median GPU use below 10%.
IDLE_GPU = 10.0
# high_carbon_intensity: grid above 400 g CO2/kWh (world average is about 480).
HIGH_INTENSITY = 0.4


def energy_share_after(data: RunData, step: int) -> tuple[float, float, float, str]:
    """(share, after, total) of the run's energy after ``step``: kWh when CodeCarbon measured the
    run, else seconds of compute. The share comes from the meter when it was read often enough to
    place ``step``, else from step times (power roughly constant)."""
    kwh = data.series("energy/kwh").finite()
    st = data.series("time/step_s").finite()
    total_kwh = float(kwh.values[-1]) if len(kwh) else 0.0
    if len(kwh) >= 10 and total_kwh > 0:
        share = (total_kwh - (value_at(kwh, step) or 0.0)) / total_kwh
    else:
        need(len(st) >= 10, "no energy meter readings and no step times")
        total_s = float(st.values.sum())
        share = float(st.values[st.steps > step].sum()) / total_s if total_s > 0 else 0.0
        if total_kwh <= 0:
            return share, share * total_s, total_s, "s"
    return share, share * total_kwh, total_kwh, "kWh"


@check("energy_after_convergence", "sustainability")
def energy_after_convergence(data: RunData) -> Issue | None:
    """A large share of the run's energy went into steps after the main metric stopped improving."""
    step = convergence_step(data)
    need(step is not None, "no converged metric to judge (missing, or it ended non-finite)")
    share, after, total, unit = energy_share_after(data, step)
    if share < AFTER_CONVERGENCE_SHARE:
        return None
    what = f"{fmt(after)} kWh of {fmt(total)} kWh" if unit == "kWh" else f"{fmt(after)} s of {fmt(total)} s of compute"
    return Issue(
        code="energy_after_convergence",
        severity="info",
        title="Energy spent after convergence",
        message=f"The run converged at step {step}; {share:.0%} of its energy ({what}) came after that.",
        evidence={"convergence_step": step, "share_after": share, "after": after, "total": total, "unit": unit},
        first_step=step,
        fix_prompt=(
            f"Stop at about step {step} next time: add early stopping on the validation metric "
            "(patience of a few evaluations) or shorten the schedule."
        ),
    )


@check("idle_accelerator", "sustainability")
def idle_accelerator(data: RunData) -> Issue | None:
    """The GPU is mostly idle while the run holds it."""
    pattern = re.compile(r"^gpu/(\d+)/util_percent$")
    keys = [k for k in data.keys if pattern.match(k)]
    need(bool(keys), "no GPU utilization samples (no NVML)")
    util = {k: median(data.series(k).finite().values) for k in keys}
    idle = {k: u for k, u in util.items() if u < IDLE_GPU}
    if not idle:
        return None
    return Issue(
        code="idle_accelerator",
        severity="warning",
        title="Idle accelerator",
        message=f"{len(idle)} GPU(s) were busy less than {IDLE_GPU:g}% of the time (median): {idle}.",
        evidence={"median_util_percent": util},
        first_step=None,
        fix_prompt=(
            "Feed the GPU faster (more DataLoader workers, pinned memory, larger batches) or run on a smaller/"
            "shared device; an idle GPU still draws most of its idle power."
        ),
    )


@check("high_carbon_intensity", "sustainability")
def high_carbon_intensity(data: RunData) -> Issue | None:
    """The electricity used has a high carbon intensity (> 400 g CO2/kWh)."""
    kwh, kg = data.series("energy/kwh").finite(), data.series("carbon/kg").finite()
    need(len(kwh) > 0 and len(kg) > 0 and kwh.values[-1] > 0, "no energy/carbon measurements")
    intensity = float(kg.values[-1] / kwh.values[-1])
    if intensity <= HIGH_INTENSITY:
        return None
    country = (data.info.get("carbon") or {}).get("country")
    return Issue(
        code="high_carbon_intensity",
        severity="info",
        title="High carbon intensity",
        message=(
            f"The grid{f' ({country})' if country else ''} emitted {intensity * 1000:.0f} g CO2 per kWh for this run "
            f"({fmt(float(kg.values[-1]))} kg CO2 for {fmt(float(kwh.values[-1]))} kWh)."
        ),
        evidence={"kg_per_kwh": intensity, "country": country},
        first_step=None,
        fix_prompt=(
            "Run long jobs in a low-carbon region (e.g. hydro/nuclear-heavy grids under 100 g/kWh) or at times of "
            "low grid intensity."
        ),
    )
