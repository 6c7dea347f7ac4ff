"""What a diagnosis says as a whole, beyond its checks one by one: one learning-rate recommendation
(several checks each advise a change, and two different changes in one answer leave the reader to
pick), and a plain statement when no training loss was recognised (the checks that need it did not
run, so "no issues" would claim more than was looked at)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from trainatlas.tools.answers import Issue
from trainatlas.tools.diagnostics import CHECKS
from trainatlas.tools.rundata import LOSS_KEYS, RunData

NUM = r"-?\d(?:[\d.]*\d)?(?:e[+-]?\d+)?"
# The learning-rate instructions the checks write (trainatlas.tools.diagnostics.common.change_lr and
# the update-ratio check), most specific first: (pattern, whether it is a whole sentence).
LR_PATTERNS = (
    (re.compile(rf"Set the learning rate of param group 0 to about (?P<to>{NUM}) \(from (?P<frm>{NUM})\), "
                r"which would give a ratio near 1e-3\."), True),
    (re.compile(r"(?P<verb>Lower|Raise) the learning rate until the ratio is near 1e-3\."), True),
    (re.compile(rf"(?P<verb>lower|raise) the learning rate of param group 0 from (?P<frm>{NUM}) to (?P<to>{NUM})",
                re.IGNORECASE), False),
    (re.compile(rf"(?P<verb>lower|raise) the learning rate (?P<factor>{NUM})x", re.IGNORECASE), False),
    (re.compile(r"(?P<verb>lower|raise) the (?:peak )?learning rate\b", re.IGNORECASE), False),
    (re.compile(r"try a (?P<verb>lower|higher) learning rate\b", re.IGNORECASE), False),
)  # fmt: skip


@dataclass(frozen=True)
class LRAdvice:
    """One learning-rate instruction found in a fix: its direction, its amount when it has one."""

    start: int
    end: int
    sentence: bool
    lower: bool
    amount: str | None  # "1 -> 0.1", "10x"; None for "lower the learning rate"
    clause: str  # the instruction as another fix can quote it: "lower the learning rate of ... to 0.1"


def _found(text: str) -> list[LRAdvice]:
    taken: list[LRAdvice] = []
    for pattern, sentence in LR_PATTERNS:
        for m in pattern.finditer(text):
            if any(a.start < m.end() and m.start() < a.end for a in taken):
                continue  # part of a more specific instruction already found
            groups = m.groupdict()
            if groups.get("to") is not None:  # the verb says the direction, else the numbers do
                verb = groups.get("verb")
                lower = verb.lower() == "lower" if verb else float(groups["to"]) < float(groups["frm"])
                amount = f"{groups['frm']} -> {groups['to']}"
                clause = f"{'lower' if lower else 'raise'} the learning rate of param group 0 from {groups['frm']} to "
                clause += groups["to"]
            else:
                lower = groups["verb"].lower() == "lower"
                amount = f"{groups['factor']}x" if groups.get("factor") else None
                clause = f"{'lower' if lower else 'raise'} the learning rate" + (f" {amount}" if amount else "")
            taken.append(LRAdvice(m.start(), m.end(), sentence, lower, amount, clause))
    return sorted(taken, key=lambda a: a.start)


def _agrees(a: LRAdvice, lead: LRAdvice) -> bool:
    return a.lower == lead.lower and (a.amount is None or lead.amount is None or a.amount == lead.amount)


def _reworded(a: LRAdvice, lead: LRAdvice, code: str, text: str) -> str:
    """The instruction ``a`` replaced by the lead's, saying whose it is."""
    said = f"{lead.clause} as {code} advises"
    if a.sentence:  # the update-ratio check's own target
        return f"{said[0].upper()}{said[1:]}, then check that the ratio moves towards 1e-3."
    return f"{said[0].upper()}{said[1:]}" if text[a.start].isupper() else said


def _aside_end(text: str, end: int) -> int:
    """Where a parenthesis right after an instruction ends ("... (e.g. ReduceLROnPlateau(factor=0.1))"):
    it explains that change, so it goes when the change turns the other way."""
    if not text.startswith(" (", end):
        return end
    depth = 0
    for i in range(end + 1, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return end


def _lead(found: list[tuple[Issue, list[LRAdvice]]]) -> tuple[str, LRAdvice] | None:
    """The recommendation the diagnosis gives: the direction of the first issue that advises a change
    (issues come most severe and earliest first: the likeliest cause), with the amount of the first
    issue that gives one in that direction."""
    first = next((advice[0] for _, advice in found if advice), None)
    if first is None:
        return None
    for issue, advice in found:
        sized = next((a for a in advice if a.amount and a.lower == first.lower), None)
        if sized:
            return issue.code, sized
    return next(issue.code for issue, advice in found if advice), first


def one_learning_rate_advice(issues: list[Issue]) -> list[Issue]:
    """The issues with one learning-rate recommendation between them (see ``_lead``): a fix that goes
    the other way (with the aside that explains its change), or by another amount, is reworded to the
    lead's change; agreeing fixes are kept."""
    found = [(issue, _found(issue.fix_prompt)) for issue in issues]
    lead = _lead(found)
    if lead is None:
        return issues
    code, advice = lead
    out = []
    for issue, mine in found:
        text = issue.fix_prompt
        for a in reversed(mine):
            if a is not advice and not _agrees(a, advice):
                end = a.end if a.lower == advice.lower else _aside_end(text, a.end)
                text = text[: a.start] + _reworded(a, advice, code, text) + text[end:]
        out.append(issue if text == issue.fix_prompt else issue.model_copy(update={"fix_prompt": text}))
    return out


def loss_not_recognised(data: RunData, codes: list[str] | None = None) -> Issue | None:
    """An info issue when the run has no training loss trainatlas recognises and a loss check was asked
    for (all are by default): those checks were skipped, so the diagnosis must not read as a clean bill
    of health."""
    asked = codes is None or any(CHECKS[c].family == "loss" for c in codes if c in CHECKS)
    if data.loss_key is not None or not data.keys or not asked:
        return None
    lossy = sorted(k for k in data.keys if "loss" in k.lower())
    seen = f" Keys that look like losses: {', '.join(lossy[:8])}{', ...' if len(lossy) > 8 else ''}." if lossy else ""
    return Issue(
        code="loss_not_recognised",
        severity="info",
        title="No training loss recognised",
        message=(
            f"No training loss recognised among the {len(data.keys)} logged keys (looked for "
            f"{', '.join(LOSS_KEYS)}, or two or more component losses such as train/box_loss and train/cls_loss): "
            f"the loss checks (divergence, spikes, plateau, no learning, ...) did not run, so this diagnosis "
            f"cannot call the run healthy.{seen}"
        ),
        evidence={"keys": len(data.keys), "loss_like_keys": lossy[:20], "recognised": list(LOSS_KEYS)},
        fix_prompt=(
            "Log the total training loss as train/loss (obs.step(loss=loss) with trainatlas; in an imported "
            "log, a column named loss or train/loss), then diagnose again."
        ),
    )
