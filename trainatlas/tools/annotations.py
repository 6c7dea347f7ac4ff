"""What people and agents add to a run: beliefs about it (hypothesis, confidence, evidence, open
questions) and a review status.

Beliefs are appended to ``beliefs.jsonl`` in the run's directory, one JSON object a line, so a
later conversation or another client resumes from the history; appending never rewrites what
was there. The review status lives in ``run.json`` under ``review``; the Observer keeps that key
when it rewrites the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from trainatlas.store.layout import RUN_FILE
from trainatlas.store.runinfo import read_run_json, utcnow_iso, write_run_json

if TYPE_CHECKING:
    from trainatlas.store.catalog import Catalog

BELIEFS_FILE = "beliefs.jsonl"
ReviewStatus = Literal["pending", "approved", "quarantined"]


class Belief(BaseModel):
    """An agent's current understanding of a run, revised as evidence arrives."""

    hypothesis: str = Field(min_length=1, max_length=2000, description="what is going on with the run(s)")
    confidence: float = Field(ge=0, le=1, description="0 = a guess, 1 = certain")
    evidence: list[str] = Field(default_factory=list, max_length=50, description="facts with numbers and steps")
    open_questions: list[str] = Field(default_factory=list, max_length=20, description="what would change the belief")
    next_action: str | None = Field(default=None, max_length=1000, description="what the user should do next")


class BeliefRecord(Belief):
    at: str
    run_ids: list[str]
    author: str
    question: str | None = None


def record_belief(
    catalog: Catalog, refs: list[str], belief: Belief, author: str = "agent", question: str | None = None
) -> BeliefRecord:
    """Append a belief to the history of each run it is about."""
    if not refs:
        raise ValueError("name at least one run the belief is about")
    runs = [catalog.resolve(ref) for ref in refs]
    record = BeliefRecord(**belief.model_dump(), at=utcnow_iso(), run_ids=[r["run_id"] for r in runs],
                          author=author, question=question)  # fmt: skip
    line = (record.model_dump_json() + "\n").encode()
    for run in runs:
        fd = os.open(Path(run["path"]) / BELIEFS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)  # one write of one line: concurrent appenders do not interleave
        finally:
            os.close(fd)
    return record


def get_beliefs(catalog: Catalog, ref: str, limit: int = 20) -> dict[str, Any]:
    """A run's belief history, oldest first (the last one is the current belief); bad lines are skipped."""
    run = catalog.resolve(ref)
    path = Path(run["path"]) / BELIEFS_FILE
    records, skipped = [], 0
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(BeliefRecord.model_validate_json(line))
            except ValueError:
                skipped += 1
    review = read_run_json(Path(run["path"]) / RUN_FILE).get("review")
    return {
        "run_id": run["run_id"],
        "beliefs": [r.model_dump() for r in records[-limit:]],
        "total": len(records),
        "skipped_lines": skipped,
        "review": review,
    }


def set_review_status(catalog: Catalog, ref: str, status: ReviewStatus, note: str | None = None) -> dict[str, Any]:
    """Mark a run pending, approved or quarantined (e.g. a run whose results must not be used)."""
    if status not in ("pending", "approved", "quarantined"):
        raise ValueError(f"status must be pending, approved or quarantined, got {status!r}")
    run = catalog.resolve(ref)
    path = Path(run["path"]) / RUN_FILE
    info = read_run_json(path)
    previous = (info.get("review") or {}).get("status")
    info["review"] = {"status": status, "note": note, "at": utcnow_iso()}
    write_run_json(path, info)
    return {"run_id": run["run_id"], "review": info["review"], "previous_status": previous}
