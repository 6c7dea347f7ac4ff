"""The watch loop: poll the source, re-analyse when new data landed, and turn the difference with the
previous analysis into events (new or resolved issues, phase changes, a new recommendation, the end).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from trainatlas.tools.diagnostics.base import SEVERITY_ORDER, Issue
from trainatlas.tools.report import Diagnosis, Status, diagnose, status
from trainatlas.tools.rundata import RunData
from trainatlas.watch.sources import Source

RECHECK_S = 5.0  # re-analyse at least this often: a dead process changes nothing on disk
PHASE_SEVERITY = {"DIVERGING": "critical", "OVERFITTING_RISK": "warning", "PLATEAU": "warning", "CONVERGED": "warning"}
ADVICE_SEVERITY = {"stop_now": "critical", "consider_stopping": "warning", "continue": "info", "finished": "info"}
END_SEVERITY = {"completed": "info"}  # failed, crashed: critical


@dataclass(frozen=True)
class Event:
    """One change worth telling: ``kind`` is start, issue, resolved, phase, recommendation or end;
    ``key`` names the signal for the alert cooldown (an issue code, ``phase:DIVERGING``)."""

    kind: str
    key: str
    severity: str
    step: int
    what: str  # what changed, in a few words
    why: str  # the reason, with its figures

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Snapshot:
    """One analysis of the run: its diagnosis, its status and the loss figures a narrative quotes."""

    diagnosis: Diagnosis
    status: Status
    loss: float | None = None  # last logged loss (NaN when it went non-finite)
    best_loss: float | None = None
    best_step: int | None = None
    total_steps: int | None = None

    @property
    def run_status(self) -> str:
        return self.diagnosis.run.status

    last_logged: int = 0  # last step with a logged loss: run.json's count lags by a heartbeat

    @property
    def step(self) -> int:
        return max(self.diagnosis.run.steps, self.last_logged)

    @property
    def issues(self) -> dict[str, Issue]:
        return {i.code: i for i in self.diagnosis.issues}


def analyse(source: Source) -> Snapshot:
    """Refresh the catalog and analyse the run (diagnose and status, a tenth of a second on small runs)."""
    source.catalog.refresh()
    snap = Snapshot(diagnose(source.catalog, source.run_id), status(source.catalog, source.run_id))
    data = RunData.load(source.catalog, source.run_id)
    snap.total_steps = data.total_steps
    if data.loss_key:
        loss = data.series(data.loss_key)
        if len(loss):
            snap.loss, snap.last_logged = float(loss.values[-1]), int(loss.steps[-1])
            finite = loss.finite()
            if len(finite):
                i = int(finite.values.argmin())
                snap.best_loss, snap.best_step = float(finite.values[i]), int(finite.steps[i])
    return snap


def _issue_event(issue: Issue, step: int, what: str) -> Event:
    return Event("issue", issue.code, issue.severity, step, f"{what} {issue.code} ({issue.title})", issue.message)


def diff(before: Snapshot | None, now: Snapshot) -> list[Event]:
    """The events that lead from ``before`` to ``now`` (from nothing: the start and the issues present)."""
    step = now.step
    events: list[Event] = []
    if before is None:
        events.append(Event("start", "start", "info", step, f"watching, phase {now.status.phase}",
                            f"{len(now.diagnosis.issues)} issue(s), {now.run_status}"))  # fmt: skip
        events += [_issue_event(i, step, f"{i.severity} issue") for i in now.diagnosis.issues]
    else:
        if now.status.phase != before.status.phase:
            reason = next((t["message"] for t in reversed(now.status.transitions) if t["code"] == now.status.phase), "")
            why = reason.split(": ", 1)[-1] if reason else ""
            events.append(Event("phase", f"phase:{now.status.phase}", PHASE_SEVERITY.get(now.status.phase, "info"),
                                step, f"phase {before.status.phase} -> {now.status.phase}", why))  # fmt: skip
        old = before.issues
        for code, issue in now.issues.items():
            if code not in old:
                events.append(_issue_event(issue, step, f"new {issue.severity} issue"))
            elif SEVERITY_ORDER[issue.severity] < SEVERITY_ORDER[old[code].severity]:
                events.append(_issue_event(issue, step, f"{old[code].severity} -> {issue.severity}:"))
        for code, issue in old.items():
            if code not in now.issues:
                events.append(Event("resolved", code, "info", step, f"resolved {code} ({issue.title})",
                                    "the check no longer finds it"))  # fmt: skip
        rec, was = now.status.recommendation.recommendation, before.status.recommendation.recommendation
        ending = now.run_status != "running" and before.run_status == "running"
        if rec != was and not (rec == "finished" and ending):  # the end line below tells it
            what = f"advice {was} -> {rec}".replace("_", " ")
            why = now.status.recommendation.reason
            title, _, message = why.partition(": ")
            if message and any(e.why == message for e in events):  # stop_now names an issue told above
                why = title.lower()
            events.append(Event("recommendation", f"recommendation:{rec}", ADVICE_SEVERITY[rec], step, what, why))
    if now.run_status != "running" and (before is None or before.run_status == "running"):
        loss = "" if now.loss is None else f", last loss {now.loss:.4g}"
        why = f"after {step} steps{loss}, health {now.diagnosis.health_score}/100"
        severity = END_SEVERITY.get(now.run_status, "critical")
        events.append(Event("end", "end", severity, step, f"run {now.run_status}", why))
    return events


def alertable(event: Event, alert_on: str = "warning") -> bool:
    """Alerts go out for the end of the run and for news at or above ``alert_on``; never for the start
    line or a resolved issue."""
    if event.kind == "end":
        return True
    return event.kind not in ("start", "resolved") and SEVERITY_ORDER[event.severity] <= SEVERITY_ORDER[alert_on]


def finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class Watcher:
    """Polls a source every ``interval_s``; calls ``on_events(events, snapshot)`` when something changed."""

    def __init__(
        self,
        source: Source,
        on_events: Callable[[list[Event], Snapshot], None],
        interval_s: float = 1.0,
        recheck_s: float = RECHECK_S,
    ) -> None:
        self.source = source
        self.on_events = on_events
        self.interval_s = interval_s
        self.recheck_s = recheck_s
        self.snapshot: Snapshot | None = None
        self._analysed = 0.0

    def poll(self) -> list[Event]:
        """One round: ingest or look for new data, re-analyse if any landed (or the recheck is due)."""
        changed = self.source.update()
        if not changed and time.monotonic() - self._analysed < self.recheck_s:
            return []
        now = analyse(self.source)
        self._analysed = time.monotonic()
        events = diff(self.snapshot, now)
        self.snapshot = now
        if events:
            self.on_events(events, now)
        return events

    @property
    def finished(self) -> bool:
        return self.snapshot is not None and self.snapshot.run_status in self.source.ends_on

    def run(self, max_time_s: float | None = None) -> Snapshot | None:
        """Poll until the run ends (or ``max_time_s`` passes); the last analysis."""
        deadline = None if max_time_s is None else time.monotonic() + max_time_s
        while True:
            started = time.monotonic()
            self.poll()
            if self.finished or (deadline is not None and time.monotonic() >= deadline):
                return self.snapshot
            time.sleep(max(0.0, self.interval_s - (time.monotonic() - started)))
