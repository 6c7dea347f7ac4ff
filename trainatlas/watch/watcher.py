"""The watch loop: poll the source, re-analyse when new data landed, and turn the difference with the
previous analysis into events (new or resolved issues, phase changes, a new recommendation, the end).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from trainatlas.tools.answers import Diagnosis, Status
from trainatlas.tools.diagnostics.base import SEVERITY_ORDER, Issue
from trainatlas.tools.report import diagnose, status
from trainatlas.tools.rundata import RunData
from trainatlas.watch.sources import Source

RECHECK_S = 5.0  # re-analyse at least this often: a dead process changes nothing on disk
PHASE_SEVERITY = {"DIVERGING": "critical", "OVERFITTING_RISK": "warning", "PLATEAU": "warning", "CONVERGED": "warning"}
ADVICE_SEVERITY = {"stop_now": "critical", "consider_stopping": "warning", "continue": "info", "finished": "info"}
END_SEVERITY = {"completed": "info"}  # failed, crashed: critical
# An issue is told resolved only once this many analyses of new data in a row have missed it. A check
# near its threshold judges the latest windows of a noisy curve, so one batch of new rows can drop it
# and the next bring it back: told as it is, that is a resolved line and a new alert each time. The
# phase machine confirms a change over 2 windows (phases.CONFIRM); a resolution gets one more, as a
# flap costs two messages. Analyses without new data do not count: they cannot confirm anything.
RESOLVE_AFTER = 3


@dataclass(frozen=True)
class Event:
    """One change worth telling: ``kind`` is start, issue, resolved, phase, recommendation, end or stop;
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
    held: dict[str, Issue] = field(default_factory=dict)  # issues missed, but fewer than RESOLVE_AFTER times
    missed: dict[str, int] = field(default_factory=dict)  # code -> analyses of new data in a row without it

    @property
    def run_status(self) -> str:
        return self.diagnosis.run.status

    last_logged: int = 0  # last step with a logged loss: run.json's count lags by a heartbeat

    @property
    def step(self) -> int:
        return max(self.diagnosis.run.steps, self.last_logged)

    @property
    def issues(self) -> dict[str, Issue]:
        """The issues found now, and those held: missed too few times in a row to count as resolved."""
        return {**self.held, **{i.code: i for i in self.diagnosis.issues}}


def hold_missed(before: Snapshot | None, now: Snapshot, after: int = RESOLVE_AFTER) -> None:
    """Carry into ``now`` the issues of ``before`` that fewer than ``after`` analyses of new data in a
    row have missed, so they are not told resolved yet. Once the run has ended nothing is held: the
    last analysis is the verdict."""
    if before is None or now.run_status != "running":
        return
    found = {i.code for i in now.diagnosis.issues}
    fresh = now.step > before.step
    for code, issue in before.issues.items():
        missed = before.missed.get(code, 0) + fresh
        if code not in found and missed < after:
            now.held[code], now.missed[code] = issue, missed


def stop_event(snap: Snapshot, max_time_s: float) -> Event:
    """The last line of a watch that ran out of time while the run went on."""
    return Event("stop", "stop", "info", snap.step, f"watch stopped: the time limit of {max_time_s:g} s was reached",
                 f"the run is still {snap.run_status}; --max-time sets the limit")  # fmt: skip


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
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``clock`` and ``sleep`` are the time the watch runs on (a test passes its own)."""
        self.source = source
        self.on_events = on_events
        self.interval_s = interval_s
        self.recheck_s = recheck_s
        self.clock, self.sleep = clock, sleep
        self.snapshot: Snapshot | None = None
        self.timed_out = False  # run() returned because max_time_s passed, not because the run ended
        self._analysed = -math.inf

    def poll(self) -> list[Event]:
        """One round: ingest or look for new data, re-analyse if any landed (or the recheck is due)."""
        changed = self.source.update()
        if not changed and self.clock() - self._analysed < self.recheck_s:
            return []
        now = analyse(self.source)
        self._analysed = self.clock()
        hold_missed(self.snapshot, now)
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
        deadline = None if max_time_s is None else self.clock() + max_time_s
        while True:
            started = self.clock()
            self.poll()
            if self.finished:
                return self.snapshot
            if deadline is not None and self.clock() >= deadline:
                self.timed_out = True
                return self.snapshot
            self.sleep(max(0.0, self.interval_s - (self.clock() - started)))
