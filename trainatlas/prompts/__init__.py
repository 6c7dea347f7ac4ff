"""Belief-state prompts: texts that make the client's model investigate a run with the trainatlas
tools, keep an explicit belief (hypothesis, confidence, evidence, open questions), show it after
every answer and save it, so a later conversation resumes where this one stopped."""

from __future__ import annotations

BELIEF_PROTOCOL = """\
Work with an explicit belief state about the run(s):
1. First call get_beliefs for each run: if an earlier belief exists, start from it and say so.
2. Gather evidence with the trainatlas tools; never state a figure you did not get from a tool.
3. After each answer, end with your current belief as a JSON block:
```json
{{"hypothesis": "what is going on", "confidence": 0.0, "evidence": ["fact with numbers and steps"],
 "open_questions": ["what would change the belief"], "next_action": "what the user should do"}}
```
4. Save it with record_belief(runs={runs}, question=<the user's question>, and the same fields).
5. When new evidence changes the belief, say what changed and why, and lower or raise confidence accordingly.
"""

PROMPTS: dict[str, tuple[str, str]] = {
    "diagnose_run": (
        "Find out what is wrong with a training run and what to do about it.",
        """The user asks about training run {run_id}: "{question}"

Investigate: call diagnose(run={run_id!r}) for the issues and health score, training_status for the phase and \
advice, then look closer where the issues point (get_metric_series for the curves named in the evidence, \
layer_health for layer issues, list_events for alerts, run_summary for config and model). Answer with the most \
likely cause first, the evidence (numbers and steps), and the concrete fix (use the issues' fix_prompt).
""",
    ),
    "should_i_stop": (
        "Decide whether to stop a training run now, with the compute it would save.",
        """The user asks about training run {run_id}: "{question}"

Call training_status(run={run_id!r}) for the phase, ETA, forecast of the final metric and early-stop advice; \
check diagnose for critical issues (a diverged or NaN run should stop now whatever the forecast says) and \
sustainability_report for the energy and CO2. Answer: continue, consider stopping, or stop now (or that the \
run has finished, when it trains no more); the probability that the rest of the budget still improves the \
metric; the best step to keep; and what stopping now saves in time, kWh, kg CO2 and EUR.
""",
    ),
    "compare_runs": (
        "Compare training runs and explain which config change made the difference.",
        """The user asks about training runs {run_ids}: "{question}"

Call compare_runs on the runs (the first is the reference), then diagnose on each, and plot_metrics with the \
main metric of both. Answer which run is better on the main metric, by how much, which config difference most \
plausibly explains it, and what to try next.
""",
    ),
    "postmortem": (
        "Write the post-mortem of a finished, failed or crashed run.",
        """The user asks for a post-mortem of training run {run_id}: "{question}"

Call run_summary(run={run_id!r}) (status, traceback, config), diagnose, list_events(min_severity='warning') \
and training_status. Write: what happened and when (steps), the root cause with its evidence, what it cost \
(time, energy), and the changes to make before the next run. If the run should not be used, suggest \
set_review_status(run={run_id!r}, status='quarantined').
""",
    ),
}


def render(name: str, runs: list[str], question: str) -> str:
    """The text of prompt ``name`` about ``runs`` (the first is the main one) and the user's question."""
    if not runs:
        raise ValueError("name at least one run")
    _, body = PROMPTS[name]
    text = body.format(run_id=runs[0], run_ids=", ".join(runs), question=question.replace('"', "'"))
    return text + "\n" + BELIEF_PROTOCOL.format(runs=runs)
