"""Events told in a few short lines: what changed and why, the current figures, the ETA range, the
recommendation and what stopping now would save. The same text goes to the terminal and to alerts."""

from __future__ import annotations

from typing import Any

from trainatlas.fmt import duration
from trainatlas.fmt import number as _num
from trainatlas.tools.answers import STOPPING
from trainatlas.watch.alerts import Alerts
from trainatlas.watch.watcher import Event, Snapshot, alertable, finite_or_none


def headline(event: Event, snap: Snapshot) -> str:
    """``name @ step N: what changed - why``."""
    why = f" - {event.why}" if event.why else ""
    return f"{snap.diagnosis.run.name} @ step {event.step}: {event.what}{why}"


def figures(snap: Snapshot) -> str:
    """Loss, best loss, step, health and phase; the ETA range while the run goes on."""
    parts = []
    if snap.loss is not None:
        best = f" (best {_num(snap.best_loss)} at step {snap.best_step})" if snap.best_loss is not None else ""
        parts.append(f"loss {_num(snap.loss)}{best}")
    of = f" of {snap.total_steps}" if snap.total_steps else ""
    parts += [f"step {snap.step}{of}", f"health {snap.diagnosis.health_score}/100", f"phase {snap.status.phase}"]
    text = "now: " + ", ".join(parts)
    eta = snap.status.eta
    if eta is not None and snap.run_status == "running":
        text += f"; ETA {duration(eta.seconds)} ({duration(eta.low_s)}-{duration(eta.high_s)})"
    return text


def advice(snap: Snapshot, told: str = "") -> str:
    """The recommendation, and what stopping now would save when stopping is advised; the reason is
    left out when it repeats what the headlines above (``told``) already say."""
    rec = snap.status.recommendation
    text = f"recommendation: {rec.recommendation.replace('_', ' ')}"
    if rec.reason.split(": ", 1)[-1] not in told:
        text += f" ({rec.reason})"
    sv = rec.savings
    if sv is not None and rec.recommendation in STOPPING:
        text += (
            f"; stopping now saves {duration(sv.seconds)}, {sv.energy_kwh:.2g} kWh, {sv.co2_kg:.2g} kg CO2, "
            f"EUR {sv.cost_eur:.2g}" + (" (estimated)" if sv.estimated else "")
        )
    return text


def summary(snap: Snapshot) -> str:
    """The issues standing at the end of a run."""
    issues = snap.diagnosis.issues
    if not issues:
        return "no issues found"
    return "issues: " + ", ".join(f"{i.code} ({i.severity})" for i in issues)


def narrate(events: list[Event], snap: Snapshot) -> str:
    """One headline per event, then the figures and the advice (or the final issues once the run ended)."""
    lines = [headline(e, snap) for e in events]
    lines.append("  " + figures(snap))
    ended = any(e.kind == "end" for e in events)
    lines.append("  " + (summary(snap) if ended else advice(snap, told="\n".join(lines))))
    return "\n".join(lines)


def as_json(event: Event, snap: Snapshot) -> dict[str, Any]:
    """An event as one JSON line, with the figures a script would want."""
    rec = snap.status.recommendation
    return {
        **event.as_json(),
        "run_id": snap.diagnosis.run.run_id,
        "run": snap.diagnosis.run.name,
        "status": snap.run_status,
        "phase": snap.status.phase,
        "health_score": snap.diagnosis.health_score,
        "loss": finite_or_none(snap.loss),  # null when it went non-finite (strict JSON has no NaN)
        "best_loss": snap.best_loss,
        "step_of": snap.total_steps,
        "eta": snap.status.eta.model_dump() if snap.status.eta else None,
        "recommendation": rec.recommendation,
        "savings": rec.savings.model_dump() if rec.savings and rec.recommendation in STOPPING else None,
        "text": headline(event, snap),
    }


def notify(alerts: Alerts, events: list[Event], snap: Snapshot, alert_on: str = "warning") -> str | None:
    """Send, as one message, the events worth an alert whose kind is out of its cooldown; the text sent."""
    chosen = [e for e in events if alertable(e, alert_on) and alerts.allow(e.key)]
    if not chosen:
        return None
    text = f"trainatlas: {narrate(chosen, snap)}"
    alerts.send(text)
    return text
